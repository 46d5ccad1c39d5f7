"""Dataset loading (Hub, CoNLL/JSON/JSONL/CSV files, package data), label schemes, subword alignment.

Every split is normalised to the columns `tokens` (list of words), `tags` (list of tag names), `doc_id` and
`source` (`path:line` of the sentence, the path as given, `pkg://` resolved; for error messages). Errors name the
file and line at fault. Text files are read as UTF-8; a leading byte-order mark is dropped.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import hashlib
import importlib.util
import json
import logging
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict
from datasets.fingerprint import Hasher

from . import labels as schemes
from .errors import DataError

logger = logging.getLogger(__name__)

PKG_PREFIX = "pkg://"
CONLL_SUFFIXES = {".txt", ".conll", ".iob", ".iob1", ".iob2", ".bio", ".bioes", ".tsv", ""}
# Files with one sentence per row (JSON, JSON Lines, CSV); every other file is read as CoNLL columns.
RECORD_SUFFIXES = (".json", ".jsonl", ".csv")
CONLLU_NOT_READ = (
    "CoNLL-U (.conllu) is not read: its first column is a word index, and comment lines start with #. Write one "
    "word and its tag per line (e.g. the FORM and UPOS columns)."
)
SPLITS = ("train", "validation", "test")


# ---------------------------------------------------------------------------------------------------------------
# Paths


def resolve_path(spec: str | None, *, must_exist: bool = True) -> str | None:
    """`pkg://package/sub/path` -> the file or folder inside the installed package; other paths unchanged.

    Lets recipes reference data and models that ship inside PyPI packages without a site-packages path.
    """
    if spec is None or not spec.startswith(PKG_PREFIX):
        return spec
    package, _, rel = spec[len(PKG_PREFIX) :].partition("/")
    found = importlib.util.find_spec(package) if package else None
    if found is None or not found.submodule_search_locations:
        raise DataError(f"{spec}: Python package '{package}' is not installed. Install it (pip install {package}).")
    path = Path(next(iter(found.submodule_search_locations))) / rel
    if must_exist and not path.exists():
        raise DataError(f"{spec}: '{rel}' does not exist inside package '{package}' ({path}).")
    return str(path)


def _sha256(paths: Sequence[str]) -> str:
    """One SHA-256 over the files' contents, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def fingerprint(path: str) -> dict:
    """Size and SHA-256 of a data file, recorded in the resolved recipe so a run can be reproduced."""
    return {"path": os.path.abspath(path), "bytes": os.path.getsize(path), "sha256": _sha256([path])}


def fingerprint_weights(folder: str) -> dict | None:
    """Size and SHA-256 of a model folder's weight files (`*.safetensors`, `*.bin`, in name order, as one digest),
    or None for a folder without any (a Hub id, a cache): what tells a teacher retrained in place from the old one."""
    if not os.path.isdir(folder):
        return None
    names = sorted(n for n in os.listdir(folder) if n.endswith((".safetensors", ".bin")))
    if not names:
        return None
    paths = [os.path.join(folder, name) for name in names]
    size = sum(os.path.getsize(path) for path in paths)
    return {"path": os.path.abspath(folder), "files": names, "bytes": size, "sha256": _sha256(paths)}


# ---------------------------------------------------------------------------------------------------------------
# Bulk data in Python


def read_column(split: Dataset, name: str) -> list:
    """All values of one column as a list, read at once.

    In datasets 5 `split[name]` is a lazy `Column`: iterating it reads row by row, an order of magnitude slower
    (0.29 s against 0.02 s for the CoNLL-2003 training tags), and every pass reads it again.
    """
    return split[name][:]


@contextlib.contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector (reference counting still frees memory as usual).

    Setting up a corpus builds hundreds of thousands of small lists that stay alive, and the collector passes over
    all of them again and again: on CoNLL-2003 train, `tokenize_split` took 1.86 s of CPU paused against 2.53 s
    (medians of 7), `load_raw_splits` (with testb) 0.26 s against 0.31 s, and single 0.3 s passes hit `prepare_labels`.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ---------------------------------------------------------------------------------------------------------------
# Readers


def _not_utf8(path: str) -> DataError:
    """The error for a file that is not UTF-8, naming the line and byte of the first undecodable sequence."""
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        offset = err.start + len(data) - len(err.object)  # utf-8-sig reports offsets after a leading BOM
        line = data[:offset].count(b"\n") + 1
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # a UTF-16 byte-order mark: say so, not Latin-1
            return DataError(
                f"{path}: UTF-16 text (it starts with a UTF-16 byte-order mark). Re-encode the file as UTF-8 "
                "(iconv -f utf-16 -t utf-8 IN > OUT)."
            )
        return DataError(
            f"{path}:{line}: not valid UTF-8 ({err.reason} at byte {offset}). Re-encode the file as UTF-8 from "
            "its encoding (iconv -f ENCODING -t utf-8 IN > OUT, e.g. latin1, cp1252, gbk, shift_jis)."
        )
    return DataError(f"{path}: not valid UTF-8. Re-encode the file as UTF-8.")


