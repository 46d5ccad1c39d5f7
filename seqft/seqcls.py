"""Sequence classification: one label (or several) per text or text pair, with the recipes, features and tooling of
sequence labelling. Selected by the recipe key `task: "sequence-classification"`.

Everything specific to the task lives here; `seqft.train`, `seqft.predict`, `seqft.trainer` and `seqft.distill`
only call in:

* **Data** (`load_raw_splits`): Hub datasets (`ClassLabel` ids become names), CSV with or without a header
  (`csv_header: false` + `csv_column_names`), JSON (a list of objects) and JSON Lines. Every split is normalised to
  the columns `text`, `text_pair` (sentence pairs, `text_pair_column_name`), `label` (a name, or a list of names for
  multi-label) and `source` (`file:line`, for error messages). `text_column_names` joins several columns
  (`text_separator`, default one space), e.g. AG News' title and description.
* **Label names from a file** (`label_names_file`, one name per line): label ids in the data are read against it,
  and it fixes the label order. Whether ids count from 0 or from 1 is read off the ids of all splits together:
  an id 0 means 0-based, an id equal to the number of names means 1-based (AG News: ids 1..4 for 4 names); ids
  that fit both (e.g. 1..3 of 4 names) are an error asking for `label_id_base`. Strings of digits count as ids
  when a names file is given; other strings must be one of its names.
* **Labels** (`prepare_labels`): the label list is the names file's order, else a fine-tuned checkpoint's or a
  teacher's, else a Hub dataset's `ClassLabel` names in id order (as run_glue.py; a class missing from the
  training split keeps its id), else the sorted names of the training split (numbers in number order). A run that trains on from a
  fine-tuned classifier with the same labels keeps its order. An unknown label, a missing column, an empty label or
  a ragged CSV row is a `DataError` naming the file and line (row for JSON lists).
* **Multi-label** (`problem_type: "multi_label_classification"`, or inferred from list-valued labels: JSON lists,
  or CSV cells holding a JSON list; with `problem_type` set, a CSV cell may also list names separated by
  spaces): multi-hot float targets, trained with binary cross-entropy (`multi_label_loss`), predicted with
  `sigmoid >= multi_label_threshold`.
* **Loss** (`SeqFTTrainer.token_loss`, which calls `multi_label_loss` for multi-hot labels): single-label is
  cross-entropy summed over texts / texts in the whole step; multi-label is BCE summed over every (text, label)
  entry / (texts x labels) in the whole step — the Trainer's `num_items_in_batch` counts exactly these entries —
  so both are independent of gradient accumulation and of the number of ranks.
* **Class weights** (`class_weights`, a `SeqFTConfig` field: `"balanced"`, a list of floats in label order, or
  null; `class_weight_tensor`): cross-entropy class weights, `balanced` = n_samples / (n_classes x n_c) as in
  scikit-learn; for multi-label they are BCE `pos_weight`s, `balanced` = negatives / positives per label. Applied
  to the training loss only; evaluation loss stays unweighted so it is comparable across recipes. The weighted
  sum is divided by the item count (not by the sum of weights), which keeps it split-invariant.
* **Long texts**: truncated to `max_seq_length` on `truncation_side` (right or left; pairs: longest first); the
  number of truncated texts per split is logged and returned in the metrics (`*_texts_truncated`).
* **Metrics** (`compute_scores`): accuracy (exact match for multi-label), micro/macro/weighted F1, macro precision
  and recall, per class `{name}_precision/_recall/_f1/_number`; after prediction a per-class report
  (`test_classification_report.json`), the predictions (`test_predictions.jsonl`, input order) and the confusion
  matrix as a PNG (`test_confusion_matrix.png`, single-label).
* **Prediction** (`TextClassifier`, `predict_cli`): `python -m seqft.predict MODEL_DIR` on such a model reads
  raw text (one per line) or JSON Lines (`{"text": ..., "text_pair": ...}`) and writes JSON Lines with `label` and
  `score` (multi-label: also `labels` over the threshold and every label's `scores`); scores are those of
  `pipeline("text-classification")`. A row's other keys are copied (a gold `label` as `input_label`).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data as seqdata
from .errors import DataError, RecipeError, SeqFTError, other_head_size

logger = logging.getLogger("seqft")

TASK = "sequence-classification"
SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL)
PREDICTIONS_FILE = "test_predictions.jsonl"
REPORT_FILE = "{split}_classification_report.json"
CONFUSION_FILE = "{split}_confusion_matrix.png"
TEXT_DEFAULTS = ("text", "sentence", "sentence1", "content", "review", "question")
LABEL_DEFAULTS = ("label", "labels", "class", "category")
SPLITS = ("train", "validation", "test")
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def is_sequence_classifier(model_or_config) -> bool:
    """Whether a model (or its config, possibly inside a PEFT wrapper) is a `*ForSequenceClassification`."""
    base = model_or_config.get_base_model() if hasattr(model_or_config, "get_base_model") else model_or_config
    config = getattr(base, "config", base)
    names = [type(base).__name__, *(getattr(config, "architectures", None) or [])]
    return any(str(name).endswith("ForSequenceClassification") for name in names)


def is_sequence_classifier_dir(model_dir: str) -> bool:
    """Whether a saved model directory (full, merged or adapter-only) holds a sequence classifier."""
    from .predict import read_json_file

    adapter = os.path.join(model_dir, "adapter_config.json")
    if os.path.isfile(adapter):
        task_type = read_json_file(adapter).get("task_type")
        if task_type:
            return str(task_type).upper() == "SEQ_CLS"
    for path in (os.path.join(model_dir, "config.json"), os.path.join(model_dir, "base_config", "config.json")):
        if os.path.isfile(path):
            architectures = read_json_file(path).get("architectures") or []
            return any(name.endswith("ForSequenceClassification") for name in architectures)
    return False


# ---------------------------------------------------------------------------------------------------------------
# Reading files


def read_label_names(spec: str) -> list[str]:
    """Label names from a text file, one per line (blank lines at the end ignored); the line order fixes the ids."""
    from .data import resolve_path

    path = resolve_path(spec)
    if not os.path.isfile(path):
        raise DataError(f"label_names_file not found: {spec}")
    with open(path, encoding="utf-8-sig") as fh:
        lines = [line.strip() for line in fh.read().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for number, name in enumerate(lines, 1):
        if not name:
            raise DataError(f"{spec}:{number}: empty label name (one name per line, no blank lines between).")
        if name in lines[: number - 1]:
            raise DataError(f"{spec}:{number}: label name {name!r} appears twice.")
    if len(lines) < 2:
        raise DataError(f"{spec}: needs at least two label names, one per line; found {len(lines)}.")
    return lines


def read_csv_rows(path: str, header: bool, column_names: Sequence[str] | None) -> list[tuple[str, dict]]:
    """(line, row) for every CSV record: keys from the header line, or from `column_names` for headerless files.

    A record whose number of fields differs from the header's is an error naming its line.
    """
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        names = list(column_names) if column_names else None
        start = 1
        for record in reader:
            line, start = start, reader.line_num + 1  # a quoted field may span lines: report the record's first
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if names is None:
                if not header:
                    raise DataError(f"{path}: a headerless CSV (csv_header false) needs 'csv_column_names'.")
                names = [name.strip() for name in record]
                continue
            if len(record) != len(names):
                raise DataError(
                    f"{path}:{line}: {len(record)} fields, but there are {len(names)} columns "
                    f"({', '.join(names)}). An unquoted comma, or a missing field?"
                )
            rows.append((str(line), dict(zip(names, record))))
    return rows


def read_records(path: str, data_args) -> list[tuple[str, dict]]:
    """(where, row) pairs of a CSV, JSON or JSON Lines file."""
    from .data import read_json

    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return read_csv_rows(path, data_args.csv_header, data_args.csv_column_names)
    if suffix in (".json", ".jsonl"):
        return read_json(path)
    raise DataError(f"{path}: unknown file type '{suffix}' for sequence classification. Use .csv, .json or .jsonl.")


def _columns(data_args, available: Sequence[str], path: str) -> tuple[list[str], str | None, str]:
    """(text columns, pair column, label column) for a file or Hub split; a missing column is an error."""

    def need(name: str, key: str) -> str:
        if name not in available:
            raise DataError(f"{path}: no column '{name}' ({key}); the columns are: {', '.join(available)}.")
        return name

    if data_args.text_column_names:
        texts = [need(name, "text_column_names") for name in data_args.text_column_names]
    elif data_args.text_column_name:
        texts = [need(data_args.text_column_name, "text_column_name")]
    else:
        found = next((name for name in TEXT_DEFAULTS if name in available), None)
        if found is None:
            raise DataError(
                f"{path}: no text column found (looked for {', '.join(TEXT_DEFAULTS)}); set text_column_name or "
                f"text_column_names. The columns are: {', '.join(available)}."
            )
        texts = [found]
    pair = need(data_args.text_pair_column_name, "text_pair_column_name") if data_args.text_pair_column_name else None
    if data_args.label_column_name:
        label = need(data_args.label_column_name, "label_column_name")
    else:
        label = next((name for name in LABEL_DEFAULTS if name in available), None)
        if label is None:
            raise DataError(
                f"{path}: no label column found (looked for {', '.join(LABEL_DEFAULTS)}); set label_column_name. "
                f"The columns are: {', '.join(available)}."
            )
    return texts, pair, label


def _missing(value) -> bool:
    """None, or a float NaN: JSON's `NaN`, as pandas writes a missing value."""
    return value is None or (isinstance(value, float) and value != value)


