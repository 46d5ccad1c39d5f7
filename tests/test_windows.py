"""Long sentences as windows: planning, alignment, merging, CRF validity, document context, metrics, training."""

import itertools
import json

import numpy as np
import pytest
from datasets import Dataset
from helpers import SENTENCES, WORDS, save_tiny_bert, tiny_bert_config, tiny_tokenizer, write_conll
from transformers import EvalPrediction

from seqft import DataArguments, RecipeError, windows
from seqft import data as seqdata
from seqft.metrics import build_compute_metrics as per_window_metrics
from seqft.modeling import SeqFTCRFConfig, allowed_transitions
from seqft.train import main

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
LABEL2ID = {label: i for i, label in enumerate(LABELS)}
ID2LABEL = dict(enumerate(LABELS))
# [CLS] john smith lives in new york ##er and works for acme corp . [SEP]: 12 words, 13 pieces
SENTENCE = ["john", "smith", "lives", "in", "new", "yorker", "and", "works", "for", "acme", "corp", "."]


def encode(words, max_length, stride, **kwargs):
    return windows.encode(tiny_tokenizer(), [words], [0], max_length=max_length, stride=stride, **kwargs)


# --- planning ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts,budget,stride,expected",
    [
        # 5 tokens fit (the 3-piece word does not); overlap "in"+"new" = 2 tokens; and so on
        ([1, 2, 1, 1, 3, 1, 1, 2, 1], 6, 2, [(0, 4), (2, 6), (5, 9)]),
        ([1, 2, 1, 1, 3, 1, 1, 2, 1], 6, None, [(0, 4)]),  # truncation: the first window only
        ([1, 2, 1, 1, 3, 1, 1, 2, 1], 6, 0, [(0, 4), (4, 7), (7, 9)]),  # no overlap
        ([1, 10, 1], 6, 2, [(0, 1), (1, 2), (2, 3)]),  # a word longer than a window gets a window of its own
        ([2, 2, 2], 6, 2, [(0, 3)]),  # fits
        ([], 6, 2, []),
    ],
)
def test_plan_windows(counts, budget, stride, expected):
    assert windows.plan_windows(counts, budget, stride) == expected


def test_windows_cut_between_words_and_label_every_word_in_every_window():
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O", "O", "O", "B-ORG", "I-ORG", "O"]
    out = encode(SENTENCE, 8, 2, tags={0: tags}, label2id=LABEL2ID)  # 6 tokens per window + [CLS] [SEP]
    tok = tiny_tokenizer()
    pieces = [tok.convert_ids_to_tokens(ids) for ids in out["input_ids"]]
    assert pieces == [
        ["[CLS]", "john", "smith", "lives", "in", "new", "[SEP]"],
        ["[CLS]", "in", "new", "york", "##er", "and", "works", "[SEP]"],  # "yorker" is not split across windows
        ["[CLS]", "and", "works", "for", "acme", "corp", ".", "[SEP]"],
    ]
    assert list(zip(out["window_start"], out["window_end"])) == [(0, 5), (3, 8), (6, 12)]
    assert out["word_index"][1] == [-100, 3, 4, 5, -100, 6, 7, -100]
    assert out["word_ids"][1] == [-100, 0, 1, 2, 2, 3, 4, -100]  # into the window's own words, for distillation
    for labels, index in zip(out["labels"], out["word_index"]):
        assert [lab for lab in labels if lab != -100] == [LABEL2ID[tags[w]] for w in index if w != -100]
    # context (subword tokens to the window edge; the sentence's own start/end is unlimited)
    U = windows.UNLIMITED
    assert [c for c in out["word_context"][0] if c != -100] == [4, 3, 2, 1, 0]
    assert [c for c in out["word_context"][1] if c != -100] == [0, 1, 2, 1, 0]
    assert [c for c in out["word_context"][2] if c != -100] == [0, 1, 2, 3, 4, 5]
    assert U not in out["word_context"][0]  # john has left context U but right context 4: min is 4
    assert out["num_words_kept"] == [5, 3, 4] and out["num_words"] == [12] * 3


