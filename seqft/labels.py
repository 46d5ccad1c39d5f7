"""Label schemes for sequence labelling: detection, validation, conversion and label lists.

Three prefix schemes are supported, plus ``plain`` for tags without entity structure (POS tags):

- ``IOB1``  (original CoNLL-2003 files): an entity starts with ``I-X``; ``B-X`` only separates two adjacent
  entities of the same type.
- ``IOB2``  (WNUT, most Hub datasets): every entity starts with ``B-X``.
- ``BIOES`` (a.k.a. IOBES): ``B-X I-X* E-X`` for multi-token entities, ``S-X`` for single tokens.

Spans are read the conlleval way (as ``seqeval``'s default mode does), whatever the scheme: ``B-`` and ``S-``
always start an entity, ``I-X``/``E-X`` continue the open entity when it has type ``X`` and was opened by
``B-``/``I-``, and otherwise start a new one; ``E-`` and ``S-`` close it. Under this reading IOB1 and IOB2
describe the same spans, so one reader serves all three schemes, and ``convert`` maps any input (including
real-world IOB2 with stray ``I-X`` starts) to the canonical form of the target scheme.

Pure Python, no Hugging Face imports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import pairwise

from .errors import DataError

SCHEMES = ("IOB1", "IOB2", "BIOES", "plain")

OUTSIDE = "O"
# Prefixes in label-list order; which of them each prefix scheme uses.
PREFIXES = ("B", "I", "E", "S")
SCHEME_PREFIXES = {"IOB1": ("B", "I"), "IOB2": ("B", "I"), "BIOES": ("B", "I", "E", "S")}

# Anything shaped like a one-letter prefix plus a type, with a dash or a common wrong separator; for messages only.
_PREFIX_LIKE = re.compile(r"^([A-Za-z])([-_:.]?)(.*)$")


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown label scheme {scheme!r}: expected one of {', '.join(SCHEMES)}.")


def placeholder_names(names: Sequence[str]) -> bool:
    """Whether `names` are transformers' placeholders (`LABEL_0`, `LABEL_1`, ...): a config never given labels,
    i.e. a base encoder whose head was never trained."""
    return bool(names) and list(names) == [f"LABEL_{i}" for i in range(len(names))]


def split_tag(tag: str) -> tuple[str | None, str | None]:
    """Split a tag into (prefix, type): ``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", None)``.

    Only ``B``, ``I``, ``E`` and ``S`` count as prefixes, and the type is everything after the first dash
    (``"B-geo-loc"`` -> ``("B", "geo-loc")``). Any other tag is plain: ``"NN"`` -> ``(None, "NN")``; so are
    malformed ones such as ``"B_PER"``, ``"X-PER"`` or ``"B-"`` (``validate_sequence`` explains what is wrong).
    """
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, dash, type_ = tag.partition("-")
    if dash and prefix in PREFIXES and type_:
        return prefix, type_
    return None, tag


def detect_scheme(sequences: Iterable[Sequence[str]], default: str = "IOB2") -> str:
    """Guess the scheme of a corpus (an iterable of tag sequences, consumed once).

    - ``plain`` when no tag is prefix-style (``NN``, ``VBZ``, ``$``); chunk tags such as ``B-NP`` are prefix-style.
      A corpus that is all ``O`` (or empty) fits every scheme and is reported as `default` (``IOB2``).
    - ``BIOES`` when any ``E-``/``S-`` tag occurs.
    - ``IOB1`` when some ``I-X`` starts an entity (at sentence start, after ``O`` or after another type) and no
      ``B-X`` ever does (every ``B-X`` directly follows an ``X`` token, i.e. only splits adjacent ``X`` entities).
    - ``IOB2`` otherwise, including corpora with both kinds of starts (IOB2 data with a few stray ``I-X`` starts).

    The decision depends only on which patterns occur, not on their order or counts, so it is deterministic. A few
    plain-looking tags in an otherwise prefix-style corpus do not make it plain: they are left for
    ``validate_sequence`` to report with their position.
    """
    # Every pattern is a (previous tag or None at a sentence start, tag) pair: collect the distinct pairs (C-level
    # set updates, no Python work per token), then classify those few (CoNLL-2003 train: 32).
    firsts: set[str] = set()
    pairs: set[tuple[str | None, str]] = set()
    for sequence in sequences:
        if len(sequence):
            firsts.add(sequence[0])
            pairs.update(pairwise(sequence))
    pairs.update((None, tag) for tag in firsts)
    prefixed = plain = bioes = i_starts = b_starts = False
    for previous, tag in pairs:
        prefix, type_ = split_tag(tag)
        if prefix is None:
            plain = True
            continue
        if prefix == OUTSIDE:
            continue
        prefixed = True
        # The type of the previous token; None for O, plain tags and the sentence start.
        prev_prefix, prev_type = split_tag(previous) if previous is not None else (None, None)
        if prev_prefix not in PREFIXES:
            prev_type = None
        if prefix in ("E", "S"):
            bioes = True
        elif prefix == "I" and prev_type != type_:
            i_starts = True
        elif prefix == "B" and prev_type != type_:
            b_starts = True
    if not prefixed:
        return "plain" if plain else default
    if bioes:
        return "BIOES"
    if i_starts and not b_starts:
        return "IOB1"
    return "IOB2"


def _tag_problem(tag: object, scheme: str) -> str | None:
    """Why `tag` is not a valid tag of `scheme`, or None."""
    if not isinstance(tag, str):
        return f"tag {tag!r} is a {type(tag).__name__}, expected a string"
    if not tag or any(c.isspace() for c in tag):  # a tag is one field of a `word gold predicted` line
        return f"tag {tag!r} is empty or holds whitespace"
    if scheme == "plain":
        return None
    allowed = SCHEME_PREFIXES[scheme]
    prefix, type_ = split_tag(tag)
    if prefix == OUTSIDE or prefix in allowed:
        return None
    expected = f"{scheme} tags are 'O' or {'/'.join(p + '-' for p in allowed)} followed by an entity type"
    if prefix is not None:  # a valid prefix of another scheme
        return f"tag {tag!r}: prefix '{prefix}-' is only valid in BIOES; {expected}"
    if tag.upper() == OUTSIDE:
        return f"tag {tag!r} is malformed (did you mean 'O'?); {expected}"
    match = _PREFIX_LIKE.match(tag)
    if match is None or (not match.group(2) and len(tag) > 1):
        return f"tag {tag!r} has no {'/'.join(p + '-' for p in allowed)} prefix; {expected}"
    letter, sep, rest = match.groups()
    if not rest:
        return f"tag {tag!r} has no entity type after the prefix; {expected}"
    if letter.upper() in allowed and (sep != "-" or letter != letter.upper()):
        return f"tag {tag!r} is malformed (did you mean '{letter.upper()}-{rest}'?); {expected}"
    if letter.upper() in ("L", "U"):
        return f"tag {tag!r}: BILOU tags are not supported, convert L- to E- and U- to S- and use BIOES; {expected}"
    if letter.upper() in PREFIXES:  # e.g. 's-PER' in IOB2
        return f"tag {tag!r}: prefix '{letter.upper()}-' is only valid in BIOES; {expected}"
    return f"tag {tag!r} has unknown prefix '{letter}'; {expected}"


_SUFFIXED = re.compile(r"^(.+?)[-_:.]([BIESbies])$")  # PER-B, PER_I: the prefix written after the type


def prefix_tag_hint(tag: object) -> str | None:
    """For a tag no prefix scheme accepts that looks like a prefix-style tag written another way, the tag it
    probably means (``'B_PER'`` -> ``'B-PER'``, ``'b-per'`` -> ``'B-per'``, ``'PER-B'`` -> ``'B-PER'``); else None.
    A file of such tags is detected as ``plain``; this tells the user why, with the first one."""
    if not isinstance(tag, str) or split_tag(tag)[0] is not None:
        return None
    match = _PREFIX_LIKE.match(tag)
    if match and match.group(2) and match.group(3) and match.group(1).upper() in PREFIXES:
        return f"{match.group(1).upper()}-{match.group(3)}"
    match = _SUFFIXED.match(tag)
    return f"{match.group(2).upper()}-{match.group(1)}" if match else None


def find_invalid_tag(tags: Sequence[str], scheme: str) -> tuple[int, str] | None:
    """``(position, why)`` for the first tag of `tags` that is not valid in `scheme` (0-based), or None."""
    _check_scheme(scheme)
    for position, tag in enumerate(tags):
        problem = _tag_problem(tag, scheme)
        if problem is not None:
            return position, problem
    return None


def validate_sequence(tags: Sequence[str], scheme: str) -> str | None:
    """A message about the first tag that is not valid in `scheme`, or None when all are.

    Only the tags are checked, not the transitions: an ``I-X`` that does not continue an ``X`` entity is common in
    real IOB2 corpora and is read as the start of an entity (``convert`` repairs it). The message starts with the
    1-based token position, e.g. ``"token 3: tag 'B_PER' is malformed (did you mean 'B-PER'?); ..."``; the caller
    adds the file and line (``find_invalid_tag`` gives the position as a number, to locate the tag itself).
    """
    found = find_invalid_tag(tags, scheme)
    return None if found is None else f"token {found[0] + 1}: {found[1]}"


def tag_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entity spans ``(type, start, end)`` with `end` exclusive, read the conlleval way (see the module docstring).

    Accepts the tags of any prefix scheme; raises ``DataError`` on a tag that is neither ``O`` nor prefix-style.
    """
    spans = []
    open_type, open_start, open_prefix = None, 0, None  # the entity being read, if any
    for position, tag in enumerate(tags):
        prefix, type_ = split_tag(tag)
        if prefix is None:
            raise DataError(f"token {position + 1}: tag {tag!r} is neither 'O' nor B-/I-/E-/S- plus an entity type")
        continues = open_type is not None and type_ == open_type and prefix in ("I", "E") and open_prefix in ("B", "I")
        if not continues and open_type is not None:
            spans.append((open_type, open_start, position))
            open_type = None
        if prefix == OUTSIDE:
            continue
        if not continues:
            open_type, open_start = type_, position
        open_prefix = prefix
        if prefix in ("E", "S"):
            spans.append((open_type, open_start, position + 1))
            open_type = None
    if open_type is not None:
        spans.append((open_type, open_start, len(tags)))
    return spans


