"""Label schemes: detection, validation, conversion, label lists; seqeval's span reader is the oracle."""

import itertools
import random

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from seqft.errors import DataError
from seqft.labels import (
    SCHEMES,
    b_to_i,
    complete_label_list,
    convert,
    detect_scheme,
    entity_types,
    find_invalid_tag,
    label_list,
    split_tag,
    tag_spans,
    validate_sequence,
)

PREFIX_SCHEMES = ("IOB1", "IOB2", "BIOES")
TYPES = ("PER", "LOC", "geo-loc")


def random_spans(rng: random.Random, length: int) -> list[tuple[str, int, int]]:
    """Sorted, non-overlapping (type, start, end-exclusive) spans, often adjacent and of the same type."""
    spans, position = [], 0
    while position < length:
        position += rng.choice((0, 0, 1, 2))
        end = min(length, position + rng.choice((1, 1, 2, 3)))
        if position < end:
            spans.append((rng.choice(TYPES), position, end))
        position = end
    return spans


def encode(spans, length: int, scheme: str) -> list[str]:
    """Test-side encoder, written independently of `seqft.labels`."""
    tags = ["O"] * length
    for index, (type_, start, end) in enumerate(spans):
        inside = [f"I-{type_}"] * (end - start)
        if scheme == "IOB2":
            inside[0] = f"B-{type_}"
        elif scheme == "IOB1":
            prev = spans[index - 1] if index else None
            if prev is not None and prev[0] == type_ and prev[2] == start:
                inside[0] = f"B-{type_}"
        elif len(inside) == 1:
            inside = [f"S-{type_}"]
        else:
            inside[0], inside[-1] = f"B-{type_}", f"E-{type_}"
        tags[start:end] = inside
    return tags


def seqeval_spans(tags) -> list[tuple[str, int, int]]:
    return [(type_, start, end + 1) for type_, start, end in get_entities(list(tags))]


@pytest.mark.parametrize(
    "tag, expected",
    [
        ("B-PER", ("B", "PER")),
        ("I-LOC", ("I", "LOC")),
        ("E-ORG", ("E", "ORG")),
        ("S-MISC", ("S", "MISC")),
        ("O", ("O", None)),
        ("B-geo-loc", ("B", "geo-loc")),
        ("B-NP", ("B", "NP")),
        ("NN", (None, "NN")),
        ("$", (None, "$")),
        ("-LRB-", (None, "-LRB-")),
        ("B_PER", (None, "B_PER")),
        ("X-PER", (None, "X-PER")),
        ("B-", (None, "B-")),
        ("B", (None, "B")),
    ],
)
def test_split_tag(tag, expected):
    assert split_tag(tag) == expected


@pytest.mark.parametrize(
    "sequences, expected",
    [
        # CoNLL-2003 original files: entities start with I-, B- only between adjacent same-type entities.
        ([["I-ORG", "O", "I-MISC", "O", "O", "I-MISC", "O"], ["I-PER", "I-PER"], ["I-LOC", "B-LOC", "O"]], "IOB1"),
        ([["I-PER", "I-LOC"], ["O", "O"]], "IOB1"),  # I- after another type starts an entity
        ([["I-NP", "I-NP", "B-NP", "I-VP", "I-NP"]], "IOB1"),  # CoNLL-2003 chunk column
        # WNUT-16: IOB2 with types containing dashes.
        ([["O", "B-person", "I-person", "O", "B-geo-loc"], ["B-company", "O"]], "IOB2"),
        ([["B-PER", "O"], ["O", "I-LOC", "I-LOC"]], "IOB2"),  # a stray I- start does not make it IOB1
        ([["I-PER", "B-LOC"]], "IOB2"),  # B- starting an entity after another type is IOB2 evidence
        ([["B-PER", "B-PER"], ["B-LOC"]], "IOB2"),  # no I- at all
        ([["B-NP", "I-NP", "B-VP", "B-PP", "B-NP", "O"]], "IOB2"),  # chunk tags are prefix-style
        ([["S-PER", "O", "B-LOC", "E-LOC"]], "BIOES"),
        ([["B-LOC", "I-LOC", "E-LOC"]], "BIOES"),
        ([["I-PER", "I-PER", "S-LOC"]], "BIOES"),
        ([["NNP", "VBZ", "$", "CD", "(", ")", "-LRB-", "."]], "plain"),
        ([["NN", "O"]], "plain"),
        ([["B-PER", "PER", "O"]], "IOB2"),  # a stray plain tag is left to validate_sequence
        ([["O", "O"], ["O"]], "IOB2"),
        ([], "IOB2"),
        ([[]], "IOB2"),
    ],
)
def test_detect_scheme(sequences, expected):
    assert detect_scheme(sequences) == expected
    assert detect_scheme(iter(reversed(sequences))) == expected  # order-independent, consumes an iterator once


