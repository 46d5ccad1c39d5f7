"""Crash-safe checkpoints: kill real runs with SIGKILL (mid-training, and mid-save), resume, get the uninterrupted result.

The recipe keeps dropout on and samples batches at random, so the result depends on the restored RNG state and data
order, and uses the CRF, LLRD (per-layer optimizer groups to restore), best-model tracking and checkpoint rotation.
Tolerance: the resumed run must reproduce the uninterrupted one on CPU with a fixed seed, weights within rtol 1e-5 /
atol 1e-7 and losses within rel 1e-6 (observed: identical).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import SENTENCES, save_tiny_bert, sigterm_driver, write_conll
from safetensors.torch import load_file
from transformers.trainer_utils import get_last_checkpoint

from seqft.checkpoints import checkpoint_problems, last_complete_checkpoint
from seqft.train import main

REPO = Path(__file__).resolve().parents[1]
MAX_STEPS = 60
SAVE_STEPS = 5


def env() -> dict:
    return dict(
        os.environ,
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    save_tiny_bert(root / "encoder")  # dropout on: resuming must restore the RNG state
    write_conll(root / "train.txt", SENTENCES * 2)
    write_conll(root / "dev.txt", SENTENCES)
    return root


def recipe(root: Path, name: str, **overrides) -> str:
    r = {
        "model_name_or_path": str(root / "encoder"),
        "train_file": str(root / "train.txt"),
        "validation_file": str(root / "dev.txt"),
        "output_dir": str(root / name),
        "do_train": True,
        "do_eval": True,
        "max_steps": MAX_STEPS,
        "per_device_train_batch_size": 4,  # 3 steps an epoch: resuming mid-epoch skips batches of a shuffled epoch
        "learning_rate": 5e-4,
        "layer_decay": 0.8,
        "seed": 0,
        "save_strategy": "steps",
        "save_steps": SAVE_STEPS,
        "save_total_limit": 2,
        "eval_strategy": "steps",
        "eval_steps": SAVE_STEPS,
        "load_best_model_at_end": True,
        "logging_steps": SAVE_STEPS,
        "use_cpu": True,
        "report_to": "none",
        "disable_tqdm": True,
    }
    if importlib.util.find_spec("seqft.modeling"):
        r["use_crf"] = True
    r.update(overrides)
    path = root / f"{name}.json"
    path.write_text(json.dumps(r))
    return str(path)


@pytest.fixture(scope="module")
def uninterrupted(root):
    """The reference run. `resume_from_checkpoint: "last"` on an empty output_dir starts from scratch."""
    assert main([recipe(root, "uninterrupted"), "--resume_from_checkpoint", "last"]) == 0
    return root / "uninterrupted"


def assert_same_result(out: Path, ref: Path) -> None:
    ours, theirs = load_file(out / "model.safetensors"), load_file(ref / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for name, value in theirs.items():
        torch.testing.assert_close(ours[name], value, rtol=1e-5, atol=1e-7, msg=name)
    metrics, ref_metrics = (json.loads((d / "eval_results.json").read_text()) for d in (out, ref))
    for key in ("eval_loss", "eval_f1", "eval_accuracy"):
        assert metrics[key] == pytest.approx(ref_metrics[key], rel=1e-6), key
    log, ref_log = (json.loads((d / "trainer_state.json").read_text()) for d in (out, ref))
    losses = [(e["step"], e["loss"]) for e in log["log_history"] if "loss" in e]
    ref_losses = [(e["step"], e["loss"]) for e in ref_log["log_history"] if "loss" in e]
    assert [s for s, _ in losses] == [s for s, _ in ref_losses] == list(range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS))
    assert [v for _, v in losses] == pytest.approx([v for _, v in ref_losses], rel=1e-6)
    # best-model tracking survived the staging directories and the resume: it names a committed checkpoint
    best = Path(log["best_model_checkpoint"])
    assert best.name == Path(ref_log["best_model_checkpoint"]).name and best.parent == out and best.is_dir()
    assert log["best_metric"] == pytest.approx(ref_log["best_metric"], rel=1e-6)


def checkpoint_steps(out: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if p.is_dir())


def half_written(src: Path, dst: Path) -> Path:
    """What a save killed midway looks like when written in place (the stock Trainer): config and a cut-off weights
    file, no optimizer, scheduler or RNG state, next to a valid trainer_state.json."""
    dst.mkdir(parents=True)
    shutil.copy(src / "config.json", dst / "config.json")
    shutil.copy(src / "trainer_state.json", dst / "trainer_state.json")
    data = (src / "model.safetensors").read_bytes()
    (dst / "model.safetensors").write_bytes(data[: len(data) // 2])
    return dst


def test_sigkill_mid_training_then_resume_last(root, uninterrupted):
    out = root / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqft.train", recipe(root, "killed")],
        cwd=REPO,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not (out.is_dir() and checkpoint_steps(out)):  # checkpoint-N only ever appears complete
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.01)
        still_running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert still_running and proc.returncode == -signal.SIGKILL
    assert not (out / "train_results.json").exists()
    steps = checkpoint_steps(out)
    assert steps and steps[-1] < MAX_STEPS, steps
    last = out / f"checkpoint-{steps[-1]}"
    assert checkpoint_problems(last) == []

    # Debris a crash can leave: a half-written checkpoint with a higher step (as the stock Trainer leaves one),
    # and a staging directory that holds a full copy but was never renamed into place.
    half_written(last, out / "checkpoint-999")
    shutil.copytree(last, out / "tmp-checkpoint-998" / "checkpoint-998")
    assert get_last_checkpoint(str(out)) == str(out / "checkpoint-999")  # what stock resume=True would pick
    assert last_complete_checkpoint(out) == str(last)

    assert main([recipe(root, "killed"), "--resume_from_checkpoint", "last"]) == 0
    assert_same_result(out, uninterrupted)
    assert not list(out.glob("tmp-checkpoint-*"))  # removed at the resumed run's first save


KILL_DURING_SAVE = """
import os, signal, sys
import transformers