@contextlib.contextmanager
def _utf8_text(path: str, **kwargs):
    """`open(path)` for reading UTF-8 text without a byte-order mark; bytes that do not decode raise a DataError
    naming the line and byte (located once it happens, so reading stays a plain stream)."""
    with open(path, encoding="utf-8-sig", **kwargs) as fh:
        try:
            yield fh
        except UnicodeDecodeError:
            raise _not_utf8(path) from None


def read_conll(path: str, label_column: int = -1) -> dict[str, list]:
    """Read a CoNLL column file: one word per line, columns split on whitespace, blank lines between sentences.

    Tokens come from the first column, tags from `label_column` (negative counts from the end). `-DOCSTART-`
    lines start a new document. Every data line must have as many columns as the first one. A sentence's `source`
    is `path:line` of its first word; its other words are on the lines after it.
    """
    columns = {"tokens": [], "tags": [], "doc_id": [], "source": []}
    width = width_line = None
    doc_id, words, tags, start = 0, [], [], None

    def flush():
        nonlocal words, tags
        if words:
            columns["tokens"].append(words)
            columns["tags"].append(tags)
            columns["doc_id"].append(doc_id)
            columns["source"].append(f"{path}:{start}")
        words, tags = [], []

    with _utf8_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.removeprefix("\ufeff").split()  # a byte-order mark inside: files concatenated
            if not parts:
                flush()
                continue
            if parts[0] == "-DOCSTART-":
                flush()
                doc_id += 1
                continue
            if width is None:
                width, width_line = len(parts), lineno
                if width < 2:
                    raise DataError(
                        f"{path}:{lineno}: a CoNLL line needs a word and a tag separated by whitespace, "
                        f"found {line.rstrip()!r}."
                    )
                if not -width <= label_column < width or label_column == 0:
                    raise DataError(
                        f"{path}:{lineno}: conll_label_column={label_column} does not exist in a file with {width} "
                        f"columns (column 0 holds the words; use 1..{width - 1} or -1..-{width - 1})."
                    )
            if len(parts) != width:
                raise DataError(
                    f"{path}:{lineno}: expected {width} columns (as on line {width_line}), found {len(parts)}: "
                    f"{line.rstrip()!r}. A word containing spaces, or a missing tag?"
                )
            if not words:
                start = lineno
            words.append(parts[0])
            tags.append(parts[label_column])
    flush()
    if not columns["tokens"]:
        raise DataError(f"{path}: no sentences found (the file is empty or has only -DOCSTART-/blank lines).")
    return columns


def _as_list(value, path, where, what):
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise DataError(f"{path}:{where}: column '{what}' is not a valid JSON list: {value[:60]!r}.") from None
        else:
            value = value.split()
    if not isinstance(value, list):
        raise DataError(f"{path}:{where}: column '{what}' must be a list, got {type(value).__name__}.")
    return value


def _pick_column(names: Sequence[str], wanted: str | None, defaults: Sequence[str], position: int, path, kind):
    if wanted is not None:
        if wanted not in names:
            raise DataError(f"{path}: no column '{wanted}' ({kind}_column_name); columns are: {', '.join(names)}.")
        return wanted
    for candidate in defaults:
        if candidate in names:
            return candidate
    if len(names) < 2:
        raise DataError(f"{path}: need a words column and a tags column, found: {', '.join(names) or 'none'}.")
    return names[position]


def _check_row(where: str, words: Sequence[str], tags: Sequence, text_col: str, label_col: str) -> None:
    """One sentence's words and tags, from a JSON/CSV row or a Hub dataset's row: a tag per word, at least one word,
    each with a visible character."""
    if len(words) != len(tags):
        one_label = " One label for a whole text? Set 'task': 'sequence-classification'." if len(tags) == 1 else ""
        raise DataError(
            f"{where}: {len(words)} words in '{text_col}' but {len(tags)} tags in '{label_col}'; every word needs "
            f"exactly one tag.{one_label}"
        )
    if not words:
        raise DataError(
            f"{where}: the row has no words ('{text_col}' is empty); a sentence needs at least one word. Remove the "
            "row, or fill in its words and tags."
        )
    if not all(map(str.strip, words)):
        index = next(i for i, word in enumerate(words) if not word.strip())
        raise DataError(
            f"{where}: word {index + 1} of '{text_col}' (index {index}) is {words[index]!r}, empty or only "
            "whitespace. Every word needs a visible character: remove it and its tag, or fix the tokenisation."
        )


def label_column_defaults(task_name: str | None = None) -> tuple[str, ...]:
    """The tag columns looked for when `label_column_name` is not set: `{task_name}_tags` first, as run_ner.py
    (`pos_tags` for task_name pos), then the usual names."""
    usual = ("ner_tags", "tags", "labels", "pos_tags", "chunk_tags")
    first = (f"{task_name}_tags",) if task_name else ()
    return tuple(dict.fromkeys((*first, *usual)))


