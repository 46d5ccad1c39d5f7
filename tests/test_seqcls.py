"""Sequence classification: data formats, labels and their errors, multi-label, pairs, class weights, truncation,
metrics, PEFT, distillation, LLRD, split-invariant loss, reload with the Auto classes / pipeline, and the predict CLI."""

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import one_step_args, save_tiny_bert, tiny_bert_config, tiny_tokenizer
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertForSequenceClassification,
    Trainer,
    pipeline,
)

from seqft import DataArguments, SeqFTConfig, SeqFTTrainer, seqcls
from seqft.errors import DataError, RecipeError, SeqFTError
from seqft.parser import parse_recipe
from seqft.predict import main as predict_main
from seqft.train import main

CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
KEYWORDS = {
    "World": ["berlin", "germany", "paris", "united", "nations"],
    "Sports": ["john", "smith", "team", "monday"],
    "Business": ["acme", "corp", "works", "for"],
    "Sci/Tech": ["city", "new", "york", "reuters"],
}
FILLER = ["the", "a", "is", "in", "with", "and", "on", "last", "week", "said"]


def make_rows(n=48, seed=0):
    """(class id 1-based, title, description): keyword-separable topics in the tiny vocabulary."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = CLASSES[i % len(CLASSES)]
        title = " ".join(rng.sample(KEYWORDS[label], 2) + rng.sample(FILLER, 1))
        description = " ".join(rng.sample(FILLER, 3) + rng.sample(KEYWORDS[label], 1))
        rows.append((CLASSES.index(label) + 1, title, description))
    return rows


def write_ag_news(path, rows):
    """AG News' layout: headerless, every field quoted, `"label","title","description"`, ids 1..4."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL).writerows([(str(a), b, c) for a, b, c in rows])
    return path


def data_args(**kwargs):
    return DataArguments(task="sequence-classification", **kwargs)


AG_NEWS = dict(
    csv_header=False,
    csv_column_names=["label", "title", "description"],
    text_column_names=["title", "description"],
    label_column_name="label",
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("seqcls")
    save_tiny_bert(root / "encoder")
    write_ag_news(root / "train.csv", make_rows(48))
    write_ag_news(root / "test.csv", make_rows(12, seed=1))
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def recipe(root, out, **overrides):
    r = {
        "task": "sequence-classification",
        "model_name_or_path": str(root / "encoder"),
        "train_file": str(root / "train.csv"),
        "test_file": str(root / "test.csv"),
        "validation_split_percentage": 0.25,
        "label_names_file": str(root / "classes.txt"),
        **AG_NEWS,
        "output_dir": str(out),
        "do_train": True,
        "do_eval": True,
        "do_predict": True,
        "max_steps": 8,
        "per_device_train_batch_size": 8,
        "learning_rate": 2e-3,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "logging_steps": 1,
    }
    r.update(overrides)
    r = {k: v for k, v in r.items() if v is not None}
    path = out.parent / f"{out.name}.json"
    path.write_text(json.dumps(r))
    return str(path)


@pytest.fixture(scope="module")
def trained(root):
    """One full single-label run (AG News layout), shared by the reload, predict and distillation tests."""
    out = root / "run"
    assert main([recipe(root, out, class_weights="balanced")]) == 0
    return out


# --- data formats -----------------------------------------------------------------------------------------------


def test_headerless_csv_with_names_file_1_based(root):
    raw = seqcls.load_raw_splits(
        data_args(train_file=str(root / "train.csv"), label_names_file=str(root / "classes.txt"), **AG_NEWS), seed=0
    )
    rows = make_rows(48)
    assert raw["train"]["label"] == [CLASSES[r[0] - 1] for r in rows]  # id k -> k-th name (1-based detected)
    assert raw["train"]["text"][0] == f"{rows[0][1]} {rows[0][2]}"  # title and description joined
    assert raw["train"]["source"][0] == "train.csv:1"
    out, names, problem = seqcls.prepare_labels(raw, data_args(label_names_file=str(root / "classes.txt")))
    assert names == CLASSES and problem == seqcls.SINGLE_LABEL
    assert out["train"]["labels"][:4] == [0, 1, 2, 3]


def test_zero_based_ids_and_ambiguous_ids(tmp_path, root):
    write_ag_news(tmp_path / "zero.csv", [(r[0] - 1, r[1], r[2]) for r in make_rows(8)])
    args = data_args(train_file=str(tmp_path / "zero.csv"), label_names_file=str(root / "classes.txt"), **AG_NEWS)
    assert seqcls.load_raw_splits(args, seed=0)["train"]["label"][:4] == CLASSES

    write_ag_news(tmp_path / "mid.csv", [(2, "a", "b"), (3, "a", "b")])
    args = data_args(train_file=str(tmp_path / "mid.csv"), label_names_file=str(root / "classes.txt"), **AG_NEWS)
    with pytest.raises(DataError, match="fit both 0-based and 1-based.*set label_id_base"):
        seqcls.load_raw_splits(args, seed=0)
    args = data_args(
        train_file=str(tmp_path / "mid.csv"), label_names_file=str(root / "classes.txt"), label_id_base=1, **AG_NEWS
    )
    assert seqcls.load_raw_splits(args, seed=0)["train"]["label"] == ["Sports", "Business"]


def test_csv_with_header_json_and_jsonl_agree(tmp_path):
    rows = [{"sentence": t + " " + d, "topic": CLASSES[k - 1]} for k, t, d in make_rows(8)]
    with open(tmp_path / "h.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["topic", "sentence"])
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "l.json").write_text(json.dumps(rows))
    (tmp_path / "l.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    loaded = [
        seqcls.load_raw_splits(data_args(train_file=str(tmp_path / name), label_column_name="topic"), seed=0)
        for name in ("h.csv", "l.json", "l.jsonl")
    ]
    for raw in loaded:  # `sentence` is a default text column
        assert raw["train"]["text"] == [r["sentence"] for r in rows]
        assert raw["train"]["label"] == [r["topic"] for r in rows]
    assert loaded[0]["train"]["source"][0] == "h.csv:2" and loaded[2]["train"]["source"][0] == "l.jsonl:1"
    _, names, _ = seqcls.prepare_labels(loaded[0], data_args())
    assert names == sorted(CLASSES)  # no names file: sorted training labels
    # labels that are numbers: in number order, so that label 2 is class 2 (as strings '10' sorted before '2')
    (tmp_path / "n.csv").write_text("text,label\n" + "".join(f"t{i},{i % 12}\n" for i in range(24)))
    converted, names, _ = seqcls.prepare_labels(
        seqcls.load_raw_splits(data_args(train_file=str(tmp_path / "n.csv")), 0), data_args()
    )
    assert names == [str(i) for i in range(12)] and converted["train"]["labels"][:12] == list(range(12))


def test_hub_dataset_class_labels(tmp_path):
    """`dataset_name` goes through datasets.load_dataset; a local parquet folder stands in for the Hub."""
    from datasets import ClassLabel, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=CLASSES)})
    (tmp_path / "data").mkdir()
    Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 3, 1]}, features=features).to_parquet(
        str(tmp_path / "data" / "train-00000.parquet")
    )
    Dataset.from_dict({"text": ["d"], "label": [-1]}, features=features).to_parquet(
        str(tmp_path / "data" / "test-00000.parquet")
    )
    raw = seqcls.load_raw_splits(data_args(dataset_name=str(tmp_path)), seed=0)
    assert raw["train"]["label"] == ["World", "Sci/Tech", "Sports"]
    assert "test" not in raw  # an unlabelled split (label -1, as GLUE's test sets) is skipped
    # the label list is the ClassLabel's, in its order (not sorted): the model's ids are the dataset's, and
    # Business, absent from this training split, keeps its id 2
    converted, names, _ = seqcls.prepare_labels(raw, data_args(dataset_name=str(tmp_path)))
    assert names == CLASSES and converted["train"]["labels"] == [0, 3, 1]
    # its rows are checked as a file's are: an empty text is an error naming the row
    Dataset.from_dict({"text": ["a", " ", None], "label": [0, 3, 1]}, features=features).to_parquet(
        str(tmp_path / "data" / "train-00000.parquet")
    )
    with pytest.raises(DataError, match=r"\[train\]:row 1: the text is empty \('text' null or blank\)"):
        seqcls.load_raw_splits(data_args(dataset_name=str(tmp_path)), seed=0)


