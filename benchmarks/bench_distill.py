"""Teacher-student distillation on CoNLL-2003 (issue 6): teacher F1, a 3-layer student trained alone and distilled,
and the student's inference speed against the teacher's.

    python benchmarks/bench_distill.py                      # teacher, then both students, then the speed pass
    python benchmarks/bench_distill.py --teacher DIR        # reuse a teacher saved by an earlier run
    python benchmarks/bench_distill.py --quick --model DIR --train_file F --test_file F   # smoke run (tests)

Built on benchmarks/bench_train.py's harness: every model below is trained and tested as a bench_train arm, in its
own forked process, on the same sentences (the first `--train_samples` of the training file, IOB1 -> IOB2 by
`seqft.data.prepare_labels`), with seqft's own data path (`build_seqft`) and the same hyperparameters.

1. **teacher** (skipped with `--teacher DIR`): MiniLM-L6 (`--model`) fine-tuned for `--teacher_epochs` epochs, saved
   to `--teacher_out`/teacher (default outputs/bench_distill/teacher) so a later run can reuse it.
2. **student_alone** and **student_distilled** take turns (bench_train's interleaved rounds) on the same data for
   `--num_train_epochs` epochs. Both start from the same student: `seqft.distill.build_student_from_teacher(teacher,
   --student_layers)`, i.e. the fine-tuned teacher's embeddings, head and blocks 0, 2, 4. `student_alone` trains on
   the labels only; `student_distilled` adds the teacher (`teacher_model=`) with `--distill_alpha`,
   `--distill_temperature`, `--distill_hidden_weight` (default: recipes/conll_distill.json's 0.5, 2.0, 1.0, fixed
   before any result was seen).
3. **Inference speed**: plain forward passes (`torch.inference_mode`, batches of `--eval_batch_size`) over the
   length-sorted test set, teacher against the distilled student, interleaved: the test batches are dealt into
   `--speed_rounds` strided shares (share r = batches r, r + R, ...), and in every round both models run that share,
   in alternating order. Sentences/s per round; the ratio is the median over rounds of the per-round ratio. The
   same passes give F1 again, a cross-check of the arms' `trainer.predict` F1.

F1 is seqeval's default mode over IOB2 entities on the test file (eng.testb by default). Tune settings on eng.testa
(`--test_file .../eng.testa`), never on eng.testb.

Writes PREFIX.json (every number, both bench_train records, every speed round) and PREFIX.md (the table);
default prefix benchmarks/results/distill (quick-distill with --quick).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train  # noqa: E402  (the harness: arms, turns, F1, the table's raw numbers)
from bench_train import ArmSetup, BenchContext, BenchSettings, build_seqft, register_arm  # noqa: E402

REPO = bench_train.REPO
DEFAULT_TEACHER_OUT = REPO / "outputs" / "bench_distill"
STUDENT_ARMS = ("student_alone", "student_distilled")


@dataclasses.dataclass
class DistillSettings(BenchSettings):
    """bench_train's settings plus the distillation ones (picklable: they travel to the arm processes)."""

    teacher_dir: str = ""  # the fine-tuned teacher (set by main before the students run)
    teacher_epochs: float = 2.0
    student_layers: tuple[int, ...] = (0, 2, 4)
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    distill_hidden_weight: float = 1.0
    save_dir: str = ""  # where arms save their trained model (a callback, on_train_end); "" = not saved
    unlabelled_samples: int = 4000  # student_distilled_unlabelled: the next N training sentences, gold tags dropped
    unlabelled_file: str = ""  # ... or instead every sentence of this CoNLL file (e.g. eng.testa), gold tags dropped
    student_init: str = "teacher"  # "teacher": the fine-tuned teacher's blocks; "base": the pretrained encoder's
    teacher_train_samples: int | None = (
        None  # the teacher's first N training sentences; None = the students' N, 0 = all
    )


# ---------------------------------------------------------------------------------------------------------------
# Arms


