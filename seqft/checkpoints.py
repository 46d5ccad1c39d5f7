"""Crash-safe checkpoints: atomic saves, completeness checks, and resuming from the last complete checkpoint.

What the stock `Trainer` (transformers 5.23) does: `_save_checkpoint` writes straight into `output_dir/checkpoint-N`
(model, then optimizer/scheduler, then one RNG file per rank, then `trainer_state.json` from the main process only);
there is no temporary directory and no rename. `get_last_checkpoint` (used by `train(resume_from_checkpoint=True)`)
picks the highest `checkpoint-N` whatever it holds. After a kill mid-save that is a directory without
`trainer_state.json`, on which every automatic restart fails until someone deletes it. On several ranks nothing waits
for the other ranks' RNG files before `trainer_state.json` is written, so a checkpoint can look complete without
them, and resuming skips what is missing without failing: a missing RNG file is logged at INFO level only, a missing
`optimizer.pt`/`scheduler.pt` not at all (fresh Adam moments, restarted schedule). `enable_jit_checkpoint` (SIGTERM)
marks its own save with `checkpoint-is-incomplete.txt`, which nothing checks.

What seqft does:

* `save_atomically` (wired into `SeqFTTrainer._save_checkpoint`): the stock save runs unchanged, but into
  `output_dir/tmp-checkpoint-N/checkpoint-N`; once every rank has written its part, the main process renames it to
  `output_dir/checkpoint-N` (one `os.rename` on one file system: atomic). A kill at any point leaves either no
  `checkpoint-N` or a complete one; stale `tmp-checkpoint-*` directories are removed at the next save.
* `checkpoint_problems` / `last_complete_checkpoint`: a checkpoint is complete when it has a readable
  `trainer_state.json`, model weights, optimizer, scheduler and RNG state (every rank's), no JIT "incomplete"
  marker, and no truncated `.safetensors`/`.pt`/`.json` file. This also guards checkpoints written by other tools
  or by older versions.
* `resolve_resume`: the `resume_from_checkpoint` recipe field. `"last"` resumes from the last complete checkpoint
  in `output_dir` (or starts from scratch when there is none), skipping incomplete ones with a warning; an explicit
  path must be complete, or the run stops with the list of what is missing.
* `check_resume`: each checkpoint keeps the run's resolved recipe (`seqft_recipe.json`, with the number of
  processes). Resuming with other settings (a learning rate, an adapter option, the labels' data, the global batch,
  ...) is refused, naming each: the stock Trainer restores the old optimizer and scheduler state under the new
  recipe without a word (a new learning rate is ignored, a new `lora_alpha` rescales trained weights) or fails
  with a bare traceback when shapes differ. What only steers the rest of the run or its outputs (`max_steps`,
  `num_train_epochs`, logging, evaluation, saving) may change.
* `BoundaryJITCheckpoint` (`enable_jit_checkpoint`): the stock SIGTERM callback also saves from
  `on_pre_optimizer_step`, i.e. mid-step (step N's weights, the RNG already drawn for step N+1's dropout), so a run
  resumed from it departs from an uninterrupted one, and that save replaced a complete checkpoint of the same step.
  seqft's waits for the end of the step (at most one step later; on several ranks, the first rank whose grace
  period ends stops them all at the same step) and asks for the Trainer's regular save there (after the step's
  logging, atomic as every save); `seqft.train` then stops with exit status 143, writing no final
  model or results as if the run had finished.
* `refuse_previous_run` / `clear_previous_run`: a new training run (not a resume) in an `output_dir` that holds an earlier run's
  checkpoints or results is refused, as `run_ner.py` refused it, unless `overwrite_output_dir` is set; then those
  files are deleted first, so no earlier checkpoint, score or prediction outlives the run that made it (the Trainer
  merges `all_results.json` with whatever is on disk, and the model card reads `*_results.json`). Only files seqft
  and the Trainer write by these names are touched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
import zipfile
from pathlib import Path

from transformers.trainer_jit_checkpoint import JITCheckpointCallback

from .errors import RecipeError

__all__ = [
    "BoundaryJITCheckpoint",
    "RESUME_LAST",
    "STAGING_PREFIX",
    "checkpoint_problems",
    "last_complete_checkpoint",
    "resolve_resume",
    "save_atomically",
]

logger = logging.getLogger("seqft")

RESUME_LAST = "last"
CHECKPOINT_PREFIX = "checkpoint"  # transformers.trainer_utils.PREFIX_CHECKPOINT_DIR
STAGING_PREFIX = f"tmp-{CHECKPOINT_PREFIX}"
JIT_INCOMPLETE_MARKER = "checkpoint-is-incomplete.txt"  # written by transformers' JIT (SIGTERM) checkpointing

_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)$")
_RNG_RE = re.compile(r"^rng_state_(\d+)\.pth$")
RECIPE_FILE = "seqft_recipe.json"
_WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)


# ---------------------------------------------------------------------------------------------------------------
# Completeness


def _truncated(path: Path) -> bool:
    """True when a weights/state file was cut short (a save killed mid-write). Cheap: headers only."""
    try:
        if path.suffix == ".safetensors":
            size = path.stat().st_size
            with open(path, "rb") as fh:
                head = fh.read(8)
                if len(head) < 8:
                    return True
                (header_len,) = struct.unpack("<Q", head)
                if 8 + header_len > size:
                    return True
                header = json.loads(fh.read(header_len))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            return size != 8 + header_len + end
        if path.suffix in (".pt", ".pth", ".bin"):
            return not zipfile.is_zipfile(path)  # torch.save writes a zip archive; its directory is at the end
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error):
        return True
    return False


def _deepspeed_tag_dir(path: Path) -> Path | None:
    latest = path / "latest"
    if not latest.is_file():
        return None
    return path / latest.read_text(encoding="utf-8").strip()


def checkpoint_problems(path: str | os.PathLike) -> list[str]:
    """What a checkpoint directory lacks to resume training exactly; an empty list means complete."""
    path = Path(path)
    if not path.is_dir():
        return [f"{path} is not a directory"]
    names = set(os.listdir(path))
    problems = []
    if JIT_INCOMPLETE_MARKER in names:
        problems.append(f"{JIT_INCOMPLETE_MARKER} is present (a save was interrupted)")
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        if not isinstance(state, dict) or "global_step" not in state:
            problems.append("trainer_state.json has no global_step")
    except FileNotFoundError:
        problems.append("no trainer_state.json")
    except (OSError, ValueError):
        problems.append("trainer_state.json is not valid JSON")

    ds_tag = _deepspeed_tag_dir(path)
    fsdp_dirs = [n for n in names if n.startswith("pytorch_model_fsdp") and (path / n).is_dir()]
    if ds_tag is not None:
        if not ds_tag.is_dir():
            problems.append(f"DeepSpeed tag directory {ds_tag.name}/ named in 'latest' is missing")
        else:
            tag_files = os.listdir(ds_tag)
            if not any(n.endswith("model_states.pt") for n in tag_files):
                problems.append(f"no DeepSpeed model states in {ds_tag.name}/")
            if not any(n.endswith("optim_states.pt") for n in tag_files):
                problems.append(f"no DeepSpeed optimizer states in {ds_tag.name}/")
    else:
        if not (names & set(_WEIGHT_FILES) or fsdp_dirs):
            problems.append("no model weights (model.safetensors, pytorch_model.bin, adapter_model.*)")
        has_fsdp_optimizer = any(n.startswith("optimizer") and (path / n).is_dir() for n in names)
        if not ({"optimizer.pt", "optimizer.bin"} & names or has_fsdp_optimizer):
            problems.append("no optimizer state (optimizer.pt); a save_only_model checkpoint cannot be resumed")
        if "scheduler.pt" not in names:
            problems.append("no scheduler.pt")
    ranks = sorted(int(m.group(1)) for m in map(_RNG_RE.match, names) if m)
    if "rng_state.pth" not in names and not ranks:
        problems.append("no RNG state (rng_state.pth / rng_state_<rank>.pth)")
    elif ranks and ranks != list(range(len(ranks))):
        missing = sorted(set(range(ranks[-1] + 1)) - set(ranks))
        problems.append(f"no RNG state of rank(s) {', '.join(map(str, missing))}")

    for file in sorted(path.rglob("*")):
        if file.is_file() and _truncated(file):
            problems.append(f"{file.relative_to(path)} is truncated or unreadable")
    return problems


def _step(name: str) -> int | None:
    match = _CHECKPOINT_RE.match(name)
    return int(match.group(1)) if match else None


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The `checkpoint-N` with the highest N that is complete (see `checkpoint_problems`), or None.

    Incomplete ones are skipped with a warning naming what they lack; `tmp-checkpoint-*` staging directories are
    never candidates.
    """
    if not os.path.isdir(output_dir):
        return None
    candidates = sorted(
        ((_step(n), n) for n in os.listdir(output_dir) if _step(n) is not None and (Path(output_dir) / n).is_dir()),
        reverse=True,
    )
    for _, name in candidates:
        path = os.path.join(output_dir, name)
        problems = checkpoint_problems(path)
        if not problems:
            return path
        logger.warning(f"Skipping incomplete checkpoint {path}: {'; '.join(problems)}.")
    return None


