"""Metrics for sequence labelling: seqeval entity scores (conlleval-like and strict), token accuracy, per-type reports.

Entities are extracted by seqeval (``get_entities`` for the default, conlleval-like mode; ``seqeval.scheme.Entities``
for strict mode) and counted here, so one extraction serves micro and per-type scores and nothing warns: an
undefined precision or recall (no predicted or no gold entities) is 0, as seqeval's ``zero_division=0`` gives.
Every returned value is a plain Python ``float`` or ``int``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, IOBES, Entities

from .labels import SCHEMES, convert, entity_types

# seqeval's strict-mode scheme per seqft scheme; IOB1 is converted to IOB2 first (seqeval has no strict IOB1).
_STRICT_SCHEMES = {"IOB1": IOB2, "IOB2": IOB2, "BIOES": IOBES}
IGNORE_INDEX = -100

Entity = tuple[int, str, int, int]  # (sentence, type, start, end)


def _check_inputs(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown label scheme {scheme!r}: expected one of {', '.join(SCHEMES)}.")
    if len(true) != len(pred):
        raise ValueError(f"Got {len(true)} gold sequences but {len(pred)} predicted ones.")
    for index, (gold, guess) in enumerate(zip(true, pred)):
        if len(gold) != len(guess):
            raise ValueError(f"Sequence {index}: {len(gold)} gold tags but {len(guess)} predicted ones.")


def _default_entities(sequences: Sequence[Sequence[str]]) -> set[Entity]:
    """Entities as seqeval's default (conlleval-like) mode reads them, one sentence at a time."""
    return {
        (index, type_, start, end)
        for index, tags in enumerate(sequences)
        for type_, start, end in get_entities(list(tags))
    }


def _strict_entities(sequences: Sequence[Sequence[str]], scheme: str) -> set[Entity]:
    """Entities as seqeval's strict mode reads them: only well-formed chunks of the scheme count."""
    if scheme == "IOB1":
        sequences = [convert(tags, "IOB1", "IOB2") for tags in sequences]
    found = Entities([list(tags) for tags in sequences], _STRICT_SCHEMES[scheme])
    return {entity.to_tuple() for sentence in found.entities for entity in sentence}


