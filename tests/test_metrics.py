"""Metrics: hand-computed examples, seqeval itself as the oracle, prediction alignment, the Trainer callable."""

import json
import random
import warnings

import numpy as np
import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2, IOBES
from transformers import EvalPrediction

from seqft.metrics import align_predictions, build_compute_metrics, classification_report_dict, sequence_metrics

# Gold and predicted IOB2: PER right; LOC predicted one token too long; ORG predicted as I- I- (counted by the
# default mode, not a well-formed IOB2 chunk so not by the strict mode). Tokens 5 and 6 (of 8) are wrong.
TRUE = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "I-ORG", "O"]]
PRED = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["I-ORG", "I-ORG", "O"]]


@pytest.mark.parametrize(
    "true, pred, scheme, expected",
    [
        (
            TRUE,
            PRED,
            "IOB2",
            dict(precision=2 / 3, recall=2 / 3, f1=2 / 3, strict_precision=1 / 2, strict_recall=1 / 3, strict_f1=0.4),
        ),
        # IOB1: gold has two adjacent PER entities, the prediction merges them into one.
        (
            [["I-PER", "I-PER", "B-PER", "O"]],
            [["I-PER", "I-PER", "I-PER", "O"]],
            "IOB1",
            dict(precision=0.0, recall=0.0, f1=0.0, strict_precision=0.0, strict_recall=0.0, strict_f1=0.0),
        ),
        # I- starts are well-formed in IOB1, so strict mode counts them (read as IOB2 strict they would be dropped).
        (
            [["I-PER", "O", "I-LOC"]],
            [["I-PER", "O", "I-LOC"]],
            "IOB1",
            dict(precision=1.0, recall=1.0, f1=1.0, strict_precision=1.0, strict_recall=1.0, strict_f1=1.0),
        ),
        (
            [["I-PER", "O", "I-LOC"]],
            [["I-PER", "O", "I-LOC"]],
            "IOB2",
            dict(precision=1.0, recall=1.0, f1=1.0, strict_precision=0.0, strict_recall=0.0, strict_f1=0.0),
        ),
        # BIOES: B- I- without E- is read as an entity by the default mode only.
        (
            [["B-PER", "E-PER", "S-LOC"]],
            [["B-PER", "I-PER", "S-LOC"]],
            "BIOES",
            dict(precision=1.0, recall=1.0, f1=1.0, strict_precision=1.0, strict_recall=0.5, strict_f1=2 / 3),
        ),
    ],
)
def test_sequence_metrics_hand_computed(true, pred, scheme, expected):
    metrics = sequence_metrics(true, pred, scheme)
    assert set(metrics) == set(expected) | {"accuracy"}
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key


def test_sequence_metrics_accuracy_and_entity_level():
    metrics = sequence_metrics(TRUE, PRED, "IOB2", entity_level=True)
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    # run_ner.py's keys for the overall scores, beside seqft's
    overall = {key: metrics[f"overall_{key}"] for key in ("precision", "recall", "f1", "accuracy")}
    assert overall == {key: metrics[key] for key in overall} and metrics["overall_f1"] == pytest.approx(2 / 3)
    per_type = {key: value for key, value in metrics.items() if key.split("_")[0] in ("PER", "LOC", "ORG")}
    assert per_type == {
        "LOC_precision": 0.0,
        "LOC_recall": 0.0,
        "LOC_f1": 0.0,
        "LOC_number": 1,
        "ORG_precision": 1.0,
        "ORG_recall": 1.0,
        "ORG_f1": 1.0,
        "ORG_number": 1,
        "PER_precision": 1.0,
        "PER_recall": 1.0,
        "PER_f1": 1.0,
        "PER_number": 1,
    }


def test_sequence_metrics_entity_level_includes_types_only_predicted_and_dashed_types():
    metrics = sequence_metrics([["B-geo-loc", "O"]], [["B-geo-loc", "B-MISC"]], "IOB2", entity_level=True)
    assert metrics["geo-loc_f1"] == 1.0 and metrics["geo-loc_number"] == 1
    assert metrics["MISC_precision"] == 0.0 and metrics["MISC_number"] == 0
    assert metrics["precision"] == pytest.approx(0.5) and metrics["recall"] == 1.0