def detect_scheme_oracle(sequences) -> str:
    """Test-side detection, token by token: the rules of `detect_scheme`'s docstring, written out directly."""
    prefixed = plain = bioes = i_starts = b_starts = False
    for sequence in sequences:
        prev_type = None
        for tag in sequence:
            prefix, _, type_ = tag.partition("-")
            if tag == "O":
                prev_type = None
            elif prefix not in ("B", "I", "E", "S") or not type_:
                plain, prev_type = True, None
            else:
                prefixed = True
                bioes |= prefix in ("E", "S")
                i_starts |= prefix == "I" and prev_type != type_
                b_starts |= prefix == "B" and prev_type != type_
                prev_type = type_
    if not prefixed:
        return "plain" if plain else "IOB2"
    return "BIOES" if bioes else "IOB1" if i_starts and not b_starts else "IOB2"


@pytest.mark.parametrize(
    "pool",
    [
        ["O", "I-PER", "B-PER", "I-LOC", "B-LOC"],
        ["O", "I-PER", "I-LOC", "I-geo-loc"],
        ["O", "I-PER", "I-LOC", "B-PER", "NN"],
        ["O", "B-PER", "I-PER", "E-PER", "S-LOC"],
        ["NN", "VBZ", "O", "B-"],
    ],
)
def test_detect_scheme_matches_a_token_by_token_oracle(pool):
    """`detect_scheme` looks only at distinct (previous tag, tag) pairs; the answer must be the per-token one's."""
    rng = random.Random(str(pool))
    for _ in range(500):
        corpus = [[rng.choice(pool) for _ in range(rng.randint(0, 6))] for _ in range(rng.randint(0, 4))]
        assert detect_scheme(corpus) == detect_scheme_oracle(corpus), corpus


@pytest.mark.parametrize(
    "sequences, expected",
    [
        ([["O", "O"], ["O"]], "BIOES"),  # all O: fits every scheme, the default is the answer
        ([], "BIOES"),
        ([["O", "I-PER"]], "IOB1"),  # real evidence wins over the default
        ([["NN"]], "plain"),
    ],
)
def test_detect_scheme_default_for_corpora_without_entities(sequences, expected):
    assert detect_scheme(sequences, default="BIOES") == expected


@pytest.mark.parametrize(
    "tags, source, target, expected",
    [
        (["I-PER", "I-PER", "B-PER", "O", "I-LOC"], "IOB1", "IOB2", ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),
        (["I-PER", "I-PER", "B-PER", "O", "I-LOC"], "IOB1", "BIOES", ["B-PER", "E-PER", "S-PER", "O", "S-LOC"]),
        (
            ["B-PER", "B-PER", "O", "B-LOC", "I-LOC", "B-ORG"],
            "IOB2",
            "IOB1",
            ["I-PER", "B-PER", "O", "I-LOC", "I-LOC", "I-ORG"],
        ),
        (
            ["B-PER", "I-PER", "I-PER", "B-LOC", "O", "B-geo-loc"],
            "IOB2",
            "BIOES",
            ["B-PER", "I-PER", "E-PER", "S-LOC", "O", "S-geo-loc"],
        ),
        (["S-PER", "S-PER", "B-LOC", "E-LOC"], "BIOES", "IOB2", ["B-PER", "B-PER", "B-LOC", "I-LOC"]),
        (["S-PER", "S-PER", "B-LOC", "E-LOC"], "BIOES", "IOB1", ["I-PER", "B-PER", "I-LOC", "I-LOC"]),
        (["O", "I-PER", "I-PER", "I-LOC"], "IOB2", "IOB2", ["O", "B-PER", "I-PER", "B-LOC"]),  # repaired
        (["B-PER", "I-PER", "O"], "BIOES", "BIOES", ["B-PER", "E-PER", "O"]),  # repaired
        ([], "IOB2", "BIOES", []),
    ],
)
def test_convert_examples(tags, source, target, expected):
    assert convert(tags, source, target) == expected
    assert seqeval_spans(expected) == seqeval_spans(tags)


def test_convert_plain_is_identity():
    tags = ["NN", "VBZ", "O"]
    assert convert(tags, "plain", "plain") == tags