def _prf(true_positives: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    precision = true_positives / n_pred if n_pred else 0.0
    recall = true_positives / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def _totals(counts: Mapping[str, tuple[int, int, int]]) -> tuple[int, int, int]:
    """Micro totals (true_positives, n_pred, n_true) over all keys."""
    return tuple(sum(row[i] for row in counts.values()) for i in range(3))


def _report(counts: Mapping[str, tuple[int, int, int]]) -> dict[str, dict[str, float | int]]:
    """Per-key and averaged P/R/F1/support from ``{key: (true_positives, n_pred, n_true)}``."""
    report: dict[str, dict[str, float | int]] = {}
    for key in sorted(counts):
        tp, n_pred, n_true = counts[key]
        precision, recall, f1 = _prf(tp, n_pred, n_true)
        report[key] = {"precision": precision, "recall": recall, "f1": f1, "support": int(n_true)}
    per_key = list(report.values())
    total = sum(row["support"] for row in per_key)
    precision, recall, f1 = _prf(*_totals(counts))
    report["micro avg"] = {"precision": precision, "recall": recall, "f1": f1, "support": total}
    for name, weights in (("macro avg", [1] * len(per_key)), ("weighted avg", [row["support"] for row in per_key])):
        denominator = sum(weights)
        report[name] = {
            metric: float(sum(w * row[metric] for w, row in zip(weights, per_key)) / denominator)
            if denominator
            else 0.0
            for metric in ("precision", "recall", "f1")
        }
        report[name]["support"] = total
    return report


def _entity_counts(gold: set[Entity], guess: set[Entity]) -> dict[str, tuple[int, int, int]]:
    n_true = Counter(entity[1] for entity in gold)
    n_pred = Counter(entity[1] for entity in guess)
    hits = Counter(entity[1] for entity in gold & guess)
    return {type_: (hits[type_], n_pred[type_], n_true[type_]) for type_ in n_true.keys() | n_pred.keys()}


def _tag_counts(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, tuple[int, int, int]]:
    n_true, n_pred, hits = Counter(), Counter(), Counter()
    for gold, guess in zip(true, pred):
        n_true.update(gold)
        n_pred.update(tag for tag in guess if tag is not None)  # None: no prediction (a truncated word)
        hits.update(a for a, b in zip(gold, guess) if a == b)
    return {tag: (hits[tag], n_pred[tag], n_true[tag]) for tag in n_true.keys() | n_pred.keys()}


def sequence_metrics(
    true: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    scheme: str,
    entity_level: bool = False,
    types: Sequence[str] = (),
) -> dict[str, float]:
    """Scores of `pred` against `true` (sentences of tags in `scheme`), ready for ``Trainer`` logs.

    Prefix schemes: ``precision``/``recall``/``f1`` over entities in seqeval's default (conlleval-like) mode, where
    e.g. an IOB2 entity starting with ``I-X`` still counts; ``strict_precision``/``strict_recall``/``strict_f1`` in
    seqeval's strict mode, where only chunks well-formed in the scheme count (IOB2 for IOB1 data, after converting;
    every IOB1 sequence is well-formed, so for IOB1 strict equals default); token ``accuracy``; and with
    `entity_level`, ``{TYPE}_precision``/``_recall``/``_f1`` (default mode) and ``{TYPE}_number`` (gold count),
    plus run_ner.py's ``overall_precision``/``_recall``/``_f1``/``_accuracy`` (the same values as the plain keys).
    The per-type keys cover the types seen in gold or predictions and every type in `types` (the model's entity
    types: one that neither has gets 0 and ``_number`` 0), so each evaluation of a run logs the same keys and
    `metric_for_best_model` may name any type.

    ``plain`` (POS-style) tags: only ``accuracy``, ``micro_f1`` and ``macro_f1`` over tags (the tags seen in gold or
    predictions; micro F1 equals accuracy); `entity_level` is ignored. A predicted None (a word truncation left
    without a prediction) counts against accuracy and recall and is no class.
    """
    _check_inputs(true, pred, scheme)
    n_tokens = sum(len(gold) for gold in true)
    n_correct = sum(a == b for gold, guess in zip(true, pred) for a, b in zip(gold, guess))
    metrics: dict[str, float] = {"accuracy": float(n_correct / n_tokens) if n_tokens else 0.0}
    if scheme == "plain":
        report = _report(_tag_counts(true, pred))
        metrics["micro_f1"] = report["micro avg"]["f1"]
        metrics["macro_f1"] = report["macro avg"]["f1"]
        return metrics

    counts = _entity_counts(_default_entities(true), _default_entities(pred))
    strict_counts = _entity_counts(_strict_entities(true, scheme), _strict_entities(pred, scheme))
    for prefix, per_type in (("", counts), ("strict_", strict_counts)):
        precision, recall, f1 = _prf(*_totals(per_type))
        metrics.update({f"{prefix}precision": precision, f"{prefix}recall": recall, f"{prefix}f1": f1})
    if entity_level:
        # run_ner.py's names for the same four scores, so that its scripts and `metric_for_best_model` carry over
        metrics.update({f"overall_{key}": metrics[key] for key in ("precision", "recall", "f1", "accuracy")})
        for type_ in types:
            counts.setdefault(type_, (0, 0, 0))
        for type_, row in _report(counts).items():
            if type_.endswith(" avg"):
                continue
            metrics.update({f"{type_}_{key}": value for key, value in row.items() if key != "support"})
            metrics[f"{type_}_number"] = row["support"]
    return metrics


def model_entity_types(label_names, scheme: str) -> list[str]:
    """The entity types of a model's labels (none for plain tags)."""
    return [] if scheme == "plain" else entity_types(label_names)


def metric_names(label_names: Sequence[str], scheme: str, entity_level: bool = False) -> list[str]:
    """The keys `sequence_metrics` returns for data with these labels (every entity type present), e.g. to check
    `metric_for_best_model` before training rather than at the first evaluation."""
    return sorted(sequence_metrics([[]], [[]], scheme, entity_level, types=model_entity_types(label_names, scheme)))


def classification_report_dict(
    true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str, strict: bool = False
) -> dict[str, dict[str, float | int]]:
    """Per-type ``{"precision", "recall", "f1", "support"}`` plus ``"micro avg"``, ``"macro avg"``, ``"weighted avg"``.

    Types are entity types (default mode, or strict mode with `strict`), or the tags themselves for ``plain``;
    they come sorted, then the averages. JSON-serialisable, for results files and model cards.
    """
    _check_inputs(true, pred, scheme)
    if scheme == "plain":
        return _report(_tag_counts(true, pred))
    if strict:
        return _report(_entity_counts(_strict_entities(true, scheme), _strict_entities(pred, scheme)))
    return _report(_entity_counts(_default_entities(true), _default_entities(pred)))


class AlignedTags(NamedTuple):
    """Tag sequences aligned with the labelled positions; unpacks as ``predictions, labels`` (argument order)."""

    predictions: list[list[str]]
    labels: list[list[str]]


def align_predictions(predictions: Any, label_ids: Any, id2label: Mapping[int, str]) -> AlignedTags:
    """Turn model outputs into tag sequences, keeping only positions whose label id is not -100.

    `predictions` are logits ``(N, T, C)`` (arg-maxed) or label ids ``(N, T)``; `label_ids` are ``(N, T)``.
    `id2label` keys may be ints or strings (as in a reloaded config). Returns ``AlignedTags(predictions, labels)``:
    mind the order when unpacking, or use the field names.
    """
    predictions, label_ids = np.asarray(predictions), np.asarray(label_ids)
    if predictions.ndim == label_ids.ndim + 1:
        predictions = predictions.argmax(axis=-1)  # shape: (N, T, C) -> (N, T)
    if label_ids.ndim != 2 or predictions.shape != label_ids.shape:
        raise ValueError(
            f"Expected label ids of shape (N, T) and predictions of shape (N, T) or (N, T, C); got label ids "
            f"{label_ids.shape} and predictions {np.asarray(predictions).shape}."
        )
    lookup = {int(key): value for key, value in id2label.items()}

    def tag(label_id: int) -> str:
        if label_id not in lookup:
            raise ValueError(f"Label id {label_id} is not in id2label (known ids: {sorted(lookup)}).")
        return lookup[label_id]

    aligned = AlignedTags([], [])
    for guess_row, gold_row in zip(predictions, label_ids):
        keep = gold_row != IGNORE_INDEX
        aligned.predictions.append([tag(int(i)) for i in guess_row[keep]])
        aligned.labels.append([tag(int(i)) for i in gold_row[keep]])
    return aligned


def build_compute_metrics(
    id2label: Mapping[int, str], scheme: str, entity_level: bool = False
) -> Callable[[Any], dict[str, float]]:
    """A ``Trainer(compute_metrics=...)`` callable: aligns an ``EvalPrediction`` and returns ``sequence_metrics``.

    When the model returns several outputs (``predictions`` is a tuple), the first one is used.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown label scheme {scheme!r}: expected one of {', '.join(SCHEMES)}.")
    id2label = dict(id2label)
    types = model_entity_types(id2label.values(), scheme)

    def compute_metrics(eval_prediction: Any) -> dict[str, float]:
        predictions, label_ids = eval_prediction.predictions, eval_prediction.label_ids
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        if isinstance(label_ids, tuple):
            label_ids = label_ids[0]
        aligned = align_predictions(predictions, label_ids, id2label)
        return sequence_metrics(aligned.labels, aligned.predictions, scheme, entity_level, types)

    return compute_metrics
