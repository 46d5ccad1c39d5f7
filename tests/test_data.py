"""Data loading: CoNLL/JSON/CSV readers, package paths, schemes, alignment, and errors naming file and line."""

import json
from types import SimpleNamespace

import pytest
from datasets import Dataset
from helpers import SENTENCES, tiny_tokenizer, write_conll

from seqft import data as seqdata
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
    assert cols["source"] == ["eng.train:3", "eng.train:9", "eng.train:14"]
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


def test_unknown_tag_in_validation(tmp_path):
    train = write_conll(tmp_path / "train.txt")
    dev = tmp_path / "dev.txt"
    dev.write_text("Acme B-PRODUCT\n")
    raw = seqdata.load_raw_splits(data_args(train_file=str(train), validation_file=str(dev)), seed=0)
    with pytest.raises(DataError) as err:
        seqdata.prepare_labels(raw, "IOB2")
    assert "dev.txt:1: tag 'B-PRODUCT' in the validation split is not among the model's labels" in str(err.value)


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


@pytest.mark.parametrize(
    "rows,message",
    [
        ([{"tokens": ["a", "b"], "ner_tags": ["O"]}], "d.jsonl:1: 2 words in 'tokens' but 1 tags in 'ner_tags'"),
        ([{"tokens": ["a"], "ner_tags": [0]}], "must be tag names (strings)"),
        ([{"tokens": ["a"], "ner_tags": ["O"]}, {"tokens": ["b"]}], "d.jsonl:2: row has no column 'ner_tags'"),
    ],
)
def test_bad_jsonl_rows(tmp_path, rows, message):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError) as err:
        seqdata.read_file(str(tmp_path / "d.jsonl"), data_args())
    assert message in str(err.value)


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


def test_word_without_pieces_is_not_lost():
    tok = tiny_tokenizer()
    ds = seqdata.Dataset.from_dict({"tokens": [["john", "\u200b", "lives"]], "tags": [["B-PER", "O", "O"]]})
    out = seqdata.tokenize_split(ds, tok, {"O": 0, "B-PER": 1}, 32, label_all_tokens=False)
    assert out[0]["labels"] == [-100, 1, 0, 0, -100]  # the empty word became [UNK] and keeps its label
    assert out[0]["num_words_kept"] == 3


def test_truncation_is_reported(caplog):
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