# What a finished or interrupted run leaves in output_dir that a new run would not overwrite or would merge with
PREVIOUS_RUN_FILES = (
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "test_results.json",
    "trainer_state.json",
    "test_predictions.txt",
    "test_predictions.jsonl",
    "test_classification_report.json",
    "test_confusion_matrix.png",
)
PREVIOUS_RUN_DIRS = ("merged", "student_base")  # merge_adapter's plain model; an adapted student's own blocks
# An earlier run's saved model, which the new one need not overwrite: a full model beside a new adapter (or an
# adapter beside a new full model) is what the Auto classes and seqft.predict load, not the new run's
PREVIOUS_MODEL_FILES = (
    *_WEIGHT_FILES,
    "adapter_config.json",
    "base_config",
    "config.json",
    "README.md",
    RECIPE_FILE,
    "seqft_eval_recipe.json",
)
_SHARD_RE = re.compile(r"^(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)$")


def previous_run(output_dir: str | os.PathLike) -> list[str]:
    """Names in `output_dir` written by an earlier run: checkpoints (complete or not) and result files."""
    if not os.path.isdir(output_dir):
        return []
    names = os.listdir(output_dir)
    found = sorted((n for n in names if _step(n) is not None or n.startswith("tmp-checkpoint-")), key=_step_key)
    return found + [n for n in (*PREVIOUS_RUN_FILES, *PREVIOUS_RUN_DIRS) if n in names]


