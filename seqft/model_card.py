"""The model card (README.md) of a seqft run: Hub metadata, results, plots, features, recipe and usage.

`SeqFTTrainer.create_model_card` calls `write_model_card(trainer, ...)`; so does the stock `Trainer.push_to_hub`,
with the same keyword arguments as `transformers.Trainer.create_model_card`, so a push always carries a fresh card.

What the card is made of, all read from the trainer and its `output_dir`:

* metadata built with `huggingface_hub.ModelCardData`/`EvalResult` (library, pipeline tag, tags, base model,
  datasets, metrics, a `model-index` with one result per split), and checked by parsing the written card back;
* `eval_results.json` / `test_results.json` (the Trainer's `save_metrics`): overall and per-type scores;
* `test_predictions.txt` (`word gold predicted`): the entity confusion matrix, and per-type scores when the
  run did not report them (`return_entity_level_metrics` off);
* `trainer.state.log_history`: loss and F1 curves and the training-log table;
* `seqft_recipe.json`: the resolved recipe (secrets were never written there and are dropped again here),
  base model, dataset and framework versions;
* the model and the arguments: labels, scheme, and which features are on (CRF, PEFT, LLRD, distillation).

Plots are written as PNG files next to the results and linked by relative path, which the Hub renders.
No token is ever read here: the card cannot contain one.
"""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from . import labels as schemes
from . import seqcls
from .parser import SECRET_KEYS

README = "README.md"
RECIPE_FILE = "seqft_recipe.json"
PREDICTIONS_FILE = "test_predictions.txt"
TEMPLATE = "model_card.md"
PLOT_FILES = {
    "training_curves": "training_curves.png",
    "per_type_f1": "per_type_f1.png",
    "confusion_matrix": "confusion_matrix.png",
}
# Trainer metric prefix -> dataset split name used in the card and the model-index.
SPLITS = {"eval": "validation", "test": "test"}
EXAMPLE_TEXT = "John Smith works for Acme Corp in New York."
PEFT_SHOWN = (
    "peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save", "use_rslora", "use_dora",
    "bias", "feedforward_modules", "num_virtual_tokens",
)  # fmt: skip


@dataclass
class Feature:
    """A seqft feature that is on for this run: its name, the Hub tags it adds, and its settings."""

    name: str
    tags: list[str]
    settings: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Entry point


def write_model_card(
    trainer,
    language: str | list[str] | None = None,
    license: str | None = None,
    tags: str | list[str] | None = None,
    model_name: str | None = None,
    finetuned_from: str | None = None,
    tasks: str | list[str] | None = None,
    dataset_tags: str | list[str] | None = None,
    dataset: str | list[str] | None = None,
    dataset_args: str | list[str] | None = None,
) -> str | None:
    """Write `output_dir/README.md` and the plots it links; return the card's path (None off the main process).

    Arguments are those of `transformers.Trainer.create_model_card`: `tags` are added to seqft's,
    `finetuned_from` overrides the base model, `dataset`/`dataset_tags` name Hub datasets (first one is used in
    the model-index) and `dataset_args` its configuration. `tasks` is accepted for compatibility: a seqft
    checkpoint is always `token-classification`. An existing README.md is replaced.
    """
    del tasks
    if not trainer.is_world_process_zero():
        return None
    card = build_model_card(
        trainer,
        language=language,
        license=license,
        tags=tags,
        model_name=model_name,
        finetuned_from=finetuned_from,
        datasets=_as_list(dataset) + _as_list(dataset_tags),
        dataset_config=_as_list(dataset_args)[0] if dataset_args else None,
    )
    path = os.path.join(trainer.args.output_dir, README)
    card.save(path)
    return path