def test_sequence_metrics_plain():
    metrics = sequence_metrics([["NN", "VB", "NN"]], [["NN", "NN", "NN"]], "plain", entity_level=True)
    # NN: P 2/3, R 1, F1 0.8; VB: F1 0 -> macro 0.4; micro F1 equals accuracy.
    assert metrics == pytest.approx({"accuracy": 2 / 3, "micro_f1": 2 / 3, "macro_f1": 0.4})


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES", "plain"])
@pytest.mark.parametrize("true, pred", [([], []), ([[]], [[]]), ([["O", "O"]], [["O", "O"]])])
def test_sequence_metrics_empty_gives_zeros_without_warnings(scheme, true, pred):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = sequence_metrics(true, pred, scheme, entity_level=True)
    expected_accuracy = 1.0 if true and true[0] else 0.0
    assert metrics.pop("accuracy") == expected_accuracy
    if scheme == "plain":
        assert metrics == {"micro_f1": expected_accuracy, "macro_f1": expected_accuracy}
    else:
        overall_accuracy = metrics.pop("overall_accuracy")
        assert overall_accuracy == expected_accuracy
        assert metrics == dict.fromkeys(
            ["precision", "recall", "f1", "strict_precision", "strict_recall", "strict_f1"]
            + ["overall_precision", "overall_recall", "overall_f1"],
            0.0,
        )


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES", "plain"])
def test_metrics_are_plain_python_numbers(scheme):
    tags = {"plain": ["NN", "VB"], "BIOES": ["S-PER", "O"], "IOB1": ["I-PER", "O"], "IOB2": ["B-PER", "O"]}[scheme]
    metrics = sequence_metrics([tags], [tags[::-1]], scheme, entity_level=True)
    report = classification_report_dict([tags], [tags[::-1]], scheme)
    assert all(type(value) in (float, int) for value in metrics.values())
    assert all(type(value) in (float, int) for row in report.values() for value in row.values())
    json.dumps(metrics)
    json.dumps(report)