def _save_on_train_end(directory: Path):
    """A callback that only observes: writes the trained model and tokenizer when `train()` ends."""
    from transformers import TrainerCallback

    class SaveModel(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
            model.save_pretrained(directory)
            if processing_class is not None:
                processing_class.save_pretrained(directory)

    return SaveModel()


def _with_saving(setup: ArmSetup, ctx: BenchContext, name: str) -> ArmSetup:
    if ctx.settings.save_dir:
        setup.trainer.add_callback(_save_on_train_end(Path(ctx.settings.save_dir) / name))
    return setup


def _student_context(ctx: BenchContext) -> BenchContext:
    """A copy of `ctx` whose model is the student (saved in the arm's workdir): blocks `student_layers` of the
    fine-tuned teacher (`student_init` "teacher") or of the pretrained encoder the teacher was tuned from ("base")."""
    from transformers import AutoModelForTokenClassification

    from seqft import data as seqdata
    from seqft.distill import build_student_from_teacher, label_names

    teacher_dir = ctx.settings.teacher_dir
    teacher = AutoModelForTokenClassification.from_pretrained(teacher_dir)
    if label_names(teacher) != ctx.label_names:
        raise SystemExit(
            f"the teacher in {teacher_dir} has labels {label_names(teacher)}, the data {ctx.label_names}: train the "
            "teacher on the same files (drop --teacher)."
        )
    source = teacher
    if ctx.settings.student_init == "base":  # DistilBERT-style: the blocks of the pretrained model, a new head
        import torch

        torch.manual_seed(ctx.settings.seed)  # the same new head in every student arm's process
        source = AutoModelForTokenClassification.from_pretrained(
            ctx.model_path, id2label=teacher.config.id2label, label2id=teacher.config.label2id
        )
    elif ctx.settings.student_init != "teacher":
        raise SystemExit(f"--student_init {ctx.settings.student_init!r}: expected 'teacher' or 'base'")
    student = build_student_from_teacher(source, list(ctx.settings.student_layers))
    path = Path(ctx.workdir) / "student_init"
    student.save_pretrained(path)
    seqdata.load_tokenizer(teacher_dir).save_pretrained(path)
    student_ctx = copy.copy(ctx)
    student_ctx.model_path = str(path)
    return student_ctx


@register_arm("teacher", "the teacher: the encoder (--model) fine-tuned on the labels, seqft path")
def build_teacher(ctx: BenchContext) -> ArmSetup:
    return _with_saving(build_seqft(ctx), ctx, "teacher")


@register_arm("student_alone", "student (teacher blocks --student_layers, head, embeddings) trained on the labels")
def build_student_alone(ctx: BenchContext) -> ArmSetup:
    return _with_saving(build_seqft(_student_context(ctx)), ctx, "student_alone")


@register_arm("student_distilled", "the same student, trained on the labels plus the teacher (seqft distillation)")
def build_student_distilled(ctx: BenchContext) -> ArmSetup:
    s = ctx.settings
    overrides = {
        "teacher_model_name_or_path": s.teacher_dir,
        "student_layers": list(s.student_layers),  # hidden states: student block j <-> the teacher block it copies
        "distill_alpha": s.distill_alpha,
        "distill_temperature": s.distill_temperature,
        "distill_hidden_weight": s.distill_hidden_weight,
    }
    setup = build_seqft(
        _student_context(ctx), training_overrides=overrides, trainer_kwargs={"teacher_model": s.teacher_dir}
    )
    return _with_saving(setup, ctx, "student_distilled")


# Attempts (`--extra_arms`): one principled change each against student_distilled, same number of steps.


@register_arm("student_distilled_logits", "student_distilled without hidden-state matching (soft KL + hard loss)")
def build_student_distilled_logits(ctx: BenchContext) -> ArmSetup:
    s = ctx.settings
    overrides = {
        "teacher_model_name_or_path": s.teacher_dir,
        "distill_alpha": s.distill_alpha,
        "distill_temperature": s.distill_temperature,
        "distill_hidden_weight": 0.0,
    }
    setup = build_seqft(
        _student_context(ctx), training_overrides=overrides, trainer_kwargs={"teacher_model": s.teacher_dir}
    )
    return _with_saving(setup, ctx, "student_distilled_logits")


def _teacher_labelled(ctx: BenchContext, count: int):
    """The `count` training sentences after the labelled subset (or `--unlabelled_file`'s sentences), their gold
    tags replaced by the teacher's: the words are written to a CoNLL file that
    `seqft.distill.teacher_tagged_sentences` reads, as a recipe's `distill_unlabelled_file` is read (each word's tag
    at its first subword, argmax for this plain teacher)."""
    import tempfile

    from seqft import data as seqdata
    from seqft import distill
    from seqft.configs import DataArguments

    s = ctx.settings
    start = len(ctx.raw["train"])
    if s.unlabelled_file:  # sentences neither the teacher nor the students were trained on
        data_args = DataArguments(train_file=s.unlabelled_file, label_scheme="IOB2")
    else:
        data_args = DataArguments(train_file=s.train_file, max_train_samples=start + count, label_scheme="IOB2")
    raw, _, _ = seqdata.prepare_labels(seqdata.load_raw_splits(data_args, s.seed), "IOB2", ctx.label_names)
    extra = raw["train"] if s.unlabelled_file else raw["train"].select(range(start, len(raw["train"])))
    teacher = distill.load_teacher(s.teacher_dir)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "unlabelled.conll")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("".join("\n".join(words) + "\n\n" for words in extra["tokens"]))
        tagged = distill.teacher_tagged_sentences(
            teacher, path, ctx.label_names, "IOB2", first_doc_id=start, batch_size=s.eval_batch_size
        )
    assert tagged["tokens"] == extra["tokens"]
    predicted = tagged["tags"]
    agreement = sum(a == b for p, g in zip(predicted, extra["tags"]) for a, b in zip(p, g))
    print(f"teacher tags on the extra sentences: {agreement / sum(len(t) for t in predicted):.4f} token accuracy")
    return extra.remove_columns("tags").add_column("tags", predicted).cast(ctx.raw["train"].features)