def _text(value, where: str, column: str) -> str:
    if _missing(value):
        return ""
    if isinstance(value, (dict, list)):
        raise DataError(f"{where}: column '{column}' must hold text, got {type(value).__name__}.")
    return str(value)


def _row_text(location: str, parts: Sequence[str], texts: Sequence[str], pair_value, pair: str | None, sep: str):
    """A row's text (its text columns joined) and its pair's, each required to hold something to classify."""
    text = sep.join(part for part in parts if part)
    if not text.strip():  # nothing to classify: a data bug, not a training example
        raise DataError(
            f"{location}: the text is empty ({', '.join(repr(c) for c in texts)} null or blank). Remove the row or "
            "fill in its text."
        )
    if pair is None:
        return text, None
    if not pair_value.strip():  # a pair model would learn from (and predict on) a pair with nothing in it
        raise DataError(
            f"{location}: the second text ('{pair}', text_pair_column_name) is empty or null. Remove the row or fill "
            "it in."
        )
    return text, pair_value


def normalise_records(records: Sequence[tuple[str, dict]], path: str, data_args) -> dict[str, list]:
    """Rows of a file -> {"text", ["text_pair"], "label", "source"}; `label` still raw (name, id or list)."""
    name = os.path.basename(path)
    if not records:
        raise DataError(f"{path}: no rows found.")
    available = list(dict.fromkeys(key for _, row in records for key in row))
    texts, pair, label = _columns(data_args, available, path)
    out = {"text": [], "label": [], "source": []}
    if pair:
        out["text_pair"] = []
    for where, row in records:
        location = f"{path}:{where}"
        for column in [*texts, *([pair] if pair else []), label]:
            if column not in row:
                raise DataError(f"{location}: the row has no column '{column}' (its keys: {', '.join(row)}).")
        parts = [_text(row[column], location, column) for column in texts]
        second = _text(row[pair], location, pair) if pair else None
        text, second = _row_text(location, parts, texts, second, pair, data_args.text_separator)
        out["text"].append(text)
        if pair:
            out["text_pair"].append(second)
        out["label"].append(row[label])
        out["source"].append(f"{name}:{where}")
    return out