def _encode(spans: Sequence[tuple[str, int, int]], length: int, scheme: str) -> list[str]:
    """Tags of `scheme` for non-overlapping, sorted `spans` over `length` tokens."""
    tags = [OUTSIDE] * length
    prev_type, prev_end = None, -1
    for type_, start, end in spans:
        for position in range(start, end):
            tags[position] = f"I-{type_}"
        if scheme == "IOB2":
            tags[start] = f"B-{type_}"
        elif scheme == "IOB1":
            if start == prev_end and type_ == prev_type:
                tags[start] = f"B-{type_}"
        elif end - start == 1:
            tags[start] = f"S-{type_}"
        else:
            tags[start], tags[end - 1] = f"B-{type_}", f"E-{type_}"
        prev_type, prev_end = type_, end
    return tags


def convert(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Re-encode `tags` from scheme `source` into scheme `target`, keeping every entity span.

    The output is always the canonical form of `target`, so ``convert(tags, s, s)`` repairs a sequence (a stray
    ``O I-X`` becomes ``O B-X`` in IOB2) and is the identity on well-formed input. ``plain`` converts only to itself.
    Raises ``DataError`` when a tag is not valid in `source`, or when exactly one side is ``plain``.
    """
    _check_scheme(source)
    _check_scheme(target)
    if source == "plain" or target == "plain":
        if source == target:
            return list(tags)
        raise DataError(
            f"Cannot convert {source} tags to {target}: plain (POS-style) tags have no entity structure; "
            "use label_scheme 'plain' for such data and a prefix scheme only for entity/chunk tags."
        )
    problem = validate_sequence(tags, source)
    if problem is not None:
        raise DataError(f"Cannot convert from {source}: {problem}")
    return _encode(tag_spans(tags), len(tags), target)


def _label_key(label: str) -> tuple:
    prefix, type_ = split_tag(label)
    if prefix == OUTSIDE:
        return (0,)
    return (1, type_, PREFIXES.index(prefix))


def _check_labels(labels: Iterable[str], scheme: str) -> set[str]:
    unique = set(labels)
    for label in sorted(unique, key=str):
        problem = _tag_problem(label, scheme)
        if problem is not None:
            raise DataError(f"Invalid label: {problem}")
    return unique


def label_list(tags: Iterable[str], scheme: str) -> list[str]:
    """The distinct `tags` in a stable order: ``O`` first, then by entity type (sorted), prefixes in B, I, E, S order.

    Plain tags are sorted. Raises ``DataError`` on a tag that is not valid in `scheme`.
    """
    _check_scheme(scheme)
    unique = _check_labels(tags, scheme)
    if scheme == "plain":
        return sorted(unique)
    return sorted(unique, key=_label_key)


def complete_label_list(labels: Iterable[str], scheme: str) -> list[str]:
    """The full label set of `scheme` for the entity types in `labels`, in ``label_list`` order, always with ``O``.

    `labels` may come from any prefix scheme (an IOB2 label list completes to ``O, B-X, I-X, E-X, S-X`` for BIOES),
    so every tag a conversion or a CRF constraint can need exists. Plain labels are returned sorted.
    """
    _check_scheme(scheme)
    if scheme == "plain":
        return sorted(_check_labels(labels, "plain"))
    unique = _check_labels(labels, "BIOES")  # any prefix is fine here, the output is in `scheme`
    return [OUTSIDE] + [f"{prefix}-{type_}" for type_ in entity_types(unique) for prefix in SCHEME_PREFIXES[scheme]]


def missing_tag(scheme: str) -> str | None:
    """The prediction of a word no window holds (``truncate_long_sentences``): ``O`` for prefix schemes, where it
    means "no entity", and None for plain tags, where no tag is neutral (a guessed tag would be a phantom class)."""
    return None if scheme == "plain" else OUTSIDE


def b_to_i(label: str) -> str:
    """The label of a word's non-first subwords when every subword is labelled (``label_all_tokens``).

    The first subword keeps the word's label; the others get this one, chosen so that the subword sequence is valid
    in the same scheme whenever the word sequence is (so a constrained CRF never sees an impossible gold path), and
    reading the first subwords gives back the word-level spans:

    - ``B-X`` -> ``I-X`` and ``I-X`` -> ``I-X`` (the entity continues through the word; valid in IOB1, IOB2, BIOES);
    - ``E-X`` -> ``O`` and ``S-X`` -> ``O`` (BIOES): ``E-X``/``S-X`` close the entity on the first subword, and
      any ``I-X``/``E-X`` after them would be invalid, so the rest of the word is outside. An entity's last word
      is then only partly inside the entity at subword level; if that matters, label only first subwords in BIOES;
    - ``O`` and plain tags are unchanged.
    """
    prefix, type_ = split_tag(label)
    if prefix in ("B", "I"):
        return f"I-{type_}"
    if prefix in ("E", "S"):
        return OUTSIDE
    return label


def entity_types(labels: Iterable[str]) -> list[str]:
    """Sorted distinct entity types of the prefix-style `labels` (``O`` and plain tags have none)."""
    types = set()
    for label in labels:
        prefix, type_ = split_tag(label)
        if prefix in PREFIXES:
            types.add(type_)
    return sorted(types)
