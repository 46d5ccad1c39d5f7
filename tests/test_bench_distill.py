"""benchmarks/bench_distill.py --quick runs end to end on a tiny local encoder and CoNLL fixture, so the distillation
benchmark cannot rot. F1 and speed are measured by the benchmark, never asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import SENTENCES, save_tiny_bert, write_conll

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks" / "bench_distill.py"


# Both runs in one interpreter: importing torch and transformers is most of a quick run's time.
DRIVER = "import json, sys; import bench_distill\nfor argv in json.loads(sys.argv[1]): bench_distill.main(argv)"


def run_bench(*runs: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH.parent), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(runs)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_quick_run_trains_teacher_and_both_students(tmp_path):
    model = save_tiny_bert(tmp_path / "model", num_hidden_layers=6)  # six blocks, as MiniLM-L6
    train = write_conll(tmp_path / "train.txt", SENTENCES * 4)  # 24 sentences: 3 steps of 8
    test = write_conll(tmp_path / "test.txt")
    prefix = tmp_path / "distill"
    data = ["--quick", "--model", str(model), "--train_file", str(train), "--test_file", str(test)]
    proc = run_bench(
        [*data, "--teacher_out", str(tmp_path / "out"), "--teacher_train_samples", "0", "--speed_rounds", "2"]
        + ["--output", str(prefix)],
        # A second run reuses the saved teacher instead of training one, and builds its students DistilBERT-style
        # from the pretrained encoder's blocks instead of the fine-tuned teacher's.
        [
            *data,
            "--teacher",
            str(tmp_path / "out" / "teacher"),
            "--student_init",
            "base",
            # ... and adds a third student: 8 more sentences, tagged by the teacher as distill_unlabelled_file is
            *["--train_samples", "16", "--extra_arms", "student_distilled_unlabelled", "--unlabelled_samples", "8"],
            "--output",
            f"{prefix}-reused",
        ],
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    record = json.loads(prefix.with_suffix(".json").read_text())
    assert (tmp_path / "out" / "teacher" / "config.json").is_file()  # reusable with --teacher
    assert record["teacher"]["arm"] == "teacher" and record["teacher"]["steps"] == 3
    students = record["students"]
    assert set(students) == {"student_alone", "student_distilled"}
    words = sum(len(w) for w, _ in SENTENCES)
    for row in students.values():
        assert row["steps"] == 3  # same data, same budget
        assert row["real_tokens"] == students["student_alone"]["real_tokens"] > 0
        assert row["words_scored"] == row["words_total"] == words
        assert 0.0 <= row["f1"] <= 1.0
    speed = record["speed"]
    assert speed["teacher"]["layers"] == 6 and speed["student"]["layers"] == 3  # blocks 0, 2, 4
    assert speed["teacher"]["sentences"] == speed["student"]["sentences"] == len(SENTENCES)
    assert speed["ratio_median"] > 0 and len(speed["rounds"]) == 1  # one batch of the 6 test sentences
    # The speed pass's own F1 of the teacher is the teacher arm's trainer.predict F1: same model, same words.
    assert abs(speed["teacher"]["f1"] - record["teacher"]["f1"]) < 1e-9
    summary = record["summary"]
    assert set(summary["targets"]) == {
        "distilled >= alone + 2 F1",
        "distilled >= 95% of teacher",
        "student >= 1.8x faster",
    }

    table = prefix.with_suffix(".md").read_text()
    assert table.startswith("| model | layers | test F1 | vs student alone | vs teacher |")
    assert f"epoch(s) on {len(SENTENCES) * 4} training sentences" in table  # --teacher_train_samples 0: all
    for name in ("| teacher | 6 |", "| student alone | 3 |", "| student distilled | 3 |", "Targets:"):
        assert name in table

    reused = json.loads(Path(str(prefix) + "-reused.json").read_text())
    assert reused["teacher"] is None and reused["raw"]["teacher"] is None
    assert reused["summary"]["teacher_f1"] == reused["speed"]["teacher"]["f1"]
    assert reused["settings"]["student_init"] == "base" and record["settings"]["student_init"] == "teacher"
    assert "blocks [0, 2, 4] of the pretrained encoder, new head" in Path(str(prefix) + "-reused.md").read_text()
    extra = reused["students"]["student_distilled_unlabelled"]
    assert extra["steps"] == reused["students"]["student_alone"]["steps"]  # same budget, more sentences
    assert "teacher tags on the extra sentences" in proc.stdout
