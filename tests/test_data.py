"""Data loading: CoNLL/JSON/CSV readers, package paths, schemes, alignment, and errors naming file and line."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from datasets import Dataset, DatasetDict
from helpers import SENTENCES, tiny_tokenizer, write_conll

from seqft import data as seqdata
from seqft import labels
from seqft.errors import DataError


def data_args(**kwargs):
    defaults = dict(
        dataset_name=None,
        dataset_config_name=None,
        train_file=None,
        validation_file=None,
        test_file=None,
        text_column_name=None,
        label_column_name=None,
        conll_label_column=-1,
        validation_split_percentage=None,
        test_split_percentage=None,
        max_train_samples=None,
        max_eval_samples=None,
        max_predict_samples=None,
    )
    defaults.update(kwargs)
    return SimpleNamespace(**defaults)


CONLL_2003 = """-DOCSTART- -X- -X- O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP I-NP I-LOC
"""


def test_conll_four_columns_docstart_and_column_choice(tmp_path):
    path = tmp_path / "eng.train"
    path.write_text(CONLL_2003)
    cols = seqdata.read_conll(str(path))
    assert cols["tokens"] == [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert cols["tags"][0] == ["I-ORG", "O", "I-MISC", "O", "O"]
    assert cols["doc_id"] == [1, 1, 2]
    assert cols["source"] == [f"{path}:3", f"{path}:9", f"{path}:14"]  # the path as given
    assert seqdata.read_conll(str(path), label_column=1)["tags"][0] == ["NNP", "VBZ", "JJ", "NN", "."]
    assert seqdata.read_conll(str(path), label_column=2)["tags"][1] == ["I-NP", "I-NP"]


def test_iob1_is_detected_and_converted_to_iob2(tmp_path):
    path = tmp_path / "eng.train"
    path.write_text(CONLL_2003)
    raw = seqdata.load_raw_splits(data_args(train_file=str(path)), seed=0)
    converted, labels, scheme = seqdata.prepare_labels(raw, "IOB2")
    assert scheme == "IOB2"
    assert converted["train"]["tags"][0] == ["B-ORG", "O", "B-MISC", "O", "O"]
    assert converted["train"]["tags"][1] == ["B-PER", "I-PER"]
    assert labels[0] == "O" and "I-LOC" in labels and "B-LOC" in labels  # completed label list


def test_a_models_bioes_labels_decide_bioes_against_iob():
    """A fine-tuned model's (or teacher's) labels fix BIOES vs IOB: `auto` follows them, a label_scheme of the
    other kind is an error; before, IOB2 gold went beside a BIOES label list without a word."""
    iob2 = [(["John", "Smith", "in", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"])]
    bioes = [(["John", "Smith", "in", "Paris"], ["B-PER", "E-PER", "O", "S-LOC"])]

    def raw(sentences):
        tokens, tags = zip(*sentences)
        return DatasetDict(train=Dataset.from_dict({"tokens": tokens, "tags": tags, "source": ["t.txt:1"]}))

    bioes_labels = labels.complete_label_list(["S-LOC", "B-PER"], "BIOES")
    iob_labels = labels.complete_label_list(["B-LOC", "B-PER"], "IOB2")
    converted, names, scheme = seqdata.prepare_labels(raw(iob2), "auto", bioes_labels)
    assert (scheme, names, converted["train"]["tags"][0]) == ("BIOES", bioes_labels, bioes[0][1])
    converted, _, scheme = seqdata.prepare_labels(raw(bioes), "auto", iob_labels)
    assert (scheme, converted["train"]["tags"][0]) == ("IOB2", iob2[0][1])
    assert seqdata.prepare_labels(raw(iob2), "BIOES", bioes_labels)[2] == "BIOES"
    assert seqdata.prepare_labels(raw(bioes), "IOB1", iob_labels)[2] == "IOB1"  # IOB1 and IOB2 lists read alike
    with pytest.raises(DataError) as info:
        seqdata.prepare_labels(raw(iob2), "IOB2", bioes_labels, "the teacher (t)")
    assert str(info.value).startswith(
        "label_scheme is IOB2, but the teacher (t) predicts BIOES tags (E-LOC, S-LOC, E-PER, S-PER): set "
        "label_scheme to BIOES (or auto)"
    ), info.value
    with pytest.raises(
        DataError, match=r"is BIOES, but the model predicts IOB1/IOB2 tags \(B-LOC, I-LOC, B-PER, I-PER\): "
    ):
        seqdata.prepare_labels(raw(bioes), "BIOES", iob_labels)


def test_datasets_built_in_code_need_no_source_column():
    """prepare_labels read a `source` column (file:line, as seqft's readers write it) that datasets built in code
    do not have: it failed with datasets' "Column 'source' doesn't exist". Rows are now named by split and row."""
    tokens, tags = ["John", "lives", "in", "Paris"], ["I-PER", "O", "O", "I-LOC"]
    converted, names, scheme = seqdata.prepare_labels(
        DatasetDict(train=Dataset.from_dict({"tokens": [tokens], "tags": [tags]})), "IOB2"
    )
    assert (scheme, converted["train"]["tags"][0]) == ("IOB2", ["B-PER", "O", "O", "B-LOC"])
    bad = Dataset.from_dict({"tokens": [tokens, tokens], "tags": [tags, ["O", "O", "O", "B_LOC"]]})
    with pytest.raises(DataError, match=r"^test:row 2: token 4: tag 'B_LOC' is malformed"):
        seqdata.prepare_labels(
            DatasetDict(train=Dataset.from_dict({"tokens": [tokens], "tags": [tags]}), test=bad), "IOB2"
        )


def test_whitespace_only_lines_break_sentences(tmp_path):
    path = tmp_path / "wnut.txt"
    path.write_text("Empire\tB-facility\nState\tI-facility\n\t\nhello\tO\n")
    assert seqdata.read_conll(str(path))["tokens"] == [["Empire", "State"], ["hello"]]


@pytest.mark.parametrize(
    "text,message",
    [
        ("John B-PER\nSmith\n", "t.txt:2: expected 2 columns (as on line 1), found 1: 'Smith'"),
        ("John NNP B-PER\nSmith NNP I-PER extra\n", "t.txt:2: expected 3 columns (as on line 1), found 4"),
        ("John\n", "t.txt:1: a CoNLL line needs a word and a tag"),
        ("-DOCSTART- O\n\n", "no sentences found"),
    ],
)
def test_malformed_conll(tmp_path, text, message):
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        seqdata.read_conll(str(path))
    assert message in str(err.value)


def test_label_column_out_of_range(tmp_path):
    path = write_conll(tmp_path / "t.txt")
    with pytest.raises(DataError, match="conll_label_column=3 does not exist in a file with 2 columns"):
        seqdata.read_conll(str(path), label_column=3)


def test_invalid_tag_names_file_and_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("John B-PER\nlives O\n\nMary B_PER\n")
    raw = seqdata.load_raw_splits(data_args(train_file=str(path)), seed=0)
    with pytest.raises(DataError) as err:
        seqdata.prepare_labels(raw, "IOB2")
    assert "t.txt:4" in str(err.value) and "B_PER" in str(err.value)


@pytest.mark.parametrize("tags, shown, hint", [("B_PER I_PER O", "B_PER", "B-PER"), ("b-per i-per O", "b-per", "B-per"),
                                              ("O PER-B PER-I", "PER-B", "B-PER")])  # fmt: skip
def test_a_file_of_malformed_prefix_tags_names_the_first_not_plain_tags(tmp_path, tags, shown, hint):
    """With no valid prefix tag at all, such a file was detected as plain: the error named no line and advised
    label_scheme plain/auto, which trained entity tags as POS tags. In a test file beside good training data too."""
    words = ["John", "Smith", "said"]
    bad = write_conll(tmp_path / "bad.txt", [(words, tags.split())] * 2)
    line = 2 + tags.split().index(shown)  # after the -DOCSTART- line and its blank line
    for args in (
        {"train_file": str(bad)},
        {"train_file": str(write_conll(tmp_path / "ok.txt")), "test_file": str(bad)},
    ):
        raw = seqdata.load_raw_splits(data_args(**args), seed=0)
        with pytest.raises(
            DataError, match=rf"bad.txt:{line + 1}: tag '{shown}' is malformed \(did you mean '{hint}'"
        ):
            seqdata.prepare_labels(raw, "IOB2")
    pos = write_conll(tmp_path / "pos.txt", [(words, ["NNP", "NNP", "VBD"])])  # real POS tags: the old advice stands
    with pytest.raises(DataError, match="are plain but label_scheme is IOB2: set label_scheme to plain or 'auto'"):
        seqdata.prepare_labels(seqdata.load_raw_splits(data_args(train_file=str(pos)), seed=0), "IOB2")


def test_rows_that_lost_or_gained_something_are_refused_and_only_newlines_end_json_lines(tmp_path):
    """Found by an audit: JSON null/number words trained as 'None'/'nan'/'3'; a CSV row with an extra field was
    taken; a first row without the tags column made another column the tags; U+2028 inside a JSON Lines string
    split the row; a byte-order mark inside a CoNLL file (files concatenated) made -DOCSTART- a word."""

    def load(name, text):
        (tmp_path / name).write_text(text, encoding="utf-8")
        return seqdata.load_raw_splits(data_args(train_file=str(tmp_path / name)), seed=0)

    with pytest.raises(DataError, match=r"w.jsonl:1: word 2 of 'tokens' is None \(NoneType\), not a string"):
        load("w.jsonl", '{"tokens": ["Paris", null], "ner_tags": ["B-LOC", "O"]}\n')
    with pytest.raises(DataError, match="e.csv:3: the row has 3 fields but the header 2: quote a field that holds"):
        load("e.csv", "tokens,ner_tags\nJohn,B-PER\nNew York,B-LOC I-LOC,EXTRA\n")
    with pytest.raises(DataError, match="one tag. One label for a whole text. Set 'task': 'sequence-classification"):
        load("glue.csv", "sentence1,label\nthe team won the game,Sports\n")  # a run_glue file, task not set
    with pytest.raises(DataError, match="k.jsonl:1: row has no column 'ner_tags'"):
        load("k.jsonl", '{"tokens": ["a"], "id": 1}\n{"tokens": ["John"], "ner_tags": ["B-PER"], "id": 2}\n')
    raw = load("u.jsonl", '{"tokens": ["Hi", "a\u2028b\u0085c"], "ner_tags": ["O", "O"], "note": "x\u2028y"}\n')
    assert raw["train"]["tokens"] == [["Hi", "a\u2028b\u0085c"]]
    raw = load("bom.txt", "-DOCSTART- O\n\nJohn B-PER\n\n\ufeff-DOCSTART- O\n\nMary B-PER\n")
    assert raw["train"]["tokens"] == [["John"], ["Mary"]] and len(set(raw["train"]["doc_id"])) == 2


def test_tags_that_differ_only_in_their_unicode_form_are_named(tmp_path, caplog):
    """B-PERSÖNLICH precomposed and with a combining diaeresis became two look-alike types without a word (found
    by an audit); they stay two labels (the data says so), now with a warning that names both."""
    nfc, nfd = "B-PERS\u00d6NLICH", "B-PERSO\u0308NLICH"
    path = write_conll(tmp_path / "t.txt", [(["Angela"], [nfc]), (["Olaf"], [nfd])])
    caplog.set_level(logging.WARNING, logger="seqft")
    _, labels, _ = seqdata.prepare_labels(seqdata.load_raw_splits(data_args(train_file=str(path)), seed=0), "IOB2")
    assert nfc in labels and nfd in labels
    assert "labels that differ only in their Unicode form are kept apart" in caplog.text
    assert ascii(nfc) in caplog.text and ascii(nfd) in caplog.text


def test_the_first_sentence_with_a_bad_tag_is_named_when_its_tags_repeat(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("John B-PER\nlives O\n\nMary B-PER\nsays O\n\nBob B-PER\nSmith B_PER\n\nAl B-PER\nSmith B_PER\n")
    raw = seqdata.load_raw_splits(data_args(train_file=str(path)), seed=0)
    with pytest.raises(DataError, match="t.txt:8: tag 'B_PER' is malformed"):  # the line of the tag itself
        seqdata.prepare_labels(raw, "IOB2")


def test_carved_splits_get_the_tags_of_their_own_rows(tmp_path):
    """Carved splits are index maps into the training file: each column must be read through them."""
    iob1 = [(words, [t.replace("B-", "I-") for t in tags]) for words, tags in SENTENCES]  # no adjacent same types
    path = write_conll(tmp_path / "t.txt", iob1 * 5)
    args = data_args(train_file=str(path), validation_split_percentage=0.2, test_split_percentage=0.2)
    raw = seqdata.load_raw_splits(args, seed=3)
    assert raw["test"]._indices is not None  # an index map, not a copy
    converted, _, _ = seqdata.prepare_labels(raw, "IOB2")
    gold = {tuple(words): tags for words, tags in SENTENCES}
    for name, split in converted.items():
        assert split["source"][:] == raw[name]["source"][:]
        assert split["tags"][:] == [gold[tuple(words)] for words in split["tokens"][:]], name


def test_fingerprints_are_deterministic_and_follow_the_inputs(tmp_path):
    raw = seqdata.load_raw_splits(data_args(train_file=str(write_conll(tmp_path / "t.txt"))), seed=0)
    converted, labels, _ = seqdata.prepare_labels(raw, "IOB2")
    train = converted["train"]
    assert train._fingerprint == seqdata.prepare_labels(raw, "IOB2")[0]["train"]._fingerprint
    assert train._fingerprint not in (
        raw["train"]._fingerprint,
        seqdata.prepare_labels(raw, "BIOES")[0]["train"]._fingerprint,
    )
    label2id = {name: i for i, name in enumerate(labels)}

    def fingerprint(tokenizer=None, label2id=label2id, max_length=32, label_all_tokens=False, stride=4):
        tokenizer = tokenizer or tiny_tokenizer()
        out = seqdata.tokenize_split(train, tokenizer, label2id, max_length, label_all_tokens, stride=stride)
        return out._fingerprint

    variants = [
        fingerprint(tiny_tokenizer(do_lower_case=False)),
        fingerprint(label2id={**label2id, "B-X": len(label2id)}),
        fingerprint(max_length=16),
        fingerprint(label_all_tokens=True),
        fingerprint(stride=2),
    ]
    assert fingerprint() == fingerprint()  # equal inputs, a fresh tokenizer
    assert len({fingerprint(), *variants}) == 6


def test_unknown_tag_in_validation(tmp_path):
    train = write_conll(tmp_path / "train.txt")
    dev = tmp_path / "dev.txt"
    dev.write_text("Acme B-PRODUCT\n")
    raw = seqdata.load_raw_splits(data_args(train_file=str(train), validation_file=str(dev)), seed=0)
    with pytest.raises(DataError) as err:
        seqdata.prepare_labels(raw, "IOB2")
    assert "dev.txt:1: tag 'B-PRODUCT' in the validation split is not among the model's labels" in str(err.value)


def test_unknown_tag_names_its_own_line_and_the_path_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_conll(tmp_path / "train.txt")
    (tmp_path / "data").mkdir()
    Path("data/unseen.txt").write_text("John B-PER\nworks O\nat O\nAcme B-MISC\n")
    raw = seqdata.load_raw_splits(data_args(train_file="train.txt", test_file="data/unseen.txt"), seed=0)
    with pytest.raises(DataError) as err:
        seqdata.prepare_labels(raw, "IOB2")
    assert str(err.value).startswith("data/unseen.txt:4: tag 'B-MISC' in the test split is not among the model's")
    # Rows of JSON Lines: the row's line and the word's number; a converted tag is shown as written and converted.
    Path("data/unseen.jsonl").write_text(
        json.dumps({"tokens": ["Acme", "Corp", "Inc"], "ner_tags": ["O", "O", "I-X"]})
    )
    raw = seqdata.load_raw_splits(data_args(train_file="train.txt", test_file="data/unseen.jsonl"), seed=0)
    with pytest.raises(
        DataError, match=r"^data/unseen\.jsonl:1: token 3: tag 'I-X' \(B-X in IOB2\) in the test split"
    ):
        seqdata.prepare_labels(raw, "IOB2")


IOB1_TEST = [
    (["John", "Smith", "lives", "in", "New", "York", "."], ["I-PER", "I-PER", "O", "O", "I-LOC", "I-LOC", "O"]),
    (["Berlin", "Paris", "Acme"], ["I-LOC", "B-LOC", "I-ORG"]),
]
IOB2_TEST = [(words, ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"][: len(words)]) for words, _ in IOB1_TEST[:1]]
IOB2_TEST.append((["Berlin", "Paris", "Acme"], ["B-LOC", "B-LOC", "B-ORG"]))
BIOES_TEST = [
    (IOB1_TEST[0][0], ["B-PER", "E-PER", "O", "O", "B-LOC", "E-LOC", "O"]),
    (IOB1_TEST[1][0], ["S-LOC", "S-LOC", "S-ORG"]),
]


@pytest.mark.parametrize(
    "test_sentences, target, expected",
    [
        (IOB1_TEST, "IOB2", IOB2_TEST),
        (IOB1_TEST, "auto", IOB2_TEST),  # auto: the training file's scheme
        (BIOES_TEST, "IOB2", IOB2_TEST),
        (IOB2_TEST, "BIOES", BIOES_TEST),
        (IOB1_TEST, "BIOES", BIOES_TEST),
    ],
    ids=["IOB1-to-IOB2", "IOB1-auto", "BIOES-to-IOB2", "IOB2-to-BIOES", "IOB1-to-BIOES"],
)
def test_each_file_is_converted_from_its_own_scheme(tmp_path, caplog, test_sentences, target, expected):
    """IOB2 training data beside a test file in another scheme: the test file is read in its own scheme."""
    train = write_conll(tmp_path / "train.txt")  # IOB2
    test = write_conll(tmp_path / "test.txt", test_sentences)
    raw = seqdata.load_raw_splits(data_args(train_file=str(train), test_file=str(test)), seed=0)
    caplog.set_level(logging.WARNING, logger="seqft")
    converted, labels, scheme = seqdata.prepare_labels(raw, target)
    assert scheme == ("IOB2" if target == "auto" else target)
    assert converted["test"]["tags"][:] == [tags for _, tags in expected]
    alone = seqdata.prepare_labels(DatasetDict(train=raw["train"]), target)[0]
    assert converted["train"]["tags"][:] == alone["train"]["tags"][:]  # train is converted as without the test file
    if test_sentences is not IOB2_TEST:
        assert f"{test}: its tags are" in caplog.text and f"but those of {train} are IOB2" in caplog.text


def test_stray_i_starts_are_written_canonically_with_a_warning(tmp_path, caplog):
    """An `I-X` after `O` in a file that elsewhere starts entities with `B-` is IOB2 with a stray, not IOB1. It was
    kept as written, so a CRF trained on a gold path its constraints forbid (losses in the thousands) and an IOB1
    file with one `B-X` slip was trained unconverted. Every sentence is now written canonically, with a warning."""
    stray = [(["Mary", "visited", "Paris"], ["O", "O", "I-LOC"]), *SENTENCES[:2]]
    train = write_conll(tmp_path / "train.txt")
    test = write_conll(tmp_path / "test.txt", stray)
    raw = seqdata.load_raw_splits(data_args(train_file=str(train), test_file=str(test)), seed=0)
    caplog.set_level(logging.WARNING, logger="seqft")
    converted, _, _ = seqdata.prepare_labels(raw, "IOB2")
    assert converted["test"]["tags"][:] == [["O", "O", "B-LOC"]] + [tags for _, tags in SENTENCES[:2]]
    assert converted["train"]["tags"][:] == [tags for _, tags in SENTENCES]  # canonical already: as written
    assert f"{test}: 1 sentence(s) not in canonical IOB2 (the first at {test}:5)" in caplog.text
    assert "train.txt" not in caplog.text
    # an IOB1 file with one B- at an entity start is read as IOB2, and comes out as its IOB1 reading would
    iob1 = [(["John", "Smith", "in", "Paris"], ["I-PER", "I-PER", "O", "B-LOC"]), (["Mary"], ["I-PER"])]
    raw = seqdata.load_raw_splits(data_args(train_file=str(write_conll(tmp_path / "iob1.txt", iob1))), seed=0)
    converted, _, scheme = seqdata.prepare_labels(raw, "IOB2")
    assert converted["train"]["tags"][:] == [["B-PER", "I-PER", "O", "B-LOC"], ["B-PER"]] and scheme == "IOB2"


def test_all_o_file_fits_any_scheme_and_plain_beside_prefix_tags_is_an_error(tmp_path):
    train = write_conll(tmp_path / "train.txt")
    outside = write_conll(tmp_path / "o.txt", [(["hello", "world"], ["O", "O"])])
    raw = seqdata.load_raw_splits(data_args(train_file=str(train), test_file=str(outside)), seed=0)
    assert seqdata.prepare_labels(raw, "BIOES")[0]["test"]["tags"][:] == [["O", "O"]]
    pos = write_conll(tmp_path / "pos.txt", [(["hello", "world"], ["UH", "NN"])])
    raw = seqdata.load_raw_splits(data_args(train_file=str(train), test_file=str(pos)), seed=0)
    with pytest.raises(DataError) as err:
        seqdata.prepare_labels(raw, "IOB2")
    assert str(err.value).startswith(f"{pos}: its tags are plain (POS-style) but those of {train} are prefix-style")
    assert "Wrong tag column" in str(err.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="Data file not found: .*nope.txt"):
        seqdata.load_raw_splits(data_args(train_file=str(tmp_path / "nope.txt")), seed=0)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty.txt: the file is empty"):
        seqdata.load_raw_splits(data_args(train_file=str(tmp_path / "empty.txt")), seed=0)


def test_json_jsonl_csv(tmp_path):
    rows = [{"tokens": w, "ner_tags": t} for w, t in SENTENCES]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "d.csv").write_text(
        "words,labels\n" + "\n".join(f'"{" ".join(w)}","{" ".join(t)}"' for w, t in SENTENCES) + "\n"
    )
    for name in ("d.json", "d.jsonl", "d.csv"):
        cols = seqdata.read_file(str(tmp_path / name), data_args())
        assert cols["tokens"] == [w for w, _ in SENTENCES], name
        assert cols["tags"] == [t for _, t in SENTENCES], name
    # JSON Lines of one row in a .json file (datasets reads it as one row) was refused as "not a list of objects"
    (tmp_path / "one.json").write_text(json.dumps(rows[0]) + "\n")
    cols = seqdata.read_file(str(tmp_path / "one.json"), data_args())
    assert cols["tokens"] == [SENTENCES[0][0]] and cols["source"] == [f"{tmp_path / 'one.json'}:1"]


@pytest.mark.parametrize(
    "rows,message",
    [
        ([{"tokens": ["a", "b"], "ner_tags": ["O"]}], "d.jsonl:1: 2 words in 'tokens' but 1 tags in 'ner_tags'"),
        ([{"tokens": ["a"], "ner_tags": [0]}], "must be tag names (strings)"),
        ([{"tokens": ["a"], "ner_tags": ["O"]}, {"tokens": ["b"]}], "d.jsonl:2: row has no column 'ner_tags'"),
        (
            [{"tokens": ["John", "", "Smith"], "ner_tags": ["B-PER", "O", "I-PER"]}],
            "d.jsonl:1: word 2 of 'tokens' (index 1) is '', empty or only whitespace",
        ),
        (
            [{"tokens": ["a"], "ner_tags": ["O"]}, {"tokens": ["Mary", " \t"], "ner_tags": ["B-PER", "O"]}],
            "d.jsonl:2: word 2 of 'tokens' (index 1) is ' \\t', empty or only whitespace",
        ),
        (
            [{"tokens": ["a"], "ner_tags": ["O"]}, {"tokens": [], "ner_tags": []}],
            "d.jsonl:2: the row has no words ('tokens' is empty)",
        ),
    ],
)
def test_bad_jsonl_rows(tmp_path, rows, message):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError) as err:
        seqdata.read_file(str(tmp_path / "d.jsonl"), data_args())
    assert message in str(err.value)


@pytest.mark.parametrize(
    "name, text",
    [
        ("t.txt", "-DOCSTART- -X- O\n\nJohn NNP B-PER\nSmith NNP I-PER\n"),
        ("t.jsonl", json.dumps({"tokens": ["John", "Smith"], "ner_tags": ["B-PER", "I-PER"]}) + "\n"),
        ("t.json", json.dumps([{"tokens": ["John", "Smith"], "ner_tags": ["B-PER", "I-PER"]}])),
        ("t.csv", "tokens,ner_tags\nJohn Smith,B-PER I-PER\n"),
    ],
    ids=["conll", "jsonl", "json", "csv"],
)
def test_a_byte_order_mark_is_not_data(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes("\ufeff".encode() + text.encode())
    cols = seqdata.read_file(str(path), data_args(text_column_name="tokens"))
    assert cols["tokens"] == [["John", "Smith"]]
    assert cols["tags"] == [["B-PER", "I-PER"]]


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("t.txt", b"John B-PER\n\nJos\xe9 B-PER\n", "t.txt:3: not valid UTF-8 (invalid continuation byte at byte 15)"),
        ("t.txt", b"\xef\xbb\xbfJos\xe9 B-PER\n", "t.txt:1: not valid UTF-8 (invalid continuation byte at byte 6)"),
        ("t.jsonl", b'{"tokens": ["Jos\xe9"], "ner_tags": ["O"]}\n', "t.jsonl:1: not valid UTF-8"),
        ("t.csv", b"tokens,ner_tags\nJos\xe9,O\n", "t.csv:2: not valid UTF-8"),
        # UTF-16 was advised the Latin-1 recipe, which trains on mojibake (found by an audit)
        ("t.txt", "John B-PER\n".encode("utf-16"), "t.txt: UTF-16 text (it starts with a UTF-16 byte-order mark)"),
    ],
    ids=["conll", "conll-bom", "jsonl", "csv", "utf-16"],
)
def test_a_file_that_is_not_utf8_names_line_and_byte(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError) as err:
        seqdata.load_raw_splits(data_args(train_file=str(path)), seed=0)
    assert str(err.value).startswith(f"{tmp_path}/{message}")
    assert "Re-encode the file as UTF-8" in str(err.value)


def test_named_column_missing(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"tokens": ["a"], "ner_tags": ["O"]}))
    with pytest.raises(DataError, match="no column 'words' \\(text_column_name\\); columns are: tokens, ner_tags"):
        seqdata.read_file(str(tmp_path / "d.jsonl"), data_args(text_column_name="words"))


