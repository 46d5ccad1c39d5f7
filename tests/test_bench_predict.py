"""benchmarks/bench_predict.py runs end to end (`--quick`) on a tiny local encoder and CoNLL fixtures.

Speed is measured by the benchmark, never asserted here.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

import datasets
import transformers
from helpers import SENTENCES, WORDS, save_tiny_bert, write_conll

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks" / "bench_predict.py"
LONG = ([w for w in WORDS[:20]], ["O"] * 20)  # 20 words: longer than a 12-token window


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_predict", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_predict", module)  # dataclasses resolve string annotations through it
    spec.loader.exec_module(module)
    return module


def write_documents(path: Path, documents) -> Path:
    """CoNLL with a -DOCSTART- line before each document (a list of (words, tags) sentences)."""
    parts = []
    for k, sentences in enumerate(documents):
        part = write_conll(path.with_name(f"{path.name}.{k}"), sentences).read_text()
        parts.append(part)
    path.write_text("".join(parts), encoding="utf-8")
    return path


def test_quick_run_reports_speed_agreement_truncation_and_f1(tmp_path):
    model = save_tiny_bert(tmp_path / "model")
    train = write_documents(tmp_path / "train.txt", [SENTENCES * 2, SENTENCES * 2])  # 24 sentences, 2 documents
    test = write_documents(tmp_path / "test.txt", [SENTENCES[:3], SENTENCES[3:] + [LONG]])
    prefix = tmp_path / "predict"
    argv = [
        "--quick",
        "--model", str(model),
        "--train_file", str(train),
        "--test_file", str(test),
        "--max_seq_length", "32",
        "--doc_context", "1",
        "--lengths", "12", "24",
        "--output", str(prefix),
    ]  # fmt: skip
    verbosity = transformers.utils.logging.get_verbosity()
    seqft_level = logging.getLogger("seqft").level  # seqft.train sets it from the recipe's log level
    try:  # in this process: a subprocess would spend most of the test importing torch and transformers again
        assert load_bench().main(argv) == 0
    finally:  # the benchmark quietens the libraries' logs and progress bars for its own output
        transformers.utils.logging.set_verbosity(verbosity)
        logging.getLogger("seqft").setLevel(seqft_level)
        transformers.utils.logging.enable_progress_bar()
        datasets.enable_progress_bars()

    record = json.loads(prefix.with_suffix(".json").read_text())
    words = sum(len(w) for w, _ in SENTENCES) + len(LONG[0])

    assert [row["doc_context"] for row in record["training"]] == [0, 1]
    for row in record["training"]:
        assert 0.0 <= row["test_f1"] <= 1.0 and row["train_windows"] == 24

    speed = record["speed"]
    assert speed["sentences"] == len(SENTENCES) + 1 and speed["rounds"] == 2
    arms = [row["arm"] for row in speed["arms"]]
    assert arms == ["seqft (batch 32)", "pipeline (batch 1)", "pipeline (batch 32)"]
    for row in speed["arms"]:
        assert row["sentences_per_s_median"] > 0 and 0.0 <= row["f1"] <= 1.0
    for row in speed["arms"][1:]:
        assert row["agreement_sentences"] == len(SENTENCES) + 1  # every sentence fits a 32-token window
        assert 0.0 <= row["agreement_share"] <= 1.0

    rows = {(row["inputs"], row["max_seq_length"]): row for row in record["truncation"]}
    assert set(rows) == {("documents", 12), ("documents", 24), ("sentences", 12), ("sentences", 24)}
    for row in rows.values():
        assert row["words"] == words and row["seqft_words_tagged"] == words
        assert row["seqft_words_lost"] == 0 and row["seqft_share_lost"] == 0.0  # seqft's real path loses no word
    assert rows["documents", 12]["run_ner_words_lost"] > 0  # truncation does
    assert rows["sentences", 12]["run_ner_inputs_affected"] >= 1  # the 20-word sentence
    assert rows["documents", 12]["seqft_windows"] > rows["documents", 12]["count"]

    table = prefix.with_suffix(".md").read_text()
    assert "| seqft (batch 32) |" in table and "| pipeline (batch 1) |" in table
    assert "| documents | 12 |" in table and "| 1 | 32 |" in table
