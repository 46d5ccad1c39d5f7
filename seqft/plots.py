"""Plots for the model card: training curves, per-type F1 bars and an entity-type confusion matrix (PNG files).

Figures are drawn with matplotlib's object API on an explicit Agg canvas: nothing here imports `pyplot` or switches
the process-wide backend, so writing a card from a notebook or a GUI session leaves its plotting alone.
Every `plot_*` function returns the path it wrote, or `None` when there is nothing to draw.

`entity_confusion` and `read_predictions` are pure and need no matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities

MISSED = "missed"
SPURIOUS = "spurious"
SPLIT_COLOURS = {"validation": "#4C72B0", "test": "#DD8452"}


# ---------------------------------------------------------------------------------------------------------------
# Data


def read_predictions(path: str) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tag sequences from a `word gold predicted` file (seqft's `test_predictions.txt`).

    One token per line, the last two columns are the gold and the predicted tag, a blank line ends a sentence.
    """
    gold, pred, sentence_gold, sentence_pred = [], [], [], []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            columns = line.split()
            if not columns:
                if sentence_gold:
                    gold.append(sentence_gold)
                    pred.append(sentence_pred)
                sentence_gold, sentence_pred = [], []
                continue
            if len(columns) < 3:
                raise ValueError(f"{path}:{number}: expected `word gold predicted`, got {line.rstrip()!r}.")
            sentence_gold.append(columns[-2])
            sentence_pred.append(columns[-1])
    if sentence_gold:
        gold.append(sentence_gold)
        pred.append(sentence_pred)
    return gold, pred


@dataclass(frozen=True)
class Confusion:
    """Counts with `rows` (gold) x `cols` (predicted) labels: `matrix[i, j]` = items of gold `rows[i]` predicted
    as `cols[j]`."""

    rows: list[str]
    cols: list[str]
    matrix: np.ndarray

    def count(self, gold: str, predicted: str) -> int:
        return int(self.matrix[self.rows.index(gold), self.cols.index(predicted)])


def entity_confusion(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str = "IOB2") -> Confusion:
    """Which entity types get confused with which, including entities missed and entities invented.

    Entities are read as seqft's default metrics read them (seqeval's conlleval-like mode) and matched by exact
    span (sentence, first and last token):

    * a gold entity whose span the model also predicted counts at (gold type, predicted type): on the diagonal when
      the types agree, which makes the diagonal the per-type true positives of the F1 scores;
    * a gold entity with no predicted entity of the same span counts at (gold type, ``"missed"``);
    * a predicted entity with no gold entity of the same span counts at (``"spurious"``, predicted type).

    A boundary error therefore shows as one missed plus one spurious entity, as the F1 scores count it. Row sums
    are the gold entities per type, column sums (without ``"missed"``) the predicted ones.

    With ``scheme="plain"`` (POS-style tags without entities) the result is the token-level tag confusion, with no
    ``"missed"``/``"spurious"`` row or column.
    """
    if len(gold) != len(pred):
        raise ValueError(f"Got {len(gold)} gold sequences but {len(pred)} predicted ones.")
    for index, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"Sequence {index}: {len(g)} gold tags but {len(p)} predicted ones.")

    if scheme == "plain":
        tags = sorted({t for seq in gold for t in seq} | {t for seq in pred for t in seq})
        where = {tag: i for i, tag in enumerate(tags)}
        matrix = np.zeros((len(tags), len(tags)), dtype=np.int64)
        for g_seq, p_seq in zip(gold, pred):
            for g, p in zip(g_seq, p_seq):
                matrix[where[g], where[p]] += 1
        return Confusion(tags, list(tags), matrix)

    def spans(sequences):
        return {
            (index, start, end): type_
            for index, tags in enumerate(sequences)
            for type_, start, end in get_entities(list(tags))
        }

    gold_spans, pred_spans = spans(gold), spans(pred)
    types = sorted(set(gold_spans.values()) | set(pred_spans.values()))
    rows, cols = types + [SPURIOUS], types + [MISSED]
    r, c = {t: i for i, t in enumerate(rows)}, {t: i for i, t in enumerate(cols)}
    matrix = np.zeros((len(rows), len(cols)), dtype=np.int64)
    for span, gold_type in gold_spans.items():
        matrix[r[gold_type], c[pred_spans.get(span, MISSED)]] += 1
    for span, pred_type in pred_spans.items():
        if span not in gold_spans:
            matrix[r[SPURIOUS], c[pred_type]] += 1
    return Confusion(rows, cols, matrix)