@register_arm(
    "student_distilled_unlabelled",
    "student_distilled, its data extended with --unlabelled_samples more training sentences tagged by the teacher "
    "(gold tags unused); max_steps = student_alone's steps",
)
def build_student_distilled_unlabelled(ctx: BenchContext) -> ArmSetup:
    from datasets import concatenate_datasets

    s = ctx.settings
    steps = math.ceil(len(ctx.raw["train"]) / s.batch_size) * s.num_train_epochs  # student_alone's budget
    student_ctx = _student_context(ctx)
    student_ctx.raw = dict(ctx.raw)
    student_ctx.raw["train"] = concatenate_datasets([ctx.raw["train"], _teacher_labelled(ctx, s.unlabelled_samples)])
    overrides = {
        "teacher_model_name_or_path": s.teacher_dir,
        "student_layers": list(s.student_layers),
        "distill_alpha": s.distill_alpha,
        "distill_temperature": s.distill_temperature,
        "distill_hidden_weight": s.distill_hidden_weight,
        "max_steps": int(steps),
    }
    setup = build_seqft(student_ctx, training_overrides=overrides, trainer_kwargs={"teacher_model": s.teacher_dir})
    return _with_saving(setup, ctx, "student_distilled_unlabelled")


EXTRA_ARMS = ("student_distilled_logits", "student_distilled_unlabelled")


# ---------------------------------------------------------------------------------------------------------------
# Inference speed: teacher against student, interleaved