def test_merge_takes_each_word_from_the_window_where_it_has_most_context():
    out = encode(SENTENCE, 8, 2)
    # window k predicts label k+1 everywhere: the merged tags show which window each word came from
    parts = []
    for k, (index, context) in enumerate(zip(out["word_index"], out["word_context"])):
        keep = [p for p, w in enumerate(index) if w != -100]
        logits = np.zeros((len(keep), 4))
        logits[:, k + 1] = 1.0
        parts.append((0, np.array(index)[keep], np.array(context)[keep], logits))
    # "in": context 1 in window 0, 0 in window 1; "new": 0 vs 1; "and": 1 (window 1) vs 0; "works": 0 vs 1
    expected = [1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]
    for order in itertools.permutations(range(3)):  # evaluation sets are sorted by length: order must not matter
        rows, covered = windows.merge([parts[i] for i in order], {0: 12})[0]
        assert covered.all()
        assert rows.argmax(-1).tolist() == expected


def test_ties_go_to_the_window_that_starts_earlier():
    a = (0, np.array([0, 1]), np.array([3, 2]), np.array([10, 11]))
    b = (0, np.array([1, 2]), np.array([2, 5]), np.array([21, 22]))
    for parts in ([a, b], [b, a]):
        rows, covered = windows.merge(parts, {0: 4})[0]
        assert rows.tolist() == [10, 11, 22, 0] and covered.tolist() == [True, True, True, False]


def test_sentences_that_fit_are_tokenised_once_and_every_window_matches_its_words_alone():
    """The piece counts' encoding is reused for sentences that fit; only windows of long sentences, sentences with
    a word replaced by [UNK] and over-long words are tokenised again. Every row equals its words tokenised alone."""
    tok = tiny_tokenizer()
    calls = []

    class CountingTokenizer:  # the tiny tokenizer, recording how many texts each call tokenises
        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, texts, **kwargs):
            calls.append(len(texts))
            return tok(texts, **kwargs)

    long_word = "york" + "er" * 20  # york ##er ##er ...: 21 pieces, more than a window holds
    sentences = [["john", "smith"], SENTENCE * 2, ["mary", "\u200b", "paris"], [], ["new", "yorker"], [long_word]]
    tags = [["B-PER"] + ["I-PER"] * (len(s) - 1) if s else [] for s in sentences]
    out = windows.encode(
        CountingTokenizer(), sentences, range(6), max_length=16, stride=3, tags=tags, label2id=LABEL2ID
    )
    long_windows = out["example_id"].count(1)
    assert long_windows == 3 and 3 not in out["example_id"]  # the empty sentence has no window
    # the five sentences, the stand-in checked for one piece, then the windows, the [UNK] sentence, the long word
    assert calls == [5, 1, long_windows + 2]
    for row, (i, start, end) in enumerate(zip(out["example_id"], out["window_start"], out["window_end"])):
        words = ["[UNK]" if w == "\u200b" else w for w in sentences[i][start:end]]
        alone = tok(words, is_split_into_words=True, truncation=True, max_length=16)
        for key in alone:
            assert out[key][row] == alone[key], (i, key)
        assert out["labels"][row] == seqdata.align_labels(alone.word_ids(), tags[i][start:end], LABEL2ID, False)
        assert out["word_ids"][row] == [-100 if w is None else w for w in alone.word_ids()]
    assert out["length"][-1] == 16 and out["num_words_kept"][-1] == 1  # the long word, cut after its first pieces

    calls.clear()
    windows.encode(CountingTokenizer(), [sentences[0], sentences[4]], [0, 1], max_length=16, stride=3)
    assert calls == [2]  # everything fits: one tokenisation