def _from_hub(data_args, cache_dir=None, token=None) -> tuple[dict[str, dict[str, list]], list[str] | None]:
    """The Hub splits, normalised, and the names of the label column's `ClassLabel` in id order (None when the
    labels are plain values): the label list of the run, as run_glue.py takes it, so that the model's ids are the
    dataset's and a class absent from the training split keeps its row."""
    from datasets import ClassLabel

    out, class_names = {}, None
    for split, ds in seqdata.load_hub_splits(data_args, cache_dir=cache_dir, token=token).items():
        where = f"{data_args.dataset_name}[{split}]"
        texts, pair, label = _columns(data_args, ds.column_names, where)
        feature = ds.features[label]
        inner = getattr(feature, "feature", feature)  # List(ClassLabel) -> ClassLabel (multi-label)
        values = list(ds[label])
        if isinstance(inner, ClassLabel) and values and all(v == -1 for v in values):
            logger.warning(f"{where}: every label is -1 (an unlabelled split, as GLUE's test sets): skipped.")
            continue
        if isinstance(inner, ClassLabel):
            class_names = class_names or [str(name) for name in inner.names]
            unlabelled = next((i for i, v in enumerate(values) if v == -1), None)
            if unlabelled is not None:
                raise DataError(f"{where}:row {unlabelled}: label -1 (no label) in a labelled split.")
            values = [
                [inner.int2str(int(v)) for v in value] if isinstance(value, list) else inner.int2str(int(value))
                for value in values
            ]
        columns = {name: ds[name] for name in dict.fromkeys([*texts, *([pair] if pair else [])])}
        sources = [f"{where}:row {i}" for i in range(len(ds))]
        pairs = [
            _row_text(
                sources[i],
                [_text(columns[c][i], sources[i], c) for c in texts],
                texts,
                _text(columns[pair][i], sources[i], pair) if pair else None,
                pair,
                data_args.text_separator,
            )
            for i in range(len(ds))
        ]  # the checks of a file's rows
        rows = {"text": [text for text, _ in pairs], "label": values, "source": sources}
        if pair:
            rows["text_pair"] = [second for _, second in pairs]
        out[split] = rows
    return out, class_names


# ---------------------------------------------------------------------------------------------------------------
# Labels


def _is_id(value, with_names: bool) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return with_names and isinstance(value, str) and value.strip().isdigit()


def _atoms(value, multi: bool | None, where: str, column_hint: str = "label") -> list:
    """The label values of one row: one value, or the members of a list (JSON list, or a CSV cell holding one)."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("[") and multi is not False:
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                raise DataError(f"{where}: {column_hint} {stripped[:60]!r} is not a valid JSON list.") from None
        elif multi:
            value = stripped.split()
    if isinstance(value, list):
        if multi is False:
            raise DataError(
                f"{where}: a list of labels ({value!r}) but problem_type is {SINGLE_LABEL}; set problem_type to "
                f"{MULTI_LABEL} (or leave it out to infer it)."
            )
        return value
    if _missing(value) or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where}: no label (empty {column_hint}, null or NaN).")
    return [value]


def id_base(ids: Sequence[int], num_names: int, explicit: int | None, names_file: str) -> int:
    """0 or 1: how the data's label ids count against a names file of `num_names` lines (see the module docs)."""
    if explicit is not None:
        return explicit
    low, high = min(ids), max(ids)
    if low <= 0:
        return 0
    if high >= num_names:  # an id equal to the number of names exists only 1-based (larger ones: errors either way)
        return 1
    raise DataError(
        f"label ids {low}..{high} fit both 0-based and 1-based counting against the {num_names} names in "
        f"{names_file}: set label_id_base to 0 or 1."
    )


def resolve_label_names(splits: Mapping[str, dict[str, list]], data_args, names: list[str] | None) -> bool:
    """Replace every raw label by its name (lists of names for multi-label), in place; returns multi-label or not.

    Ids are read against `names` (the names file) with `id_base`; without a names file, ints become their
    decimal string. Errors name the file and line.
    """
    multi = {SINGLE_LABEL: False, MULTI_LABEL: True}.get(data_args.problem_type)
    if multi is None:  # inferred: any list-valued label makes it multi-label
        multi = any(
            isinstance(v, list) or (isinstance(v, str) and v.strip().startswith("["))
            for columns in splits.values()
            for v in columns["label"]
        )
    atoms = {
        split: [_atoms(value, multi, f"{source}") for value, source in zip(columns["label"], columns["source"])]
        for split, columns in splits.items()
    }
    base = 0
    if names is not None:
        ids = [int(a) for rows in atoms.values() for row in rows for a in row if _is_id(a, True)]
        if ids:
            base = id_base(ids, len(names), data_args.label_id_base, data_args.label_names_file)
    known = set(names or ())
    for split, columns in splits.items():
        resolved = []
        for row, source in zip(atoms[split], columns["source"]):
            out = []
            for atom in row:
                if names is not None and _is_id(atom, True):
                    index = int(atom) - base
                    if not 0 <= index < len(names):
                        first, last = base, base + len(names) - 1
                        raise DataError(
                            f"{source}: unknown label id {int(atom)}: {data_args.label_names_file} has "
                            f"{len(names)} names, ids {first}..{last} ({base}-based)."
                        )
                    out.append(names[index])
                elif isinstance(atom, (dict, list)) or atom is None:
                    raise DataError(f"{source}: a label must be a name or an id, got {atom!r}.")
                else:
                    name = str(atom).strip()
                    if names is not None and name not in known:
                        raise DataError(
                            f"{source}: unknown label {name!r}: not among the {len(names)} names in "
                            f"{data_args.label_names_file} ({', '.join(names)})."
                        )
                    out.append(name)
            resolved.append(sorted(set(out), key=out.index) if multi else out[0])
        columns["label"] = resolved
    return multi


