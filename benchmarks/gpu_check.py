"""GPU check: real tokens/s and MFU of seqft training a BERT-base-sized token classifier, single GPU and DeepSpeed.

    python benchmarks/gpu_check.py                          # on a GPU machine: single-GPU bf16, ZeRO-2, ZeRO-3
    python benchmarks/gpu_check.py --modes zero3 --gpus 8 --peak_tflops 989
    python benchmarks/gpu_check.py --dry-run                # CPU, tiny model, a few steps: checks the harness only

Not run yet: the machine this was written on has no GPU. `--dry-run` (what tests/test_distributed.py runs) goes
through every step on CPU with a tiny config in fp32, so the numbers it prints mean nothing.

What it does. Each mode runs in its own process of this file (`--worker`; the ZeRO modes in a `torchrun --standalone`
launch), so accelerate and DeepSpeed start clean: `single` in one plain process on one GPU with bf16 autocast (as
accelerate_configs/single_gpu.yaml), `zero2` / `zero3` on `--gpus` GPUs with the shipped
accelerate_configs/ds_zero2.json / ds_zero3.json (bf16). The model is `BertForTokenClassification` from `BertConfig()`
(bert-base: 12 layers, hidden 768, 110M parameters), randomly initialised, trained by `SeqFTTrainer` (seqft's token
loss, AdamW) on synthetic sentences whose lengths are uniform in [seq_len/2, seq_len], padded per batch, as
fine-tuning data is.

What it reports, per mode, over the steps after `--warmup`:

* real tokens/s: non-padding tokens (sum of attention_mask over every rank) / wall-clock seconds, with the GPU
  synchronised at both ends;
* achieved TFLOP/s = 6 x parameters x real tokens / seconds (forward 2, backward 4 FLOPs per parameter and token;
  embeddings included, attention score FLOPs and padding ignored, so this under-counts the work actually done);
* MFU = achieved / (peak x GPUs), peak from `--peak_tflops` (default 989: H100 SXM, bf16, dense);
* peak GPU memory per rank (torch.cuda.max_memory_allocated).

Results go to `--output` (.md table and .json; default benchmarks/results/gpu_check).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "accelerate_configs"
MODES = ("single", "zero2", "zero3")
H100_BF16_DENSE_TFLOPS = 989.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    p.add_argument("--gpus", type=int, default=None, help="GPUs for the ZeRO modes (default: all visible)")
    p.add_argument("--batch_size", type=int, default=32, help="sentences per GPU per step")
    p.add_argument("--seq_len", type=int, default=128, help="longest sentence in subword tokens")
    p.add_argument("--steps", type=int, default=50, help="timed optimiser steps")
    p.add_argument(
        "--warmup", type=int, default=10, help="untimed steps first (allocator, kernels, DeepSpeed buckets)"
    )
    p.add_argument("--num_labels", type=int, default=9)
    p.add_argument("--peak_tflops", type=float, default=H100_BF16_DENSE_TFLOPS, help="per-GPU peak, TFLOP/s")
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "gpu_check"), help="path prefix")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="CPU, tiny model, fp32: harness check only")
    p.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown:
        p.error(f"unknown mode(s) {', '.join(unknown)}: choose from {', '.join(MODES)}")
    if args.dry_run:
        args.batch_size, args.seq_len, args.steps, args.warmup = min(args.batch_size, 4), 16, 3, 1
    return args


# ---------------------------------------------------------------------------------------------------------------
# Worker: one mode, inside torchrun


def model_config(dry_run: bool, num_labels: int):
    from transformers import BertConfig

    if dry_run:
        return BertConfig(
            vocab_size=128,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            num_labels=num_labels,
        )
    return BertConfig(num_labels=num_labels)  # bert-base-uncased's shape


def synthetic_dataset(n: int, seq_len: int, vocab_size: int, num_labels: int, seed: int = 0):
    import torch
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(seq_len // 2, seq_len + 1, (n,), generator=g).tolist()
    ids = [torch.randint(5, vocab_size, (length,), generator=g).tolist() for length in lengths]
    labels = [
        [-100] + torch.randint(0, num_labels, (length - 2,), generator=g).tolist() + [-100] for length in lengths
    ]
    return Dataset.from_dict({"input_ids": ids, "labels": labels})


def collate(features):
    import torch

    width = max(len(f["input_ids"]) for f in features)

    def pad(key, value):
        return torch.tensor([f[key] + [value] * (width - len(f[key])) for f in features])

    ids = pad("input_ids", 0)
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": pad("labels", -100)}


def deepspeed_config(mode: str, dry_run: bool, workdir: Path) -> str:
    config = json.loads((CONFIGS / f"ds_{mode}.json").read_text())
    if dry_run:
        config["bf16"] = {"enabled": "auto"}  # fp32 on CPU
    path = workdir / f"ds_{mode}.json"
    path.write_text(json.dumps(config))
    return str(path)


def run_worker(args) -> None:
    import torch
    from transformers import BertForTokenClassification, TrainerCallback

    from seqft import SeqFTConfig, SeqFTTrainer

    cuda = torch.cuda.is_available() and not args.dry_run
    world = int(os.environ.get("WORLD_SIZE", "1"))
    workdir = Path(tempfile.mkdtemp(prefix=f"gpu_check_{args.worker}_"))
    config = model_config(args.dry_run, args.num_labels)
    torch.manual_seed(0)
    model = BertForTokenClassification(config)
    params = sum(p.numel() for p in model.parameters())
    steps = args.warmup + args.steps
    data = synthetic_dataset(steps * args.batch_size * world, args.seq_len, config.vocab_size, args.num_labels)

    training_args = SeqFTConfig(
        output_dir=str(workdir / "out"),
        per_device_train_batch_size=args.batch_size,
        max_steps=steps,
        learning_rate=5e-5,
        warmup_steps=0,
        bf16=cuda,
        use_cpu=not cuda,
        deepspeed=None if args.worker == "single" else deepspeed_config(args.worker, args.dry_run, workdir),
        save_strategy="no",
        logging_steps=10**9,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0 if args.dry_run else 2,
        seed=0,
    )

    def sync():
        if cuda:
            torch.cuda.synchronize()

    class Counting(SeqFTTrainer):
        real_tokens = 0

        def training_step(self, model, inputs, num_items_in_batch=None):
            if self.state.global_step >= args.warmup:
                self.real_tokens += int(inputs["attention_mask"].sum())
            return super().training_step(model, inputs, num_items_in_batch)

    class Clock(TrainerCallback):
        start = end = None

        def on_step_begin(self, a, state, control, **kw):
            if state.global_step == args.warmup:
                sync()
                self.start = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            if state.global_step == steps:
                sync()
                self.end = time.perf_counter()

    clock = Clock()
    trainer = Counting(model=model, args=training_args, train_dataset=data, data_collator=collate, callbacks=[clock])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    seconds = clock.end - clock.start
    tokens, peak_mem = trainer.real_tokens, torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    if torch.distributed.is_initialized():
        t = torch.tensor([tokens, seconds, peak_mem], dtype=torch.float64, device=training_args.device)
        torch.distributed.all_reduce(t[:1])  # tokens: summed over ranks
        torch.distributed.all_reduce(t[1:], op=torch.distributed.ReduceOp.MAX)  # slowest rank, largest memory
        tokens, seconds, peak_mem = int(t[0]), float(t[1]), float(t[2])
    if trainer.is_world_process_zero():
        achieved = 6 * params * tokens / seconds / 1e12
        row = {
            "mode": args.worker,
            "gpus": world,
            "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.processor() or platform.machine()})",
            "precision": "bf16" if cuda else "fp32",
            "parameters": params,
            "batch_per_gpu": args.batch_size,
            "seq_len": args.seq_len,
            "timed_steps": args.steps,
            "real_tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens / seconds,
            "achieved_tflops": achieved,
            "mfu": achieved / (args.peak_tflops * world),
            "peak_memory_gib": peak_mem,
        }
        Path(args.result).write_text(json.dumps(row))
    shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Orchestrator


def launch_mode(mode: str, args, gpus: int, result: Path) -> None:
    forwarded = [
        "--batch_size", str(args.batch_size),
        "--seq_len", str(args.seq_len),
        "--steps", str(args.steps),
        "--warmup", str(args.warmup),
        "--num_labels", str(args.num_labels),
        "--peak_tflops", str(args.peak_tflops),
    ]  # fmt: skip
    if args.dry_run:
        forwarded.append("--dry-run")
    cmd = [sys.executable]  # single: one plain process, as `accelerate launch` with single_gpu.yaml runs it
    if mode != "single":
        cmd += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus)]
    cmd += [str(Path(__file__).resolve()), "--worker", mode, "--result", str(result), *forwarded]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.setdefault("OMP_NUM_THREADS", "1" if args.dry_run else "8")
    print(f"[gpu_check] {mode}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, cwd=REPO, env=env, check=True)


def table(rows: list[dict], peak: float) -> str:
    lines = [
        f"peak {peak:g} TFLOP/s per GPU; FLOPs = 6 x parameters x real tokens",
        "",
        "| mode | GPUs | device | precision | params | batch/GPU x len | real tokens/s | TFLOP/s | MFU "
        "| peak mem GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['gpus']} | {r['device']} | {r['precision']} | {r['parameters'] / 1e6:.1f}M "
            f"| {r['batch_per_gpu']} x {r['seq_len']} | {r['tokens_per_s']:,.0f} | {r['achieved_tflops']:.2f} "
            f"| {100 * r['mfu']:.1f}% | {r['peak_memory_gib']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible; use --dry-run to check the harness on CPU.", file=sys.stderr)
        return 2
    gpus = args.gpus or (1 if args.dry_run else torch.cuda.device_count())
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for mode in args.modes:
            result = Path(tmp) / f"{mode}.json"
            launch_mode(mode, args, gpus, result)
            rows.append(json.loads(result.read_text()))
    report = table(rows, args.peak_tflops)
    print(report, flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(report)
    record = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "peak_tflops": args.peak_tflops,
        "rows": rows,
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