save_rng_state = transformers.Trainer._save_rng_state

def killed_midway(self, output_dir):  # model, optimizer and scheduler of this checkpoint are written by now
    if self.state.global_step == 2 * {save_steps}:
        os.kill(os.getpid(), signal.SIGKILL)
    return save_rng_state(self, output_dir)

transformers.Trainer._save_rng_state = killed_midway
from seqft.train import main
sys.exit(main([sys.argv[1]]))
"""


def test_sigkill_during_a_save_leaves_no_checkpoint(root, uninterrupted):
    out = root / "killed_saving"
    script = root / "kill_during_save.py"
    script.write_text(KILL_DURING_SAVE.format(save_steps=SAVE_STEPS))
    path = recipe(root, "killed_saving")
    proc = subprocess.run([sys.executable, str(script), path], cwd=REPO, env=env(), capture_output=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]

    assert checkpoint_steps(out) == [SAVE_STEPS]  # no checkpoint-10: the interrupted save was never committed
    staged = out / f"tmp-checkpoint-{2 * SAVE_STEPS}" / f"checkpoint-{2 * SAVE_STEPS}"
    assert (staged / "model.safetensors").is_file() and (staged / "optimizer.pt").is_file()
    problems = checkpoint_problems(staged)
    assert "no trainer_state.json" in problems and any("RNG" in p for p in problems)
    # even the stock Trainer's resume=True is safe now: it only sees committed checkpoints
    assert get_last_checkpoint(str(out)) == last_complete_checkpoint(out) == str(out / f"checkpoint-{SAVE_STEPS}")

    assert main([path, "--resume_from_checkpoint", str(out / f"checkpoint-{SAVE_STEPS}")]) == 0
    assert_same_result(out, uninterrupted)
    assert not list(out.glob("tmp-checkpoint-*"))


def test_sigterm_saves_at_the_end_of_the_step_and_stops_without_final_outputs(root, uninterrupted):
    """enable_jit_checkpoint: the stock callback saved mid-step (step 14's weights, the RNG already drawn for step
    15's dropout) and the run then wrote its final model and results and exited 0, as if finished. The stop comes
    at a logging step, so the resumed run's logged losses cover the same steps as the uninterrupted run's."""
    out = root / "sigterm"
    script = root / "sigterm_mid_step.py"
    script.write_text(sigterm_driver(14))  # mid step 15: the stock callback saved checkpoint-14
    path = recipe(root, "sigterm", enable_jit_checkpoint=True)
    proc = subprocess.run([sys.executable, str(script), path], cwd=REPO, env=env(), capture_output=True, timeout=600)
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert b"seqft: stopped: SIGTERM: training stopped at step 15 of 60" in proc.stderr
    assert not (out / "train_results.json").exists() and not (out / "model.safetensors").exists()
    assert checkpoint_problems(out / "checkpoint-15") == [] and not (out / "checkpoint-14").exists()

    assert main([path, "--resume_from_checkpoint", "last"]) == 0
    assert_same_result(out, uninterrupted)


def test_resume_from_an_incomplete_checkpoint_fails_cleanly(root, uninterrupted, capsys):
    half = half_written(Path(last_complete_checkpoint(uninterrupted)), root / "half" / "checkpoint-7")
    assert main([recipe(root, "half"), "--resume_from_checkpoint", str(half)]) == 2
    err = capsys.readouterr().err
    assert "seqft: error: 'resume_from_checkpoint'" in err and "cannot be resumed from" in err
    assert "no optimizer state" in err and "model.safetensors is truncated" in err and "Traceback" not in err


def _truncate(name):
    def apply(d: Path):
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])

    return apply


def _spread_rng(d: Path):
    (d / "rng_state.pth").rename(d / "rng_state_0.pth")
    shutil.copy(d / "rng_state_0.pth", d / "rng_state_2.pth")


DEFECTS = {
    "no optimizer": (lambda d: (d / "optimizer.pt").unlink(), "no optimizer state"),
    "no scheduler": (lambda d: (d / "scheduler.pt").unlink(), "no scheduler.pt"),
    "no rng": (lambda d: (d / "rng_state.pth").unlink(), "no RNG state"),
    "rank 1 rng missing": (_spread_rng, "no RNG state of rank(s) 1"),
    "no trainer state": (lambda d: (d / "trainer_state.json").unlink(), "no trainer_state.json"),
    "trainer state cut": (_truncate("trainer_state.json"), "trainer_state.json is not valid JSON"),
    "no weights": (lambda d: (d / "model.safetensors").unlink(), "no model weights"),
    "weights cut": (_truncate("model.safetensors"), "model.safetensors is truncated"),
    "optimizer cut": (_truncate("optimizer.pt"), "optimizer.pt is truncated"),
    "JIT marker": (lambda d: (d / "checkpoint-is-incomplete.txt").write_text("..."), "a save was interrupted"),
    "DeepSpeed tag missing": (lambda d: (d / "latest").write_text("global_step5"), "named in 'latest' is missing"),
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_checkpoint_problems(defect, uninterrupted, tmp_path):
    ckpt = Path(shutil.copytree(last_complete_checkpoint(uninterrupted), tmp_path / "checkpoint-5"))
    assert checkpoint_problems(ckpt) == []
    damage, message = DEFECTS[defect]
    damage(ckpt)
    problems = checkpoint_problems(ckpt)
    assert any(message in p for p in problems), problems
    assert last_complete_checkpoint(tmp_path) is None


def test_a_sigterm_at_the_last_step_saves_and_lets_the_run_finish():
    """At the last step training ends anyway: stopping there would leave a finished run without its final model,
    and its requeued job would find nothing to train."""
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    from seqft.checkpoints import BoundaryJITCheckpoint

    for step, stops in ((59, True), (60, False)):
        callback = BoundaryJITCheckpoint()
        callback.jit_manager = SimpleNamespace(is_checkpoint_requested=True)
        control = TrainerControl()
        callback.on_step_end(None, TrainerState(global_step=step, max_steps=60), control)
        assert control.should_save and control.should_training_stop == stops
        assert callback.stopped_at == (step if stops else None)
        assert not callback.jit_manager.is_checkpoint_requested