def build_model_card(
    trainer,
    *,
    language=None,
    license=None,
    tags=None,
    model_name=None,
    finetuned_from=None,
    datasets: Sequence[str] = (),
    dataset_config: str | None = None,
    plots: bool = True,
) -> ModelCard:
    """The card as a `huggingface_hub.ModelCard` (metadata parsed and checked); writes the plots unless `plots=False`."""
    args, output_dir = trainer.args, trainer.args.output_dir
    record = read_recipe_record(output_dir)
    recipe = record.get("recipe", {})
    model = trainer.model
    is_adapter = hasattr(model, "peft_config") and hasattr(model, "get_base_model")
    base = model.get_base_model() if is_adapter else model
    config = base.config
    id2label = {int(i): label for i, label in config.id2label.items()}
    labels = [id2label[i] for i in sorted(id2label)]
    scheme = next(
        (v for v in (getattr(config, "label_scheme", None), recipe.get("label_scheme")) if v in schemes.SCHEMES),
        None,
    ) or schemes.detect_scheme([labels])
    is_crf = getattr(config, "model_type", None) == "seqft_crf"
    pipeline_task = "text-classification" if seqcls.is_sequence_classifier(base) else "token-classification"
    task_name = recipe.get("task_name") or "ner"
    if pipeline_task == "text-classification" and task_name == "ner":  # run_ner's default, not a classifier's task
        task_name = "text-classification"
    elif scheme == "plain" and task_name == "ner":  # nor a POS tagger's (plain tags have no entities)
        task_name = "token-tagging"
    if pipeline_task == "text-classification":
        scheme = "plain"  # class names, no tag scheme: accuracy and micro/macro F1 over classes

    repo_id = getattr(trainer, "hub_model_id", None) or args.hub_model_id  # model_name is the card's title only
    model_name = model_name or (repo_id or os.path.basename(os.path.normpath(output_dir))).split("/")[-1]
    repo_id = repo_id or output_dir  # not pushed: the snippets load the folder, as named where training ran

    student = bool(recipe.get("student_layers") and recipe.get("teacher_model_name_or_path"))
    if student and recipe.get("student_init", "teacher") == "teacher":
        recipe_base = recipe["teacher_model_name_or_path"]  # the student was cut out of the teacher
    else:
        recipe_base = recipe.get("model_name_or_path")  # or out of this encoder (student_init 'model')
    base_spec = finetuned_from or recipe_base or _base_path(model, base, is_adapter)
    base_model = _hub_id(base_spec)

    hub_datasets = list(dict.fromkeys([d for d in [*datasets, recipe.get("dataset_name")] if _hub_id(d)]))
    dataset_config = dataset_config or recipe.get("dataset_config_name")
    dataset_label = hub_datasets[0] if hub_datasets else _local_data_name(recipe)

    results = read_results(output_dir, trainer.state.log_history)
    predictions_path = os.path.join(output_dir, PREDICTIONS_FILE)
    predictions = None
    if os.path.isfile(predictions_path):
        from .plots import read_predictions

        predictions = read_predictions(predictions_path)
    per_type = {split: per_type_scores(metrics) for split, metrics in results.items()}
    if predictions is not None and scheme != "plain" and not per_type.get("test") and "test" in results:
        from .metrics import classification_report_dict

        report = classification_report_dict(predictions[0], predictions[1], scheme)
        per_type["test"] = {t: row for t, row in report.items() if not t.endswith(" avg")}
    per_type = {split: rows for split, rows in per_type.items() if rows}

    features = enabled_features(trainer, model, base, is_adapter, is_crf)
    all_tags = ["seqft", task_name] + [t for f in features for t in f.tags]
    all_tags += _as_list(tags) + list(getattr(model, "model_tags", None) or [])

    plot_links = write_plots(trainer, results, per_type, predictions, scheme) if plots else {}

    card_data = ModelCardData(
        language=language,
        license=license,
        library_name="peft" if is_adapter else "transformers",
        pipeline_tag=pipeline_task,
        tags=all_tags,
        base_model=base_model,
        datasets=hub_datasets or None,
        metrics=["accuracy", "f1"] if scheme == "plain" else ["precision", "recall", "f1", "accuracy"],
        model_name=model_name,
        eval_results=eval_results(results, task_name, scheme, hub_datasets[0] if hub_datasets else None,
                                  dataset_label if hub_datasets else _local_split_names(recipe), dataset_config,
                                  pipeline_task) or None,
    )  # fmt: skip
    context = {
        "card_data": card_data.to_yaml(),
        "title": model_name,
        "repo_id": repo_id,
        "base_link": _base_link(base_model, base_spec),
        "data_link": _data_link(hub_datasets, dataset_config, dataset_label),
        "task_name": task_name,
        "task_kind": pipeline_task.replace("-", " "),
        "is_classifier": pipeline_task == "text-classification",
        "scheme": scheme,
        "labels": labels,
        "entity_types": [] if scheme == "plain" else schemes.entity_types(labels),
        "features": features,
        "is_crf": is_crf,
        "is_adapter": is_adapter,
        "headline": headline(results, scheme),
        "summary": summary_table(results, scheme),
        "per_type": per_type,
        "plots": plot_links,
        "usage": seqcls.usage_snippet(repo_id, is_adapter)
        if pipeline_task == "text-classification"
        else usage_snippet(
            repo_id, task_name, id2label, scheme, base, base_spec, is_crf, is_adapter, model, own_base=student
        ),
        "hyperparameters": hyperparameters(args),
        "training_log": training_log(trainer.state.log_history, scheme),
        "recipe_json": json.dumps(public_recipe(recipe), indent=2) if recipe else None,
        "versions": framework_versions(record),
        "has_tensorboard": os.path.isdir(os.path.join(output_dir, "runs")),
    }
    classifier_confusion = seqcls.CONFUSION_FILE.format(split="test")
    if context["is_classifier"] and os.path.isfile(os.path.join(output_dir, classifier_confusion)):
        context["plots"] = {**plot_links, "confusion_matrix": classifier_confusion}
    card = ModelCard(render(context))
    ModelCardData(**card.data.to_dict())  # the metadata, model-index included, parses back
    return card


