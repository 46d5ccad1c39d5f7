"""seqft.predict: pipeline parity, long documents, every input format, clear errors, train -> predict round trips."""

import io
import json
import shutil
import sys

import numpy as np
import pytest
import torch
from helpers import SENTENCES, WORDS, save_tiny_bert, tiny_bert_config, tiny_tokenizer, write_conll
from transformers import BertForTokenClassification, pipeline

from seqft import DataError, SeqFTError, windows
from seqft.modeling import SeqFTCRFConfig, SeqFTCRFForTokenClassification
from seqft.predict import Document, Predictor, main, read_recipe
from seqft.train import main as train

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
TEXTS = [
    "john smith lives in new yorker .",
    "mary visited paris last week with the united nations team , said reuters on monday .",
    "zorro and  john  met in berlin",  # zorro is [UNK]; double spaces
    "berlin",
]


def softmax_model():
    torch.manual_seed(0)
    config = tiny_bert_config(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label_scheme="IOB2")
    model = BertForTokenClassification(config)
    with torch.no_grad():  # random weights that predict plenty of entities
        model.classifier.weight.normal_(0.0, 1.0)
    return model


def crf_model():
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    config = SeqFTCRFConfig(
        encoder_config=tiny_bert_config(),
        id2label=dict(enumerate(LABELS)),
        label_scheme="IOB2",
        special_token_ids=[i for i in tok.all_special_ids if i != tok.unk_token_id],
    )
    model = SeqFTCRFForTokenClassification(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in (model.crf.transitions, model.crf.start_transitions, model.crf.end_transitions):
            param.copy_(torch.randn(param.shape, generator=generator) * 2.0)
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=generator))
    return model