def test_package_paths():
    path = seqdata.resolve_path("pkg://seqft/templates")
    assert path.endswith("seqft/templates")
    with pytest.raises(DataError, match="package 'no_such_pkg' is not installed"):
        seqdata.resolve_path("pkg://no_such_pkg/data.txt")
    with pytest.raises(DataError, match="'missing.txt' does not exist inside package 'seqft'"):
        seqdata.resolve_path("pkg://seqft/missing.txt")


def test_carved_splits_are_deterministic(tmp_path):
    path = write_conll(tmp_path / "t.txt", SENTENCES * 5)
    args = data_args(train_file=str(path), validation_split_percentage=0.2, test_split_percentage=0.2)
    a = seqdata.load_raw_splits(args, seed=7)
    b = seqdata.load_raw_splits(args, seed=7)
    assert sorted(a) == ["test", "train", "validation"]
    assert a["validation"]["source"] == b["validation"]["source"]
    assert len(a["train"]) + len(a["validation"]) + len(a["test"]) == 30
    assert not set(a["train"]["source"]) & set(a["test"]["source"])


def test_alignment_first_subword_and_all_subwords():
    tok = tiny_tokenizer()
    label2id = {"O": 0, "B-LOC": 1, "I-LOC": 2}
    ds = seqdata.Dataset.from_dict({"tokens": [["new", "yorker", "lives"]], "tags": [["B-LOC", "I-LOC", "O"]]})
    first = seqdata.tokenize_split(ds, tok, label2id, 32, label_all_tokens=False)
    # [CLS] new york ##er lives [SEP]
    assert first[0]["labels"] == [-100, 1, 2, -100, 0, -100]
    every = seqdata.tokenize_split(ds, tok, label2id, 32, label_all_tokens=True)
    assert every[0]["labels"] == [-100, 1, 2, 2, 0, -100]
    assert first[0]["length"] == 6 and first[0]["num_words_kept"] == 3