def _step_key(name: str) -> tuple[int, str]:
    return (_step(name) or -1, name)


def interrupted_saves(output_dir: str | os.PathLike) -> list[str]:
    """Names in `output_dir` that a save cut short left behind: staging directories and incomplete checkpoints."""
    return [
        name
        for name in previous_run(output_dir)
        if name.startswith(STAGING_PREFIX + "-")
        or (_step(name) is not None and checkpoint_problems(os.path.join(output_dir, name)))
    ]


def refuse_previous_run(output_dir: str, resuming_last: bool = False) -> None:
    """RecipeError when `output_dir` holds an earlier run (see `previous_run`); for a run that does not resume.

    `resuming_last` ('last' found no complete checkpoint): what an interrupted save left is this job's own
    (a job killed during its first save), not an earlier run; `clear_interrupted_saves` removes it.
    """
    found = previous_run(output_dir)
    if resuming_last:
        cut_short = set(interrupted_saves(output_dir))
        found = [name for name in found if name not in cut_short]
    if found:
        resumable = any(_step(name) is not None for name in found)
        hint = (
            "Set 'resume_from_checkpoint': 'last' to continue it, "
            if resumable
            else "It has no checkpoint to resume: "
        )
        raise RecipeError(
            f"'output_dir' = {output_dir!r} holds an earlier run ({_listing(found)}). {hint}set "
            "'overwrite_output_dir': true to delete those files and start afresh, or choose another output_dir."
        )