def read_records(
    path: str, records: list[tuple[str, dict]], text_column, label_column, task_name: str | None = None
) -> dict[str, list]:
    """Rows from JSON/JSONL/CSV -> columns. `records` are (location, row) pairs; location is a line or row id.
    Without names given or found, the first column holds the words and the second the tags, as in run_ner.py."""
    if not records:
        raise DataError(f"{path}: no rows found (the file is empty).")
    names = list(dict.fromkeys(key for _, row in records for key in row if key is not None))  # every row's keys
    text_col = _pick_column(names, text_column, ("tokens", "words"), 0, path, "text")
    label_col = _pick_column(names, label_column, label_column_defaults(task_name), 1, path, "label")
    columns = {"tokens": [], "tags": [], "doc_id": [], "source": []}
    for where, row in records:
        for col in (text_col, label_col):
            if col not in row:
                raise DataError(f"{path}:{where}: row has no column '{col}'.")
        words = _as_list(row[text_col], path, where, text_col)
        if any(not isinstance(w, str) for w in words):
            index = next(i for i, w in enumerate(words) if not isinstance(w, str))
            raise DataError(
                f"{path}:{where}: word {index + 1} of '{text_col}' is {words[index]!r} ({type(words[index]).__name__}),"
                " not a string: write every word as a JSON string."
            )
        tags = _as_list(row[label_col], path, where, label_col)
        if any(not isinstance(t, str) for t in tags):
            raise DataError(
                f"{path}:{where}: tags in '{label_col}' must be tag names (strings) in local files, got "
                f"{tags[:5]!r}. Write the names (e.g. 'B-PER'), not class ids."
            )
        _check_row(f"{path}:{where}", words, tags, text_col, label_col)
        columns["tokens"].append(words)
        columns["tags"].append(tags)
        # an integer doc_id groups rows into documents (doc_context); a row without one is its own, as in predict
        doc = row.get("doc_id")
        columns["doc_id"].append(
            doc if isinstance(doc, int) and not isinstance(doc, bool) else -len(columns["doc_id"]) - 1
        )
        columns["source"].append(f"{path}:{where}")
    return columns


def read_json(path: str) -> list[tuple[str, dict]]:
    with _utf8_text(path) as fh:
        text = fh.read()
    stripped = text.lstrip()
    if stripped.startswith("[") or (stripped.startswith("{") and path.endswith(".json") and "\n{" not in stripped):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: invalid JSON: {err.msg}.") from None
        if isinstance(data, dict) and "data" in data:
            data = data["data"]
        elif isinstance(data, dict):  # one object: a JSON Lines file of one row, as datasets reads it
            return [("1", data)]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: expected a list of objects (or JSON Lines, one object per line).")
        return [(f"row {i}", row) for i, row in enumerate(data)]
    records = []
    # only a newline ends a row (the file is read with universal newlines): str.splitlines would also split at
    # U+2028, U+0085 or a form feed, which JSON strings may hold
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: invalid JSON Lines row: {err.msg}.") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: each JSON Lines row must be an object, got {type(row).__name__}.")
        records.append((str(lineno), row))
    return records