def prepare_labels(raw, data_args, known_labels: list[str] | None = None):
    """Label list and targets. Returns (splits with `labels`: class ids, or multi-hot floats for multi-label,
    label names, problem type). An unknown label in any split is a `DataError` naming file and line."""
    from datasets import DatasetDict

    first = next(iter(raw.values()))
    multi = len(first) > 0 and isinstance(first[0]["label"], list)  # load_raw_splits gives lists for multi-label
    names = read_label_names(data_args.label_names_file) if data_args.label_names_file else None
    if known_labels is not None:
        if names is not None and set(names) != set(known_labels):
            raise DataError(
                f"{data_args.label_names_file} lists {', '.join(names)}, but the checkpoint/teacher predicts "
                f"{', '.join(known_labels)}: the label sets must agree."
            )
        label_names = list(known_labels)
    elif names is not None:
        label_names = names
    elif getattr(raw, "class_label_names", None):
        label_names = list(raw.class_label_names)
    else:
        pool = raw.get("train")
        values = pool["label"] if pool is not None else [v for split in raw.values() for v in split["label"]]
        found = {name for v in values for name in (v if multi else [v])}
        # sorted by name; labels that are all numbers in number order (2 before 10), so that ids stay in step
        label_names = sorted(found, key=int) if all(str(name).isdigit() for name in found) else sorted(found)
    index = {name: i for i, name in enumerate(label_names)}

    def targets(split_name, split):
        out = []
        for value, source in zip(split["label"], split["source"]):
            for name in value if multi else [value]:
                if name not in index:
                    raise DataError(
                        f"{source}: label {name!r} in the {split_name} split is not among the model's labels "
                        f"({', '.join(label_names)}). Fix the label, or add examples of it to the training data."
                    )
            if multi:
                hot = [0.0] * len(label_names)
                for name in value:
                    hot[index[name]] = 1.0
                out.append(hot)
            else:
                out.append(index[value])
        return split.add_column("labels", out)

    converted = DatasetDict({name: targets(name, split) for name, split in raw.items()})
    return converted, label_names, MULTI_LABEL if multi else SINGLE_LABEL


def load_raw_splits(data_args, seed: int, cache_dir=None, token=None, limit: bool = True):
    """Every split the recipe names, normalised (see the module docs); missing validation/test splits carved from
    train (test first, then validation, seeded shuffles, as for sequence labelling); `max_*_samples` applied."""
    from datasets import Dataset, DatasetDict

    from .data import resolve_path

    splits: dict[str, dict[str, list]] = {}
    class_names = None
    if data_args.dataset_name:
        hub, class_names = _from_hub(data_args, cache_dir=cache_dir, token=token)
        splits.update(hub)
    for split, spec in zip(SPLITS, (data_args.train_file, data_args.validation_file, data_args.test_file)):
        if not spec:
            continue
        path = resolve_path(spec)
        if not os.path.isfile(path):
            raise DataError(f"Data file not found: {spec}")
        if os.path.getsize(path) == 0:
            raise DataError(f"{spec}: the file is empty.")
        splits[split] = normalise_records(read_records(path, data_args), path, data_args)
    names = read_label_names(data_args.label_names_file) if data_args.label_names_file else None
    multi = resolve_label_names(splits, data_args, names)
    out = seqdata.carve_and_limit(
        DatasetDict({k: Dataset.from_dict(v) for k, v in splits.items()}), data_args, seed, limit=limit
    )
    del multi  # multi-label splits hold lists of names; prepare_labels reads it from there
    out.class_label_names = class_names  # the Hub's ClassLabel order, read by prepare_labels
    return out


# ---------------------------------------------------------------------------------------------------------------
# Model and tokenisation


def evaluate_as_trained(data_args, model_path: str, load_kwargs: dict) -> None:
    """For a run that evaluates a fine-tuned classifier without training it: its problem type and multi-label
    threshold (saved in its config) and the side long texts were cut on (saved with its tokenizer) unless the
    recipe sets them. An explicit other problem type is an error; an explicit threshold or side other than the
    default wins. Texts where it was trained on pairs, or pairs where it was trained on texts, are an error. Sets
    them on `data_args`, which the resolved recipe records."""
    import dataclasses

    from transformers import AutoConfig

    from .predict import read_json_file, read_recipe

    if not os.path.isfile(os.path.join(model_path, "config.json")):
        return  # a Hub id is read as it loads; an adapter folder is reported by seqft.train
    config = AutoConfig.from_pretrained(model_path, **load_kwargs)
    saved = getattr(config, "problem_type", None)
    if saved in PROBLEM_TYPES:
        if data_args.problem_type not in (None, saved):
            raise RecipeError(
                f"'problem_type' = {data_args.problem_type!r}, but {model_path} was trained as {saved}: remove "
                "problem_type to evaluate it as it was trained."
            )
        data_args.problem_type = saved
    defaults = {f.name: f.default for f in dataclasses.fields(data_args)}
    threshold = getattr(config, "multi_label_threshold", None)
    if isinstance(threshold, float) and data_args.multi_label_threshold == defaults["multi_label_threshold"]:
        data_args.multi_label_threshold = threshold
    tokenizer_config = os.path.join(model_path, "tokenizer_config.json")
    side = read_json_file(tokenizer_config).get("truncation_side") if os.path.isfile(tokenizer_config) else None
    if side in ("left", "right") and data_args.truncation_side == defaults["truncation_side"]:
        data_args.truncation_side = side
    recipe = read_recipe(model_path)  # {} for a model trained elsewhere: nothing to compare
    trained_pair = recipe.get("text_pair_column_name")
    if recipe and bool(trained_pair) != bool(data_args.text_pair_column_name):
        raise RecipeError(
            f"{model_path} was trained on text pairs ('{trained_pair}' as the second text): set "
            "'text_pair_column_name' to the column of the second texts."
            if trained_pair
            else f"{model_path} was trained on single texts: remove 'text_pair_column_name'."
        )