@pytest.mark.parametrize("source, target", list(itertools.product(PREFIX_SCHEMES, repeat=2)))
def test_convert_round_trips_preserve_spans(source, target):
    rng = random.Random(f"{source}->{target}")
    for _ in range(300):
        length = rng.randint(0, 12)
        spans = random_spans(rng, length)
        tags = encode(spans, length, source)
        converted = convert(tags, source, target)
        assert converted == encode(spans, length, target)
        assert seqeval_spans(converted) == seqeval_spans(tags) == spans
        assert convert(converted, target, source) == tags


@pytest.mark.parametrize(
    "source, pool",
    [
        ("IOB2", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
        ("IOB1", ["O", "B-PER", "I-PER", "I-LOC"]),
        ("BIOES", ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC", "S-LOC"]),
    ],
)
def test_convert_malformed_sequences_keeps_conlleval_spans(source, pool):
    """Arbitrary tag soup (stray I-, B- without E-) is read as seqeval's default mode reads it, then re-encoded."""
    rng = random.Random(source)
    for _ in range(2000):
        tags = [rng.choice(pool) for _ in range(rng.randint(0, 9))]
        assert tag_spans(tags) == seqeval_spans(tags)
        for target in PREFIX_SCHEMES:
            converted = convert(tags, source, target)
            assert seqeval_spans(converted) == seqeval_spans(tags)
            assert convert(converted, target, target) == converted  # the output is canonical


@pytest.mark.parametrize(
    "tags, source, target, error, match",
    [
        (["NN"], "plain", "IOB2", DataError, "Cannot convert plain tags to IOB2"),
        (["B-PER"], "IOB2", "plain", DataError, "Cannot convert IOB2 tags to plain"),
        (["O", "E-PER"], "IOB2", "BIOES", DataError, "Cannot convert from IOB2: token 2: tag 'E-PER'"),
        (["B-PER"], "BILOU", "IOB2", ValueError, "Unknown label scheme 'BILOU'"),
        (["B-PER"], "IOB2", "iob2", ValueError, "Unknown label scheme 'iob2'"),
    ],
)
def test_convert_errors(tags, source, target, error, match):
    with pytest.raises(error, match=match):
        convert(tags, source, target)


EXPECTED_IOB2 = "IOB2 tags are 'O' or B-/I- followed by an entity type"


@pytest.mark.parametrize(
    "tags, scheme, message",
    [
        (["B-PER", "I-PER", "O"], "IOB2", None),
        (["O", "I-PER", "I-LOC"], "IOB2", None),  # a stray I- is not an error
        (["I-PER", "B-PER"], "IOB1", None),
        (["B-PER", "I-PER", "E-PER", "S-geo-loc", "O"], "BIOES", None),
        (["B-PER", "I-PER", "O"], "BIOES", None),  # transitions are not checked
        (["NN", "$", "B_PER", "X-PER"], "plain", None),
        ([], "IOB2", None),
        (["O", "B_PER"], "IOB2", f"token 2: tag 'B_PER' is malformed (did you mean 'B-PER'?); {EXPECTED_IOB2}"),
        (["b-PER"], "IOB2", "token 1: tag 'b-PER' is malformed (did you mean 'B-PER'?)"),
        (["X-PER"], "IOB2", f"token 1: tag 'X-PER' has unknown prefix 'X'; {EXPECTED_IOB2}"),
        (["B-PER", "E-PER"], "IOB2", f"token 2: tag 'E-PER': prefix 'E-' is only valid in BIOES; {EXPECTED_IOB2}"),
        (["S-PER"], "IOB1", "token 1: tag 'S-PER': prefix 'S-' is only valid in BIOES; IOB1 tags are"),
        (["U-PER"], "BIOES", "token 1: tag 'U-PER': BILOU tags are not supported, convert L- to E- and U- to S-"),
        (["B-"], "IOB2", "token 1: tag 'B-' has no entity type after the prefix"),
        (["O", "O", "PER"], "IOB2", f"token 3: tag 'PER' has no B-/I- prefix; {EXPECTED_IOB2}"),
        (["o"], "BIOES", "token 1: tag 'o' is malformed (did you mean 'O'?); BIOES tags are 'O' or B-/I-/E-/S-"),
        (["B-PER "], "IOB2", "token 1: tag 'B-PER ' is empty or holds whitespace"),
        (["NN", ""], "plain", "token 2: tag '' is empty or holds whitespace"),
        # inside a tag too: it split test_predictions.txt's lines into 5 fields (found by an audit)
        (["O", "B-Person Name"], "IOB2", "token 2: tag 'B-Person Name' is empty or holds whitespace"),
        (["B-人\u3000名"], "IOB2", r"token 1: tag 'B-人\u3000名' is empty or holds whitespace"),
        (["O", None], "IOB2", "token 2: tag None is a NoneType, expected a string"),
    ],
)
def test_validate_sequence(tags, scheme, message):
    problem = validate_sequence(tags, scheme)
    if message is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(message), problem


def test_find_invalid_tag_gives_the_position():
    assert find_invalid_tag(["B-PER", "O", "B_LOC", "E-LOC"], "IOB2") == (
        2,
        "tag 'B_LOC' is malformed (did you mean 'B-LOC'?); " + EXPECTED_IOB2,
    )
    assert find_invalid_tag(["B-PER", "E-PER"], "BIOES") is None
    assert find_invalid_tag([], "IOB1") is None


def test_validate_sequence_unknown_scheme():
    with pytest.raises(ValueError, match="Unknown label scheme 'IOBES': expected one of IOB1, IOB2, BIOES, plain"):
        validate_sequence(["O"], "IOBES")


@pytest.mark.parametrize(
    "tags, scheme, expected",
    [
        (["I-PER", "O", "B-LOC", "B-PER", "I-LOC", "O"], "IOB2", ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]),
        (
            ["S-PER", "E-LOC", "O", "I-PER", "B-LOC", "E-PER", "B-PER", "S-LOC", "I-LOC"],
            "BIOES",
            ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"],
        ),
        (["I-PER", "B-PER"], "IOB1", ["B-PER", "I-PER"]),  # no O, no O added
        (["I-geo-loc", "B-geo", "B-geo-loc"], "IOB2", ["B-geo", "B-geo-loc", "I-geo-loc"]),
        (["VBZ", "NN", "$", "NN", "O"], "plain", ["$", "NN", "O", "VBZ"]),
    ],
)
def test_label_list(tags, scheme, expected):
    assert label_list(tags, scheme) == expected
    assert label_list(reversed(tags), scheme) == expected


def test_label_list_rejects_invalid_tags():
    with pytest.raises(DataError, match="Invalid label: tag 'E-PER': prefix 'E-' is only valid in BIOES"):
        label_list(["O", "B-PER", "E-PER"], "IOB2")


@pytest.mark.parametrize(
    "labels, scheme, expected",
    [
        (["B-PER", "O"], "IOB2", ["O", "B-PER", "I-PER"]),
        (["I-PER"], "IOB1", ["O", "B-PER", "I-PER"]),
        (
            ["B-PER", "I-LOC"],
            "BIOES",
            ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"],
        ),
        (["S-PER", "E-LOC", "O"], "IOB2", ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]),  # BIOES labels -> IOB2 set
        ([], "BIOES", ["O"]),
        (["NN", "DT", "NN"], "plain", ["DT", "NN"]),
    ],
)
def test_complete_label_list(labels, scheme, expected):
    assert complete_label_list(labels, scheme) == expected