def read_csv(path: str) -> list[tuple[str, dict]]:
    rows = []
    with _utf8_text(path, newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            fields = len(row) - (None in row) + len(row.get(None, ()))  # DictReader: extra fields under None
            fields -= sum(value is None for value in row.values())  # and None for the missing ones
            if fields != len(reader.fieldnames):
                raise DataError(
                    f"{path}:{reader.line_num}: the row has {fields} fields but the header {len(reader.fieldnames)}: "
                    "quote a field that holds a comma, or add the missing one."
                )
            rows.append((str(reader.line_num), row))
    return rows


def read_file(path: str, data_args) -> dict[str, list]:
    spec = path
    path = resolve_path(path)
    if not os.path.isfile(path):
        raise DataError(f"Data file not found: {spec}")
    if os.path.getsize(path) == 0:
        raise DataError(f"{spec}: the file is empty.")
    suffix = Path(path).suffix.lower()
    if suffix == ".conllu":
        raise DataError(f"{spec}: {CONLLU_NOT_READ}")
    if suffix in RECORD_SUFFIXES:
        if getattr(data_args, "conll_label_column", -1) != -1:  # as the warning below, the other way round
            logger.warning(
                f"{spec}: conll_label_column = {data_args.conll_label_column} picks a column of CoNLL files, not of "
                "this JSON/CSV file: its tags column is label_column_name (or 'ner_tags', 'tags', ... when unset)."
            )
        records = read_csv(path) if suffix == ".csv" else read_json(path)
        return read_records(
            path,
            records,
            data_args.text_column_name,
            data_args.label_column_name,
            getattr(data_args, "task_name", None),
        )
    if suffix in CONLL_SUFFIXES or suffix.startswith(".test") or suffix.startswith(".train"):
        named = [key for key in ("text_column_name", "label_column_name") if getattr(data_args, key, None)]
        if named:  # silently ignored before; a warning, as a recipe may mix JSON files (which need them) with CoNLL
            logger.warning(
                f"{spec}: {' and '.join(named)} name columns of JSON, CSV or Hub data, not of this CoNLL file: its "
                f"words are the first column and its tags column conll_label_column = {data_args.conll_label_column} "
                "(0-based, negative from the end; CoNLL-2003: 1 = POS, 2 = chunk, -1 = NER)."
            )
        return read_conll(path, data_args.conll_label_column)
    raise DataError(f"{spec}: unknown file type '{suffix}'. Use CoNLL columns (.txt/.conll), .json, .jsonl or .csv.")


def load_hub_splits(data_args, cache_dir=None, token=None) -> dict:
    """`datasets.load_dataset(dataset_name, dataset_config_name)` -> {split: Dataset}, with `valid`/`dev` named
    `validation` and one clean error when loading fails (offline, unknown name, ...)."""
    from datasets import load_dataset

    try:
        raw = load_dataset(data_args.dataset_name, data_args.dataset_config_name, cache_dir=cache_dir, token=token)
    except Exception as err:  # datasets raises many types; report one clean message
        raise DataError(
            f"could not load dataset '{data_args.dataset_name}' ({type(err).__name__}: {err}). Offline? Point "
            "train_file/validation_file/test_file at local files instead."
        ) from None
    return {("validation" if split in ("valid", "dev") else split): ds for split, ds in raw.items()}


def _from_hub(data_args, cache_dir=None, token=None) -> dict[str, dict[str, list]]:
    from datasets import ClassLabel

    out = {}
    for split, ds in load_hub_splits(data_args, cache_dir=cache_dir, token=token).items():
        names = ds.column_names
        text_col = _pick_column(
            names, data_args.text_column_name, ("tokens", "words"), 0, data_args.dataset_name, "text"
        )
        label_col = _pick_column(
            names,
            data_args.label_column_name,
            label_column_defaults(getattr(data_args, "task_name", None)),
            1,
            data_args.dataset_name,
            "label",
        )
        feature = ds.features[label_col]
        inner = getattr(feature, "feature", feature)  # List/Sequence(ClassLabel) -> ClassLabel
        to_name = inner.int2str if isinstance(inner, ClassLabel) else (lambda x: x)
        sources = [f"{data_args.dataset_name}[{split}]:row {i}" for i in range(len(ds))]
        tokens = [[str(w) for w in row] for row in ds[text_col]]
        tags = [[str(to_name(t)) for t in row] for row in ds[label_col]]
        for where, words, row_tags in zip(sources, tokens, tags):
            _check_row(where, words, row_tags, text_col, label_col)
        doc_ids = [-i - 1 for i in range(len(ds))]  # no document information: each row its own document
        out[split] = {"tokens": tokens, "tags": tags, "doc_id": doc_ids, "source": sources}
    return out


@_collector_paused()
def load_raw_splits(data_args, seed: int, cache_dir=None, token=None, limit: bool = True) -> DatasetDict:
    """Load every split the recipe names; carve missing validation/test splits from train when asked; apply the
    max_*_samples limits unless `limit` is false (`seqft.train` applies them once the labels are known)."""
    splits: dict[str, dict[str, list]] = {}
    if data_args.dataset_name:
        splits.update(_from_hub(data_args, cache_dir=cache_dir, token=token))
    for split, path in zip(SPLITS, (data_args.train_file, data_args.validation_file, data_args.test_file)):
        if path:
            splits[split] = read_file(path, data_args)
    return carve_and_limit(
        DatasetDict({k: Dataset.from_dict(v) for k, v in splits.items()}), data_args, seed, limit=limit
    )


def carve_and_limit(out: DatasetDict, data_args, seed: int, limit: bool = True) -> DatasetDict:
    """Carve missing test/validation splits from train (seeded), then apply the max_*_samples limits."""
    for split, share in (
        ("test", data_args.test_split_percentage),
        ("validation", data_args.validation_split_percentage),
    ):
        if share is None or split in out:
            continue
        if "train" not in out:
            raise DataError(f"cannot carve a {split} split: there is no training data.")
        parts = out["train"].train_test_split(test_size=share, seed=seed, shuffle=True)
        out["train"], out[split] = parts["train"], parts["test"]
    return limit_samples(out, data_args) if limit else out


def limit_samples(out: DatasetDict, data_args) -> DatasetDict:
    """The first max_train_samples / max_eval_samples / max_predict_samples rows of each split."""
    for split, most in zip(
        SPLITS, (data_args.max_train_samples, data_args.max_eval_samples, data_args.max_predict_samples)
    ):
        if most is not None and split in out:
            out[split] = out[split].select(range(min(most, len(out[split]))))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Labels


def _origin(sources: Sequence[str]) -> str:
    """The file (or Hub split) a split was read from: its sources are `file:line` / `file:row n` (a split carved
    from train names the training file); an empty split has none."""
    return sources[0].rpartition(":")[0] if sources else ""


def _token_location(source: str, position: int) -> str:
    """Where word `position` (0-based) of the sentence at `source` is: its own line in a CoNLL file (a sentence's
    words are on consecutive lines from its first), else the row and the word's 1-based number."""
    file, _, line = source.rpartition(":")
    if line.isdigit() and Path(file).suffix.lower() not in RECORD_SUFFIXES:
        return f"{file}:{int(line) + position}"
    return f"{source}: token {position + 1}"


@_collector_paused()
def prepare_labels(
    raw: DatasetDict,
    target_scheme: str,
    known_labels: list[str] | None = None,
    labels_from: str = "the model",
    known_scheme: str | None = None,
) -> tuple[DatasetDict, list[str], str]:
    """Detect each file's scheme, validate every sentence, convert to the target scheme, fix the label list.

    The scheme is detected per file (`labels.detect_scheme`; a split carved from train shares the training file's)
    and each file is converted from its own scheme, so an IOB1 test file is read correctly beside IOB2 training
    data. `auto` keeps the training file's scheme (the first split's when there is no train). The rules:

    - A file is IOB1 only when some ``I-X`` starts an entity and no ``B-X`` does. An ``I-X`` after ``O`` in a file
      that elsewhere starts entities with ``B-`` is a stray in IOB2 data, not IOB1: the file is IOB2.
    - Every sentence is written in the canonical form of the target scheme, a file already in that scheme too:
      a stray ``O I-X`` becomes ``O B-X`` (the span seqeval and conlleval read), so that a CRF never trains on a
      path its constraints forbid and the model learns one form of each entity. A warning counts the sentences so
      repaired per file and names the first (an IOB1 file with one ``B-X`` at an entity start, read as IOB2, is
      repaired in full this way: both readings give the same spans).
    - Any prefix scheme converts to any other (entity spans are read the conlleval way, the same for IOB1 and
      IOB2), so files in different prefix schemes are each converted to the target; a warning names them.
    - A file whose tags are all ``O`` fits every scheme. Plain (POS-style) tags in one file and prefix-style tags
      in another cannot be reconciled: a DataError names the file.

    `known_labels` (from a fine-tuned checkpoint or a teacher, `labels_from` naming it in messages) fixes the label
    list, and with it BIOES against IOB1/IOB2: `auto` follows those labels, and a `target_scheme` of the other kind
    is an error (converting the data to IOB2 for a BIOES model would score its S-/E- predictions against B-/I- gold,
    and teach a student the wrong scheme). `known_scheme`, the scheme that model was trained in (its config's
    `label_scheme`, which seqft saves), settles IOB1 against IOB2 the same way: their label names are the same, and
    an IOB1 model scored against IOB2 gold lost half its accuracy without a word. Otherwise the list comes from
    train (all splits when there is no train).
    A tag outside the label list is an error naming file and line (a `source` column, `file:line`, as seqft's
    readers write it; rows without one are named `<split>:row <n>`, 1-based).
    Returns the converted splits, the label list and the scheme in use.
    """
    # Each column is read once, whole (see read_column).
    raw_tags = {name: read_column(split, "tags") for name, split in raw.items()}
    sources = {  # 'file:line' from seqft's readers; datasets built in code may have none: '<split>:row <n>'
        name: read_column(split, "source")
        if "source" in split.column_names
        else [f"{name}:row {row}" for row in range(1, len(split) + 1)]
        for name, split in raw.items()
    }
    # Sentences repeat their tag sequences (CoNLL-2003 train: 5,684 distinct in 14,041): each is converted once.
    # Detection depends only on which patterns occur, so the distinct sequences give the same scheme.
    keys = {name: list(map(tuple, seqs)) for name, seqs in raw_tags.items()}
    origin = {name: _origin(sources[name]) for name in raw}
    files: dict[str, list[str]] = {}  # file -> the splits read from it
    for name in raw:
        files.setdefault(origin[name], []).append(name)

    def detect(file: str, default: str = "IOB2") -> str:
        return schemes.detect_scheme(dict.fromkeys(k for name in files[file] for k in keys[name]), default)

    reference = origin["train"] if "train" in raw else next(iter(origin.values()))
    file_scheme = {reference: detect(reference)}
    scheme = file_scheme[reference] if target_scheme == "auto" else target_scheme
    if known_labels is not None:
        scheme = _scheme_of_known_labels(known_labels, scheme, target_scheme, labels_from, known_scheme)

    def check_malformed(file: str) -> None:
        """A 'plain' file beside a prefix scheme: name its first tag that is a prefix-style tag written wrongly."""
        for name in files[file]:
            for key, where in zip(keys[name], sources[name]):
                for position, tag in enumerate(key):
                    hint = schemes.prefix_tag_hint(tag)
                    if hint is not None:
                        raise DataError(
                            f"{_token_location(where, position)}: tag {tag!r} is malformed (did you mean {hint!r}?): "
                            f"{scheme} tags are 'O' or B-/I-{'/E-/S-' if scheme == 'BIOES' else ''} followed by "
                            f"an entity type, prefix first, in capitals, with a dash. No tag of {file} has that "
                            "form, so it reads as plain (POS-style) tags: fix the tags."
                        )

    if (file_scheme[reference] == "plain") != (scheme == "plain"):
        if scheme != "plain":
            check_malformed(reference)
        raise DataError(
            f"the tags of {reference} are {file_scheme[reference]} but label_scheme is {scheme}: set label_scheme to "
            f"{'plain' if file_scheme[reference] == 'plain' else 'IOB2/BIOES/IOB1'} or 'auto'."
        )
    kinds = {True: "plain (POS-style)", False: "prefix-style (B-/I-/E-/S-)"}
    for file in files:
        if file in file_scheme:
            continue
        # A file of only O tags (or no rows) fits any scheme: it goes with the reference file.
        file_scheme[file] = found = detect(file, default=file_scheme[reference])
        if found == "plain" and scheme != "plain":
            check_malformed(file)
        if (found == "plain") != (scheme == "plain"):
            raise DataError(
                f"{file}: its tags are {kinds[found == 'plain']} but those of {reference} are "
                f"{kinds[scheme == 'plain']}; every split needs the same kind of tags. Wrong tag column "
                "(conll_label_column / label_column_name), or the wrong file?"
            )
        if found != file_scheme[reference]:
            logger.warning(
                f"{file}: its tags are {found} but those of {reference} are {file_scheme[reference]}; each file is "
                f"converted from its own scheme to {scheme}."
            )

    done = {found: {} for found in file_scheme.values()}  # per source scheme, each distinct tag sequence, converted
    valid = {found: set() for found in file_scheme.values()}  # per source scheme, tags seen in valid sequences
    rewritten: dict[tuple, int] = {}  # a sequence already in the target scheme -> its first rewritten tag
    repaired: dict[str, list] = {}  # file in the target scheme -> [sentences rewritten, where the first was]

    def convert(name: str) -> list[list[str]]:
        source_scheme = file_scheme[origin[name]]
        converted, cache, seen = [], done[source_scheme], valid[source_scheme]
        for key, where in zip(keys[name], sources[name]):
            if key not in cache:
                if not seen.issuperset(key):  # find_invalid_tag checks each tag on its own
                    problem = schemes.find_invalid_tag(key, source_scheme)
                    if problem:
                        raise DataError(
                            f"{_token_location(where, problem[0])}: {problem[1]} (the tags of {origin[name]} were "
                            f"detected as {source_scheme})."
                        )
                    seen.update(key)
                cache[key] = schemes.convert(key, source_scheme, scheme)
                if source_scheme == scheme and cache[key] != list(key):
                    rewritten[key] = next(i for i, (a, b) in enumerate(zip(key, cache[key])) if a != b)
            if source_scheme == scheme and key in rewritten:
                count = repaired.setdefault(origin[name], [0, _token_location(where, rewritten[key])])
                count[0] += 1
            converted.append(cache[key])
        return converted

    tags = {name: convert(name) for name in raw}
    example = {"IOB2": "O I-X -> O B-X", "IOB1": "O B-X -> O I-X", "BIOES": "O B-X O -> O S-X O"}
    for file, (count, first) in repaired.items():
        logger.warning(
            f"{file}: {count} sentence(s) not in canonical {scheme} (the first at {first}) were rewritten in it, with "
            f"the entity spans seqeval reads ({example[scheme]})."
        )
    if known_labels is None:
        pool = tags["train"] if "train" in tags else [seq for split in tags.values() for seq in split]
        label_names = schemes.complete_label_list(schemes.label_list([t for seq in pool for t in seq], scheme), scheme)
    else:
        label_names = list(known_labels)
    forms: dict[str, list[str]] = {}
    for label in label_names:
        forms.setdefault(unicodedata.normalize("NFC", label), []).append(label)
    twins = [same for same in forms.values() if len(same) > 1]
    if twins:  # e.g. B-PERSÖNLICH typed once precomposed and once with a combining diaeresis
        logger.warning(
            "labels that differ only in their Unicode form are kept apart, as two types: "
            + "; ".join(" and ".join(ascii(label) for label in same) for same in twins)
            + ". Normalise the tags of the data files to one form (NFC) to merge them."
        )
    allowed = set(label_names)
    for name in raw:
        for seq, key, where in zip(tags[name], keys[name], sources[name]):
            if not allowed.issuperset(seq):
                position = next(i for i, tag in enumerate(seq) if tag not in allowed)
                tag, label = key[position], seq[position]  # as written, and converted to the target scheme
                shown = f"'{tag}'" if tag == label else f"'{tag}' ({label} in {scheme})"
                raise DataError(
                    f"{_token_location(where, position)}: tag {shown} in the {name} split is not among the model's "
                    f"labels ({', '.join(label_names)}). Fix the tag, or add examples of it to the training data."
                )
    converted = DatasetDict()
    for name, split in raw.items():
        # The new column's fingerprint follows from the input's and the conversion (hashing the tags takes seconds).
        source_scheme = file_scheme[origin[name]]
        new_fingerprint = Hasher.hash((split._fingerprint, "seqft.prepare_labels", source_scheme, scheme))
        converted[name] = split.remove_columns("tags").add_column("tags", tags[name], new_fingerprint=new_fingerprint)
    return converted, label_names, scheme


def _scheme_of_known_labels(
    labels: Sequence[str], scheme: str, requested: str, labels_from: str, known_scheme: str | None = None
) -> str:
    """The scheme to convert the data to when a model's labels are fixed: the model's own `known_scheme` when it is
    known, else `scheme` unless those labels are BIOES and it is IOB1/IOB2, or the reverse; then theirs under
    `auto`, else a DataError (see `prepare_labels`)."""
    prefixes = {schemes.split_tag(label)[0] for label in labels} & set(schemes.PREFIXES)
    if not prefixes or scheme == "plain":  # plain labels or data: the plain/prefixed checks report a mismatch
        return scheme
    if known_scheme in schemes.SCHEME_PREFIXES:
        if requested in ("auto", known_scheme):
            return known_scheme
        raise DataError(
            f"label_scheme is {requested}, but {labels_from} was trained in {known_scheme} (its config's "
            f"label_scheme): set label_scheme to {known_scheme} (or auto), so that the data is converted to the "
            f"scheme of its predictions."
        )
    bioes = bool(prefixes & {"E", "S"})
    if bioes == (scheme == "BIOES"):
        return scheme
    theirs = "BIOES" if bioes else "IOB2"
    if requested == "auto":
        return theirs
    shown = [label for label in labels if schemes.split_tag(label)[0] in (("E", "S") if bioes else ("B", "I"))]
    raise DataError(
        f"label_scheme is {requested}, but {labels_from} predicts {'BIOES' if bioes else 'IOB1/IOB2'} tags "
        f"({', '.join(shown[:4])}{', ...' if len(shown) > 4 else ''}): set label_scheme to {theirs} (or auto), so "
        "that the data is converted to the scheme of its labels."
    )


# ---------------------------------------------------------------------------------------------------------------
# Tokenisation and alignment


def check_pretokenized(tokenizer) -> None:
    """Tokenising pre-split words must give the same pieces as tokenising the joined text.

    RoBERTa-style BPE tokenizers loaded without `add_prefix_space=True` silently tokenise every word as if it
    began a text; `load_tokenizer` reloads them with the prefix space and this check proves the result.
    """
    words = ["Hello", "world", "again"]
    split = tokenizer(words, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    joined = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]
    if split != joined:
        raise DataError(
            f"tokenizer {type(tokenizer).__name__} tokenises pre-split words differently from running text "
            f"({split} vs {joined}); for BPE tokenizers load it with add_prefix_space=True."
        )


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "tokenizer.model",
)