def test_every_word_of_a_10000_word_document_gets_exactly_one_prediction_in_order():
    words = [WORDS[i % len(WORDS)] + ("er" if i % 7 == 0 else "") for i in range(10_000)]  # some 2-piece words
    raw = Dataset.from_dict({"tokens": [words, ["john"]], "tags": [["O"] * 10_000, ["B-PER"]]})
    out = seqdata.tokenize_split(raw, tiny_tokenizer(), LABEL2ID, 32, False, stride=8)
    assert seqdata.truncation_report(out, "long") == 0
    assert len(out) > 400 and max(out["length"]) <= 32
    out = seqdata.sort_by_length(out)
    # predictions that are each position's own word index: merged, they must read 0, 1, ..., 9999
    width = max(out["length"])
    predictions = np.full((len(out), width), -100)
    for row, index in enumerate(out["word_index"]):
        predictions[row, : len(index)] = index
    merged = windows.WindowedSplit(out).merge(predictions)
    rows, covered, _ = merged[0]
    assert covered.all() and rows.tolist() == list(range(10_000))
    assert merged[1][0].tolist() == [0]


def test_truncation_is_still_available_and_counted():
    raw = Dataset.from_dict({"tokens": [SENTENCE], "tags": [["O"] * 12]})
    out = seqdata.tokenize_split(raw, tiny_tokenizer(), LABEL2ID, 8, False, stride=None)
    assert len(out) == 1 and seqdata.truncation_report(out, "test") == 7
    predicted, gold, missing = windows.word_predictions(
        windows.WindowedSplit(out), np.zeros((1, 7, 7)), ID2LABEL, label_ids=np.array(out["labels"])
    )
    assert missing == 7 and predicted == [["O"] * 12] and gold[0][5:] == [None] * 7


# --- metrics over merged words -----------------------------------------------------------------------------------


def test_eval_metrics_count_every_word_once():
    words = [w for w, _ in SENTENCES] * 3
    tags = [t for _, t in SENTENCES] * 3
    raw = Dataset.from_dict({"tokens": [sum(words, [])], "tags": [sum(tags, [])]})
    out = seqdata.sort_by_length(seqdata.tokenize_split(raw, tiny_tokenizer(), LABEL2ID, 12, False, stride=4))
    assert len(out) > 5
    best = {}
    for index, context in zip(out["word_index"], out["word_context"]):
        for w, c in zip(index, context):
            if w != -100:
                best[w] = max(best.get(w, -1), c)
    # right in the window each word is merged from, wrong (B-PER) wherever it has less context
    width = max(out["length"])
    logits = np.zeros((len(out), width, len(LABELS)))
    labels = np.full((len(out), width), -100)
    for row, (index, context, lab) in enumerate(zip(out["word_index"], out["word_context"], out["labels"])):
        labels[row, : len(lab)] = lab
        for p, (w, c) in enumerate(zip(index, context)):
            if w != -100:
                logits[row, p, lab[p] if c == best[w] else 1] = 1.0
    wrong = sum(
        c < best[w]
        for index, cs in zip(out["word_index"], out["word_context"])
        for w, c in zip(index, cs)
        if w != -100
    )
    assert wrong > 0

    metrics = windows.build_compute_metrics(out, ID2LABEL, "IOB2", gold=raw["tags"])(EvalPrediction(logits, labels))
    assert metrics["accuracy"] == 1.0 and metrics["f1"] == 1.0
    # per-window metrics would count the overlaps twice, mistakes included
    assert per_window_metrics(ID2LABEL, "IOB2")(EvalPrediction(logits, labels))["accuracy"] < 1.0


# --- CRF: merged output stays valid in the scheme --------------------------------------------------------------


SCHEME_LABELS = {"IOB2": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "BIOES": ["O", "B-PER", "I-PER", "E-PER", "S-PER"]}