def load_model(model_args, label_names: list[str], problem_type: str, load_kwargs: dict, threshold: float = 0.5):
    """`AutoModelForSequenceClassification` with the label names, problem type (and multi-label threshold) in its
    config, so the saved model works with `pipeline("text-classification")` as it is."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from .data import resolve_path

    id2label = dict(enumerate(label_names))
    path = resolve_path(model_args.model_name_or_path)
    config = AutoConfig.from_pretrained(
        resolve_path(model_args.config_name) or path,
        id2label=id2label,  # sets num_labels too
        label2id={name: i for i, name in id2label.items()},
        problem_type=problem_type,
        **load_kwargs,
    )
    if model_args.classifier_dropout is not None:
        config.classifier_dropout = model_args.classifier_dropout
    if problem_type == MULTI_LABEL:
        config.multi_label_threshold = threshold
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **load_kwargs
        )
    except RuntimeError as err:
        error = other_head_size(err, model_args.model_name_or_path, len(label_names))
        if error is None:
            raise
        raise error from None


def configure_tokenizer(tokenizer, truncation_side: str, max_length: int | None = None):
    """Set the side long texts are cut on and the length they are cut to (`max_seq_length`); both are saved with the
    tokenizer, so `pipeline("text-classification", ..., truncation=True)` cuts as training and prediction do."""
    settings = {"truncation_side": truncation_side}
    if max_length is not None:
        settings["model_max_length"] = max_length
    for key, value in settings.items():
        setattr(tokenizer, key, value)
        tokenizer.init_kwargs[key] = value  # what save_pretrained writes to tokenizer_config.json
    return tokenizer


def tokenize_split(split, tokenizer, max_length: int, num_proc=None, desc: str = ""):
    """Model inputs, `labels`, `length` (tokens kept) and `num_tokens` (tokens before truncation) per text.

    Texts (pairs: longest first) are truncated to `max_length` on the tokenizer's `truncation_side`.
    """
    columns = split.column_names
    has_pair = "text_pair" in columns

    def encode(batch):
        texts = (batch["text"], batch["text_pair"]) if has_pair else (batch["text"],)
        out = dict(tokenizer(*texts, truncation=True, max_length=max_length))
        full = tokenizer(*texts, truncation=False, verbose=False)["input_ids"]
        out["length"] = [len(ids) for ids in out["input_ids"]]
        out["num_tokens"] = [len(ids) for ids in full]
        out["labels"] = batch["labels"]
        return out

    return split.map(encode, batched=True, remove_columns=columns, num_proc=num_proc, desc=desc or "Tokenising")


def truncation_report(split, name: str, max_length: int, side: str) -> int:
    """Log how many texts were longer than `max_length` tokens (and so truncated); returns that count."""
    lengths = np.asarray(split["num_tokens"])
    cut = int((lengths > max_length).sum())
    if cut:
        logger.warning(
            f"{name}: {cut} of {len(lengths)} texts ({100 * cut / len(lengths):.1f} %) are longer than "
            f"max_seq_length={max_length} tokens and were truncated on the {side} (truncation_side); the longest "
            f"has {int(lengths.max())} tokens."
        )
    return cut


def collator(tokenizer, max_length: int | None = None):
    """Dynamic padding (or padding to `max_length`); multi-hot labels come out as float tensors."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(
        tokenizer, padding="max_length" if max_length else True, max_length=max_length or None
    )


# ---------------------------------------------------------------------------------------------------------------
# Losses and class weights (pure)