def load_tokenizer(name_or_path: str, **kwargs):
    """A fast tokenizer that tokenises pre-split words as running text. Training passes `split_special_tokens=True`
    (saved with the model, so the pipeline and `seqft.predict` keep it): a word such as "[SEP]" in the data is text,
    not a separator in the middle of the sentence."""
    from transformers import AutoTokenizer

    if os.path.isdir(name_or_path) and not any(os.path.isfile(os.path.join(name_or_path, f)) for f in TOKENIZER_FILES):
        # transformers would build an empty vocabulary here: every word [UNK], every tag O, no error
        raise DataError(
            f"{name_or_path}: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...). Save the tokenizer there "
            "(tokenizer.save_pretrained), or name a folder or Hub id that has one ('tokenizer_name')."
        )
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(f"{name_or_path}: seqft needs a fast tokenizer (word alignment); none could be loaded.")
    try:
        check_pretokenized(tokenizer)
    except DataError:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, add_prefix_space=True, **kwargs)
        try:
            check_pretokenized(tokenizer)
        except DataError:
            # the generic TokenizersBackend (ModernBERT's in transformers 5) ignores add_prefix_space: set it in the
            # backend's pre-tokenizer itself, which save_pretrained writes to tokenizer.json for the pipeline too
            _prefix_space_in_backend(tokenizer)
            check_pretokenized(tokenizer)
    return tokenizer


