"""The benchmark harness runs end to end (`--quick`) on a tiny local encoder and CoNLL fixture, so it cannot rot.

Speed itself is measured by `benchmarks/bench_train.py`, never asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import SENTENCES, save_tiny_bert, write_conll

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks" / "bench_train.py"


def run_bench(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run(
        [sys.executable, str(BENCH), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_quick_run_reports_every_arm(tmp_path):
    model = save_tiny_bert(tmp_path / "model")
    train = write_conll(tmp_path / "train.txt", SENTENCES * 4)  # 24 sentences: 3 steps of 8
    test = write_conll(tmp_path / "test.txt")
    dev = write_conll(tmp_path / "dev.txt", SENTENCES[:4])
    prefix = tmp_path / "bench"
    proc = run_bench(
        "--quick",
        "--arms", "all",
        "--model", str(model),
        "--train_file", str(train),
        "--test_file", str(test),
        "--dev_file", str(dev),
        "--threads", "1",
        "--output", str(prefix),
        timeout=600,  # every registered arm (51): near 2 minutes on a loaded 2-core machine
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    record = json.loads(prefix.with_suffix(".json").read_text())
    rows = {row["arm"]: row for row in record["rows"]}
    assert {"plain", "plain_grouped", "seqft", "seqft_rebalance", "seqft_shuffled"} <= set(rows)  # every arm
    words = sum(len(w) for w, _ in SENTENCES)
    for row in rows.values():
        assert row["steps"] == 3 and row["rounds"] == 2  # optimiser steps of 8 sentences, whatever the micro-batches
        assert row["real_tokens"] == rows["plain"]["real_tokens"] > 0  # same sentences, same subwords
        assert row["real_tokens"] <= row["positions"]
        assert 0.0 <= row["f1"] <= 1.0
        assert row["words_scored"] == row["words_total"] == words  # every test word scored once
        assert 0.0 <= row["dev_f1"] <= 1.0  # the dev set is scored too, every word of it
        test_report = record["raw"][row["arm"]]["test"]
        assert (
            test_report["dev_words_scored"] == test_report["dev_words_total"] == sum(len(w) for w, _ in SENTENCES[:4])
        )
        assert row["peak_rss_mib"] > 0 and row["tokens_per_s_median"] > 0
    assert rows["plain"]["ratio_vs_baseline_median"] == 1.0
    # seqft serves the stock length groups in random order: the same batches (so the same padded positions),
    # another order.
    assert rows["seqft"]["positions"] == rows["plain_grouped"]["positions"]

    # LoRA trains a small share; full fine-tuning trains every parameter
    assert rows["seqft"]["trainable_params"] == rows["seqft"]["total_params"]
    assert 0 < rows["seqft_lora_attn"]["trainable_params"] < rows["seqft_lora"]["trainable_params"]

    table = prefix.with_suffix(".md").read_text()
    assert table.startswith("| arm | real tokens/s, median of rounds | vs plain, median of round ratios |")
    for arm in rows:
        assert f"| {arm} |" in table


def test_unknown_arm_is_refused_with_the_registered_names():
    proc = run_bench("--arms", "plain,nope", timeout=60)
    assert proc.returncode == 2
    assert "unknown arm(s) ['nope']; registered: ['plain', 'plain_grouped', 'seqft', " in proc.stderr


def test_learning_rate_variant_runs_the_arm_at_that_rate(tmp_path):
    model = save_tiny_bert(tmp_path / "model")
    train = write_conll(tmp_path / "train.txt", SENTENCES * 4)
    test = write_conll(tmp_path / "test.txt")
    prefix = tmp_path / "sweep"
    proc = run_bench(
        "--quick",
        "--arms", "seqft", "seqft@1e-9", "seqft@3e-2",
        "--model", str(model),
        "--train_file", str(train),
        "--test_file", str(test),
        "--output", str(prefix),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {row["arm"]: row for row in json.loads(prefix.with_suffix(".json").read_text())["rows"]}
    assert rows["seqft@3e-2"]["description"].endswith("(learning rate 0.03)")
    # learning rate 1e-9 leaves the weights (nearly) where they were, so its loss is not the trained arms' loss
    assert rows["seqft@1e-9"]["train_loss"] != rows["seqft@3e-2"]["train_loss"]
    assert rows["seqft"]["train_loss"] != rows["seqft@3e-2"]["train_loss"]


def test_learning_rate_variant_of_an_unknown_arm_is_refused():
    proc = run_bench("--arms", "nope@1e-3", "seqft@fast", timeout=60)
    assert proc.returncode == 2
    assert "unknown arm(s) ['nope@1e-3', 'seqft@fast']" in proc.stderr