def _test_batches(settings: DistillSettings, model_dir: str):
    """The test file, tokenised by seqft's path, sorted by length, collated into padded batches (untimed)."""
    from transformers import DataCollatorForTokenClassification

    from seqft import data as seqdata
    from seqft.configs import DataArguments

    data_args = DataArguments(
        train_file=settings.train_file,
        test_file=settings.test_file,
        max_train_samples=settings.train_samples,
        max_predict_samples=settings.test_samples,
        label_scheme="IOB2",
    )
    raw, label_names, scheme = seqdata.prepare_labels(seqdata.load_raw_splits(data_args, settings.seed), "IOB2")
    tokenizer = seqdata.load_tokenizer(model_dir)
    label2id = {name: i for i, name in enumerate(label_names)}
    test = seqdata.tokenize_split(raw["test"], tokenizer, label2id, settings.max_seq_length, False)
    test = seqdata.sort_by_length(test)
    keep = [c for c in ("input_ids", "attention_mask", "token_type_ids", "labels") if c in test.column_names]
    rows = test.select_columns(keep).to_list()
    collate = DataCollatorForTokenClassification(tokenizer, padding=True)
    size = settings.eval_batch_size
    return [collate(rows[i : i + size]) for i in range(0, len(rows), size)], label_names, scheme


def measure_speed(settings: DistillSettings, teacher_dir: str, student_dir: str, rounds: int, log=print) -> dict:
    import torch
    from transformers import AutoModelForTokenClassification

    from seqft.metrics import align_predictions, sequence_metrics

    torch.set_num_threads(settings.threads)
    batches, label_names, scheme = _test_batches(settings, teacher_dir)
    models = {
        "teacher": AutoModelForTokenClassification.from_pretrained(teacher_dir).eval(),
        "student": AutoModelForTokenClassification.from_pretrained(student_dir).eval(),
    }
    id2label = dict(enumerate(label_names))
    rounds = max(1, min(rounds, len(batches)))
    shares = [list(range(r, len(batches), rounds)) for r in range(rounds)]
    tags = {name: {} for name in models}  # batch index -> (gold, predicted) tag lists
    per_round = []

    def run(name, indices):
        model, seconds, sentences, tokens = models[name], 0.0, 0, 0
        for i in indices:
            batch = batches[i]
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            clock = time.perf_counter()
            with torch.inference_mode():
                logits = model(**inputs).logits  # shape: (batch, seq_len, num_labels)
            seconds += time.perf_counter() - clock
            sentences += len(batch["input_ids"])
            tokens += int(batch["attention_mask"].sum())
            aligned = align_predictions(logits.numpy(), batch["labels"].numpy(), id2label)
            tags[name][i] = (aligned.labels, aligned.predictions)
        return {"seconds": seconds, "sentences": sentences, "real_tokens": tokens}

    with torch.inference_mode():  # warm-up, untimed: first calls allocate and pick kernels
        for model in models.values():
            model(**{k: v[:2] for k, v in batches[0].items() if k != "labels"})
    for r, indices in enumerate(shares):
        order = list(models) if r % 2 == 0 else list(models)[::-1]
        measured = {name: run(name, indices) for name in order}
        rates = {name: m["sentences"] / m["seconds"] for name, m in measured.items()}
        per_round.append({"order": order, **measured, "ratio": rates["student"] / rates["teacher"]})
        log(
            f"[speed {r + 1}/{rounds}] teacher {rates['teacher']:.1f} sent/s, student {rates['student']:.1f} sent/s: "
            f"{per_round[-1]['ratio']:.2f}x"
        )

    out = {"rounds": per_round, "batches": len(batches), "batch_size": settings.eval_batch_size}
    for name in models:
        seconds = sum(r[name]["seconds"] for r in per_round)
        sentences = sum(r[name]["sentences"] for r in per_round)
        gold = [row for i in sorted(tags[name]) for row in tags[name][i][0]]
        guess = [row for i in sorted(tags[name]) for row in tags[name][i][1]]
        out[name] = {
            "sentences_per_s_median": statistics.median(r[name]["sentences"] / r[name]["seconds"] for r in per_round),
            "sentences_per_s_run": sentences / seconds,
            "seconds": seconds,
            "sentences": sentences,
            "f1": sequence_metrics(gold, guess, scheme)["f1"],
            "layers": models[name].config.num_hidden_layers,
            "parameters": sum(p.numel() for p in models[name].parameters()),
        }
    ratios = sorted(r["ratio"] for r in per_round)
    out["ratio_median"] = statistics.median(ratios)
    out["ratio_min"], out["ratio_max"] = ratios[0], ratios[-1]
    out["ratio_run"] = out["student"]["sentences_per_s_run"] / out["teacher"]["sentences_per_s_run"]
    return out