@pytest.mark.parametrize("scheme", ["IOB2", "BIOES", "IOB1"])
def test_constrained_decode_matches_enumerating_every_sequence(scheme):
    labels = SCHEME_LABELS.get(scheme, ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    constraints = windows.scheme_constraints(labels, scheme)
    rng = np.random.default_rng(0)
    for n in (1, 2, 4):
        for _ in range(5):
            scores = rng.normal(size=(n, len(labels)))
            valid = [s for s in itertools.product(range(len(labels)), repeat=n) if windows.is_valid(s, constraints)]
            best = max(valid, key=lambda s: sum(scores[t, k] for t, k in enumerate(s)))
            assert windows.constrained_decode(scores, constraints).tolist() == list(best)


def test_decode_keeps_a_valid_argmax_and_repairs_a_seam():
    constraints = windows.scheme_constraints(LABELS, "IOB2")
    valid = np.log(np.eye(7)[[1, 2, 0, 3]] * 0.9 + 0.01)
    assert windows.decode_words(valid, constraints).tolist() == [1, 2, 0, 3]
    # window A said "O" for word 1, window B "I-PER" for word 2 (its path had B-PER on word 1): a seam
    seam = np.log(
        np.array([[0.9, 0.05, 0.05, 0, 0, 0, 0], [0.6, 0.4, 0, 0, 0, 0, 0], [0.1, 0.1, 0.8, 0, 0, 0, 0]]) + 1e-6
    )
    assert windows.decode_words(seam, None).tolist() == [0, 0, 2]  # the softmax head: plain argmax
    repaired = windows.decode_words(seam, constraints).tolist()
    assert repaired == [0, 1, 2] and windows.is_valid(repaired, constraints)
    ids = windows.decode_words(np.array([0, 0, 2]), constraints)  # already-chosen ids: fewest changes
    assert windows.is_valid(ids.tolist(), constraints) and sum(a != b for a, b in zip(ids, [0, 0, 2])) == 1


def test_constraints_come_from_crf_configs_only():
    config = SeqFTCRFConfig(encoder_config=tiny_bert_config(), id2label=ID2LABEL, label_scheme="IOB2")
    allowed, start, end = windows.decode_constraints(config)
    assert (allowed == allowed_transitions(LABELS, "IOB2")[0].numpy()).all()
    config.crf_constraints = False
    assert windows.decode_constraints(config) is None
    assert windows.decode_constraints(tiny_bert_config()) is None


# --- document context --------------------------------------------------------------------------------------------


def doc_split():
    sentences = [["john", "lives"], ["mary", "visited", "paris"], ["berlin", "is", "a", "city"], ["acme", "corp"]]
    tags = [["B-PER", "O"], ["B-PER", "O", "B-LOC"], ["B-LOC", "O", "O", "O"], ["B-ORG", "I-ORG"]]
    return Dataset.from_dict({"tokens": sentences, "tags": tags, "doc_id": [1, 1, 1, 2], "source": list("abcd")})


def test_doc_context_labels_only_the_centre_sentence():
    tok = tiny_tokenizer()
    out = seqdata.tokenize_split(doc_split(), tok, LABEL2ID, 32, False, stride=8, doc_context=1)
    pieces = [tok.convert_ids_to_tokens(ids) for ids in out["input_ids"]]
    assert pieces[1] == ["[CLS]", "john", "lives", "mary", "visited", "paris", "berlin", "is", "a", "city", "[SEP]"]
    assert out["labels"][1] == [-100, -100, -100, 1, 0, 3, -100, -100, -100, -100, -100]
    assert out["word_index"][1] == [-100, -100, -100, 0, 1, 2, -100, -100, -100, -100, -100]
    assert out["word_ids"][1] == [-100, -100, -100, 0, 1, 2, -100, -100, -100, -100, -100]
    assert out["tokens"][1] == ["mary", "visited", "paris"] and out["source"][1] == "b"
    assert pieces[0] == ["[CLS]", "john", "lives", "mary", "visited", "paris", "[SEP]"]  # first: context on the right
    assert pieces[3] == ["[CLS]", "acme", "corp", "[SEP]"]  # another document: no context
    # doc_context=0 is off
    plain = seqdata.tokenize_split(doc_split(), tok, LABEL2ID, 32, False, stride=8)
    assert [len(x) for x in plain["input_ids"]] == [4, 5, 6, 4]


def test_doc_context_fills_what_fits_nearest_words_first_alternating():
    tok = tiny_tokenizer()
    # centre "mary visited paris" (3 tokens) in a 9-token window: 6 tokens of context, 2 left (all there is) and 4 right
    out = seqdata.tokenize_split(doc_split(), tok, LABEL2ID, 11, False, stride=2, doc_context=2)
    assert tok.convert_ids_to_tokens(out["input_ids"][1]) == [
        "[CLS]", "john", "lives", "mary", "visited", "paris", "berlin", "is", "a", "city", "[SEP]"
    ]  # fmt: skip
    out = seqdata.tokenize_split(doc_split(), tok, LABEL2ID, 8, False, stride=2, doc_context=2)
    # 3 tokens of room: left "lives", right "berlin", left "john"
    assert tok.convert_ids_to_tokens(out["input_ids"][1]) == [
        "[CLS]", "john", "lives", "mary", "visited", "paris", "berlin", "[SEP]"
    ]  # fmt: skip
    assert windows.fill_context([1, 1, 1], [2, 1], 4) == (2, 1)
    assert windows.fill_context([], [1, 1], 5) == (0, 2)
    assert windows.document_neighbours([1, 1, 1, 2, 2], 1, 5) == ([0], [2])


# --- recipe fields -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"stride": -1}, "'stride' = -1 is out of range"),
        ({"doc_context": -2}, "'doc_context' = -2 is out of range"),
        ({"stride": 4, "truncate_long_sentences": True}, "'truncate_long_sentences' turns them off"),
        (
            {"doc_context": 1, "validation_split_percentage": 0.1},
            "'doc_context' needs the sentences in document order",
        ),
    ],
)
def test_recipe_field_checks(kwargs, message):
    with pytest.raises(RecipeError, match=message):
        DataArguments(**kwargs)