def clear_interrupted_saves(output_dir: str) -> None:
    """Delete staging directories and incomplete checkpoints (`interrupted_saves`); main process, before training."""
    found = interrupted_saves(output_dir)
    for name in found:
        shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
    if found:
        logger.warning(f"Deleted {_listing(found)} from {output_dir}: saves that were cut short, never complete.")


def clear_previous_run(output_dir: str, model_source: str | None = None) -> None:
    """Delete an earlier run's checkpoints, results and saved model from `output_dir` (`overwrite_output_dir`);
    main process. The model files stay when `output_dir` is `model_source`, the folder this run trains on from
    (an adapter's base must stay where its config points; what the new run saves overwrites the rest)."""
    found = previous_run(output_dir)
    same = model_source is not None and os.path.isdir(model_source) and os.path.samefile(model_source, output_dir)
    if os.path.isdir(output_dir) and not same:
        names = os.listdir(output_dir)
        found += [n for n in PREVIOUS_MODEL_FILES if n in names] + sorted(n for n in names if _SHARD_RE.match(n))
    for name in found:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    if found:
        logger.warning(f"overwrite_output_dir: deleted the earlier run's {_listing(found)} from {output_dir}.")


def _listing(names: list[str]) -> str:
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


# Recipe keys a resumed run may change: how long it goes on, what it logs, evaluates, saves and pushes, where
# its outputs go. The global batch is compared as a whole (per device x accumulation x processes).
RESUME_MAY_CHANGE = frozenset(
    {
        "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "do_train", "do_eval", "do_predict",
        "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
        "per_device_eval_batch_size", "eval_accumulation_steps", "eval_strategy", "eval_steps", "eval_delay",
        "eval_on_start", "eval_do_concat_batches", "eval_use_gather_object", "batch_eval_metrics",
        "prediction_loss_only", "include_for_metrics", "validation_file", "test_file", "max_eval_samples",
        "max_predict_samples", "return_entity_level_metrics", "logging_strategy", "logging_steps",
        "logging_first_step", "logging_nan_inf_filter", "report_to", "run_name", "project", "trackio_space_id",
        "trackio_bucket_id", "trackio_static_space_id", "disable_tqdm", "log_level", "log_level_replica",
        "log_on_each_node", "skip_memory_metrics", "save_strategy", "save_steps", "save_total_limit",
        "save_only_model", "save_on_each_node", "enable_jit_checkpoint", "load_best_model_at_end",
        "metric_for_best_model", "greater_is_better", "push_to_hub", "hub_model_id", "hub_strategy",
        "hub_private_repo", "hub_always_push", "hub_revision", "dataloader_num_workers", "dataloader_prefetch_factor",
        "dataloader_persistent_workers", "dataloader_pin_memory", "preprocessing_num_workers", "overwrite_cache",
        "cache_dir", "use_cpu", "local_rank", "ddp_timeout", "ddp_backend", "precompute_teacher",
        "merge_adapter", "torch_empty_cache_steps",
    }
)  # fmt: skip