def _speed_process(conn, *args) -> None:
    try:
        conn.send(measure_speed(*args, log=lambda line: print(line, flush=True)))
    except BaseException:
        conn.send({"error": traceback.format_exc()})
    finally:
        conn.close()


def run_speed_process(settings: DistillSettings, teacher_dir: str, student_dir: str, rounds: int) -> dict:
    """`measure_speed` in its own process, as bench_train runs its arms: the parent never runs a torch op, so it can
    fork again (a second `main()` in the same interpreter)."""
    context = mp.get_context(bench_train._start_method())
    parent_end, child_end = context.Pipe()
    proc = context.Process(target=_speed_process, args=(child_end, settings, teacher_dir, student_dir, rounds))
    proc.start()
    child_end.close()
    try:
        result = parent_end.recv()
    except EOFError:
        raise bench_train.ArmFailed(f"the speed process died (exit code {proc.exitcode})") from None
    finally:
        proc.join(30)
    if "error" in result:
        raise bench_train.ArmFailed(f"the speed process failed:\n{result['error']}")
    return result


# ---------------------------------------------------------------------------------------------------------------
# The table


def summary(teacher: dict | None, students: dict[str, dict], speed: dict) -> dict:
    alone, distilled = students["student_alone"], students["student_distilled"]
    teacher_f1 = teacher["f1"] if teacher else speed["teacher"]["f1"]
    return {
        "teacher_f1": teacher_f1,
        "student_alone_f1": alone["f1"],
        "student_distilled_f1": distilled["f1"],
        "distilled_minus_alone_points": 100 * (distilled["f1"] - alone["f1"]),
        "distilled_over_teacher": distilled["f1"] / teacher_f1 if teacher_f1 else float("nan"),
        "teacher_sentences_per_s": speed["teacher"]["sentences_per_s_median"],
        "student_sentences_per_s": speed["student"]["sentences_per_s_median"],
        "student_over_teacher_speed": speed["ratio_median"],
        "targets": {
            "distilled >= alone + 2 F1": 100 * (distilled["f1"] - alone["f1"]) >= 2.0,
            "distilled >= 95% of teacher": distilled["f1"] >= 0.95 * teacher_f1,
            "student >= 1.8x faster": speed["ratio_median"] >= 1.8,
        },
    }


def markdown(teacher: dict | None, students: dict[str, dict], speed: dict, result: dict) -> str:
    def train(row):
        return "—" if row is None else f"{row['train_s']:.0f} s ({row['steps']} steps)"

    def f1(row, fallback):
        return f"{row['f1']:.4f}" if row is not None else f"{fallback:.4f} (reused teacher)"

    alone, distilled = students["student_alone"], students["student_distilled"]
    t_rate, s_rate = speed["teacher"]["sentences_per_s_median"], speed["student"]["sentences_per_s_median"]
    ok = {True: "met", False: "**missed**"}
    targets = list(result["targets"].values())
    return (
        "| model | layers | test F1 | vs student alone | vs teacher | inference sentences/s (median of rounds) "
        "| speed vs teacher | train time |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| teacher | {speed['teacher']['layers']} | {f1(teacher, speed['teacher']['f1'])} | | 100% | {t_rate:,.1f} "
        f"| 1.00x | {train(teacher)} |\n"
        f"| student alone | {speed['student']['layers']} | {alone['f1']:.4f} | | "
        f"{alone['f1'] / result['teacher_f1']:.1%} | as distilled | as distilled | {train(alone)} |\n"
        f"| student distilled | {speed['student']['layers']} | {distilled['f1']:.4f} "
        f"| {result['distilled_minus_alone_points']:+.2f} points | {result['distilled_over_teacher']:.1%} "
        f"| {s_rate:,.1f} | {speed['ratio_median']:.2f}x | {train(distilled)} |\n"
        "\n"
        f"Targets: distilled >= alone + 2 F1 points: {ok[targets[0]]} ({result['distilled_minus_alone_points']:+.2f}); "
        f"distilled >= 95% of the teacher's F1: {ok[targets[1]]} ({result['distilled_over_teacher']:.1%}); "
        f"student >= 1.8x faster: {ok[targets[2]]} ({speed['ratio_median']:.2f}x, median of {len(speed['rounds'])} "
        f"interleaved rounds, range {speed['ratio_min']:.2f}-{speed['ratio_max']:.2f}x; whole pass "
        f"{speed['ratio_run']:.2f}x).\n"
    )