def test_stride_must_leave_room_for_new_words():
    tok = tiny_tokenizer()
    assert windows.resolve_stride(tok, 130, None) == 32  # a quarter of the 128 tokens besides [CLS] and [SEP]
    assert windows.resolve_stride(tok, 130, 5, truncate=True) is None
    with pytest.raises(RecipeError, match="'stride' = 4 does not fit max_seq_length 8: .* between 0 and 2"):
        windows.resolve_stride(tok, 8, 4)


# --- end to end: train, evaluate and predict long sentences with a CRF and document context ------------------------


def train_in(tmp_path, **overrides) -> int:
    """seqft.train on tmp_path's encoder/, train.txt and test.txt into out/ (trained, then tested)."""
    recipe = {
        "model_name_or_path": str(tmp_path / "encoder"),
        "train_file": str(tmp_path / "train.txt"),
        "test_file": str(tmp_path / "test.txt"),
        "output_dir": str(tmp_path / "out"),
        "do_train": True,
        "do_predict": True,
        "learning_rate": 1e-3,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        **overrides,
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    return main([str(tmp_path / "r.json")])


def test_training_on_windows_end_to_end(tmp_path):
    save_tiny_bert(tmp_path / "encoder")
    long = [(sum((w for w, _ in SENTENCES), []), sum((t for _, t in SENTENCES), []))]  # 40 words
    write_conll(tmp_path / "train.txt", long * 2 + SENTENCES)
    write_conll(tmp_path / "test.txt", SENTENCES[:2] + long)
    extra = {"validation_file": str(tmp_path / "test.txt"), "do_eval": True, "per_device_train_batch_size": 8}
    assert train_in(tmp_path, use_crf=True, max_seq_length=12, stride=3, doc_context=1, max_steps=3, **extra) == 0
    out = tmp_path / "out"
    evaluation = json.loads((out / "eval_results.json").read_text())
    assert evaluation["eval_samples"] == 3 and evaluation["eval_windows"] > 3
    test = json.loads((out / "test_results.json").read_text())
    assert test["test_words_truncated"] == 0 and "test_f1" in test
    written = [s.split("\n") for s in (out / "test_predictions.txt").read_text().split("\n\n") if s.strip()]
    expected = SENTENCES[:2] + long
    assert [[row.split()[0] for row in s] for s in written] == [w for w, _ in expected]
    assert [[row.split()[1] for row in s] for s in written] == [t for _, t in expected]
    constraints = windows.scheme_constraints(LABELS, "IOB2")
    for sentence in written:
        predicted = [LABEL2ID[row.split()[2]] for row in sentence]
        assert windows.is_valid(predicted, constraints)


@pytest.mark.parametrize(
    "model_type, positions, pad, expected",
    [("bert", 512, 0, 512), ("roberta", 514, 1, 512), ("data2vec-text", 514, 1, 512), ("xlm-roberta", 514, 1, 512)],
)
def test_model_positions_one_table_for_training_and_prediction(model_type, positions, pad, expected):
    """Training and prediction read the model's length from one function. Training knew only four RoBERTa-style
    types, so a data2vec-text model was offered all 514 positions and failed at its first long sentence."""
    from transformers import AutoConfig

    from seqft.predict import position_limit
    from seqft.train import resolve_max_length

    config = AutoConfig.for_model(model_type, max_position_embeddings=positions, pad_token_id=pad)
    assert windows.model_positions(config) == position_limit(config) == expected
    assert resolve_max_length(expected, tiny_tokenizer(), config) == expected
    with pytest.raises(RecipeError, match=f"exceeds the model's {expected} positions"):
        resolve_max_length(expected + 1, tiny_tokenizer(), config)


def test_pos_words_cut_by_truncation_get_no_phantom_o_tag(tmp_path):
    """Plain (POS) tags have no neutral tag: a word truncate_long_sentences cuts off is written `_`, scored wrong
    and counted as no class; it used to get `O`, a class the tagger does not have, which entered macro F1."""
    from seqft.metrics import sequence_metrics
    from seqft.predict import Document, Predictor

    pos = ["DET", "NOUN", "VERB", "ADP"]
    sentences = [(words, [pos[i % 4] for i in range(len(words))]) for words, _ in SENTENCES]
    long = (sum((w for w, _ in sentences), []), sum((t for _, t in sentences), []))
    save_tiny_bert(tmp_path / "encoder")
    write_conll(tmp_path / "train.txt", sentences)
    write_conll(tmp_path / "test.txt", [long])
    assert train_in(tmp_path, label_scheme="plain", max_seq_length=8, truncate_long_sentences=True, max_steps=2) == 0
    out = tmp_path / "out"
    rows = [line.split() for line in (out / "test_predictions.txt").read_text().splitlines() if line.strip()]
    cut = json.loads((out / "test_results.json").read_text())["test_words_truncated"]
    assert len(rows) == len(long[0]) and 0 < cut < len(rows)
    assert [r[2] for r in rows[-cut:]] == ["_"] * cut and set(r[2] for r in rows[:-cut]) <= set(pos)
    predicted = [None if r[2] == "_" else r[2] for r in rows]
    expected = sequence_metrics([long[1]], [predicted], "plain")
    test = json.loads((out / "test_results.json").read_text())
    assert test["test_accuracy"] == pytest.approx(expected["accuracy"])
    assert test["test_macro_f1"] == pytest.approx(expected["macro_f1"])
    phantom = sequence_metrics([long[1]], [predicted[:-cut] + ["O"] * cut], "plain")  # the old fill
    assert expected["accuracy"] == phantom["accuracy"] and expected["macro_f1"] > phantom["macro_f1"]

    (prediction,) = Predictor(out).predict_documents([Document.from_words(long[0], doc_id=0, source="s:1")])
    assert prediction.tags[-cut:] == [None] * cut and prediction.scores[-cut:] == [None] * cut
    assert all(e["label"] in pos for e in prediction.entities) and len(prediction.entities) == len(rows) - cut
    assert prediction.to_conll().splitlines()[-1].split() == [long[0][-1], "_"]


def test_virtual_tokens_that_fill_the_positions_are_named():
    """A prompt adapter whose virtual tokens leave no room was reported as "'max_seq_length' = -6", a length nobody
    had set (found by an audit)."""
    from transformers import AutoConfig

    from seqft.train import resolve_max_length

    config = AutoConfig.for_model("bert", max_position_embeddings=64)
    assert resolve_max_length(None, tiny_tokenizer(), config, virtual_tokens=20) == 44
    with pytest.raises(
        RecipeError, match=r"num_virtual_tokens = 70 leaves 0 of the model's 64 positions .* at most 56"
    ):
        resolve_max_length(None, tiny_tokenizer(), config, virtual_tokens=70)