def multi_label_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    pos_weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Binary cross-entropy with logits summed over every (text, label) entry, divided by the entries of the step.

    `logits`, `labels`: `(batch, num_labels)`, labels 0/1 (entries equal to -100 are ignored). `num_items_in_batch`
    is the Trainer's count of label entries != -100 over all accumulated micro-batches and ranks, i.e.
    texts x labels; without it, the entries of this batch. `pos_weight`: per-label weight of the positive term.
    `label_smoothing` s moves targets to `y (1 - s) + s / 2`.
    """
    if logits.shape != labels.shape:
        raise ValueError(f"multi-label logits and labels must have one shape, got {logits.shape} and {labels.shape}")
    labels = labels.to(logits.device)
    mask = labels.ne(-100)  # shape: (batch, num_labels)
    target = torch.where(mask, labels.float(), 0.0)  # shape: (batch, num_labels)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if pos_weight is not None:
        pos_weight = pos_weight.to(logits.device, torch.float32)
    # shape: (batch, num_labels)
    entries = F.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=pos_weight, reduction="none")
    loss = torch.where(mask, entries, 0.0).sum()
    if num_items_in_batch is None:
        num_items_in_batch = mask.sum()
    count = torch.as_tensor(num_items_in_batch, device=loss.device).clamp(min=1)  # no label: 0, not NaN
    return loss / count


def balanced_weights(labels: Sequence, num_labels: int, multi_label: bool) -> list[float]:
    """`balanced` class weights from training labels (class ids, possibly nested with -100, or multi-hot rows).

    Single-label: n / (num_labels x n_c) (scikit-learn's `balanced`); a class absent from the labels gets 1.
    Multi-label: negatives / positives per label (BCE `pos_weight`); a label never positive gets 1.
    """
    if multi_label:
        rows = np.asarray(labels, dtype=np.float64).reshape(-1, num_labels)
        positives = (rows == 1).sum(0)
        negatives = (rows == 0).sum(0)
        return [float(n / p) if p else 1.0 for p, n in zip(positives, negatives)]
    flat = np.concatenate([np.ravel(np.asarray(x)) for x in labels]) if len(labels) else np.zeros(0)
    flat = flat[flat != -100].astype(np.int64)
    counts = np.bincount(flat, minlength=num_labels)[:num_labels]
    total = counts.sum()
    return [float(total / (num_labels * c)) if c else 1.0 for c in counts]


def class_weight_tensor(spec, train_dataset, model) -> torch.Tensor | None:
    """The weight tensor for `class_weights` (`"balanced"` reads the training set's `labels` column)."""
    if spec is None:
        return None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None:  # a model of one's own: a list is taken as it is, one weight per output
        if spec == "balanced":
            raise RecipeError(
                f"class_weights 'balanced' needs the number of labels from the model's config.num_labels, and "
                f"{type(base).__name__} has no config: give class_weights as a list, one weight per label."
            )
        return torch.tensor([float(w) for w in spec], dtype=torch.float32)
    num_labels = int(config.num_labels)
    multi = getattr(config, "problem_type", None) == MULTI_LABEL
    names = [str(config.id2label[i]) for i in sorted(config.id2label, key=int)] if config.id2label else []
    if spec == "balanced":
        if train_dataset is None or "labels" not in getattr(train_dataset, "column_names", ()):
            raise RecipeError(
                "class_weights 'balanced' counts the training labels: it needs a datasets.Dataset with a 'labels' "
                "column as train_dataset."
            )
        weights = balanced_weights(train_dataset["labels"], num_labels, multi)
    else:
        weights = [float(w) for w in spec]
        if len(weights) != num_labels:
            raise RecipeError(
                f"class_weights has {len(weights)} values but the model has {num_labels} labels; give one per label, "
                f"in this order: {', '.join(names)}."
            )
    shown = ", ".join(f"{n}={w:.3g}" for n, w in zip(names or range(num_labels), weights))
    logger.info(f"class weights ({'BCE pos_weight' if multi else 'cross-entropy'}): {shown}")
    return torch.tensor(weights, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    """The pipeline's softmax, in float32."""
    x = x.astype(np.float32)
    shifted = np.exp(x - x.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def decide(logits: np.ndarray, problem_type: str, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, probabilities): class ids `(N,)` and softmax, or 0/1 `(N, C)` and sigmoid >= threshold."""
    logits = np.asarray(logits, dtype=np.float32)
    if problem_type == MULTI_LABEL:
        probs = _sigmoid(logits)
        return (probs >= threshold).astype(np.int64), probs
    probs = _softmax(logits)
    return probs.argmax(-1), probs


def _prf(tp, n_pred, n_true):
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def classification_report(gold, predicted, label_names: Sequence[str], multi_label: bool = False) -> dict:
    """Per-class `{"precision", "recall", "f1", "support"}`, then `"micro avg"`, `"macro avg"`, `"weighted avg"`.

    `gold`/`predicted`: class ids `(N,)`, or 0/1 indicator rows `(N, C)` for multi-label. Undefined scores are 0.
    """
    num = len(label_names)
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    if multi_label:
        gold_hot, pred_hot = gold.astype(bool), predicted.astype(bool)
    else:
        gold_hot = np.eye(num, dtype=bool)[gold.astype(np.int64)] if len(gold) else np.zeros((0, num), bool)
        pred_hot = np.eye(num, dtype=bool)[predicted.astype(np.int64)] if len(gold) else np.zeros((0, num), bool)
    tp = (gold_hot & pred_hot).sum(0)
    n_pred, n_true = pred_hot.sum(0), gold_hot.sum(0)
    report = {}
    for i, name in enumerate(label_names):
        p, r, f = _prf(tp[i], n_pred[i], n_true[i])
        report[name] = {"precision": p, "recall": r, "f1": f, "support": int(n_true[i])}
    p, r, f = _prf(tp.sum(), n_pred.sum(), n_true.sum())
    total = int(n_true.sum())
    report["micro avg"] = {"precision": p, "recall": r, "f1": f, "support": total}
    rows = [report[name] for name in label_names]
    for avg, weights in (("macro avg", np.ones(num)), ("weighted avg", n_true.astype(np.float64))):
        denominator = weights.sum()
        report[avg] = {
            key: float(sum(w * row[key] for w, row in zip(weights, rows)) / denominator) if denominator else 0.0
            for key in ("precision", "recall", "f1")
        }
        report[avg]["support"] = total
    return report


def compute_scores(logits, label_ids, label_names: Sequence[str], problem_type: str, threshold: float = 0.5) -> dict:
    """Trainer-ready scores: `accuracy` (exact match for multi-label), `micro_f1`, `macro_f1`, `weighted_f1`,
    `macro_precision`, `macro_recall`, and per class `{name}_precision/_recall/_f1/_number` (`_number`: support;
    a class whose keys would clash with these is left out of the per-class keys, not of the averages)."""
    multi = problem_type == MULTI_LABEL
    predicted, _ = decide(logits, problem_type, threshold)
    gold = np.asarray(label_ids)
    if multi:
        gold = (gold == 1).astype(np.int64)
        accuracy = float((predicted == gold).all(-1).mean()) if len(gold) else 0.0
    else:
        accuracy = float((predicted == gold).mean()) if len(gold) else 0.0
    report = classification_report(gold, predicted, label_names, multi)
    scores = {
        "accuracy": accuracy,
        "micro_f1": report["micro avg"]["f1"],
        "macro_f1": report["macro avg"]["f1"],
        "weighted_f1": report["weighted avg"]["f1"],
        "macro_precision": report["macro avg"]["precision"],
        "macro_recall": report["macro avg"]["recall"],
    }
    for name in label_names:
        keys = {f"{name}_{k}": report[name][k] for k in ("precision", "recall", "f1")}
        keys[f"{name}_number"] = report[name]["support"]
        if not set(keys) & set(scores):
            scores.update(keys)
    return scores


def metric_names(label_names: Sequence[str], problem_type: str) -> list[str]:
    """The keys `compute_scores` returns for these classes (see `seqft.metrics.metric_names`)."""
    num = len(label_names)
    gold = np.eye(num, dtype=np.int64) if problem_type == MULTI_LABEL else np.arange(num)
    return sorted(compute_scores(np.eye(num) * 10.0, gold, label_names, problem_type))


def _stacked(outputs) -> np.ndarray:
    """Trainer outputs as one array: the first of several outputs; batches joined (`eval_do_concat_batches` off
    gives a list of per-batch arrays)."""
    if isinstance(outputs, tuple):
        outputs = outputs[0]
    if isinstance(outputs, list):
        return np.concatenate([np.asarray(batch[0] if isinstance(batch, tuple) else batch) for batch in outputs])
    return np.asarray(outputs)


def build_compute_metrics(id2label: Mapping, problem_type: str, threshold: float = 0.5):
    """A `Trainer(compute_metrics=...)` callable over `(N, C)` logits and `(N,)` ids or `(N, C)` multi-hot labels."""
    names = [str(id2label[k]) for k in sorted(id2label, key=int)]

    def compute_metrics(eval_prediction) -> dict:
        logits, label_ids = _stacked(eval_prediction.predictions), _stacked(eval_prediction.label_ids)
        return compute_scores(logits, label_ids, names, problem_type, threshold)

    return compute_metrics


def confusion(gold: Sequence[int], predicted: Sequence[int], label_names: Sequence[str]):
    """`seqft.plots.Confusion` of single-label predictions: rows gold classes, columns predicted ones."""
    from .plots import Confusion

    num = len(label_names)
    matrix = np.zeros((num, num), dtype=np.int64)
    np.add.at(matrix, (np.asarray(gold, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return Confusion(list(label_names), list(label_names), matrix)


def write_test_outputs(
    output_dir: str, raw, tokenized, logits, id2label: Mapping, problem_type: str, threshold: float = 0.5
) -> dict[str, str]:
    """After `trainer.predict` on the (length-sorted) test set: `test_predictions.jsonl` in the input's order
    (`source`, `text`, [`text_pair`], `gold`, `predicted`, `score`), the per-class report and, for single-label,
    the confusion matrix PNG. Returns {kind: path}."""
    from .plots import plot_confusion_matrix

    names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    order = np.argsort(np.asarray(tokenized["example_id"]), kind="stable")
    predicted, probs = decide(_stacked(logits)[order], problem_type, threshold)
    gold = np.asarray(raw["labels"])
    multi = problem_type == MULTI_LABEL
    os.makedirs(output_dir, exist_ok=True)
    paths = {"predictions": os.path.join(output_dir, PREDICTIONS_FILE)}
    with open(paths["predictions"], "w", encoding="utf-8") as fh:
        for i in range(len(raw)):
            record = {"source": raw[i]["source"], "text": raw[i]["text"]}
            if "text_pair" in raw.column_names:
                record["text_pair"] = raw[i]["text_pair"]
            if multi:
                record["gold"] = [names[k] for k in np.flatnonzero(gold[i] == 1)]
                record["predicted"] = [names[k] for k in np.flatnonzero(predicted[i])]
                record["scores"] = {name: round(float(p), 6) for name, p in zip(names, probs[i])}
            else:
                record.update(gold=names[int(gold[i])], predicted=names[int(predicted[i])])
                record["score"] = round(float(probs[i, predicted[i]]), 6)
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    gold_ids = (gold == 1).astype(np.int64) if multi else gold
    report = classification_report(gold_ids, predicted, names, multi)
    paths["report"] = os.path.join(output_dir, REPORT_FILE.format(split="test"))
    with open(paths["report"], "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    if not multi:
        png = plot_confusion_matrix(
            confusion(gold, predicted, names),
            os.path.join(output_dir, CONFUSION_FILE.format(split="test")),
            title="Classes: gold vs predicted (test)",
        )
        if png:
            paths["confusion_matrix"] = png
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Prediction


class TextClassifier:
    """A fine-tuned sequence classifier (full, merged or adapter-only directory) with its tokenizer, truncating as
    in training (`max_seq_length` from the model's `seqft_recipe.json`, the tokenizer's `truncation_side`)."""

    def __init__(self, model_dir, *, device=None, batch_size: int = 32, max_seq_length: int | None = None, **kwargs):
        from transformers import AutoModelForSequenceClassification

        from . import data as seqdata
        from .predict import load_model, position_limit, read_recipe, resolve_device

        model_dir = os.fspath(model_dir)
        if batch_size < 1:
            raise SeqFTError(f"batch_size = {batch_size}: expected an integer >= 1.")
        self.device = resolve_device(device)
        self.model = load_model(model_dir, AutoModelForSequenceClassification, **kwargs)
        self.model.to(self.device).eval()
        self.tokenizer = seqdata.load_tokenizer(model_dir)
        self.batch_size = batch_size
        config = self.model.config
        self.labels = [str(config.id2label[k]) for k in sorted(config.id2label, key=int)]
        self.problem_type = getattr(config, "problem_type", None) or SINGLE_LABEL
        self.threshold = float(getattr(config, "multi_label_threshold", 0.5))
        limit = position_limit(config, self.model) or 512
        self.max_length = (
            max_seq_length
            or read_recipe(model_dir).get("max_seq_length")
            or min(self.tokenizer.model_max_length, 512, limit)
        )
        if self.max_length > limit:  # a text cut there would overflow the position embeddings, a bare traceback
            raise SeqFTError(
                f"max_seq_length = {self.max_length} exceeds the {limit} positions the model takes: use at most {limit}."
            )

    def predict(self, texts: str | Sequence[str], text_pairs: Sequence[str] | None = None) -> list[dict]:
        """`{"label", "score"}` per text (multi-label: also `labels` >= threshold and every label's `scores`)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(text_pairs)} text pairs.")
        results: list[dict | None] = [None] * len(texts)
        blank = [i for i, text in enumerate(texts) if not text.strip()]
        for i in blank:  # nothing to classify: no label, and the output stays aligned with the input
            results[i] = {"label": None, "score": None}
        order = sorted(set(range(len(texts))) - set(blank), key=lambda i: -len(texts[i]))
        self._report_truncation(texts, text_pairs, order)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            args = [[texts[i] for i in batch]]
            if text_pairs is not None:
                args.append([text_pairs[i] for i in batch])
            encoded = self.tokenizer(
                *args, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(**{k: v for k, v in encoded.items() if k in MODEL_INPUTS})["logits"]
            _, probs = decide(logits.float().cpu().numpy(), self.problem_type, self.threshold)
            for row, i in enumerate(batch):
                results[i] = self._result(probs[row])
        return results

    def _report_truncation(self, texts, text_pairs, indices) -> None:
        """Log how many texts are longer than `max_seq_length` (cut, as in training). A token spans at least one
        character, so only texts (with their pair) longer than that many characters are tokenised to check."""
        long = [i for i in indices if len(texts[i]) + len(text_pairs[i] if text_pairs else "") > self.max_length - 3]
        cut = 0
        for i in long:
            pair = [text_pairs[i]] if text_pairs is not None else []
            cut += len(self.tokenizer(texts[i], *pair, truncation=False)["input_ids"]) > self.max_length
        if cut:
            logger.warning(
                f"{cut} of {len(texts)} texts are longer than max_seq_length ({self.max_length} tokens) and were cut "
                f"on the {self.tokenizer.truncation_side} (truncation_side), as in training."
            )

    def _result(self, probs: np.ndarray) -> dict:
        top = int(probs.argmax())
        out = {"label": self.labels[top], "score": float(probs[top])}
        if self.problem_type == MULTI_LABEL:
            out["labels"] = [name for name, p in zip(self.labels, probs) if p >= self.threshold]
            out["scores"] = {name: float(p) for name, p in zip(self.labels, probs)}
        return out


def parse_rows(lines: Sequence[str], name: str, input_format: str) -> list[dict]:
    """Inputs of `python -m seqft.predict`: JSON Lines rows with `text` (and `text_pair`), or one text per line."""
    from .predict import JSONL_SUFFIXES

    suffix = Path(name).suffix.lower() if name != "-" else ""
    if input_format == "conll":
        raise DataError(f"{name}: a sequence classifier reads text or JSON Lines, not CoNLL columns.")
    if input_format == "auto" and suffix in (".csv", ".tsv"):  # as text, its header and label column would be read
        raise DataError(
            f"{name}: seqft.predict reads one text per line or JSON Lines, not {suffix[1:].upper()} columns: write the "
            'texts as JSON Lines ({"text": ..., "text_pair": ...}), or pass --input-format text to read each line '
            "whole."
        )
    head = next((line for line in lines if line.strip()), "")
    jsonl = input_format == "jsonl" or (
        input_format == "auto" and (suffix in JSONL_SUFFIXES or head.lstrip().startswith("{"))
    )
    rows = []
    for n, line in enumerate(lines, 1):
        where = f"{name}:{n}"
        if not jsonl:
            rows.append({"source": where, "text": line})
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: invalid JSON ({err.msg} at column {err.colno}).") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise DataError(f"{where}: a row needs 'text' (a string), optionally 'text_pair'; got {line[:60]!r}.")
        if "text_pair" in row and not isinstance(row["text_pair"], str):
            raise DataError(f"{where}: 'text_pair' must be a string.")
        rows.append({"source": where, **row})
    if not rows:
        raise DataError(f"{name}: no texts found.")
    return rows


def predict_cli(args) -> int:
    """`python -m seqft.predict MODEL_DIR ...` for a sequence classifier (arguments of `seqft.predict`)."""
    from .predict import STDIN, read_lines

    if args.format != "jsonl":
        raise SeqFTError(f"--format {args.format}: a sequence classifier writes JSON Lines (--format jsonl).")
    if args.stride is not None or args.doc_context is not None:
        raise SeqFTError("--stride and --doc-context apply to token classification; this is a sequence classifier.")
    paths = args.inputs or ["-"]
    rows = []
    for path in paths:
        rows.extend(parse_rows(read_lines(path), STDIN if path == "-" else path, args.input_format))
    pairs = [r.get("text_pair") for r in rows]
    if any(p is not None for p in pairs) and any(p is None for p in pairs):
        raise DataError("some rows have a 'text_pair' and others not: give every row a pair, or none.")
    from .predict import read_recipe, with_inputs

    trained_on = read_recipe(args.model_dir).get("text_pair_column_name")
    if rows and (trained_on is not None) != (pairs[0] is not None):
        raise DataError(
            f"the model was trained on text pairs ('{trained_on}' as the second text): give each row a "
            '"text_pair" (JSON Lines: {"text": ..., "text_pair": ...}).'
            if trained_on
            else "the model was trained on single texts: remove 'text_pair' from the rows."
        )
    classifier = TextClassifier(
        args.model_dir, device=args.device, batch_size=args.batch_size, max_seq_length=args.max_seq_length
    )
    results = classifier.predict([r["text"] for r in rows], pairs if pairs and pairs[0] is not None else None)
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for row, result in zip(rows, results):  # a gold `label` or `score` in the row is kept as `input_<key>`
            out.write(json.dumps(with_inputs(row, result), ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return len(results)


def usage_snippet(repo_id: str, is_adapter: bool) -> str:
    """Model-card usage: the stock text-classification pipeline (adapters through seqft's loader)."""
    if not is_adapter:
        return "\n".join(
            [
                "from transformers import pipeline",
                "",
                f'classifier = pipeline("text-classification", model="{repo_id}")',
                'print(classifier("Stocks rallied after the central bank held rates."))',
            ]
        )
    from .model_card import fetch_lines

    download, path_line = fetch_lines(repo_id)
    return "\n".join(
        [
            *download,
            "from transformers import AutoTokenizer, pipeline",
            "",
            "from seqft.adapters import load_adapter_model",
            "",
            path_line,
            "model = load_adapter_model(path)  # the base encoder named in adapter_config.json + adapter + head",
            'classifier = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(path))',
            'print(classifier("Stocks rallied after the central bank held rates."))',
        ]
    )