def test_complete_label_list_rejects_plain_tags_in_a_prefix_scheme():
    with pytest.raises(DataError, match="Invalid label: tag 'NN' has no B-/I-/E-/S- prefix"):
        complete_label_list(["B-PER", "NN"], "IOB2")


@pytest.mark.parametrize(
    "label, expected",
    [
        ("B-PER", "I-PER"),
        ("I-PER", "I-PER"),
        ("B-geo-loc", "I-geo-loc"),
        ("E-PER", "O"),
        ("S-PER", "O"),
        ("O", "O"),
        ("NN", "NN"),
    ],
)
def test_b_to_i(label, expected):
    assert b_to_i(label) == expected


@pytest.mark.parametrize("scheme", PREFIX_SCHEMES)
def test_b_to_i_keeps_subword_sequences_valid(scheme):
    """Labelling every subword keeps the sequence canonical (valid) and first subwords give back the word spans."""
    rng = random.Random(scheme)
    for _ in range(300):
        n_words = rng.randint(1, 8)
        spans = random_spans(rng, n_words)
        words = encode(spans, n_words, scheme)
        subwords, word_of = [], []
        for index, label in enumerate(words):
            pieces = rng.randint(1, 3)
            subwords += [label] + [b_to_i(label)] * (pieces - 1)
            word_of += [index] * pieces
        assert convert(subwords, scheme, scheme) == subwords
        assert [(t, word_of[s], word_of[e - 1] + 1) for t, s, e in tag_spans(subwords)] == spans


def test_entity_types():
    assert entity_types(["O", "B-PER", "I-PER", "S-geo-loc", "NN", "E-LOC"]) == ["LOC", "PER", "geo-loc"]
    assert entity_types(["NN", "O"]) == []


def test_schemes():
    assert SCHEMES == ("IOB1", "IOB2", "BIOES", "plain")