def render(context: Mapping[str, Any]) -> str:
    """Fill seqft/templates/model_card.md (Jinja2, undefined names are errors)."""
    import jinja2

    text = resources.files("seqft").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")
    environment = jinja2.Environment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    environment.filters["num"] = _num
    environment.filters["cell"] = _cell
    environment.filters["label"] = _label
    return environment.from_string(text).render(**context)


# ---------------------------------------------------------------------------------------------------------------
# Reading the run


def read_recipe_record(output_dir: str) -> dict:
    """`seqft_recipe.json` ({"recipe", "versions", "data_files"}), or {} when the run did not write one."""
    path = os.path.join(output_dir, RECIPE_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def public_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe without secret keys (they are never written, this is a second guard)."""
    return {key: value for key, value in recipe.items() if key not in SECRET_KEYS}


def read_results(output_dir: str, log_history: Sequence[Mapping] = ()) -> dict[str, dict[str, Any]]:
    """{"validation": {...}, "test": {...}} from `{eval,test}_results.json`, metric prefixes removed.

    Without `eval_results.json` the last evaluation in `log_history` stands for the validation split.
    """
    results = {}
    for prefix, split in SPLITS.items():
        path = os.path.join(output_dir, f"{prefix}_results.json")
        metrics = None
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                metrics = json.load(fh)
        elif prefix == "eval":
            metrics = next((entry for entry in reversed(log_history) if "eval_loss" in entry), None)
        if metrics:
            results[split] = {
                key[len(prefix) + 1 :]: value for key, value in metrics.items() if key.startswith(prefix + "_")
            }
    return results


def per_type_scores(metrics: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """{TYPE: {"precision", "recall", "f1", "support"}} from `{TYPE}_precision/_recall/_f1/_number` keys."""
    out = {}
    for key in metrics:
        if not key.endswith("_number"):
            continue
        type_ = key[: -len("_number")]
        if all(f"{type_}_{m}" in metrics for m in ("precision", "recall", "f1")):
            out[type_] = {m: metrics[f"{type_}_{m}"] for m in ("precision", "recall", "f1")}
            out[type_]["support"] = metrics[key]
    return dict(sorted(out.items()))


def enabled_features(trainer, model, base, is_adapter: bool, is_crf: bool) -> list[Feature]:
    """The seqft features this run used, read from the model and the training arguments."""
    args, features = trainer.args, []
    if is_crf:  # constraints: the transitions the label scheme forbids are never decoded
        features.append(
            Feature("CRF", ["crf"], {"decoding": "Viterbi", "crf_constraints": base.config.crf_constraints})
        )
    if is_adapter:
        peft_config = model.peft_config.get("default") or next(iter(model.peft_config.values()))
        settings = {}
        for key in PEFT_SHOWN:
            value = getattr(peft_config, key, None)
            if value is None or value is False or (isinstance(value, (list, tuple, dict, set)) and not value):
                continue  # unset, switched off or empty
            value = getattr(value, "value", value)  # enums
            settings[key] = sorted(value) if isinstance(value, set) else value
        peft_type = str(settings.get("peft_type", "peft")).lower()
        features.append(Feature("PEFT", list(dict.fromkeys(["peft", peft_type])), settings))
    if getattr(args, "layer_decay", None) is not None or getattr(args, "head_learning_rate", None) is not None:
        settings = {"learning_rate": args.learning_rate, "layer_decay": args.layer_decay}
        settings["head_learning_rate"] = args.head_learning_rate or args.learning_rate
        features.append(Feature("LLRD", ["llrd"], {k: v for k, v in settings.items() if v is not None}))
    if getattr(args, "class_weights", None) is not None:  # seqft/seqcls.py: weighted training loss
        features.append(Feature("Class weights", ["class-weights"], {"class_weights": args.class_weights}))
    teacher = getattr(trainer, "teacher_model", None)
    teacher_name = getattr(args, "teacher_model_name_or_path", None)
    if teacher is not None or teacher_name:
        if not teacher_name and teacher is not None:
            teacher_name = getattr(getattr(teacher, "config", None), "_name_or_path", None) or type(teacher).__name__
        settings = {"teacher": teacher_name}
        for key in ("distill_alpha", "distill_temperature", "distill_hidden_weight", "distill_layer_map",
                    "student_layers", "student_init", "precompute_teacher", "distill_unlabelled_file"):  # fmt: skip
            value = getattr(args, key, None)
            if value not in (None, False):
                settings[key] = value
        if "student_layers" not in settings:  # student_init only says where student_layers' blocks come from
            settings.pop("student_init", None)
        features.append(Feature("Distillation", ["distillation"], settings))
    return features


# ---------------------------------------------------------------------------------------------------------------
# Metadata


def eval_results(
    results: Mapping[str, Mapping[str, Any]],
    task_name: str,
    scheme: str,
    hub_dataset: str | None,
    dataset_label: str | Mapping[str, str],
    dataset_config: str | None,
    task_type: str = "token-classification",
) -> list[EvalResult]:
    """One `EvalResult` per split and metric; `huggingface_hub` turns them into the `model-index`. `dataset_label`
    names the dataset, or (local files) each split's by split."""
    if scheme == "plain":
        wanted = (("accuracy", "accuracy", "Accuracy"), ("macro_f1", "f1", "Macro F1"))
    else:
        wanted = (("precision", "precision", "Precision"), ("recall", "recall", "Recall"), ("f1", "f1", "F1"),
                  ("accuracy", "accuracy", "Accuracy"))  # fmt: skip
    out = []
    for split, metrics in results.items():
        for key, metric_type, pretty in wanted:
            if isinstance(metrics.get(key), (int, float)):
                out.append(
                    EvalResult(
                        task_type=task_type,
                        task_name=task_name.upper() if len(task_name) <= 5 else task_name,
                        dataset_type=hub_dataset or "custom",
                        dataset_name=dataset_label if isinstance(dataset_label, str) else dataset_label[split],
                        dataset_config=dataset_config if hub_dataset else None,
                        dataset_split=split,
                        metric_type=metric_type,
                        metric_name=pretty,
                        metric_value=round(float(metrics[key]), 4),
                    )
                )
    return out


def _hub_id(spec: str | None) -> str | None:
    """`spec` when it names a Hub repository (not a local path, not pkg://), else None."""
    if not spec or spec.startswith("pkg://") or os.path.exists(spec):
        return None
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return None
    return spec


def _base_path(model, base, is_adapter: bool) -> str | None:
    if is_adapter:
        peft_config = next(iter(model.peft_config.values()))
        if getattr(peft_config, "base_model_name_or_path", None):
            return peft_config.base_model_name_or_path
    config = base.config
    encoder_config = getattr(config, "encoder_config", None)  # seqft's CRF model wraps an encoder
    return getattr(encoder_config, "_name_or_path", None) or getattr(config, "_name_or_path", None) or None


def _base_link(base_model: str | None, base_spec: str | None) -> str:
    if base_model:
        return f"[{base_model}](https://huggingface.co/{base_model})"
    return f"`{base_spec}`" if base_spec else "an encoder"


def _data_link(hub_datasets: Sequence[str], dataset_config: str | None, dataset_label: str) -> str:
    if not hub_datasets:
        return f"`{dataset_label}`"
    links = [f"[{d}](https://huggingface.co/datasets/{d})" for d in hub_datasets]
    if dataset_config:
        links[0] += f" (`{dataset_config}`)"
    return ", ".join(links)


def _local_data_name(recipe: Mapping[str, Any]) -> str:
    for key in ("train_file", "validation_file", "test_file"):  # "trained on": the training data first
        if recipe.get(key):
            return os.path.basename(str(recipe[key]).rstrip("/")) or str(recipe[key])
    return "custom data"


def _local_split_names(recipe: Mapping[str, Any]) -> dict[str, str]:
    """Each split's file name (a split carved from train: the training file's), for the model-index."""
    names = {}
    for split, key in (("train", "train_file"), ("validation", "validation_file"), ("test", "test_file")):
        names[split] = os.path.basename(str(recipe[key]).rstrip("/")) if recipe.get(key) else _local_data_name(recipe)
    return defaultdict(lambda: _local_data_name(recipe), names)


def _as_list(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


# ---------------------------------------------------------------------------------------------------------------
# Sections


def headline(results: Mapping[str, Mapping[str, Any]], scheme: str) -> str | None:
    """One sentence with the main score on the test split (else validation)."""
    split = "test" if "test" in results else "validation" if "validation" in results else None
    if split is None:
        return None
    metrics = results[split]
    if scheme == "plain":
        if "accuracy" not in metrics:
            return None
        return f"accuracy {_num(metrics['accuracy'])} (macro F1 {_num(metrics.get('macro_f1'))}) on the {split} split"
    if "f1" not in metrics:
        return None
    return (
        f"entity F1 {_num(metrics['f1'])} (precision {_num(metrics.get('precision'))}, recall "
        f"{_num(metrics.get('recall'))}) on the {split} split"
    )


def summary_table(results: Mapping[str, Mapping[str, Any]], scheme: str) -> dict | None:
    """{"columns": [...], "rows": [[split, values...]]} over the metrics present in any split."""
    names = (
        (("accuracy", "Accuracy"), ("micro_f1", "Micro F1"), ("macro_f1", "Macro F1"), ("loss", "Loss"))
        if scheme == "plain"
        else (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"), ("strict_f1", "Strict F1"),
              ("accuracy", "Accuracy"), ("loss", "Loss"))
    )  # fmt: skip
    present = [(key, label) for key, label in names if any(key in m for m in results.values())]
    if not present:
        return None
    rows = [[split] + [_num(metrics.get(key)) for key, _ in present] for split, metrics in results.items()]
    return {"columns": ["Split"] + [label for _, label in present], "rows": rows}


def hyperparameters(args) -> list[tuple[str, Any]]:
    """The training arguments a reader asks for first."""
    total = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    rows = [
        ("learning_rate", args.learning_rate),
        ("per_device_train_batch_size", args.per_device_train_batch_size),
        ("gradient_accumulation_steps", args.gradient_accumulation_steps),
        ("total_train_batch_size", total),
        ("num_train_epochs", args.num_train_epochs) if args.max_steps <= 0 else ("max_steps", args.max_steps),
        ("optim", getattr(args.optim, "value", args.optim)),
        ("lr_scheduler_type", getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        ("warmup_steps", args.warmup_steps),
        ("weight_decay", args.weight_decay),
        ("label_smoothing_factor", args.label_smoothing_factor),
        ("seed", args.seed),
        ("mixed_precision", "bf16" if args.bf16 else "fp16" if args.fp16 else "no"),
    ]
    return [(name, value) for name, value in rows if value is not None]


def training_log(log_history: Sequence[Mapping], scheme: str) -> dict | None:
    """One row per evaluation during training: epoch, step, last training loss, validation loss and scores."""
    keys = (("eval_accuracy", "Accuracy"), ("eval_macro_f1", "Macro F1")) if scheme == "plain" else (
        ("eval_precision", "Precision"), ("eval_recall", "Recall"), ("eval_f1", "F1"))  # fmt: skip
    rows, last_loss = [], None
    for entry in log_history:
        if "train_runtime" in entry:  # evaluations after this one are of the final model: in the summary table
            break
        if "loss" in entry:
            last_loss = entry["loss"]
        if "eval_loss" in entry and "step" in entry:
            row = [_num(entry.get("epoch"), 2), entry["step"], _num(last_loss), _num(entry["eval_loss"])]
            rows.append(row + [_num(entry.get(key)) for key, _ in keys])
    if not rows:
        return None
    return {"columns": ["Epoch", "Step", "Training loss", "Validation loss"] + [k for _, k in keys], "rows": rows}


def framework_versions(record: Mapping[str, Any]) -> dict[str, str]:
    versions = dict(record.get("versions") or {})
    if not versions:
        from .train import library_versions

        versions = library_versions()
    versions["python"] = sys.version.split()[0]
    return versions


def write_plots(trainer, results, per_type, predictions, scheme) -> dict[str, str]:
    """Write the PNGs next to the results; {name: file name relative to output_dir} for those written."""
    from . import plots

    output_dir = trainer.args.output_dir
    written = {}

    def path(name):
        return os.path.join(output_dir, PLOT_FILES[name])

    if plots.plot_training_curves(trainer.state.log_history, path("training_curves")):
        written["training_curves"] = PLOT_FILES["training_curves"]
    f1 = {split: {t: row["f1"] for t, row in rows.items()} for split, rows in per_type.items()}
    if scheme != "plain" and plots.plot_per_type_f1(f1, path("per_type_f1")):
        written["per_type_f1"] = PLOT_FILES["per_type_f1"]
    if predictions is not None:
        confusion = plots.entity_confusion(predictions[0], predictions[1], scheme)
        title = "Tags: gold vs predicted (test)" if scheme == "plain" else "Entity types: gold vs predicted (test)"
        if plots.plot_confusion_matrix(confusion, path("confusion_matrix"), title=title):
            written["confusion_matrix"] = PLOT_FILES["confusion_matrix"]
    for name, file in PLOT_FILES.items():  # no stale plot from an earlier run stays linked or pushed
        if name not in written and os.path.isfile(os.path.join(output_dir, file)):
            os.remove(os.path.join(output_dir, file))
    return written


# ---------------------------------------------------------------------------------------------------------------
# Usage snippet


def fetch_lines(repo_id: str) -> tuple[list[str], str]:
    """The import and the line that give a snippet the checkpoint's folder: downloaded for a Hub id, else the run's
    own folder (a card written without `hub_model_id`, before any push)."""
    if _hub_id(repo_id):
        return ["from huggingface_hub import snapshot_download"], f'path = snapshot_download("{repo_id}")'
    return [], f"path = {json.dumps(repo_id)}  # the run's folder; once pushed, snapshot_download(<its Hub id>)"


def usage_snippet(
    repo_id, task_name, id2label, scheme, base, base_spec, is_crf, is_adapter, model, own_base: bool = False
) -> str:
    """Python that loads this checkpoint and tags a sentence: the stock pipeline; with remote code for a CRF
    checkpoint; for an adapter-only checkpoint, peft (base model + adapter, merged) when the method merges, else
    seqft's `load_adapter_model`: prompt learning runs through seqft's encoder hooks, and a student built from
    selected blocks (`own_base`) adapts its own `student_base/`, in the repository, not the encoder it came from."""
    var = "ner" if task_name == "ner" else "tagger"
    # plain (POS-style) tags: the aggregating strategies merge neighbouring words of one tag (NNP NNP -> one group);
    # BIOES: the pipeline groups B-/I- only, and would cut each entity at its E- and S- tags: tags per token
    strategy = "none" if scheme in ("plain", "BIOES") else "first"
    if not is_adapter:
        remote = ", trust_remote_code=True" if is_crf else ""
        lines = ["from transformers import pipeline", ""]
        if is_crf:
            lines += [
                "# The CRF's code ships with this checkpoint, so it loads without seqft. With seqft installed,",
                "# `import seqft.modeling` instead and leave out trust_remote_code.",
            ]
        lines += [
            f'{var} = pipeline("token-classification", model="{repo_id}", aggregation_strategy="{strategy}"{remote})',
            f"print({var}({json.dumps(EXAMPLE_TEXT)}))",
        ]
        return "\n".join(lines)

    peft_config = next(iter(model.peft_config.values()))
    lora = str(getattr(peft_config.peft_type, "value", peft_config.peft_type)) == "LORA"
    if getattr(peft_config, "is_prompt_learning", False) or own_base or (is_crf and not lora):
        # Prompt learning has no weights to merge, and seqft applies it at the encoder (seqft.adapters); a student's
        # adapter sits on its own student_base/; peft's merge_and_unload of a method other than LoRA fails on the
        # CRF among the saved modules (seqft.adapters works around it): only seqft loads them right. Every other
        # adapter merges into the base weights named in adapter_config.json.
        download, path_line = fetch_lines(repo_id)
        return "\n".join(
            [
                *download,
                "from transformers import AutoTokenizer, pipeline",
                "",
                "from seqft.adapters import load_adapter_model  # pip install seqft: it runs this adapter type",
                "",
                path_line,
                "model = load_adapter_model(path)  # the base it adapts (adapter_config.json, or student_base/)"
                " + adapter + head",
                "tokenizer = AutoTokenizer.from_pretrained(path)",
                f'{var} = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="{strategy}")',
                f"print({var}({json.dumps(EXAMPLE_TEXT)}))",
            ]
        )
    labels = ", ".join(json.dumps(id2label[i]) for i in sorted(id2label))
    label_lines = textwrap.wrap(labels, width=100, break_long_words=False, break_on_hyphens=False)
    if len(label_lines) == 1:
        label_block = [f"labels = [{label_lines[0]}]"]
    else:
        label_block = ["labels = ["] + [f"    {line}" for line in label_lines] + ["]"]
    lines = ["from peft import PeftModel"]
    if is_crf:
        lines += [
            "from transformers import AutoTokenizer, pipeline",
            "",
            "from seqft.modeling import SeqFTCRFForTokenClassification",
        ]
    else:
        lines += ["from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline"]
    base_expr = json.dumps(base_spec)
    if base_spec and base_spec.startswith("pkg://"):
        lines += ["from seqft.data import resolve_path"]
        base_expr = f"resolve_path({json.dumps(base_spec)})"
    lines += [""]
    if base_spec and not _hub_id(base_spec) and not base_spec.startswith("pkg://"):
        lines += [f"# The base encoder was a local path at training time ({base_spec}): point this at a copy of it."]
    lines += label_block + ["id2label = dict(enumerate(labels))"]
    if is_crf:
        config = base.config
        lines += [
            "base = SeqFTCRFForTokenClassification.from_encoder(",
            f"    {base_expr},",
            "    id2label=id2label,",
            f"    label_scheme={json.dumps(scheme)},",
            f"    special_token_ids={list(config.special_token_ids)},",
            f"    crf_constraints={bool(config.crf_constraints)},",
            ")",
        ]
    else:
        lines += [
            "base = AutoModelForTokenClassification.from_pretrained(",
            f"    {base_expr}, id2label=id2label, label2id={{label: i for i, label in id2label.items()}}",
            ")",
        ]
    lines += [
        f'model = PeftModel.from_pretrained(base, "{repo_id}").merge_and_unload()',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
        f'{var} = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="{strategy}")',
        f"print({var}({json.dumps(EXAMPLE_TEXT)}))",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Formatting


def _num(value, digits: int = 4) -> str:
    """A metric for a Markdown cell: 4 decimals, ints as they are, "–" when missing."""
    if value is None:
        return "–"
    if isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _label(value) -> str:
    """A label or class name in Markdown text or a table cell: shown as written (`*ORG*`, `LOC_1`, `PER|X`)."""
    return re.sub(r"([\\|*_`])", r"\\\1", str(value))


def _cell(value) -> str:
    """A value for a Markdown table cell: JSON for containers, pipes escaped."""
    text = json.dumps(value) if isinstance(value, (dict, list, tuple)) else str(value)
    return re.sub(r"\|", r"\\|", text)