@pytest.mark.parametrize(
    "scheme, strict_scheme, pool",
    [
        ("IOB2", IOB2, ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
        ("BIOES", IOBES, ["O", "O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC", "S-LOC"]),
    ],
)
def test_sequence_metrics_match_seqeval(scheme, strict_scheme, pool):
    """Our counting over seqeval's entities equals seqeval's own scores, default and strict mode."""
    rng = random.Random(scheme)
    for _ in range(50):
        lengths = [rng.randint(0, 8) for _ in range(rng.randint(1, 5))]
        true = [[rng.choice(pool) for _ in range(n)] for n in lengths]
        pred = [[rng.choice(pool) for _ in range(n)] for n in lengths]
        metrics = sequence_metrics(true, pred, scheme)
        strict = dict(mode="strict", scheme=strict_scheme, zero_division=0)
        assert metrics["precision"] == pytest.approx(precision_score(true, pred, zero_division=0))
        assert metrics["recall"] == pytest.approx(recall_score(true, pred, zero_division=0))
        assert metrics["f1"] == pytest.approx(f1_score(true, pred, zero_division=0))
        assert metrics["strict_precision"] == pytest.approx(precision_score(true, pred, **strict))
        assert metrics["strict_recall"] == pytest.approx(recall_score(true, pred, **strict))
        assert metrics["strict_f1"] == pytest.approx(f1_score(true, pred, **strict))


@pytest.mark.parametrize(
    "true, pred, scheme, error, match",
    [
        ([["O"]], [], "IOB2", ValueError, "Got 1 gold sequences but 0 predicted ones."),
        ([["O"], ["O", "O"]], [["O"], ["O"]], "IOB2", ValueError, "Sequence 1: 2 gold tags but 1 predicted ones."),
        ([["O"]], [["O"]], "IOBES", ValueError, "Unknown label scheme 'IOBES'"),
    ],
)
def test_sequence_metrics_errors(true, pred, scheme, error, match):
    with pytest.raises(error, match=match):
        sequence_metrics(true, pred, scheme)


def test_classification_report_dict():
    report = classification_report_dict(TRUE, PRED, "IOB2")
    assert list(report) == ["LOC", "ORG", "PER", "micro avg", "macro avg", "weighted avg"]
    assert report["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["ORG"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert report["micro avg"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert report["macro avg"]["f1"] == pytest.approx(2 / 3)

    strict = classification_report_dict(TRUE, PRED, "IOB2", strict=True)
    assert strict["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert strict["micro avg"] == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4, "support": 3})


def test_classification_report_dict_plain_and_weighted():
    report = classification_report_dict([["NN", "VB", "NN", "DT"]], [["NN", "NN", "NN", "DT"]], "plain")
    assert list(report) == ["DT", "NN", "VB", "micro avg", "macro avg", "weighted avg"]
    assert report["NN"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert report["weighted avg"]["f1"] == pytest.approx((1.0 * 1 + 0.8 * 2 + 0.0 * 1) / 4)
    assert report["micro avg"]["f1"] == pytest.approx(0.75)


ID2LABEL = {0: "O", 1: "B-PER", 2: "I-PER"}
# Label ids with -100 holes: special tokens, non-first subwords (an interior hole) and padding.
LABEL_IDS = np.array([[-100, 1, -100, 2, 0, -100], [-100, 0, 1, -100, -100, -100]])
PRED_IDS = np.array([[0, 1, 2, 0, 0, 0], [2, 2, 1, 0, 0, 0]])


def one_hot_logits(ids: np.ndarray, num_labels: int = 3) -> np.ndarray:
    logits = np.random.default_rng(0).normal(size=(*ids.shape, num_labels)).astype(np.float32)
    np.put_along_axis(logits, ids[..., None], 10.0, axis=-1)
    return logits  # shape: (batch, seq_len, num_labels)


@pytest.mark.parametrize("kind", ["ids", "logits"])
@pytest.mark.parametrize("id2label", [ID2LABEL, {str(k): v for k, v in ID2LABEL.items()}])
def test_align_predictions(kind, id2label):
    predictions = PRED_IDS if kind == "ids" else one_hot_logits(PRED_IDS)
    aligned = align_predictions(predictions, LABEL_IDS, id2label)
    assert aligned.labels == [["B-PER", "I-PER", "O"], ["O", "B-PER"]]
    assert aligned.predictions == [["B-PER", "O", "O"], ["I-PER", "B-PER"]]
    pred, true = aligned  # unpacks in argument order
    assert (pred, true) == (aligned.predictions, aligned.labels)


@pytest.mark.parametrize(
    "predictions, label_ids, match",
    [
        (np.zeros((2, 5), dtype=int), LABEL_IDS, r"got label ids \(2, 6\) and predictions \(2, 5\)"),
        (np.zeros((2, 6, 3, 1)), LABEL_IDS, r"got label ids \(2, 6\) and predictions \(2, 6, 3, 1\)"),
        (np.full((2, 6), 7), LABEL_IDS, r"Label id 7 is not in id2label \(known ids: \[0, 1, 2\]\)"),
    ],
)
def test_align_predictions_errors(predictions, label_ids, match):
    with pytest.raises(ValueError, match=match):
        align_predictions(predictions, label_ids, ID2LABEL)


@pytest.mark.parametrize("wrap", [False, True])
def test_build_compute_metrics(wrap):
    logits = one_hot_logits(PRED_IDS)
    predictions = (logits, np.zeros((2, 6, 4))) if wrap else logits
    compute_metrics = build_compute_metrics(ID2LABEL, "IOB2", entity_level=True)
    metrics = compute_metrics(EvalPrediction(predictions=predictions, label_ids=LABEL_IDS))
    expected = sequence_metrics(
        [["B-PER", "I-PER", "O"], ["O", "B-PER"]], [["B-PER", "O", "O"], ["I-PER", "B-PER"]], "IOB2", True
    )
    assert metrics == expected
    # Gold PER: (1, [0, 2)), (2, [1, 2)). Predicted: (1, [0, 1)), (2, [1, 2)) and, in default mode only, (2, [0, 1)).
    assert metrics["precision"] == pytest.approx(1 / 3) and metrics["recall"] == 0.5
    assert metrics["strict_precision"] == 0.5 and metrics["strict_recall"] == 0.5
    assert metrics["PER_number"] == 2


def test_build_compute_metrics_rejects_unknown_scheme():
    with pytest.raises(ValueError, match="Unknown label scheme 'IOB'"):
        build_compute_metrics(ID2LABEL, "IOB", entity_level=False)