@pytest.mark.parametrize("split_special_tokens", [False, True])
def test_word_without_pieces_is_not_lost(split_special_tokens):
    """With split_special_tokens (as training saves tokenizers) the text "[UNK]" is several pieces: the stand-in
    must still be one piece, as the window plan counted it."""
    tok = tiny_tokenizer(split_special_tokens=split_special_tokens)
    ds = seqdata.Dataset.from_dict({"tokens": [["john", "\u200b", "lives"]], "tags": [["B-PER", "O", "O"]]})
    out = seqdata.tokenize_split(ds, tok, {"O": 0, "B-PER": 1}, 32, label_all_tokens=False)
    assert out[0]["labels"] == [-100, 1, 0, 0, -100]  # the empty word became one [UNK] piece and keeps its label
    assert out[0]["input_ids"][2] == tok.unk_token_id
    assert out[0]["num_words_kept"] == 3 and out[0]["length"] == 5


def test_truncation_is_reported(caplog):
    caplog.set_level(logging.WARNING, logger="seqft")  # whatever level an earlier in-process run left on "seqft"
    tok = tiny_tokenizer()
    ds = seqdata.Dataset.from_dict({"tokens": [["john"] * 20], "tags": [["O"] * 20]})
    out = seqdata.tokenize_split(ds, tok, {"O": 0}, 8, label_all_tokens=False)
    assert seqdata.truncation_report(out, "test") == 14
    assert "14 words in 1 sentences do not fit max_seq_length" in caplog.text