def save_recipe_with(checkpoint: str, output_dir: str, world_size: int) -> None:
    """Copy the run's resolved recipe into a checkpoint, with the number of processes that trained it."""
    source = os.path.join(output_dir, RECIPE_FILE)
    if not os.path.isfile(source):  # a Trainer used without seqft.train: nothing to record
        return
    with open(source, encoding="utf-8") as fh:
        record = json.load(fh)
    record["world_size"] = world_size
    with open(os.path.join(checkpoint, RECIPE_FILE), "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2)


def _saved_record(checkpoint: str) -> dict | None:
    """The resolved recipe `save_recipe_with` kept in `checkpoint`, or None (another tool's or an older seqft's)."""
    path = os.path.join(checkpoint, RECIPE_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def check_resume(checkpoint: str, record: dict, world_size: int) -> None:
    """RecipeError when `record` (this run's resolved recipe) differs from the one `checkpoint` was trained with
    in anything but `RESUME_MAY_CHANGE`, in the global batch, or in the training data. A checkpoint without a
    recorded recipe (written by another tool or an older seqft) is not compared."""
    saved = _saved_record(checkpoint)
    if saved is None:
        return
    then, now = saved.get("recipe", {}), record["recipe"]
    changes = [
        f"{key}: {json.dumps(then[key])} there, {json.dumps(now[key])} here"
        for key in sorted(then.keys() & now.keys() - RESUME_MAY_CHANGE)
        if then[key] != now[key]
    ]

    def global_batch(recipe: dict, processes: int) -> int:
        return recipe["per_device_train_batch_size"] * recipe["gradient_accumulation_steps"] * processes

    processes = saved.get("world_size", world_size)
    if {"per_device_train_batch_size", "gradient_accumulation_steps"} <= then.keys() and global_batch(
        then, processes
    ) != global_batch(now, world_size):
        changes.append(
            f"the global batch (per device x accumulation x processes): {then['per_device_train_batch_size']} x "
            f"{then['gradient_accumulation_steps']} x {processes} there, {now['per_device_train_batch_size']} x "
            f"{now['gradient_accumulation_steps']} x {world_size} here"
        )
    for split, what in (
        ("train", "the training file's contents"),
        ("distill_unlabelled", "distill_unlabelled_file's contents"),  # its sentences join the training set
        ("label_names", "the label names file's contents"),
        ("teacher_weights", "the teacher's weights"),  # a teacher retrained in place keeps its path
    ):
        trained_on = saved.get("data_files", {}).get(split, {}).get("sha256")
        if trained_on and trained_on != record.get("data_files", {}).get(split, {}).get("sha256"):
            changes.append(f"{what} (sha256)")
    if changes:
        raise RecipeError(
            f"'resume_from_checkpoint': {checkpoint} was trained with other settings; resuming would restore its "
            f"optimizer and schedule under this recipe. Changed: {'; '.join(changes)}. Restore those values to "
            "resume, or start afresh ('overwrite_output_dir': true, or another output_dir). Only how long the run "
            "goes on, logging, evaluation, saving and outputs may change on resume."
        )


def finished_at(checkpoint: str, record: dict, output_dir: str) -> int | None:
    """The step at which the run of `checkpoint` ended, when this recipe asks for no more training (the same
    `max_steps` and `num_train_epochs`); else None. Resuming there would train nothing (or, stock, one step past
    `max_steps`) and overwrite the run's train_results.json.

    The run ended when `checkpoint` is at its final step, or when the run's own `trainer_state.json` (written in
    output_dir once training ended) shows the final step of the same schedule: with `load_best_model_at_end` and
    `save_total_limit: 1` the Trainer deletes the final checkpoint and keeps only the best, an earlier one.
    """
    saved = _saved_record(checkpoint)
    state = _read_state(os.path.join(checkpoint, "trainer_state.json"))
    if saved is None or state is None:
        return None
    then = saved.get("recipe", {})
    if not all(then.get(key) == record["recipe"].get(key) for key in ("max_steps", "num_train_epochs")):
        return None
    step, total = state.get("global_step", 0), state.get("max_steps", 0)
    if total and step >= total:
        return step
    ended = _read_state(os.path.join(output_dir, "trainer_state.json"))
    if ended and ended.get("max_steps") == total and ended.get("global_step", 0) >= max(total, step, 1):
        return ended["global_step"]
    return None


def _read_state(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def resolve_resume(value: str | None, output_dir: str) -> str | None:
    """The `resume_from_checkpoint` recipe value -> the checkpoint directory to resume from (None: from scratch).

    `"last"`: the last complete checkpoint in `output_dir`, or None when there is none (so the same command starts a
    job and restarts it after a crash or preemption). A path: must be a complete checkpoint, else RecipeError.
    """
    if value is None or value == "":
        return None
    if value == RESUME_LAST:
        found = last_complete_checkpoint(output_dir)
        if found is None:
            logger.info(
                f"resume_from_checkpoint='last': no complete checkpoint in {output_dir}; starting from scratch."
            )
        else:
            logger.info(f"resume_from_checkpoint='last': resuming from {found}.")
        return found
    problems = checkpoint_problems(value)
    if problems:
        hint = f" Set resume_from_checkpoint to '{RESUME_LAST}' to resume from the last complete checkpoint."
        raise RecipeError(f"'resume_from_checkpoint' = {value!r} cannot be resumed from: {'; '.join(problems)}.{hint}")
    return value


def copy_for_push(checkpoint_folder: str, output_dir: str) -> None:
    """The stock push during training copies a fixed list of model files from the checkpoint to `output_dir` and
    uploads that: seqft's own model files are not on it, so the Hub repository could not load until the end of
    training (or ever, if the job died). Copies them too: the CRF model's code (`*.py`, named by its `auto_map`)
    and an adapter's `base_config/`."""
    for name in os.listdir(checkpoint_folder):
        source = os.path.join(checkpoint_folder, name)
        if name.endswith(".py") and os.path.isfile(source):
            shutil.copy2(source, os.path.join(output_dir, name))
        elif name == "base_config" and os.path.isdir(source):
            shutil.copytree(source, os.path.join(output_dir, name), dirs_exist_ok=True)


def checked_resume(value, output_dir: str):
    """`Trainer.train(resume_from_checkpoint=value)` in code: a path must be complete (RecipeError naming what it
    lacks: a resume from it would silently start a fresh optimiser, scheduler or RNG); True becomes the last
    complete checkpoint of `output_dir` (True stays when there is none, and the stock code says so)."""
    if value is True:
        return last_complete_checkpoint(output_dir) or True
    if not isinstance(value, (str, os.PathLike)):
        return value
    problems = checkpoint_problems(value)
    if problems:
        raise RecipeError(
            f"resume_from_checkpoint = {os.fspath(value)!r} cannot be resumed from: {'; '.join(problems)}. Resume "
            "from a complete checkpoint (resume_from_checkpoint=True takes the last one)."
        )
    return value


# ---------------------------------------------------------------------------------------------------------------
# SIGTERM (JIT) checkpoints


class BoundaryJITCheckpoint(JITCheckpointCallback):
    """transformers' JIT (SIGTERM) checkpoint, saved only between optimizer steps (see the module docs).

    `stopped_at` is the step at which a SIGTERM stopped training (None: it was not stopped).
    """

    stopped_at: int | None = None

    @classmethod
    def install(cls, trainer) -> None:
        """Take the place of the stock callback the Trainer adds for `enable_jit_checkpoint` (same signal handler)."""
        callbacks = trainer.callback_handler.callbacks
        for i, callback in enumerate(callbacks):
            if type(callback) is JITCheckpointCallback:
                replacement = cls()
                replacement.trainer, replacement.jit_manager = callback.trainer, callback.jit_manager
                callbacks[i] = replacement

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        pass  # mid-step: the request waits for on_step_end

    def on_step_begin(self, args, state, control, **kwargs):
        pass  # the previous step's on_step_end has seen any request made before now

    def on_step_end(self, args, state, control, **kwargs):
        self._save_and_stop(state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._save_and_stop(state, control)

    def _save_and_stop(self, state, control) -> None:
        manager = self.jit_manager
        if manager is None or not self._requested_anywhere(manager.is_checkpoint_requested):
            return
        manager.is_checkpoint_requested = False
        # the Trainer's own save of this step, after its logging: the checkpoint a save_steps save would be
        control.should_save = True
        if state.global_step < state.max_steps:  # at the last step training ends anyway: its outputs are written
            control.should_training_stop = True
            self.stopped_at = state.global_step

    def _requested_anywhere(self, requested: bool) -> bool:
        """Whether any rank's grace period has ended: each rank's timer fires on its own, and a save (collective)
        started at different steps on different ranks would hang them."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return requested
        flag = torch.tensor([int(requested)], device=self.trainer.args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def stopped_by_signal(trainer) -> int | None:
    """The step at which a SIGTERM (`enable_jit_checkpoint`) stopped `trainer.train()`, or None."""
    return next(
        (c.stopped_at for c in trainer.callback_handler.callbacks if isinstance(c, BoundaryJITCheckpoint)), None
    )


# ---------------------------------------------------------------------------------------------------------------
# Atomic save


def _commit(staging_root: str, final: str) -> None:
    """Move `staging_root/checkpoint-N` to `final` atomically; an existing `final` (a re-save of the same step, or
    the JIT checkpoint's marker directory) is first moved into the staging root, which is then deleted."""
    staged = os.path.join(staging_root, os.path.basename(final))
    if not os.path.isdir(staged):
        return
    if os.path.lexists(final):
        os.rename(final, os.path.join(staging_root, "replaced"))
    os.rename(staged, final)
    shutil.rmtree(staging_root, ignore_errors=True)


def clear_stale_staging(run_dir: str) -> None:
    """Remove `tmp-checkpoint-*` left by a save that was killed: they were never renamed, so never complete."""
    if not os.path.isdir(run_dir):
        return
    for name in os.listdir(run_dir):
        if name.startswith(STAGING_PREFIX + "-") and os.path.isdir(os.path.join(run_dir, name)):
            logger.info(f"Removing {name}, left by an interrupted save.")
            shutil.rmtree(os.path.join(run_dir, name), ignore_errors=True)


def save_atomically(trainer, save, run_dir: str) -> str:
    """Run `save()` (the stock `Trainer._save_checkpoint`) into a staging directory, then rename it into place.

    The trainer's `_get_output_dir` returns `trainer._checkpoint_staging` while it is set, so the stock code writes
    `<run_dir>/tmp-checkpoint-N/checkpoint-N` on every rank. Afterwards: the best-model path is corrected to the
    final name, all ranks meet, the main process renames, and (for node-local disks) so does each node's main
    process whose staging directory is still there. Rotation (`save_total_limit`) and the Hub push run on the final
    directory. Returns the final path.
    """
    from transformers.trainer_utils import rotate_checkpoints

    args, accelerator = trainer.args, trainer.accelerator
    step = trainer.state.global_step
    final = os.path.join(run_dir, f"{CHECKPOINT_PREFIX}-{step}")
    staging_root = os.path.join(run_dir, f"{STAGING_PREFIX}-{step}")
    staged = os.path.join(staging_root, os.path.basename(final))

    if args.should_save:
        clear_stale_staging(run_dir)
    accelerator.wait_for_everyone()
    trainer._checkpoint_staging = staging_root
    try:
        save()
    finally:
        trainer._checkpoint_staging = None

    # The stock code records the best checkpoint under the directory it wrote to; point it at the final name.
    if trainer.state.best_model_checkpoint is not None and os.path.normpath(
        trainer.state.best_model_checkpoint
    ) == os.path.normpath(staged):
        trainer.state.best_model_checkpoint = final
        if args.should_save:
            trainer.state.save_to_json(os.path.join(staged, "trainer_state.json"))

    if args.should_save and os.path.isdir(staged):  # what a resume must match (check_resume)
        save_recipe_with(staged, args.output_dir, args.world_size)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _commit(staging_root, final)
    accelerator.wait_for_everyone()
    if accelerator.is_local_main_process and os.path.isdir(staging_root):  # a node without the shared disk
        _commit(staging_root, final)

    if args.should_save:
        rotate_checkpoints(
            output_dir=run_dir,
            save_total_limit=args.save_total_limit,
            best_model_checkpoint=trainer.state.best_model_checkpoint,
            use_mtime=True,
        )
    if args.push_to_hub:
        trainer._push_from_checkpoint(final)
    return final