def _prefix_space_in_backend(tokenizer) -> None:
    """Turn on the byte-level pre-tokenizer's prefix space (and Metaspace's on every word) in the Rust backend."""
    from tokenizers import Tokenizer

    state = json.loads(tokenizer.backend_tokenizer.to_str())

    def turn_on(node) -> None:
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel" and "add_prefix_space" in node:
                node["add_prefix_space"] = True
            if node.get("type") == "Metaspace" and node.get("prepend_scheme") == "first":
                node["prepend_scheme"] = "always"
            for value in node.values():
                turn_on(value)
        elif isinstance(node, list):
            for value in node:
                turn_on(value)

    turn_on(state.get("pre_tokenizer"))
    backend = Tokenizer.from_str(json.dumps(state))
    backend.encode_special_tokens = tokenizer.backend_tokenizer.encode_special_tokens
    tokenizer._tokenizer = backend


def align_labels(
    word_ids: Sequence[int | None], tags: Sequence[str], label2id: dict, label_all_tokens: bool
) -> list[int]:
    """Label the first subword of each word; continuation pieces get -100, or the B->I label with label_all_tokens."""
    ids, previous = [], None
    for w in word_ids:
        if w is None:
            ids.append(-100)
        elif w != previous:
            ids.append(label2id[tags[w]])
        else:
            ids.append(label2id[schemes.b_to_i(tags[w])] if label_all_tokens else -100)
        previous = w
    return ids