def test_bpe_tokenizer_gets_prefix_space(tmp_path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(w) for w, _ in SENTENCES] * 20, vocab_size=300, min_frequency=1)
    bpe.save_model(str(tmp_path))
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    merges = [tuple(line.split()) for line in (tmp_path / "merges.txt").read_text().splitlines()[1:] if line]
    # transformers 5 ignores vocab_file=/merges_file= here without an error: pass the contents.
    RobertaTokenizerFast(vocab=vocab, merges=merges).save_pretrained(tmp_path / "tok")
    plain = RobertaTokenizerFast.from_pretrained(tmp_path / "tok")
    with pytest.raises(DataError, match="add_prefix_space=True"):
        seqdata.check_pretokenized(plain)
    fixed = seqdata.load_tokenizer(str(tmp_path / "tok"))
    seqdata.check_pretokenized(fixed)  # reloaded with the prefix space


def test_a_generic_byte_level_tokenizer_gets_the_prefix_space_in_its_backend(tmp_path):
    """transformers 5 loads ModernBERT's tokenizer as the generic TokenizersBackend, which ignores add_prefix_space:
    seqft sets it in the backend's pre-tokenizer, and the saved tokenizer keeps it (for the pipeline too)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["[UNK]"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator([" ".join(w) for w, _ in SENTENCES] * 20, trainer)
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    with pytest.raises(DataError, match="add_prefix_space=True"):
        seqdata.check_pretokenized(AutoTokenizer.from_pretrained(tmp_path / "tok", add_prefix_space=True))
    fixed = seqdata.load_tokenizer(str(tmp_path / "tok"), split_special_tokens=True)
    seqdata.check_pretokenized(fixed)
    assert fixed.split_special_tokens
    fixed.save_pretrained(tmp_path / "saved")
    seqdata.check_pretokenized(AutoTokenizer.from_pretrained(tmp_path / "saved"))


def test_sort_by_length_keeps_original_order():
    ds = seqdata.Dataset.from_dict({"length": [5, 2, 9, 2]})
    out = seqdata.sort_by_length(ds)
    assert out["length"] == [2, 2, 5, 9]
    assert out["example_id"] == [1, 3, 0, 2]


def test_hub_style_dataset_with_class_labels(tmp_path):
    """`dataset_name` goes through datasets.load_dataset; a local parquet folder stands in for the Hub."""
    from datasets import ClassLabel, Features, List, Value

    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=names))})
    rows = {"tokens": [w for w, _ in SENTENCES], "ner_tags": [[names.index(t) for t in tags] for _, tags in SENTENCES]}
    (tmp_path / "data").mkdir()
    Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "data" / "train-00000.parquet"))
    raw = seqdata.load_raw_splits(data_args(dataset_name=str(tmp_path)), seed=0)
    assert raw["train"]["tags"] == [t for _, t in SENTENCES]
    with pytest.raises(DataError, match="could not load dataset 'no/such-dataset'"):
        seqdata.load_raw_splits(data_args(dataset_name="no/such-dataset"), seed=0)
    # the rows of a Hub dataset are checked as a local file's are
    for words, tags, problem in [
        (["Mary", " ", "Paris"], [1, 0, 3], r"\[train\]:row 2: word 2 of 'tokens' \(index 1\) is ' ', empty or only"),
        ([], [], r"\[train\]:row 2: the row has no words \('tokens' is empty\)"),
        (["Mary", "Paris"], [1], r"\[train\]:row 2: 2 words in 'tokens' but 1 tags in 'ner_tags'"),
    ]:
        bad = {"tokens": rows["tokens"][:2] + [words], "ner_tags": rows["ner_tags"][:2] + [tags]}
        Dataset.from_dict(bad, features=features).to_parquet(str(tmp_path / "data" / "train-00000.parquet"))
        with pytest.raises(DataError, match=problem):
            seqdata.load_raw_splits(data_args(dataset_name=str(tmp_path)), seed=0)


def test_shuffled_length_groups_keep_the_grouping_and_break_the_sweep():
    import torch

    lengths = [int(x) for x in torch.randint(3, 60, (1000,), generator=torch.Generator().manual_seed(0))]
    torch.manual_seed(1)
    order = list(seqdata.ShuffledLengthGroupedSampler(lengths, batch_size=8))
    assert sorted(order) == list(range(1000))  # a permutation: every example once per epoch
    batches = [order[i : i + 8] for i in range(0, 1000, 8)]
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert sorted(spans)[len(spans) // 2] <= 2  # batches are still length groups (little padding)
    maxima = [max(lengths[i] for i in b) for b in batches[:50]]
    descending = sum(a >= b for a, b in zip(maxima, maxima[1:]))
    assert descending < 40  # the stock sampler's first megabatch runs longest -> shortest (49 of 49)
    torch.manual_seed(1)
    assert list(seqdata.ShuffledLengthGroupedSampler(lengths, batch_size=8)) == order  # seeded


def test_setup_benchmark_runs_end_to_end_on_tiny_files(tmp_path):
    """benchmarks/bench_setup.py on a tiny tokenizer and CoNLL fixture, so that it cannot rot (no speed asserted)."""
    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    write_conll(tmp_path / "train.txt", SENTENCES * 4)
    write_conll(tmp_path / "test.txt")
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_setup.py"
    args = ["--data_dir", str(tmp_path), "--train_file", "train.txt", "--test_file", "test.txt"]
    args += ["--model", str(tmp_path / "tok"), "--rounds", "1", "--output", str(tmp_path / "setup")]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, str(bench), *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {row["arm"]: row for row in json.loads((tmp_path / "setup.json").read_text())["rows"]}
    assert rows["run_ner"]["rows"] == rows["seqft"]["rows"] == {"train": 24, "test": 6}
    assert rows["run_ner"]["ratio_median"] == 1.0 and rows["seqft"]["seconds_median"] > 0
    assert (
        (tmp_path / "setup.md").read_text().startswith("| arm | wall s, median | vs run_ner, median of round ratios |")
    )


def test_conllu_and_a_folder_without_tokenizer_files_are_errors(tmp_path):
    path = tmp_path / "ud.conllu"
    path.write_text("# sent_id = 1\n1\tJohn\tjohn\tPROPN\n")
    with pytest.raises(DataError, match="CoNLL-U .* is not read: its first column is a word index"):
        seqdata.read_file(str(path), SimpleNamespace(conll_label_column=-1))
    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    assert seqdata.load_tokenizer(str(tmp_path / "tok")).is_fast
    (tmp_path / "empty").mkdir()  # transformers would build an empty vocabulary: every word [UNK]
    with pytest.raises(DataError, match="empty: no tokenizer files"):
        seqdata.load_tokenizer(str(tmp_path / "empty"))


def test_tag_columns_are_found_as_run_ner_finds_them(tmp_path, caplog):
    """task_name picks `{task_name}_tags` (it was ignored: POS runs trained on ner_tags); without known names the
    second column holds the tags (it was the last); column names set for a CoNLL file are reported, not ignored."""
    rows = [{"tokens": ["John", "runs"], "pos_tags": ["NNP", "VBZ"], "ner_tags": ["B-PER", "O"]}]
    (tmp_path / "t.json").write_text(json.dumps(rows))
    assert seqdata.read_file(str(tmp_path / "t.json"), data_args(task_name="pos"))["tags"] == [["NNP", "VBZ"]]
    assert seqdata.read_file(str(tmp_path / "t.json"), data_args(task_name="ner"))["tags"] == [["B-PER", "O"]]
    rows = [{"words_x": ["John", "runs"], "my_tags": ["B-PER", "O"], "other": ["x", "y"]}]
    (tmp_path / "u.json").write_text(json.dumps(rows))
    assert seqdata.read_file(str(tmp_path / "u.json"), data_args())["tags"] == [["B-PER", "O"]]
    write_conll(tmp_path / "c.txt", SENTENCES[:1])
    with caplog.at_level(logging.WARNING):
        seqdata.read_file(str(tmp_path / "c.txt"), data_args(label_column_name="pos_tags"))
    assert "label_column_name name columns of JSON, CSV or Hub data, not of this CoNLL file" in caplog.text


def test_json_rows_without_a_doc_id_are_documents_of_their_own(tmp_path):
    """As seqft.predict reads them: under doc_context, training took every such row as one document 0, so unrelated
    rows became each other's context and the run's test predictions differed from seqft.predict's."""
    rows = [
        {"tokens": ["a"], "ner_tags": ["O"], "doc_id": 7},
        {"tokens": ["b"], "ner_tags": ["O"], "doc_id": 7},
        {"tokens": ["c"], "ner_tags": ["O"]},
        {"tokens": ["d"], "ner_tags": ["O"], "doc_id": "x"},
    ]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ids = seqdata.read_file(str(tmp_path / "t.jsonl"), data_args())["doc_id"]
    assert ids[0] == ids[1] == 7 and len({ids[1], ids[2], ids[3]}) == 3