def training_curves(log_history: Sequence[Mapping]) -> dict[str, list[tuple[float, float]]]:
    """(step, value) series from `Trainer.state.log_history` up to the end-of-training summary: ``loss``
    (training), ``eval_loss`` and the evaluation F1 (``eval_f1``, or ``eval_macro_f1`` for plain tags). Series with
    no point are left out."""
    series: dict[str, list[tuple[float, float]]] = {"loss": [], "eval_loss": [], "eval_f1": []}
    for entry in log_history:
        if "train_runtime" in entry:  # end-of-training summary: later evaluations are of the final model
            break
        step = entry.get("step")
        if step is None:
            continue
        if "loss" in entry:
            series["loss"].append((step, float(entry["loss"])))
        if "eval_loss" in entry:
            series["eval_loss"].append((step, float(entry["eval_loss"])))
        f1 = entry.get("eval_f1", entry.get("eval_macro_f1"))
        if f1 is not None:
            series["eval_f1"].append((step, float(f1)))
    return {name: points for name, points in series.items() if points}


# ---------------------------------------------------------------------------------------------------------------
# Figures


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path


def plot_training_curves(log_history: Sequence[Mapping], path: str) -> str | None:
    """Training and evaluation loss (left) and evaluation F1 (right) against the optimiser step."""
    series = training_curves(log_history)
    if not series:
        return None
    has_f1 = "eval_f1" in series
    figure = _figure(10 if has_f1 else 5.5, 3.6)
    axes = figure.subplots(1, 2 if has_f1 else 1, squeeze=False)[0]
    for name, label in (("loss", "training loss"), ("eval_loss", "validation loss")):
        if name in series:
            steps, values = zip(*series[name])
            axes[0].plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=label)
    axes[0].set(xlabel="step", ylabel="loss", title="Loss")
    axes[0].grid(alpha=0.3)
    if axes[0].has_data():
        axes[0].legend()
    if has_f1:
        steps, values = zip(*series["eval_f1"])
        axes[1].plot(steps, values, marker="o", markersize=3, color=SPLIT_COLOURS["validation"])
        axes[1].set(xlabel="step", ylabel="F1", title="Validation F1", ylim=(0, 1.02))
        axes[1].grid(alpha=0.3)
    return _save(figure, path)


def plot_per_type_f1(per_type_f1: Mapping[str, Mapping[str, float]], path: str) -> str | None:
    """Grouped bars: F1 per entity type, one bar per split. `per_type_f1` is ``{split: {type: f1}}``."""
    splits = [split for split, scores in per_type_f1.items() if scores]
    types = sorted({t for split in splits for t in per_type_f1[split]})
    if not types:
        return None
    figure = _figure(max(5.0, 0.6 * len(types) * len(splits) + 2), 3.6)
    ax = figure.subplots()
    width = 0.8 / len(splits)
    positions = np.arange(len(types))
    for i, split in enumerate(splits):
        values = [per_type_f1[split].get(t, 0.0) for t in types]
        bars = ax.bar(
            positions + (i - (len(splits) - 1) / 2) * width, values, width, label=split, color=SPLIT_COLOURS.get(split)
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(positions, types, rotation=45 if len(types) > 8 else 0, ha="right" if len(types) > 8 else "center")
    ax.set(ylabel="F1", ylim=(0, 1.1), title="F1 per entity type")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(figure, path)


def plot_confusion_matrix(
    confusion: Confusion, path: str, title: str = "Entity types: gold vs predicted"
) -> str | None:
    """Heat map of `confusion`, coloured by each row's share, annotated with counts."""
    matrix = confusion.matrix
    if matrix.size == 0 or matrix.sum() == 0:
        return None
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.55 * max(len(confusion.rows), len(confusion.cols)) + 2)
    figure = _figure(side + 1, side)
    ax = figure.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, label="share of row", shrink=0.8)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shares[i, j] > 0.6 else "black",
            )
    rotate = len(confusion.cols) > 6
    ax.set_xticks(
        range(len(confusion.cols)), confusion.cols, rotation=45 if rotate else 0, ha="right" if rotate else "center"
    )
    ax.set_yticks(range(len(confusion.rows)), confusion.rows)
    ax.set(xlabel="predicted", ylabel="gold", title=title)
    return _save(figure, path)