def attempt_rows(students: dict[str, dict], teacher_f1: float) -> str:
    lines = []
    for name, row in students.items():
        if name in STUDENT_ARMS:
            continue
        delta = 100 * (row["f1"] - students["student_alone"]["f1"])
        lines.append(
            f"| {name} (attempt) | {row['f1']:.4f} | {delta:+.2f} points | {row['f1'] / teacher_f1:.1%} "
            f"| {row['train_s']:.0f} s ({row['steps']} steps) |"
        )
    if not lines:
        return ""
    return (
        "\n| attempt | test F1 | vs student alone | vs teacher | train time |\n|---|---:|---:|---:|---:|\n"
        + "\n".join(lines)
        + "\n"
    )


# ---------------------------------------------------------------------------------------------------------------
# Command line


QUICK = dict(bench_train.QUICK, teacher_epochs=1.0, num_train_epochs=1.0)
SPEED_ROUNDS = 6


def parse_args(argv=None) -> argparse.Namespace:
    defaults = DistillSettings(train_samples=4000, num_train_epochs=2.0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given explicitly")
    parser.add_argument("--teacher", default=None, help="a teacher saved by an earlier run: skip training one")
    parser.add_argument(
        "--teacher_out",
        default=None,
        help=f"saves the new teacher in TEACHER_OUT/teacher (default {DEFAULT_TEACHER_OUT})",
    )
    parser.add_argument("--output", default=None, help="results prefix (writes PREFIX.json and PREFIX.md)")
    parser.add_argument(
        "--extra_arms", nargs="*", default=[], choices=EXTRA_ARMS, help="attempts, run with the two student arms"
    )
    parser.add_argument("--speed_rounds", type=int, default=SPEED_ROUNDS, help=f"default {SPEED_ROUNDS}")
    kinds = {"int | None": int, "int": int, "float": float, "str": str}
    for f in dataclasses.fields(DistillSettings):
        if f.name in ("teacher_dir", "save_dir"):
            continue
        kind = kinds.get(str(f.type), lambda text: tuple(int(i) for i in text.split(",")))
        parser.add_argument(f"--{f.name}", type=kind, default=None, help=f"default: {getattr(defaults, f.name)}")
    args = parser.parse_args(argv)
    args.defaults = defaults
    return args


def teacher_data(teacher_record: dict | None) -> str:
    """' on N sentences' when the teacher was trained in this run (a reused teacher's data is not known here)."""
    if not teacher_record:
        return ""
    return f" on {teacher_record['teacher']['test']['train_sentences']} training sentences"


def main(argv=None) -> int:
    args = parse_args(argv)
    values = dataclasses.asdict(args.defaults)
    if args.quick:
        values.update(QUICK)
    values.update({k: getattr(args, k) for k in values if getattr(args, k, None) is not None})
    settings = DistillSettings(**values)
    started = dt.datetime.now(dt.timezone.utc)
    command = "python benchmarks/bench_distill.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{command}\nsettings: {dataclasses.asdict(settings)}", flush=True)
    load_before, clock = os.getloadavg(), time.perf_counter()
    log = lambda line: print(line, flush=True)  # noqa: E731

    with tempfile.TemporaryDirectory(prefix="bench-distill-") as scratch:
        teacher_record = None
        if args.teacher:
            teacher_dir = args.teacher
        else:
            teacher_out = Path(args.teacher_out or (Path(scratch) if args.quick else DEFAULT_TEACHER_OUT))
            teacher_samples = settings.train_samples
            if settings.teacher_train_samples is not None:
                teacher_samples = settings.teacher_train_samples or None  # 0: every training sentence
            teacher_settings = dataclasses.replace(
                settings,
                rounds=1,
                num_train_epochs=settings.teacher_epochs,
                save_dir=str(teacher_out),
                train_samples=teacher_samples,
            )
            teacher_dir = str(teacher_out / "teacher")
            log(f"== teacher: {settings.model}, {settings.teacher_epochs:g} epoch(s), saved to {teacher_dir}")
            teacher_record = bench_train.run_arms(["teacher"], teacher_settings, log=log)
        settings = dataclasses.replace(
            settings, teacher_dir=str(teacher_dir), save_dir=str(Path(scratch) / "students")
        )
        log(f"== students: blocks {list(settings.student_layers)} of {teacher_dir}")
        student_record = bench_train.run_arms([*STUDENT_ARMS, *args.extra_arms], settings, log=log)
        log("== inference speed: teacher against student_distilled")
        speed = run_speed_process(
            settings, teacher_dir, str(Path(settings.save_dir) / "student_distilled"), args.speed_rounds
        )
    elapsed = time.perf_counter() - clock

    teacher_row = bench_train.summarise(teacher_record, "teacher")[0] if teacher_record else None
    student_rows = {row["arm"]: row for row in bench_train.summarise(student_record, STUDENT_ARMS[0])}
    result = summary(teacher_row, student_rows, speed)
    table = markdown(teacher_row, student_rows, speed, result) + attempt_rows(student_rows, result["teacher_f1"])
    first = student_rows["student_alone"]
    notes = (
        f"`{command}` — {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min in total; load average "
        f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores.\n\n"
        f"Training data: {student_record['student_alone']['test']['train_sentences']} sentences "
        f"({'first ' + str(settings.train_samples) if settings.train_samples else 'all'} of {settings.train_file}); "
        f"test: {student_record['student_alone']['test']['test_sentences']} sentences of {settings.test_file}. "
        f"Teacher: {settings.model}, {settings.teacher_epochs:g} epoch(s)"
        f"{teacher_data(teacher_record)}"
        f"{' (reused: ' + str(teacher_dir) + ')' if args.teacher else ''}. Students: blocks "
        f"{list(settings.student_layers)} of the "
        f"{'pretrained encoder, new head' if settings.student_init == 'base' else 'fine-tuned teacher, its head'}, "
        f"{settings.num_train_epochs:g} epoch(s) = {first['steps']} steps of "
        f"{settings.batch_size}, {first['rounds']} interleaved rounds; distillation alpha {settings.distill_alpha}, "
        f"T {settings.distill_temperature}, hidden-state weight {settings.distill_hidden_weight}. lr "
        f"{settings.learning_rate}, warmup {settings.warmup_steps}, seed {settings.seed}, {settings.threads} torch "
        f"thread(s). Speed: forward passes over the length-sorted test set in batches of {settings.eval_batch_size}, "
        f"{len(speed['rounds'])} interleaved rounds; F1 from those passes: teacher {speed['teacher']['f1']:.4f}, "
        f"student {speed['student']['f1']:.4f}. Train time includes the distilled arm's teacher forwards.\n"
    )
    prefix = args.output or str(REPO / "benchmarks" / "results" / ("quick-distill" if args.quick else "distill"))
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command,
        "date_utc": started.isoformat(timespec="seconds"),
        "total_wall_s": elapsed,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "settings": dataclasses.asdict(settings),
        "teacher_dir": str(teacher_dir),
        "environment": bench_train.environment(),
        "summary": result,
        "teacher": teacher_row,
        "students": student_rows,
        "speed": speed,
        "raw": {"teacher": teacher_record, "students": student_record},
    }
    Path(prefix + ".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    Path(prefix + ".md").write_text(table + "\n" + notes, encoding="utf-8")
    print("\n" + table + "\n" + notes + f"\nwrote {prefix}.json and {prefix}.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