@_collector_paused()
def tokenize_split(
    split: Dataset,
    tokenizer,
    label2id: dict,
    max_length: int,
    label_all_tokens: bool,
    num_proc=None,
    desc="",
    *,
    stride: int | None = None,
    doc_context: int = 0,
):
    """Tokenise pre-split words into windows of at most `max_length` tokens and align labels (seqft.windows).

    `stride=None` truncates each sentence to one window (the words beyond are counted by `truncation_report`);
    an integer cuts longer sentences into windows overlapping by about that many subword tokens, at word
    boundaries. `doc_context=k` fills each window of a sentence that fits with up to k neighbouring sentences of
    its document (`doc_id`) as unlabelled context. One row per window: `tokens`/`tags` are the words it labels,
    other input columns are copied; `windows.encode` documents the added columns (`labels`, `word_index`,
    `word_context`, `word_ids`, `example_id`, `num_words`, `num_words_kept`, `length`, ...).
    """
    from . import windows

    columns = split.column_names
    # With document context a window needs its neighbours, which may sit in another batch: read them up front.
    everything = read_column(split, "tokens") if doc_context else None
    doc_ids = read_column(split, "doc_id") if doc_context and "doc_id" in columns else None
    if doc_context and doc_ids is None:
        doc_ids = [0] * len(split)

    def encode(batch, indices):
        sentences = everything if everything is not None else dict(zip(indices, batch["tokens"]))
        tags = dict(zip(indices, batch["tags"]))
        out = windows.encode(
            tokenizer,
            sentences,
            indices,
            max_length=max_length,
            stride=stride,
            doc_context=doc_context,
            doc_ids=doc_ids,
            tags=tags,
            label2id=label2id,
            label_all_tokens=label_all_tokens,
        )
        row = {i: k for k, i in enumerate(indices)}
        spans = list(zip(out["example_id"], out["window_start"], out["window_end"]))
        out["tokens"] = [batch["tokens"][row[i]][start:end] for i, start, end in spans]
        out["tags"] = [batch["tags"][row[i]][start:end] for i, start, end in spans]
        for column in columns:
            if column not in out:
                out[column] = [batch[column][row[i]] for i in out["example_id"]]
        return out

    # datasets would fingerprint the map by hashing `encode` with dill, the tokenizer's Python vocabulary included
    # (0.15 s for MiniLM's); its settings and serialised backend identify it in a few milliseconds.
    backend = getattr(tokenizer, "backend_tokenizer", None)  # fast tokenizers (the others cannot align words)
    new_fingerprint = None
    if backend is not None:
        options = (label2id, max_length, label_all_tokens, stride, doc_context)
        tokenizer_id = (repr(tokenizer), tokenizer.model_input_names, backend.to_str())
        new_fingerprint = Hasher.hash((split._fingerprint, "seqft.tokenize_split", tokenizer_id, options))
    return split.map(
        encode,
        batched=True,
        with_indices=True,
        remove_columns=columns,
        num_proc=num_proc,
        desc=desc or "Tokenising",
        new_fingerprint=new_fingerprint,
    )