def test_carved_splits_are_deterministic(root):
    args = data_args(
        train_file=str(root / "train.csv"),
        label_names_file=str(root / "classes.txt"),
        test_split_percentage=0.25,
        validation_split_percentage=0.25,
        **AG_NEWS,
    )
    a, b = seqcls.load_raw_splits(args, seed=3), seqcls.load_raw_splits(args, seed=3)
    assert [len(a[s]) for s in ("train", "validation", "test")] == [27, 9, 12]
    assert a["test"]["source"] == b["test"]["source"]


# --- bad input: errors name the file and the line ---------------------------------------------------------------


@pytest.mark.parametrize(
    "rows, message",
    [
        ([(1, "a", "b"), (5, "a", "b")], r"bad\.csv:2: unknown label id 5: .*classes\.txt has 4 names, ids 1\.\.4"),
        ([(4, "a", "b"), ("Sprots", "a", "b")], r"bad\.csv:2: unknown label 'Sprots': not among the 4 names"),
        ([(4, "a", "b"), ("", "a", "b")], r"bad\.csv:2: no label"),
    ],
)
def test_unknown_or_missing_label(tmp_path, root, rows, message):
    write_ag_news(tmp_path / "bad.csv", rows)
    args = data_args(train_file=str(tmp_path / "bad.csv"), label_names_file=str(root / "classes.txt"), **AG_NEWS)
    with pytest.raises(DataError, match=message):
        seqcls.load_raw_splits(args, seed=0)