@pytest.fixture(scope="module", params=["softmax", "crf"])
def model_dir(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    (softmax_model if request.param == "softmax" else crf_model)().save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


# --- parity with the pipeline ------------------------------------------------------------------------------------


def test_entities_match_the_pipeline(model_dir):
    ner = pipeline("token-classification", model=str(model_dir), aggregation_strategy="first", device="cpu")
    # invisible characters at a word's edge (a BOM, a zero-width space, a soft hyphen) are not part of an entity: the pipeline
    # trims them, seqft's offsets covered them; a word of them alone is no word
    texts = TEXTS + ["\ufeffjohn smith lives in\u200b berlin\u00ad . \u200b mary\x07"]
    ours = Predictor(model_dir).predict(texts)
    found = 0
    for text, entities in zip(texts, ours):
        theirs = ner(text)
        assert [(e["label"], e["word"], e["start"], e["end"]) for e in entities] == [
            (e["entity_group"], e["word"], e["start"], e["end"]) for e in theirs
        ]
        for mine, other in zip(entities, theirs):
            assert mine["score"] == pytest.approx(float(other["score"]), abs=1e-4)
            assert mine["word"] == text[mine["start"] : mine["end"]]
        found += len(entities)
    assert found > 5


def test_a_10000_word_document_gets_every_word_tagged_in_order(model_dir):
    words = [WORDS[i % len(WORDS)] + ("er" if i % 7 == 0 else "") for i in range(10_000)]
    text = "  ".join(words)
    predictor = Predictor(model_dir, max_seq_length=32, stride=8)
    (result,) = predictor.predict_documents([Document.from_text(text)])
    assert result.document.words == words
    assert len(result.tags) == 10_000 and all(s is not None for s in result.scores)
    assert all(text[e["start"] : e["end"]] == e["word"] for e in result.entities)
    if predictor.constraints is not None:  # CRF: the merged sequence is valid in the scheme
        constraints = predictor.constraints
        assert windows.is_valid([LABELS.index(t) for t in result.tags], constraints)
        predictor.constraints = None  # the per-word argmax of the merged windows is not: the decode matters
        (naive,) = predictor.predict_documents([Document.from_text(text)])
        assert not windows.is_valid([LABELS.index(t) for t in naive.tags], constraints)


def test_windowing_settings_come_from_the_recipe(model_dir, tmp_path):
    assert read_recipe(str(model_dir)) == {}
    default = Predictor(model_dir)
    assert (default.max_length, default.stride, default.doc_context) == (64, 15, 0)  # 64 positions in the tiny BERT
    run = tmp_path / "run"
    merged = run / "merged"
    shutil.copytree(model_dir, merged)
    recipe = {"recipe": {"max_seq_length": 12, "stride": 2, "doc_context": 1, "truncate_long_sentences": False}}
    (run / "seqft_recipe.json").write_text(json.dumps(recipe))
    predictor = Predictor(merged)  # a merged/ folder reads its run's recipe
    assert (predictor.max_length, predictor.stride, predictor.doc_context) == (12, 2, 1)
    assert Predictor(merged, stride=3, doc_context=0).stride == 3


def assert_same_entities(ours, theirs):
    """Equal entities; scores within float noise (batches pad differently)."""
    assert [{**e, "score": None} for e in ours] == [{**e, "score": None} for e in theirs]
    assert [e["score"] for e in ours] == pytest.approx([e["score"] for e in theirs], abs=1e-5)


# --- inputs and outputs ------------------------------------------------------------------------------------------


def run_cli(args, capsys, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8")), encoding="utf-8"))
    code = main([*args, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_raw_text_from_a_file_and_from_stdin(model_dir, tmp_path, capsys, monkeypatch):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS[:2]) + "\n\n" + TEXTS[2] + "\n")
    code, out, err = run_cli([str(model_dir), str(path)], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["source"] for r in rows] == [f"{path}:{n}" for n in (1, 2, 3, 4)]  # one row per line, blank included
    assert rows[2] == {"source": f"{path}:3", "text": "", "tokens": [], "tags": [], "entities": []}
    assert rows[0]["text"] == TEXTS[0] and rows[0]["tokens"] == TEXTS[0].split()
    assert_same_entities(rows[0]["entities"], Predictor(model_dir).predict(TEXTS[0])[0])

    code, piped, err = run_cli([str(model_dir)], capsys, stdin=TEXTS[0] + "\n", monkeypatch=monkeypatch)
    assert code == 0, err
    assert_same_entities(json.loads(piped)["entities"], rows[0]["entities"])
    assert json.loads(piped)["source"] == "<stdin>:1"


def test_conll_in_conll_out_keeps_columns_and_documents(model_dir, tmp_path, capsys):
    path = write_conll(tmp_path / "test.iob", SENTENCES[:3], extra_columns=1)
    out_path = tmp_path / "out.conll"
    code, _, err = run_cli([str(model_dir), str(path), "--format", "conll", "-o", str(out_path)], capsys)
    assert code == 0, err
    output = out_path.read_text()
    # every input line comes back in place, blank lines and -DOCSTART- included, with the predicted tag appended
    assert [line.rsplit(" ", 1)[0] if line else "" for line in output.splitlines()] == path.read_text().splitlines()
    assert output.startswith("-DOCSTART- -X- O O\n\n")
    blocks = [b.split("\n") for b in output.split("\n\n") if b.strip()][1:]
    assert [[row.split()[0] for row in b] for b in blocks] == [w for w, _ in SENTENCES[:3]]
    assert all(
        row.split()[1] == "X" and row.split()[2] in LABELS and row.split()[3] in LABELS for b in blocks for row in b
    )
    assert [row.split()[2] for row in blocks[0]] == SENTENCES[0][1]  # the gold column is kept
    expected = Predictor(model_dir).predict([w for w, _ in SENTENCES[:3]])
    code, out, _ = run_cli([str(model_dir), str(path)], capsys)
    for line, entities in zip(out.splitlines(), expected, strict=True):
        assert_same_entities(json.loads(line)["entities"], entities)


def test_conll_out_keeps_every_document_start_in_place(model_dir, tmp_path, capsys):
    (a, _), (b, _), (c, _) = SENTENCES[:3]
    lines = ["-DOCSTART- O", "", *a, "", "-DOCSTART- O", "", *b, "", *c]  # two documents, the second of two sentences
    path = tmp_path / "docs.conll"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run_cli([str(model_dir), str(path), "--format", "conll"], capsys)
    assert code == 0, err
    assert [line.rsplit(" ", 1)[0] if line else "" for line in out.splitlines()] == lines + [""]
    assert [line for line in out.splitlines() if line.startswith("-DOCSTART-")] == ["-DOCSTART- O O"] * 2


def test_jsonl_tokens_and_text_rows(model_dir, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    gold = ["O"] * len(TEXTS[0].split())  # a key the output also writes is kept as input_<key>, not overwritten
    rows = [{"id": 7, "tokens": TEXTS[0].split(), "tags": gold}, {"text": TEXTS[1], "meta": {"a": 1}}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    code, out, err = run_cli([str(model_dir), str(path)], capsys)
    assert code == 0, err
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["id"] == 7 and first["tokens"] == TEXTS[0].split() and "text" not in first
    assert first["input_tags"] == gold and len(first["tags"]) == len(gold) and next(iter(first)) == "source"
    assert second["meta"] == {"a": 1} and second["text"] == TEXTS[1]
    # a word list gets offsets into the words joined by single spaces, as the pipeline's is_split_into_words does
    assert_same_entities(first["entities"], Predictor(model_dir).predict([TEXTS[0]])[0])
    # a word holding whitespace is one word in JSONL output; CoNLL lines cannot hold it (5 words became 6 lines)
    path.write_text(json.dumps({"tokens": ["john", "new york", "a\nb"]}) + "\n")
    assert run_cli([str(model_dir), str(path)], capsys)[0] == 0
    code, out, err = run_cli([str(model_dir), str(path), "--format", "conll"], capsys)
    assert code == 2 and "in.jsonl:1: word 2 of 'tokens', 'new york', holds whitespace" in err and not out


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("nope.txt", None, "nope.txt: no such file."),
        ("empty.txt", b"", "empty.txt: the input is empty (no text to label)."),
        ("blank.jsonl", b"\n  \n", "blank.jsonl: the input is empty"),
        ("bad.jsonl", b'{"text": "a"}\n{"text": \n', "bad.jsonl:2: invalid JSON"),
        ("rows.jsonl", b'{"words": ["a"]}\n', "rows.jsonl:1: a row needs 'tokens' (a list of words) or 'text'"),
        ("list.jsonl", b'{"text": "a"}\n["a"]\n', "list.jsonl:2: expected a JSON object per line, got list"),
        ("ints.jsonl", b'{"tokens": [1, 2]}\n', "ints.jsonl:1: 'tokens' must be a list of strings"),
        (
            "blank.json",
            b'{"tokens": ["a", " "]}\n',
            "blank.json:1: word 2 of 'tokens' is ' ', empty or only whitespace",
        ),
        ("latin.txt", b"ok\nfine\ncaf\xe9\n", "latin.txt:3: not valid UTF-8"),
        ("bom.txt", b"\xef\xbb\xbfok\ncaf\xe9\n", "bom.txt:2: not valid UTF-8 (invalid continuation byte at byte 9)"),
        ("docs.conll", b"-DOCSTART- O\n\n", "docs.conll: no sentences found"),
        ("folder", "dir", "folder: is a directory"),
    ],
)
def test_unreadable_or_empty_input_is_a_clear_error(model_dir, tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    code, out, err = run_cli([str(model_dir), str(path)], capsys)
    assert code == 2 and out == ""
    assert err.startswith("seqft: error: ") and message in err, err
    assert "Traceback" not in err


def test_bad_model_dir_and_bad_python_inputs(model_dir, tmp_path, capsys):
    code, _, err = run_cli([str(tmp_path / "missing"), "-"], capsys)
    assert code == 2 and "missing: no such model directory" in err
    code, _, err = run_cli([str(tmp_path), "-"], capsys)
    assert code == 2 and "not a model directory (no config.json or adapter_config.json)" in err
    with pytest.raises(DataError, match="input 1: expected a string or a list of words"):
        Predictor(model_dir).predict(["fine", 3])
    for ids in ([0], [0, 0, 1]):  # too few was a bare IndexError, too many passed silently
        with pytest.raises(DataError, match=f"doc_ids holds {len(ids)} ids for 2 inputs: give one id per input"):
            Predictor(model_dir).predict(["John Smith", "Mary"], doc_ids=ids)


def test_only_newlines_end_a_line(model_dir, tmp_path, capsys):
    # U+2028, form feeds, ... may stand inside a JSON string or a text; str.splitlines split there
    path = tmp_path / "sep.jsonl"
    path.write_text(json.dumps({"text": "john smith\u2028lives in paris ."}, ensure_ascii=False) + "\n")
    code, out, err = run_cli([str(model_dir), str(path), "-o", str(tmp_path / "once.jsonl")], capsys)
    assert code == 0, err
    code, out, err = run_cli([str(model_dir), str(tmp_path / "once.jsonl")], capsys)  # its own output, read back
    assert code == 0, err
    assert len(out.rstrip("\n").split("\n")) == 1 and json.loads(out)["tokens"][:2] == ["john", "smith"]
    text = tmp_path / "texts.txt"
    text.write_text("john\x0csmith lives\r\nin paris\u2028today\n")
    code, out, err = run_cli([str(model_dir), str(text)], capsys)
    assert [json.loads(line)["source"] for line in out.rstrip("\n").split("\n")] == [f"{text}:1", f"{text}:2"]


def test_documents_of_two_files_share_no_context(tmp_path):
    from seqft.predict import parse_input

    first = write_conll(tmp_path / "a.conll", SENTENCES[:2])
    second = write_conll(tmp_path / "b.conll", SENTENCES[2:4])
    docs = [d for path in (first, second) for d in parse_input(str(path), path.read_text().splitlines())]
    assert docs[0].doc_id == docs[1].doc_id != docs[2].doc_id == docs[3].doc_id


def test_output_device_and_model_mistakes_fail_before_any_work(model_dir, tmp_path, capsys):
    texts = tmp_path / "t.txt"
    texts.write_text(TEXTS[0] + "\n")
    code, _, err = run_cli([str(model_dir), str(texts), "-o", str(tmp_path / "new" / "dir" / "out.jsonl")], capsys)
    assert code == 0 and (tmp_path / "new" / "dir" / "out.jsonl").read_text().count("\n") == 1, err
    for argv, message in (
        (["-o", str(tmp_path)], "is a directory; name a file"),
        (["--device", "bogus"], "device 'bogus' is not a device: expected one of cpu"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "bogus"], "device"),
    ):
        code, _, err = run_cli([str(model_dir), str(texts), *argv], capsys)
        assert code == 2 and err.startswith("seqft: error: ") and message in err, err

    broken = tmp_path / "broken"  # a config and a tokenizer, no weights
    shutil.copytree(model_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.unlink()
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(model_dir, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    base = save_tiny_bert(tmp_path / "base")  # an encoder never fine-tuned: LABEL_0, LABEL_1, ...
    for folder, message in (
        (broken, "broken: the model does not load"),
        (no_tokenizer, "no-tokenizer: no tokenizer files"),
        (base, "base: the model has no label names (LABEL_0, LABEL_1, ...)"),
    ):
        code, _, err = run_cli([str(folder), str(texts)], capsys)
        assert code == 2 and err.startswith("seqft: error: ") and message in err, err

    conllu = tmp_path / "ud.conllu"
    conllu.write_text("# sent_id = 1\n1\tJohn\tjohn\tPROPN\n")
    code, _, err = run_cli([str(model_dir), str(conllu)], capsys)
    assert code == 2 and "CoNLL-U (.conllu) is not read" in err


def test_words_cut_by_truncation_are_reported(model_dir, caplog):
    predictor = Predictor(model_dir, max_seq_length=8, truncate_long_sentences=True)
    with caplog.at_level("WARNING"):
        (prediction,) = predictor.predict_documents([Document.from_words(["john"] * 20, doc_id=0, source="s:1")])
    assert prediction.scores.count(None) == 14 and prediction.tags[6:] == ["O"] * 14
    assert "14 words of 1 texts lie beyond max_seq_length (8 tokens)" in caplog.text and "(first: s:1)" in caplog.text


# --- train -> predict: the CLI reproduces training's test predictions, windows and context included ---------------


LONG = (sum((w for w, _ in SENTENCES), []), sum((t for _, t in SENTENCES), []))  # 40 words


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    save_tiny_bert(root / "encoder")
    write_conll(root / "train.txt", [LONG] * 2 + SENTENCES)
    write_conll(root / "test.txt", SENTENCES[:2] + [LONG] + SENTENCES[2:])
    return root


def train_run(root, out, **overrides):
    recipe = {
        "model_name_or_path": str(root / "encoder"),
        "train_file": str(root / "train.txt"),
        "test_file": str(root / "test.txt"),
        "output_dir": str(out),
        "max_seq_length": 12,
        "stride": 3,
        "doc_context": 1,
        "do_train": True,
        "do_predict": True,
        "max_steps": 3,
        "per_device_train_batch_size": 8,
        "learning_rate": 5e-2,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
    }
    recipe.update(overrides)
    (out.parent / f"{out.name}.json").write_text(json.dumps(recipe))
    assert train([str(out.parent / f"{out.name}.json")]) == 0
    return out


def predicted_column(path):
    return [line.split()[-1] for line in path.read_text().splitlines() if line.strip()]


def test_predict_reproduces_training_predictions(data_dir, tmp_path, capsys):
    out = train_run(data_dir, tmp_path / "run")
    code, _, err = run_cli(
        [str(out), str(data_dir / "test.txt"), "--format", "conll", "-o", str(tmp_path / "p")], capsys
    )
    assert code == 0, err
    # the same lines, but for the input's -DOCSTART- line, which predict keeps and training's file (word gold
    # predicted, words only) does not
    header, predicted = (tmp_path / "p").read_text().split("\n\n", 1)
    assert header == "-DOCSTART- O O" and predicted == (out / "test_predictions.txt").read_text()
    assert len(predicted_column(tmp_path / "p")) == 1 + 40 + sum(len(w) for w, _ in SENTENCES)


def test_adapter_only_and_merged_crf_checkpoints_predict_like_training(data_dir, tmp_path):
    out = train_run(
        data_dir,
        tmp_path / "lora",
        use_crf=True,
        merge_adapter=True,
        peft_config={"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]},
    )
    assert (out / "adapter_config.json").is_file() and (out / "merged" / "config.json").is_file()
    expected = predicted_column(out / "test_predictions.txt")
    documents = [Document.from_words(w, doc_id=1) for w, _ in SENTENCES[:2] + [LONG] + SENTENCES[2:]]
    for model_dir in (out, out / "merged"):
        predictor = Predictor(model_dir)
        assert predictor.constraints is not None and (predictor.max_length, predictor.doc_context) == (12, 1)
        tags = [t for p in predictor.predict_documents(documents) for t in p.tags]
        assert tags == expected, model_dir
        assert windows.is_valid([LABELS.index(t) for t in tags[13:53]], predictor.constraints)
    assert not np.isnan(json.loads((out / "test_results.json").read_text())["test_f1"])


def test_an_adapter_records_its_base_folder_absolutely_and_names_it_when_moved(
    data_dir, tmp_path, monkeypatch, capsys
):
    shutil.copytree(data_dir / "encoder", tmp_path / "enc")
    monkeypatch.chdir(tmp_path)  # the recipe names the encoder relative to here
    lora = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}
    out = train_run(data_dir, tmp_path / "lora", model_name_or_path="enc", do_predict=False, peft_config=lora)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tmp_path / "enc")
    monkeypatch.chdir(out)  # predicting from elsewhere finds the base
    code, _, err = run_cli([str(out), "-"], capsys, stdin="john smith\n", monkeypatch=monkeypatch)
    assert code == 0, err
    shutil.move(tmp_path / "enc", tmp_path / "moved")
    code, _, err = run_cli([str(out), "-"], capsys, stdin="john smith\n", monkeypatch=monkeypatch)
    assert code == 2 and f"the base model it adapts, '{tmp_path / 'enc'}', is not a directory" in err, err


def test_inputs_are_read_as_what_they_are(tmp_path):
    """Found by an audit: one piped line ending in a tag of the model (a POS model's '.') was read as CoNLL and
    only its first word labelled; a CSV file, or a JSON array, was labelled as text, its syntax included."""
    from seqft.predict import sniff_format

    pos = {"NNP", "VBZ", ".", "IN"}
    assert sniff_format("-", ["John lives in London ."], pos) == "text"
    assert sniff_format("one.txt", ["John lives in London ."], pos) == "text"
    assert sniff_format("three.txt", ["John NNP", "lives VBZ", ". ."], pos) == "conll"
    assert sniff_format("r.txt", ["[Reuters] John lives in London"], pos) == "text"  # text that opens with [
    for name, lines, what in [
        ("t.csv", ["tokens,ner_tags", "John,B-PER"], "a CSV file"),
        ("t.json", ['[{"tokens": ["John"]}]'], "a JSON array"),
        ("t.txt", ["[", '  {"tokens": ["John"]}', "]"], "a JSON array"),
    ]:
        with pytest.raises(DataError, match=f"{name}: {what}; seqft.predict reads raw text, CoNLL columns or JSON Li"):
            sniff_format(name, lines, pos)


def test_column_files_in_other_schemes_and_word_per_line_files_are_conll(tmp_path):
    """Found by an audit: a held-out file tagged in another scheme (S-PER, for an IOB2 model) or with an unseen
    type was read as raw text: every line its own text, tags read as words."""
    from seqft.predict import parse_input, read_lines, sniff_format

    iob2 = {"O", "B-PER", "I-PER"}
    assert sniff_format("held.txt", ["Mary S-PER", "visited O", "Paris U-LOC", "", "John B-NEW"], iob2) == "conll"
    # one field per line: words of CoNLL sentences, or paragraphs of Chinese text (found by a second audit: read as
    # CoNLL, each line a word): text, the documented default, with a pointer to --input-format conll
    assert sniff_format("words.txt", ["Mary", "visited", "Paris", "", "John", "said"], iob2) == "text"
    assert (
        sniff_format("zh.txt", ["张三在北京工作。", "李四去了上海。", "", "王五住在广州。", "东京是首都。"], iob2)
        == "text"
    )
    assert sniff_format("queries.txt", ["Mary", "Paris", "John"], iob2) == "text"
    assert sniff_format("text.txt", ["John lives in London .", "Mary said so", "ok then O"], iob2) == "text"
    # a CR-only file (old Macs) had one line; a byte-order mark inside (files concatenated) made -DOCSTART- a word
    path = tmp_path / "cr.txt"
    path.write_bytes(b"-DOCSTART- O\r\rJohn B-PER\rsaid O\r\r\xef\xbb\xbf-DOCSTART- O\r\rMary B-PER\r")
    documents = parse_input(str(path), read_lines(str(path)))
    assert [d.words for d in documents] == [["John", "said"], ["Mary"]]
    assert documents[0].doc_id != documents[1].doc_id
    with pytest.raises(DataError, match=r"ragged.txt:2: expected 2 columns \(as on line 1\), found 3"):
        parse_input("ragged.txt", ["John B-PER", "New York B-LOC"], "conll")


def test_model_folder_and_length_errors_are_one_line(model_dir, tmp_path, capsys):
    with pytest.raises(SeqFTError, match=r"max_seq_length = 1024 exceeds the model's \d+ positions"):
        Predictor(model_dir, max_seq_length=1024)
    with pytest.raises(SeqFTError, match="max_seq_length = 0: expected a positive number"):
        Predictor(model_dir, max_seq_length=0)
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "config.json").write_text('{"id2label": ')
    (tmp_path / "in.txt").write_text("John lives in London\n")
    code, _, err = run_cli([str(broken), str(tmp_path / "in.txt")], capsys)
    assert code == 2 and "config.json: cannot be read as JSON" in err and "Traceback" not in err


def test_a_text_beside_tokens_is_copied_to_the_output(model_dir, tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"tokens": ["John", "Smith"], "text": "John  Smith", "id": 3}) + "\n"
    )
    code, out, err = run_cli([str(model_dir), str(tmp_path / "in.jsonl")], capsys)
    assert code == 0, err
    row = json.loads(out)
    assert row["text"] == "John  Smith" and row["id"] == 3 and row["tokens"] == ["John", "Smith"]  # text was dropped