def truncation_report(split: Dataset, name: str) -> int:
    """Log (loudly) how many words did not fit max_seq_length (only with truncation); returns that count.

    Also logs how many sentences were cut into overlapping windows.
    """
    from . import windows

    examples = split.select_columns(["example_id", "num_words", "num_words_kept"])[:]
    words, kept = {}, {}
    for example, n, k in zip(examples["example_id"], examples["num_words"], examples["num_words_kept"]):
        words[example] = n
        kept[example] = kept.get(example, 0) + k
    lost = sum(words[e] - kept[e] for e in words)
    if lost:
        sentences = sum(words[e] > kept[e] for e in words)
        logger.warning(
            f"{name}: {lost} words in {sentences} sentences do not fit max_seq_length and get no label/prediction. "
            "Raise max_seq_length, or leave truncate_long_sentences off to cut long sentences into windows."
        )
    message = windows.describe(split, len(words))
    if message:
        logger.info(f"{name}: {message}")
    return lost


class ShuffledLengthGroupedSampler(torch.utils.data.Sampler):
    """Length-grouped batches (the stock megabatches, so the same padding) served in random order.

    The stock `LengthGroupedSampler` runs each 50-batch megabatch from its longest batch to its shortest, so an
    epoch is a few long-to-short sweeps of correlated batches. Measured on CoNLL-2003 (benchmarks/README.md), that
    costs about 0.04-0.05 test F1 at a short budget; shuffling the batches recovers it at the same speed. The
    partial batch stays last so the DataLoader's batches remain the grouped ones. Like the stock sampler it draws
    from torch's global generator, which the Trainer seeds identically on every rank.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int):
        self.lengths, self.batch_size = list(lengths), batch_size

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        from transformers.trainer_pt_utils import get_length_grouped_indices

        order = get_length_grouped_indices(self.lengths, self.batch_size)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        tail = [batches.pop()] if batches and len(batches[-1]) < self.batch_size else []
        shuffled = [batches[b] for b in torch.randperm(len(batches)).tolist()] + tail
        return iter([i for batch in shuffled for i in batch])


def sort_by_length(split: Dataset) -> Dataset:
    """Evaluation order sorted by length (little padding); `example_id` keeps the original order for outputs."""
    if "example_id" not in split.column_names:
        split = split.add_column("example_id", list(range(len(split))))
    return split.sort("length")
