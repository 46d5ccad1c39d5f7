"""benchmarks/bench_crf.py --quick runs, so the CRF benchmark cannot rot; its timings are not asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_crf.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_crf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_crf"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_crf", None)


def test_quick_run_without_pytorch_crf(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torchcrf", None)  # `import torchcrf` now raises ImportError
    out = tmp_path / "crf.md"
    assert bench.main(["--quick", "--out", str(out)]) == 0

    table = out.read_text()
    assert table in capsys.readouterr().out
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| benchmark | setting | seqft ms")
    names = [line.split(" | ")[0].removeprefix("| ") for line in lines[1:]]
    assert names.count("Viterbi decode") == 3
    assert names.count("Viterbi decode, both in inference_mode") == 2
    assert names.count("NLL forward+backward") == 3
    assert "Training step (fwd+bwd+AdamW)" in names
    assert bench.INSTALL_HINT in table
    assert "pytorch-crf absent" in table
    assert "1 thread(s)" in table

    record = json.loads(out.with_suffix(".json").read_text())
    assert record["environment"]["threads"] == 1
    assert set(record["environment"]["load_average"]) == {"start", "end"}  # how busy the shared machine was
    step = next(row for row in record["rows"] if row["name"].startswith("Training step"))
    assert step["seqft_ms"] > 0 and step["baseline_ms"] > 0 and step["ratio"] > 0


def test_quick_kernels_match_pytorch_crf(bench, tmp_path):
    pytest.importorskip("torchcrf")
    out = tmp_path / "crf.md"
    assert bench.main(["--quick", "--no-step", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    compared = [row for row in rows if row["baseline"] == "pytorch-crf"]
    assert len(compared) == 6  # decode (no_grad), decode (inference_mode), NLL; unconstrained and IOB2
    assert all(row["extra"]["ok"] and row["check"].startswith("OK") for row in compared)