def test_missing_column_and_ragged_row(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b"}\n')
    with pytest.raises(DataError, match=r"a\.jsonl:2: the row has no column 'label'"):
        seqcls.load_raw_splits(data_args(train_file=str(tmp_path / "a.jsonl")), seed=0)
    with pytest.raises(DataError, match=r"no column 'body' \(text_column_name\); the columns are: text, label"):
        seqcls.load_raw_splits(data_args(train_file=str(tmp_path / "a.jsonl"), text_column_name="body"), seed=0)
    (tmp_path / "r.csv").write_text('"1","t","d"\n"2","t"\n')
    with pytest.raises(DataError, match=r"r\.csv:2: 2 fields, but there are 3 columns"):
        seqcls.load_raw_splits(data_args(train_file=str(tmp_path / "r.csv"), **AG_NEWS), seed=0)


def test_nan_is_a_missing_label_or_text(tmp_path):
    """JSON's NaN (pandas writes it for a missing value) was read as the class "nan" and the text "nan"."""
    (tmp_path / "l.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": NaN}\n')
    with pytest.raises(DataError, match=r"l\.jsonl:2: no label \(empty label, null or NaN\)"):
        seqcls.load_raw_splits(data_args(train_file=str(tmp_path / "l.jsonl")), seed=0)
    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": NaN, "label": "x"}\n')
    with pytest.raises(DataError, match=r"t\.jsonl:2: the text is empty"):
        seqcls.load_raw_splits(data_args(train_file=str(tmp_path / "t.jsonl")), seed=0)


def test_label_unseen_in_training(tmp_path):
    (tmp_path / "tr.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    (tmp_path / "te.jsonl").write_text('{"text": "a", "label": "z"}\n')
    args = data_args(train_file=str(tmp_path / "tr.jsonl"), test_file=str(tmp_path / "te.jsonl"))
    with pytest.raises(DataError, match=r"te\.jsonl:1: label 'z' in the test split is not among the model's labels"):
        seqcls.prepare_labels(seqcls.load_raw_splits(args, seed=0), args)


def test_recipe_checks(root, tmp_path):
    with pytest.raises(RecipeError, match="'csv_header' is false: name the CSV columns"):
        data_args(csv_header=False)
    # the header line was read as a row (a phantom class "label"); or, with a headerless file, a row as the header
    with pytest.raises(RecipeError, match="'csv_column_names' names the columns of headerless CSV files, but"):
        data_args(csv_column_names=["text", "label"])
    with pytest.raises(RecipeError, match="'label_id_base' says whether label ids count from 0 or 1 against"):
        data_args(label_id_base=1)
    with pytest.raises(RecipeError, match="'label_names_file' applies to task sequence-classification"):
        DataArguments(label_names_file="x.txt")
    with pytest.raises(RecipeError, match="'doc_context' applies to token classification"):
        data_args(doc_context=1)
    with pytest.raises(RecipeError, match="class_weights"):
        SeqFTConfig(output_dir=str(tmp_path), class_weights=[1.0, -2.0])
    assert SeqFTConfig(output_dir=str(tmp_path), class_weights="[1, 2.5]").class_weights == [1.0, 2.5]
    path = recipe(root, tmp_path / "x", class_weights=[1, 2, 3, 4], problem_type="multi_label_classification")
    _, data, training, _ = parse_recipe([path, "--class_weights", "balanced"])
    assert data.problem_type == seqcls.MULTI_LABEL and training.class_weights == "balanced"
    # a list on the command line, as in a recipe (it was split into four values, and '1' refused)
    assert parse_recipe([path, "--class_weights", "[1, 2, 3, 5]"])[2].class_weights == [1.0, 2.0, 3.0, 5.0]
    assert main([recipe(root, tmp_path / "y", use_crf=True)]) == 2


# --- end to end: metrics, outputs, reload, pipeline, predict CLI -------------------------------------------------


def test_end_to_end_outputs(trained):
    test = json.loads((trained / "test_results.json").read_text())
    for key in ("test_accuracy", "test_macro_f1", "test_micro_f1", "test_World_f1", "test_Sci/Tech_number"):
        assert key in test
    assert test["test_samples"] == 12 and test["test_texts_truncated"] == 0
    evaluation = json.loads((trained / "eval_results.json").read_text())  # texts, not windows: as the test split's
    assert evaluation["eval_texts_truncated"] == 0 and "eval_windows" not in evaluation
    rows = [json.loads(line) for line in (trained / "test_predictions.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == [f"test.csv:{i}" for i in range(1, 13)]  # the input's order
    assert [r["gold"] for r in rows] == [CLASSES[k - 1] for k, _, _ in make_rows(12, seed=1)]
    accuracy = np.mean([r["gold"] == r["predicted"] for r in rows])
    assert accuracy == pytest.approx(test["test_accuracy"])
    report = json.loads((trained / "test_classification_report.json").read_text())
    assert set(report) == {*CLASSES, "micro avg", "macro avg", "weighted avg"}
    assert (trained / "test_confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    files = json.loads((trained / "seqft_recipe.json").read_text())["data_files"]
    assert files["label_names"]["sha256"] and files["test"]["sha256"]  # the names file fixes the label order
    card = (trained / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and 'pipeline("text-classification"' in card
    assert "type: text-classification" in card and "Class weights" in card
    # the recipe sets no task_name: run_ner's default "ner" does not describe a classifier (card, tags, model-index)
    assert "- ner\n" not in card and "name: NER" not in card and "for **ner**" not in card
    assert json.loads((trained / "seqft_recipe.json").read_text())["recipe"]["class_weights"] == "balanced"


def test_evaluation_in_batches_not_concatenated_scores_as_one(root, trained, tmp_path):
    """eval_do_concat_batches false hands compute_metrics a list of batches: a traceback (found by an audit)."""
    out = tmp_path / "eval"
    args = {"model_name_or_path": str(trained), "do_train": False, "eval_do_concat_batches": False}
    assert main([recipe(root, out, per_device_eval_batch_size=5, **args)]) == 0
    before, after = (json.loads((d / "test_results.json").read_text()) for d in (trained, out))
    assert after["test_accuracy"] == before["test_accuracy"] and after["test_macro_f1"] == before["test_macro_f1"]
    assert (out / "test_predictions.jsonl").read_text() == (trained / "test_predictions.jsonl").read_text()


def test_reload_with_auto_classes_and_pipeline(trained):
    model = AutoModelForSequenceClassification.from_pretrained(trained)
    assert model.config.id2label == dict(enumerate(CLASSES))
    assert model.config.problem_type == seqcls.SINGLE_LABEL
    texts = ["berlin is a city in germany", "acme corp works for john", "reuters said"]
    classify = pipeline("text-classification", model=str(trained), device=-1)
    ours = seqcls.TextClassifier(trained, device="cpu").predict(texts)
    for theirs, mine in zip(classify(texts), ours):
        assert theirs["label"] == mine["label"]
        assert theirs["score"] == pytest.approx(mine["score"], abs=1e-5)


def test_predict_cli(trained, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("berlin is a city\nacme corp works\n")
    assert predict_main([str(trained), str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["berlin is a city", "acme corp works"]
    assert all(r["label"] in CLASSES and 0 < r["score"] <= 1 for r in rows)
    (tmp_path / "in.jsonl").write_text('{"text": "paris", "id": 7}\n')
    assert predict_main([str(trained), str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o2.jsonl")]) == 0
    row = json.loads((tmp_path / "o2.jsonl").read_text())
    assert row["id"] == 7 and row["source"].endswith("in.jsonl:1")
    (tmp_path / "gold.jsonl").write_text('{"text": "paris", "label": "my-gold", "score": 3}\n')  # overwritten before
    assert predict_main([str(trained), str(tmp_path / "gold.jsonl"), "-o", str(tmp_path / "o3.jsonl")]) == 0
    row = json.loads((tmp_path / "o3.jsonl").read_text())
    assert (row["input_label"], row["input_score"]) == ("my-gold", 3) and row["label"] in CLASSES
    assert predict_main([str(trained), str(tmp_path / "in.txt"), "--format", "conll"]) == 2
    assert "a sequence classifier writes JSON Lines" in capsys.readouterr().err
    (tmp_path / "in.csv").write_text("text,label\nberlin is a city,World\n")  # the header and labels as text
    assert predict_main([str(trained), str(tmp_path / "in.csv")]) == 2
    assert "in.csv: seqft.predict reads one text per line or JSON Lines, not CSV columns" in capsys.readouterr().err
    (tmp_path / "pairs.jsonl").write_text('{"text": "paris", "text_pair": "berlin"}\n')
    assert predict_main([str(trained), str(tmp_path / "pairs.jsonl")]) == 2
    assert "the model was trained on single texts: remove 'text_pair'" in capsys.readouterr().err


def test_predict_blank_texts_long_texts_and_the_token_predictor(trained, tmp_path, capsys, caplog):
    (tmp_path / "in.txt").write_text("berlin is a city\n\n" + "acme corp works " * 200 + "\n")
    with caplog.at_level("WARNING"):
        assert predict_main([str(trained), str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and rows[1] == {
        "source": f"{tmp_path / 'in.txt'}:2",
        "text": "",
        "label": None,
        "score": None,
    }
    assert rows[0]["label"] in CLASSES and rows[2]["label"] in CLASSES
    assert "1 of 3 texts are longer than max_seq_length" in caplog.text
    from seqft.predict import Predictor

    with pytest.raises(SeqFTError, match="a sequence classifier .* use seqft.seqcls.TextClassifier"):
        Predictor(trained)


def test_empty_texts_and_a_teacher_of_the_other_task_are_errors(root, trained, tmp_path, capsys):
    rows = [{"text": "berlin is a city", "label": "World"}, {"text": None, "label": "World"}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    args = data_args(train_file=str(tmp_path / "t.jsonl"), text_column_name="text", label_column_name="label")
    with pytest.raises(DataError, match=r"t.jsonl:2: the text is empty \('text' null or blank\)"):
        seqcls.load_raw_splits(args, seed=0)

    from helpers import write_conll

    token = {"model_name_or_path": str(root / "encoder"), "train_file": str(write_conll(tmp_path / "ner.txt")),
             "output_dir": str(tmp_path / "out"), "teacher_model_name_or_path": str(trained), "max_steps": 1,
             "use_cpu": True, "report_to": "none", "do_train": True}  # fmt: skip
    (tmp_path / "r.json").write_text(json.dumps(token))
    capsys.readouterr()
    assert main([str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "is a sequence classifier (one label per text), but this recipe's 'task' trains a token tagger" in err


# --- multi-label, pairs, truncation -----------------------------------------------------------------------------


def test_multi_label_end_to_end(root, tmp_path):
    rng = random.Random(0)
    rows = []
    for _ in range(32):
        labels = rng.sample(CLASSES, rng.choice([1, 2]))
        rows.append({"text": " ".join(KEYWORDS[c][0] for c in labels), "topics": labels})
    (tmp_path / "ml.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "ml"
    args = recipe(root, out, train_file=str(tmp_path / "ml.jsonl"), test_file=None, test_split_percentage=0.25,
                  label_column_name="topics", label_names_file=None, csv_header=None, csv_column_names=None,
                  text_column_names=None, multi_label_threshold=0.4, class_weights="balanced")  # fmt: skip
    assert main([args]) == 0
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.problem_type == seqcls.MULTI_LABEL and model.config.multi_label_threshold == 0.4
    test = json.loads((out / "test_results.json").read_text())
    assert {"test_accuracy", "test_micro_f1", "test_macro_f1"} <= set(test)
    predicted = [json.loads(line) for line in (out / "test_predictions.jsonl").read_text().splitlines()]
    assert all(isinstance(r["gold"], list) and set(r["scores"]) == set(CLASSES) for r in predicted)
    result = seqcls.TextClassifier(out, device="cpu").predict(["berlin acme"])[0]
    assert result["labels"] == [name for name, p in result["scores"].items() if p >= 0.4]
    theirs = pipeline("text-classification", model=str(out), device=-1, top_k=None)(["berlin acme"])[0]
    assert {r["label"]: r["score"] for r in theirs} == pytest.approx(result["scores"], abs=1e-5)  # sigmoid
    # evaluating it again, with neither the threshold nor list-valued labels in the recipe: as it was trained (0.5,
    # and single-label on one-label rows, before)
    single = [{"text": r["text"], "topics": r["topics"][0]} for r in rows]
    (tmp_path / "single.jsonl").write_text("\n".join(json.dumps(r) for r in single) + "\n")
    again = json.loads(Path(args).read_text())
    again.update(
        model_name_or_path=str(out),
        output_dir=str(tmp_path / "again"),
        do_train=False,
        do_eval=False,
        train_file=None,
        test_file=str(tmp_path / "single.jsonl"),
        test_split_percentage=None,
        validation_split_percentage=None,
        multi_label_threshold=0.5,
    )  # fmt: skip  (class_weights "balanced" stays: they weigh training only)
    Path(args).write_text(json.dumps(again))
    assert main([args]) == 0
    rerun = [json.loads(line) for line in (tmp_path / "again" / "test_predictions.jsonl").read_text().splitlines()]
    assert all(r["predicted"] == [n for n, p in r["scores"].items() if p >= 0.4] for r in rerun)
    assert (
        json.loads((tmp_path / "again" / "seqft_eval_recipe.json").read_text())["recipe"]["multi_label_threshold"]
        == 0.4
    )


def test_sentence_pairs_and_truncation(root, tmp_path, capsys):
    rows = [{"premise": f"{a} {b}", "hypothesis": c, "label": "same" if k % 2 else "other"}
            for k, a, b in make_rows(24) for c in [b.split()[0]]]  # fmt: skip
    rows[0]["premise"] = " ".join(["john"] * 40) + " " + rows[0]["premise"]  # longer than max_seq_length
    (tmp_path / "pairdata.json").write_text(json.dumps(rows))
    out = tmp_path / "pairs"
    args = recipe(root, out, train_file=str(tmp_path / "pairdata.json"), test_file=str(tmp_path / "pairdata.json"),
                  text_column_name="premise", text_pair_column_name="hypothesis", label_names_file=None,
                  csv_header=None, csv_column_names=None, text_column_names=None, max_seq_length=16,
                  truncation_side="left")  # fmt: skip
    assert main([args]) == 0
    test = json.loads((out / "test_results.json").read_text())
    assert test["test_texts_truncated"] == 1
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert (tokenizer.truncation_side, tokenizer.model_max_length) == ("left", 16)  # the pipeline cuts alike
    first = json.loads((out / "test_predictions.jsonl").read_text().splitlines()[0])
    assert first["text_pair"] == rows[0]["hypothesis"]
    classify = pipeline("text-classification", model=str(out), device=-1)
    cut = classify({"text": rows[0]["premise"], "text_pair": rows[0]["hypothesis"]}, truncation=True)
    cut = cut[0] if isinstance(cut, list) else cut
    assert cut["label"] == first["predicted"] and cut["score"] == pytest.approx(first["score"], abs=1e-5)
    pair = {"text": rows[1]["premise"], "text_pair": rows[1]["hypothesis"]}
    theirs = classify(pair)
    theirs = theirs[0] if isinstance(theirs, list) else theirs
    mine = seqcls.TextClassifier(out, device="cpu").predict([pair["text"]], [pair["text_pair"]])[0]
    assert theirs["label"] == mine["label"] and theirs["score"] == pytest.approx(mine["score"], abs=1e-5)
    (tmp_path / "p.jsonl").write_text(json.dumps(pair) + "\n")
    assert predict_main([str(out), str(tmp_path / "p.jsonl"), "-o", str(tmp_path / "p.out")]) == 0
    assert json.loads((tmp_path / "p.out").read_text())["label"] == mine["label"]
    # evaluated without training, as it was trained: cut on the left (the recipe says nothing), and pairs
    recipe_file = json.loads(Path(args).read_text())
    recipe_file.update(model_name_or_path=str(out), do_train=False, output_dir=str(tmp_path / "again"))
    del recipe_file["truncation_side"], recipe_file["train_file"], recipe_file["validation_split_percentage"]
    recipe_file["do_eval"] = False
    evaluate = tmp_path / "again.json"
    evaluate.write_text(json.dumps(recipe_file))
    assert main([str(evaluate)]) == 0
    again_test = json.loads((tmp_path / "again" / "test_results.json").read_text())
    assert again_test["test_accuracy"] == test["test_accuracy"]
    scores = [json.loads(line)["score"] for line in (out / "test_predictions.jsonl").read_text().splitlines()]
    rescored = (tmp_path / "again" / "test_predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["score"] for line in rescored] == pytest.approx(scores, abs=1e-6)  # right: other texts
    recipe_file["text_pair_column_name"] = None
    evaluate.write_text(json.dumps(recipe_file))
    assert main([str(evaluate)]) == 2
    assert "was trained on text pairs ('hypothesis' as the second text): set 'text_pair_column_name'" in (
        capsys.readouterr().err
    )
    # a pair model given single texts was answered anyway; a row without its second text was trained on
    (tmp_path / "single.txt").write_text(pair["text"] + "\n")
    assert predict_main([str(out), str(tmp_path / "single.txt")]) == 2
    assert "the model was trained on text pairs ('hypothesis' as the second text)" in capsys.readouterr().err
    rows[3]["hypothesis"] = None
    (tmp_path / "pairdata.json").write_text(json.dumps(rows))
    assert main([args, "--overwrite_output_dir", "true"]) == 2
    assert "pairdata.json:row 3: the second text ('hypothesis', text_pair_column_name) is empty" in (
        capsys.readouterr().err
    )


# --- class weights and the split-invariant loss -----------------------------------------------------------------


def test_balanced_weights_and_weighted_loss():
    assert seqcls.balanced_weights([0, 0, 0, 1], 3, False) == [4 / 9, 4 / 3, 1.0]
    assert seqcls.balanced_weights([[1, 0], [1, 1], [1, 0], [0, 0]], 2, True) == [1 / 3, 3.0]
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 2, 1, 2, -100])
    weight = torch.tensor([1.0, 2.0, 0.5])
    loss = SeqFTTrainer.token_loss({"logits": logits}, labels, weight=weight)
    per_item = torch.nn.functional.cross_entropy(logits[:4], labels[:4], reduction="none")
    assert loss == pytest.approx(float((per_item * weight[labels[:4]]).sum() / 4))  # divided by items, not weights
    hot = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    bce = SeqFTTrainer.token_loss({"logits": logits[:2]}, hot)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:2], hot)  # mean over entries
    assert bce == pytest.approx(float(expected))


def _one_step(tmp_path, trainer_cls, batch, accumulation, multi=False, class_weights=None):
    tok = tiny_tokenizer()
    rows = make_rows(8)
    labels = [[1.0 if k % 4 == j or j == 0 else 0.0 for j in range(4)] for k, _, _ in rows] if multi else None
    raw = Dataset.from_dict(
        {
            "text": [f"{t} {d}" + " the" * (i % 3) for i, (_, t, d) in enumerate(rows)],  # unequal lengths
            "labels": labels or [k % 3 for k, _, _ in rows],  # class 3 absent, classes unbalanced
        }
    )
    ds = seqcls.tokenize_split(raw, tok, 32).remove_columns(["length", "num_tokens"])
    torch.manual_seed(0)
    config = tiny_bert_config(num_labels=4, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config.problem_type = seqcls.MULTI_LABEL if multi else seqcls.SINGLE_LABEL
    model = BertForSequenceClassification(config)
    args = one_step_args(
        tmp_path / trainer_cls.__name__ / str(accumulation), batch, accumulation, class_weights=class_weights
    )
    trainer = trainer_cls(model=model, args=args, train_dataset=ds, data_collator=seqcls.collator(tok))
    result = trainer.train()
    return result.training_loss, {n: p.detach().clone() for n, p in model.named_parameters()}


def test_class_weights_weight_the_training_loss_only(tmp_path):
    tok = tiny_tokenizer()
    raw = Dataset.from_dict({"text": [f"{t} {d}" for _, t, d in make_rows(8)], "labels": [0, 1, 1, 1, 2, 1, 1, 3]})
    ds = seqcls.tokenize_split(raw, tok, 32).remove_columns(["length", "num_tokens"])
    config = tiny_bert_config(num_labels=4, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(config)
    trainers = [
        SeqFTTrainer(
            model=model,
            args=SeqFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", class_weights=weights),
            train_dataset=ds,
            data_collator=seqcls.collator(tok),
        )
        for weights in ("balanced", None)
    ]
    weighted, plain = (t.evaluate(ds)["eval_loss"] for t in trainers)
    assert weighted == pytest.approx(plain)  # evaluation: unweighted, comparable across recipes
    batch = seqcls.collator(tok)([ds[i] for i in range(8)])
    model.train()
    losses = [float(t.compute_loss(model, dict(batch)).detach()) for t in trainers]
    assert losses[0] != pytest.approx(losses[1])


@pytest.mark.parametrize(
    "multi, class_weights", [(False, None), (False, "balanced"), (True, None), (True, [1.0, 2.0, 3.0, 0.5])]
)
def test_gradient_accumulation_invariance(tmp_path, multi, class_weights):
    loss_full, weights_full = _one_step(tmp_path, SeqFTTrainer, 8, 1, multi, class_weights)
    loss_split, weights_split = _one_step(tmp_path, SeqFTTrainer, 4, 2, multi, class_weights)
    assert loss_split == pytest.approx(loss_full, rel=1e-5)
    for name, value in weights_full.items():
        torch.testing.assert_close(weights_split[name], value, rtol=1e-4, atol=1e-6, msg=name)
    if class_weights is not None:  # the weights change the step, so the test above compares weighted losses
        _, unweighted = _one_step(tmp_path, SeqFTTrainer, 8, 1, multi, None)
        assert not torch.allclose(unweighted["classifier.weight"], weights_full["classifier.weight"])


def test_stock_trainer_is_not_split_invariant(tmp_path):
    """Contrast: the stock Trainer with the stock head's loss, same data (shows the test above can fail)."""
    stock_full, _ = _one_step(tmp_path, Trainer, 8, 1)
    stock_split, _ = _one_step(tmp_path, Trainer, 4, 2)
    if stock_split == pytest.approx(stock_full, rel=1e-5):
        pytest.skip("upstream fixed the loss scaling of stock sequence-classification heads")
    assert stock_split != pytest.approx(stock_full, rel=1e-3)


# --- PEFT, LLRD, distillation ----------------------------------------------------------------------------------


def test_lora_saves_the_head_and_reloads(root, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "lora"
    peft = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}
    peft["init_lora_weights"] = "eva"  # one label per text: EVA takes every attended token, not a label mask
    assert main([recipe(root, out, peft_config=peft, merge_adapter=True, do_eval=False)]) == 0
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert any("classifier" in k for k in keys) and any("lora_A" in k for k in keys)
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "SEQ_CLS"
    texts = ["berlin is a city", "acme corp works"]
    adapter = seqcls.TextClassifier(out, device="cpu").predict(texts)
    merged = seqcls.TextClassifier(out / "merged", device="cpu").predict(texts)
    for a, m in zip(adapter, merged):
        assert a["label"] == m["label"] and a["score"] == pytest.approx(m["score"], abs=1e-5)
    rows = [json.loads(line) for line in (out / "test_predictions.jsonl").read_text().splitlines()]
    assert rows[0]["score"] == pytest.approx(
        seqcls.TextClassifier(out).predict([rows[0]["text"]])[0]["score"], abs=1e-6
    )
    assert_cli_predicts_as_training(out, tmp_path)  # the adapter folder was read as a token tagger: IndexError


def assert_cli_predicts_as_training(out, tmp_path):
    """`seqft.predict OUT` on the test texts gives test_predictions.jsonl's labels and scores."""
    rows = [json.loads(line) for line in (out / "test_predictions.jsonl").read_text().splitlines()]
    (tmp_path / "texts.jsonl").write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows))
    assert predict_main([str(out), str(tmp_path / "texts.jsonl"), "-o", str(tmp_path / "p.jsonl")]) == 0
    cli = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["label"] for r in cli] == [r["predicted"] for r in rows]
    assert [r["score"] for r in cli] == pytest.approx([r["score"] for r in rows], abs=1e-5)


@pytest.mark.parametrize("student_init", ["teacher", "model"])
def test_distillation_llrd_and_lora_compose(root, trained, tmp_path, student_init):
    out = tmp_path / "student"
    args = recipe(
        root,
        out,
        teacher_model_name_or_path=str(trained),
        student_layers=[0],
        student_init=student_init,
        distill_alpha=0.5,
        distill_temperature=2.0,
        distill_hidden_weight=1.0,
        layer_decay=0.8,
        head_learning_rate=1e-2,
        peft_config={"peft_type": "LORA", "r": 4, "target_modules": ["query", "value"]},
        max_steps=3,
    )
    assert main([args]) == 0
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    step = next(entry for entry in logs if "loss_soft" in entry)
    assert step["loss_hidden"] >= 0 and "loss_hard" in step and "lr/head" in step
    assert AutoModelForSequenceClassification.from_pretrained(trained).config.id2label == dict(enumerate(CLASSES))
    assert json.loads((out / "base_config" / "config.json").read_text())["num_hidden_layers"] == 1
    assert_cli_predicts_as_training(out, tmp_path)  # onto the student's own block (student_base)


def test_a_names_file_keeps_its_order_beside_a_teacher(root, trained, tmp_path):
    """The teacher is read by label name, so the student takes the names file's order (a class_weights list is read
    in it); the teacher's order used to replace it silently, and the weights landed on other classes."""
    for split in ("train", "test"):
        lines = (root / f"{split}.csv").read_text(encoding="utf-8").splitlines()
        write_ag_news(tmp_path / f"{split}.csv", [(CLASSES[int(a) - 1], b, c) for a, b, c in csv.reader(lines)])
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES[::-1]) + "\n")
    out = tmp_path / "student"
    path = recipe(root, out, teacher_model_name_or_path=str(trained), label_names_file=str(tmp_path / "classes.txt"),
                  class_weights=[5.0, 1.0, 1.0, 1.0], max_steps=1)  # fmt: skip
    args = json.loads(Path(path).read_text())
    args.update(train_file=str(tmp_path / "train.csv"), test_file=str(tmp_path / "test.csv"))
    Path(path).write_text(json.dumps(args))
    assert main([path]) == 0
    assert json.loads((out / "config.json").read_text())["id2label"] == {
        str(i): c for i, c in enumerate(CLASSES[::-1])
    }


def test_prefix_tuning_on_a_classifier_is_refused_up_front():
    """peft passes the prefix as past_key_values, which encoder classifiers do not take: a traceback at the first
    step, after the data and model had loaded."""
    from seqft import adapters

    model = BertForSequenceClassification(tiny_bert_config(num_labels=4))
    with pytest.raises(RecipeError, match="PREFIX_TUNING on a sequence classifier"):
        adapters.wrap_model(model, {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 4})
    adapters.wrap_model(model, {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4})


def test_distillation_refuses_multi_label(root, trained, tmp_path):
    from seqft.distill import prepare_teacher

    config = tiny_bert_config(num_labels=4, id2label=dict(enumerate(CLASSES)))
    config.problem_type = seqcls.MULTI_LABEL
    args = SeqFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = SeqFTTrainer(model=BertForSequenceClassification(config), args=args, processing_class=tiny_tokenizer())
    with pytest.raises(RecipeError, match="the student is a multi-label classifier"):
        prepare_teacher(str(trained), trainer)
    # a multi-label teacher for a single-label student: its sigmoid outputs were read as a softmax, silently
    teacher = BertForSequenceClassification(config)
    config = tiny_bert_config(num_labels=4, id2label=dict(enumerate(CLASSES)))
    trainer = SeqFTTrainer(model=BertForSequenceClassification(config), args=args, processing_class=tiny_tokenizer())
    with pytest.raises(RecipeError, match=r"the teacher \(.*\) is a multi-label classifier"):
        prepare_teacher(teacher, trainer)


def test_training_on_from_a_classifier_keeps_its_label_order(root, trained, tmp_path):
    """The same classes, written as names (sorted: Business, Sci/Tech, Sports, World) rather than ids with the
    checkpoint's names file: the run keeps the checkpoint's order. It re-sorted them, every prediction moving to
    another class (accuracy 1.0 -> 0.0 in the audit's run) with no warning."""
    for split in ("train", "test"):
        lines = (root / f"{split}.csv").read_text(encoding="utf-8").splitlines()
        write_ag_news(tmp_path / f"{split}.csv", [(CLASSES[int(a) - 1], b, c) for a, b, c in csv.reader(lines)])
    out = tmp_path / "on"
    path = recipe(root, out, model_name_or_path=str(trained), label_names_file=None, learning_rate=1e-12, max_steps=1)
    args = json.loads(Path(path).read_text())
    args.update(train_file=str(tmp_path / "train.csv"), test_file=str(tmp_path / "test.csv"))
    Path(path).write_text(json.dumps(args))
    assert main([path]) == 0
    assert json.loads((out / "config.json").read_text())["id2label"] == {str(i): c for i, c in enumerate(CLASSES)}
    before, after = (
        [json.loads(x) for x in (d / "test_predictions.jsonl").read_text().splitlines()] for d in (trained, out)
    )
    assert [r["predicted"] for r in after] == [r["predicted"] for r in before]


def _as_names(root, tmp_path, rename=None):
    """The fixture's train and test files with class names for ids (`rename`: old name -> new name)."""
    rename = rename or {}
    for split in ("train", "test"):
        lines = (root / f"{split}.csv").read_text(encoding="utf-8").splitlines()
        rows = [(rename.get(CLASSES[int(a) - 1], CLASSES[int(a) - 1]), b, c) for a, b, c in csv.reader(lines)]
        write_ag_news(tmp_path / f"{split}.csv", rows)


def _run(root, tmp_path, out, **overrides) -> int:
    path = recipe(root, out, learning_rate=1e-12, max_steps=1, **overrides)
    args = json.loads(Path(path).read_text())
    args.update(train_file=str(tmp_path / "train.csv"), test_file=str(tmp_path / "test.csv"))
    Path(path).write_text(json.dumps(args))
    return main([path])


def _predicted(out) -> list[str]:
    return [json.loads(x)["predicted"] for x in (out / "test_predictions.jsonl").read_text().splitlines()]


def test_heads_trained_in_another_label_order_are_matched_by_name(root, trained, tmp_path, capsys):
    """A head from a fine-tuned checkpoint or a copied teacher answers in its own label order. With a names file in
    another order beside a teacher, or another label set of the same size, the rows kept their old places under the
    new names: the audit's copy of a teacher scored 0.0 where the teacher scored 1.0."""
    _as_names(root, tmp_path)
    (tmp_path / "reversed.txt").write_text("\n".join(CLASSES[::-1]) + "\n")
    names = {"label_names_file": str(tmp_path / "reversed.txt")}
    teacher = {"teacher_model_name_or_path": str(trained), **names}
    for out, overrides in (
        (tmp_path / "copy", {**teacher, "student_layers": [0, 1]}),  # every block of the teacher: the teacher itself
        (tmp_path / "on", {**teacher, "model_name_or_path": str(trained)}),
    ):
        assert _run(root, tmp_path, out, **overrides) == 0
        reversed_names = {str(i): c for i, c in enumerate(CLASSES[::-1])}
        assert json.loads((out / "config.json").read_text())["id2label"] == reversed_names  # the names file's order
        assert _predicted(out) == _predicted(trained), out.name

    # another label set of the same size: the three classes both have keep their rows; the new one starts fresh
    _as_names(root, tmp_path, rename={"Sports": "Cricket"})
    out = tmp_path / "renamed"
    assert _run(root, tmp_path, out, model_name_or_path=str(trained), label_names_file=None) == 0
    kept = [(a, b) for a, b in zip(_predicted(trained), _predicted(out)) if a != "Sports" and b != "Cricket"]
    assert kept and all(a == b for a, b in kept)

    # another number of labels: one clear line, not from_pretrained's traceback
    _as_names(root, tmp_path, rename={"Sports": "World"})
    capsys.readouterr()
    assert _run(root, tmp_path, tmp_path / "three", model_name_or_path=str(trained), label_names_file=None) == 2
    err = capsys.readouterr().err
    assert "has a classifier for another number of labels than the data's 3: set 'ignore_mismatched_sizes'" in err


@pytest.mark.parametrize("peft_type", ["PROMPT_TUNING", "P_TUNING"])
def test_virtual_tokens_leave_room_in_the_position_embeddings(tmp_path, peft_type):
    """Texts were cut at the model's 64 positions, then the adapter put its virtual tokens before them: a bare
    shape error at the first step. The texts now leave room for them, in training and in prediction."""
    from seqft.train import resolve_max_length

    save_tiny_bert(tmp_path / "encoder")  # 64 positions
    words = {"World": "berlin germany paris", "Sports": "john smith team", "Business": "acme corp works"}
    rows = [{"text": (words[c] + " ") * (30 if i % 2 else 1), "label": c} for i, c in enumerate(sorted(words) * 4)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    recipe = {
        "task": "sequence-classification", "model_name_or_path": str(tmp_path / "encoder"),
        "train_file": str(tmp_path / "d.jsonl"), "output_dir": str(out), "do_train": True, "max_steps": 1,
        "use_cpu": True, "report_to": "none", "save_strategy": "no",
        "peft_config": {"peft_type": peft_type, "num_virtual_tokens": 4},
    }  # fmt: skip
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert main([str(tmp_path / "r.json")]) == 0
    (result,) = seqcls.TextClassifier(out, device="cpu").predict([rows[1]["text"]])
    assert result["label"] in words
    with pytest.raises(SeqFTError, match="max_seq_length = 64 exceeds the 60 positions the model takes"):
        seqcls.TextClassifier(out, device="cpu", max_seq_length=64)  # was a bare shape error on a long text
    with pytest.raises(RecipeError, match="exceeds the model's 60 positions once the adapter's 4 virtual tokens"):
        resolve_max_length(64, tiny_tokenizer(), tiny_bert_config(), virtual_tokens=4)
