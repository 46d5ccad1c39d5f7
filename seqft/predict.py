"""Label raw text, CoNLL files or JSON Lines with a fine-tuned seqft model, windowed exactly as in training.

    python -m seqft.predict MODEL_DIR [INPUT ...] [--format jsonl|conll] [--output FILE]
    echo "John Smith lives in New York ." | python -m seqft.predict outputs/run

    from seqft.predict import Predictor
    Predictor("outputs/run").predict(["John Smith lives in New York ."])  # -> [[{"label": "PER", ...}, ...]]

Inputs (files, or stdin when none is given or for `-`), by suffix or, for `.txt`/no suffix/stdin, by content:

- raw text: one text per line, split into words on whitespace; entities carry character offsets into the line;
- CoNLL columns (`.conll`, `.iob`, `.bio`, `eng.testb`, ... or `--input-format conll`; by content, a file with
  `-DOCSTART-`, or of at least 3 lines of one width whose last column is a tag (`O`, a prefix and a type in any
  scheme, or one of the model's labels); a file of one word per line needs `--input-format conll`, as it looks like
  text in a script without spaces): words from the first column, `-DOCSTART-` lines start documents, other columns
  (e.g. gold tags) and the `-DOCSTART-` lines are kept in `--format conll` output; every word line has as many
  columns as the first;
- JSON Lines: `{"tokens": [...]}` or `{"text": "..."}` per line; other keys are copied to the output (one the
  output also writes, such as gold `tags`, as `input_tags`), and an
  integer `doc_id` groups rows into documents (a row without one is its own, in training too). CSV files and JSON
  arrays are refused: write them as JSON Lines.

Windowing follows the model directory's `seqft_recipe.json` (`max_seq_length`, `stride`, `truncate_long_sentences`,
`doc_context`), so long texts are cut and merged as in training (seqft.windows) and no word is left without a tag
(except with `truncate_long_sentences`, where words past `max_seq_length` get O, or null for plain tags, and no
score).
Document context uses neighbouring sentences of the same document (CoNLL `-DOCSTART-`, JSONL `doc_id`); each raw
text line is its own document. Works with softmax and CRF heads, adapter-only checkpoints (`adapter_config.json`,
loaded with seqft.adapters) and merged ones.

Output (`--format jsonl`, the default): per input text `{"source", "text" | ..., "tokens", "tags", "entities"}`,
each entity `{"label", "score", "word", "start", "end", "start_word", "end_word"}`: `start`/`end` are character
offsets into the text (for word lists, into the words joined by single spaces, as the pipeline does), `word` is
that slice of the text, `*_word` are word indices (end exclusive), `score` is the mean over the entity's words of the
probability of the predicted tag at the word's first subword. These are the entities of
`pipeline("token-classification", aggregation_strategy="first")` on texts that fit one window, with words split on
whitespace, except for words the tokenizer splits at punctuation (`AL-AIN`): seqft tags each such word once, the
pipeline tags its pieces as separate words. `--format conll`: one word per line with its predicted tag last.

Sequence classifiers (`task: sequence-classification`) read raw text (one text per line) or JSON Lines
(`{"text": ..., "text_pair": ...}`) and write one JSON line per text with `label` and `score`, as
`pipeline("text-classification")` scores them (multi-label: also `labels` and `scores`); see `seqft.seqcls`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import labels as schemes
from . import windows
from .errors import DataError, SeqFTError, run_cli

logger = logging.getLogger(__name__)

FORMATS = ("jsonl", "conll")
INPUT_FORMATS = ("auto", "text", "conll", "jsonl")
CONLL_SUFFIXES = {".conll", ".iob", ".iob1", ".iob2", ".bio", ".bioes", ".tsv"}
JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}
STDIN = "<stdin>"
CHUNK = 2048  # documents encoded at a time (every window of a document is merged within its chunk)
# ---------------------------------------------------------------------------------------------------------------
# Inputs


def _invisible(char: str) -> bool:
    """A format or control character (zero-width space, joiners, BOM, soft hyphen, BEL, ...)."""
    return unicodedata.category(char) in ("Cf", "Cc")


@dataclass
class Document:
    """One text to label: its words and, for raw text, the text and each word's character offsets."""

    words: list[str]
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None
    doc_id: Any = None
    source: str = ""
    extra: dict = field(default_factory=dict)  # JSONL keys to copy to the output
    columns: list[list[str]] | None = None  # CoNLL input: every column of each word's line
    headers: list[list[str]] = field(default_factory=list)  # CoNLL input: the `-DOCSTART-` lines just before it

    @classmethod
    def from_text(cls, text: str, **kwargs) -> Document:
        """Words split at whitespace; invisible characters at a word's edges (zero-width space, BOM, soft hyphen,
        control characters) are not part of it (BERT-style tokenizers drop them, and an entity's offsets should not
        cover them), and a word of nothing else is no word."""
        spans = []
        for m in re.finditer(r"\S+", text):
            start, end = m.span()
            while start < end and _invisible(text[start]):
                start += 1
            while end > start and _invisible(text[end - 1]):
                end -= 1
            if start < end:
                spans.append((start, end))
        return cls([text[a:b] for a, b in spans], text=text, offsets=spans, **kwargs)

    @classmethod
    def from_words(cls, words: Sequence[str], **kwargs) -> Document:
        return cls([str(w) for w in words], **kwargs)

    def char_offsets(self) -> tuple[str, list[tuple[int, int]]]:
        """The text and word offsets entities refer to: the raw text, or the words joined by single spaces."""
        if self.text is not None and self.offsets is not None:
            return self.text, self.offsets
        offsets, position = [], 0
        for word in self.words:
            offsets.append((position, position + len(word)))
            position += len(word) + 1
        return " ".join(self.words), offsets


def read_lines(path: str) -> list[str]:
    """The lines of a UTF-8 file (`-`: stdin); errors name the file, and the line for undecodable bytes."""
    name = STDIN if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8")
        else:
            data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{name}: no such file.") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, not a file of texts.") from None
    except OSError as err:
        raise DataError(f"{name}: cannot be read ({err.strerror or err}).") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        offset = err.start + len(data) - len(err.object)  # utf-8-sig counts from after a byte-order mark
        line = data[:offset].count(b"\n") + 1
        raise DataError(
            f"{name}:{line}: not valid UTF-8 ({err.reason} at byte {offset}); is this a binary file? "
            "Convert text files to UTF-8."
        ) from None
    if not text.strip():
        raise DataError(f"{name}: the input is empty (no text to label).")
    # only \n, \r\n or \r ends a line: str.splitlines would also split at U+2028, form feeds, ... which JSON
    # strings and texts may hold
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # a lone CR ends a line too (old Macs)
    if lines[-1] == "":
        lines.pop()
    return lines


def parse_text(lines: Sequence[str], name: str) -> list[Document]:
    """One document per line; a blank line gives an empty result, keeping outputs aligned with input lines."""
    return [Document.from_text(line, doc_id=f"{name}:{n}", source=f"{name}:{n}") for n, line in enumerate(lines, 1)]


def parse_conll(lines: Sequence[str], name: str) -> list[Document]:
    """Sentences separated by blank lines, words in the first column, `-DOCSTART-` lines starting documents (kept
    as the next sentence's `headers`, so that `--format conll` writes them back where they were)."""
    documents, doc_id, rows, start, headers = [], 0, [], None, []

    def flush():
        nonlocal rows, headers
        if rows:
            documents.append(  # documents of different files never share context
                Document.from_words(
                    [r[0] for r in rows],
                    doc_id=(name, doc_id),
                    source=f"{name}:{start}",
                    columns=rows,
                    headers=headers,
                )
            )
            headers = []
        rows = []

    width = None  # every word line has as many columns as the first (as training's reader requires)
    for n, line in enumerate(lines, 1):
        parts = line.removeprefix("\ufeff").split()  # a byte-order mark inside: files concatenated
        if not parts:
            flush()
        elif parts[0] == "-DOCSTART-":
            flush()
            doc_id += 1
            headers.append(parts)
        else:
            width = width or (len(parts), n)
            if len(parts) != width[0]:
                raise DataError(
                    f"{name}:{n}: expected {width[0]} columns (as on line {width[1]}), found {len(parts)}: "
                    f"{line[:80]!r}. A word containing spaces (an ideographic space too), or a missing column?"
                )
            if not rows:
                start = n
            rows.append(parts)
    flush()
    if not documents:
        raise DataError(f"{name}: no sentences found (only -DOCSTART- and blank lines).")
    return documents


def parse_jsonl(lines: Sequence[str], name: str) -> list[Document]:
    """One JSON object per line with `tokens` (a list of words) or `text` (a string); blank lines are skipped."""
    documents = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: invalid JSON ({err.msg} at column {err.colno}).") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object per line, got {type(row).__name__}.")
        # other keys are copied; a `text` beside `tokens` (which are labelled) too, instead of being dropped
        extra = {k: v for k, v in row.items() if k != "tokens" and (k != "text" or "tokens" in row)}
        doc_id = (name, row["doc_id"]) if isinstance(row.get("doc_id"), int) else where
        if "tokens" in row:
            tokens = row["tokens"]
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise DataError(f"{where}: 'tokens' must be a list of strings (words), got {str(tokens)[:60]}.")
            blank = next((i for i, token in enumerate(tokens) if not token.strip()), None)
            if blank is not None:  # it would be written as a line without its word
                raise DataError(
                    f"{where}: word {blank + 1} of 'tokens' is {tokens[blank]!r}, empty or only whitespace; remove it."
                )
            documents.append(Document.from_words(tokens, doc_id=doc_id, source=where, extra=extra))
        elif "text" in row:
            if not isinstance(row["text"], str):
                raise DataError(f"{where}: 'text' must be a string, got {type(row['text']).__name__}.")
            documents.append(Document.from_text(row["text"], doc_id=doc_id, source=where, extra=extra))
        else:
            keys = ", ".join(row) or "none"
            raise DataError(f"{where}: a row needs 'tokens' (a list of words) or 'text' (a string); its keys: {keys}.")
    if not documents:
        raise DataError(f"{name}: no JSON rows found.")
    return documents


def _is_json_array(lines: Sequence[str]) -> bool:
    """Whether the lines are one JSON array (a file training reads as JSON), not text that starts with `[`."""
    try:
        return isinstance(json.loads("\n".join(lines)), list)
    except ValueError:
        return False


def sniff_format(path: str, lines: Sequence[str], labels: Iterable[str] = ()) -> str:
    """`jsonl`, `conll` or `text`, from the suffix, else from the first lines."""
    suffix = Path(path).suffix.lower() if path != "-" else ""
    if suffix == ".conllu":
        from .data import CONLLU_NOT_READ

        raise DataError(f"{path}: {CONLLU_NOT_READ}")
    head = [line for line in lines[:200] if line.strip()]
    if suffix == ".csv" or (head and head[0].lstrip().startswith("[") and _is_json_array(lines)):  # not as text
        what = "a CSV file" if suffix == ".csv" else "a JSON array"
        raise DataError(
            f'{path}: {what}; seqft.predict reads raw text, CoNLL columns or JSON Lines ({{"tokens": [...]}} or '
            '{"text": ...} per line): write the rows as JSON Lines.'
        )
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in CONLL_SUFFIXES or suffix.startswith((".test", ".train", ".dev", ".val")):
        return "conll"
    if head and head[0].lstrip().startswith("{"):
        return "jsonl"
    if any(line.startswith("-DOCSTART-") for line in lines):
        return "conll"
    known = set(labels)
    widths = {len(line.split()) for line in head}
    if path == "-" or len(head) < 3 or len(widths) != 1:
        return "text"  # piped text is text: `echo "John lives in London ." |` must not read as a word and POS tags

    def tag_shaped(tag: str) -> bool:  # the model's labels, or any O / B-/I-/E-/S-/L-/U- + type (other schemes)
        return tag in known or schemes.split_tag(tag)[0] is not None or re.fullmatch(r"[LU]-\S+", tag) is not None

    if min(widths) >= 2 and all(tag_shaped(line.split()[-1]) for line in head):
        return "conll"  # word ... tag on every line of a file
    blocks = [block for block in "\n".join(line.strip() for line in lines[:200]).split("\n\n") if block.strip()]
    if widths == {1} and len(blocks) >= 2 and len(head) >= 2 * len(blocks):
        # one field per line in blank-line-separated blocks: a CoNLL file without tags, or paragraphs of text in a
        # script without spaces (Chinese, Japanese, Thai); the documented default, text, with a pointer
        logger.warning(
            f"{path}: read as raw text, one text per line. If it holds one word per line, sentences separated by "
            "blank lines, pass --input-format conll."
        )
    return "text"


def read_input(path: str, input_format: str = "auto", labels: Iterable[str] = ()) -> list[Document]:
    """Documents from a file (`-`: stdin) in `input_format` (`auto` sniffs it)."""
    return parse_input(path, read_lines(path), input_format, labels)


def parse_input(path: str, lines: Sequence[str], input_format: str = "auto", labels: Iterable[str] = ()):
    if input_format not in INPUT_FORMATS:
        raise DataError(f"unknown input format {input_format!r}: expected one of {', '.join(INPUT_FORMATS)}.")
    name = STDIN if path == "-" else path
    kind = sniff_format(path, lines, labels) if input_format == "auto" else input_format
    return {"text": parse_text, "conll": parse_conll, "jsonl": parse_jsonl}[kind](lines, name)


def read_json_file(path: str) -> dict:
    """A model folder's JSON file (config, recipe, adapter config); a broken one is a SeqFTError naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except (ValueError, OSError) as err:
        raise SeqFTError(f"{path}: cannot be read as JSON ({err}); the model folder is damaged.") from None
    if not isinstance(value, dict):
        raise SeqFTError(f"{path}: expected a JSON object, got {type(value).__name__}; the model folder is damaged.")
    return value


def saved_labels(model_dir: str) -> list[str]:
    """The label names in a model directory's config (full or adapter checkpoint), without loading the model."""
    for path in (os.path.join(model_dir, "config.json"), os.path.join(model_dir, "base_config", "config.json")):
        if os.path.isfile(path):
            return list((read_json_file(path).get("id2label") or {}).values())
    return []


# ---------------------------------------------------------------------------------------------------------------
# Model


def load_model(model_dir: str, auto_cls=None, **kwargs):
    """A model from a directory (`auto_cls`, default `AutoModelForTokenClassification`): full checkpoints, or
    adapter-only ones (seqft.adapters). A folder that does not load is a SeqFTError naming it."""
    from transformers import AutoModelForTokenClassification

    from . import modeling  # noqa: F401  (registers the CRF model with the Auto classes)

    kind = check_model_dir(model_dir)
    try:
        if kind == "adapter":
            from .adapters import load_adapter_model

            model = load_adapter_model(model_dir, **kwargs)
        else:
            model = (auto_cls or AutoModelForTokenClassification).from_pretrained(model_dir, **kwargs)
    except (OSError, ValueError) as err:  # no weights, a broken config.json, ...
        if isinstance(err, SeqFTError):
            raise
        raise SeqFTError(f"{model_dir}: the model does not load: {str(err).splitlines()[0]}") from None
    if schemes.placeholder_names([str(model.config.id2label[k]) for k in sorted(model.config.id2label, key=int)]):
        raise SeqFTError(
            f"{model_dir}: the model has no label names (LABEL_0, LABEL_1, ...): it is a base encoder, whose head "
            "would tag at random. Fine-tune it first (python -m seqft.train), then predict with its output folder."
        )
    return model


def resolve_device(device: str | None):
    """A torch device from `--device` (default: cuda when available), or a SeqFTError saying what is usable."""
    import torch

    usable = "cpu" + (", cuda, cuda:N" if torch.cuda.is_available() else "")
    try:
        resolved = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise SeqFTError(f"device {device!r} is not a device: expected one of {usable}.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SeqFTError(f"device {device!r}: this torch has no CUDA device; use one of {usable}.")
    return resolved


def prepare_output(path: str) -> None:
    """Before any model loads: `-o` must be writable; missing parent folders are created."""
    if path == "-":
        return
    if os.path.isdir(path):
        raise SeqFTError(f"-o {path}: is a directory; name a file.")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise SeqFTError(f"-o {path}: cannot create its folder ({err.strerror or err}).") from None


def check_model_dir(model_dir: str) -> str:
    """`adapter` or `full`, or an error saying why `model_dir` is no model directory."""
    if not os.path.isdir(model_dir):
        raise SeqFTError(f"{model_dir}: no such model directory.")
    if os.path.isfile(os.path.join(model_dir, "adapter_config.json")):
        return "adapter"
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise SeqFTError(f"{model_dir}: not a model directory (no config.json or adapter_config.json).")
    return "full"


def read_recipe(model_dir: str) -> dict:
    """The resolved recipe saved with the model (`seqft_recipe.json`), or {}. A `merged/` or `checkpoint-N/`
    folder reads its run's recipe."""
    candidates = [os.path.join(model_dir, "seqft_recipe.json")]
    base = os.path.basename(os.path.normpath(model_dir))
    if base == "merged" or base.startswith("checkpoint-"):
        candidates.append(os.path.join(os.path.dirname(os.path.normpath(model_dir)), "seqft_recipe.json"))
    for path in candidates:
        if os.path.isfile(path):
            record = read_json_file(path)
            return record.get("recipe", record)
    return {}


def position_limit(config, model=None) -> int | None:
    """The longest input the model's position embeddings take (RoBERTa-style models offset positions), less the
    virtual tokens a prompt-learning adapter of `model` puts before it."""
    limit = windows.model_positions(config)
    if limit is None:
        return None
    peft_config = getattr(model, "active_peft_config", None)
    if getattr(peft_config, "is_prompt_learning", False):
        limit -= peft_config.num_virtual_tokens
    return limit


def with_inputs(inputs: dict, outputs: dict) -> dict:
    """An output record: the input row's keys, then `outputs`. An input key the output also has (a gold `tags` or
    `label`) is kept as `input_<key>`, not overwritten."""
    return {**{(f"input_{key}" if key in outputs else key): value for key, value in inputs.items()}, **outputs}


@dataclass
class Prediction:
    """The labelled words of one document, and its entities."""

    document: Document
    tags: list[str | None]  # None: a word truncation left without a window, for plain tags (O in prefix schemes)
    scores: list[float | None]  # probability of each word's tag (None: a word truncation left without a window)
    entities: list[dict]

    def to_json(self) -> dict:
        doc = self.document
        outputs = {"source": doc.source, "text": doc.text, "tokens": doc.words, "tags": self.tags}
        if doc.text is None:
            del outputs["text"]
        record = with_inputs(doc.extra, {**outputs, "entities": self.entities})
        return {"source": record.pop("source"), **record}

    def to_conll(self) -> str:
        """One `columns... tag` line per word, after the `-DOCSTART-` lines that preceded the sentence in the input
        (tagged O, each followed by a blank line, as CoNLL-2003 files have them)."""
        headers = "".join(" ".join([*row, "O"]) + "\n\n" for row in self.document.headers)
        rows = self.document.columns or [[w] for w in self.document.words]
        tags = ["_" if tag is None else tag for tag in self.tags]
        return headers + "".join(" ".join([*row, tag]) + "\n" for row, tag in zip(rows, tags))


class Predictor:
    """A fine-tuned model with its tokenizer and the windowing of its training recipe.

    `max_seq_length`, `stride`, `doc_context` and `truncate_long_sentences` default to the values in the model's
    `seqft_recipe.json` (then to training's defaults). Extra keyword arguments go to `from_pretrained`. `model` and
    `tokenizer`, when given, are that directory's model and tokenizer already in memory (a distillation teacher):
    they are used instead of loading them again.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        *,
        device: str | None = None,
        batch_size: int = 32,
        max_seq_length: int | None = None,
        stride: int | None = None,
        doc_context: int | None = None,
        truncate_long_sentences: bool | None = None,
        progress: bool = False,
        model=None,
        tokenizer=None,
        **from_pretrained_kwargs,
    ):
        from . import data as seqdata

        model_dir = os.fspath(model_dir)
        if batch_size < 1:
            raise SeqFTError(f"batch_size = {batch_size}: expected an integer >= 1.")
        self.model_dir = model_dir
        self.recipe = read_recipe(model_dir)
        self.device = resolve_device(device)
        from . import seqcls

        if model is None and seqcls.is_sequence_classifier_dir(model_dir):
            raise SeqFTError(
                f"{model_dir}: a sequence classifier (one label per text); use seqft.seqcls.TextClassifier, or "
                "python -m seqft.predict, which picks it."
            )
        self.model = model if model is not None else load_model(model_dir, **from_pretrained_kwargs)
        self.model.to(self.device).eval()
        self.tokenizer = tokenizer if tokenizer is not None else seqdata.load_tokenizer(model_dir)
        self.batch_size = batch_size
        self.progress = progress

        config = self.model.config
        self.id2label = {int(k): v for k, v in config.id2label.items()}
        self.labels = [self.id2label[i] for i in range(len(self.id2label))]
        self.scheme = getattr(config, "label_scheme", None) or schemes.detect_scheme([self.labels])
        recipe = self.recipe
        if max_seq_length is not None and max_seq_length < 1:
            raise SeqFTError(f"max_seq_length = {max_seq_length}: expected a positive number of tokens.")
        self.max_length = max_seq_length or recipe.get("max_seq_length") or min(self.tokenizer.model_max_length, 512)
        limit = position_limit(config, self.model)
        if limit is not None and max_seq_length is None and not recipe.get("max_seq_length"):
            self.max_length = min(self.max_length, limit)
        if limit is not None and self.max_length > limit:
            raise SeqFTError(
                f"max_seq_length = {self.max_length} exceeds the model's {limit} positions: use at most {limit} "
                "(longer texts are cut into overlapping windows)."
            )
        if truncate_long_sentences is None:  # an explicit stride means windows, whatever the recipe says
            truncate_long_sentences = stride is None and bool(recipe.get("truncate_long_sentences", False))
        stride = recipe.get("stride") if stride is None else stride
        self.stride = windows.resolve_stride(self.tokenizer, self.max_length, stride, truncate_long_sentences)
        self.doc_context = recipe.get("doc_context", 0) if doc_context is None else doc_context
        if self.doc_context < 0:
            raise SeqFTError(f"doc_context = {self.doc_context}: expected an integer >= 0.")
        self.constraints = windows.decode_constraints(config)
        self._inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if self._accepts(k)]

    def _accepts(self, name: str) -> bool:
        import inspect

        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        parameters = inspect.signature(model.forward).parameters
        return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())

    # ----------------------------------------------------------------------------------------------------------

    def predict(
        self, inputs: str | Sequence[str | Sequence[str]], doc_ids: Sequence | None = None
    ) -> list[list[dict]]:
        """Entities of each text (a string, split on whitespace) or word list; a single string counts as one text.

        `doc_ids` (one per input) groups inputs into documents for `doc_context`; by default each is its own.
        """
        if isinstance(inputs, str):
            inputs = [inputs]
        if doc_ids is not None:
            inputs, doc_ids = list(inputs), list(doc_ids)
            if len(doc_ids) != len(inputs):
                raise DataError(f"doc_ids holds {len(doc_ids)} ids for {len(inputs)} inputs: give one id per input.")
        documents = []
        for k, item in enumerate(inputs):
            doc_id = doc_ids[k] if doc_ids is not None else k
            if isinstance(item, str):
                documents.append(Document.from_text(item, doc_id=doc_id, source=f"input {k}"))
            elif isinstance(item, Sequence) and all(isinstance(w, str) for w in item):
                documents.append(Document.from_words(item, doc_id=doc_id, source=f"input {k}"))
            else:
                raise DataError(f"input {k}: expected a string or a list of words (strings), got {str(item)[:60]}.")
        return [p.entities for p in self.predict_documents(documents)]

    def predict_documents(self, documents: Sequence[Document]) -> list[Prediction]:
        """Tags, per-word scores and entities of each document, in order."""
        from tqdm.auto import tqdm

        sentences = [d.words for d in documents]
        doc_ids = [d.doc_id for d in documents] if self.doc_context else None
        results: list[Prediction] = []
        with tqdm(total=0, unit="window", disable=not self.progress, desc="Predicting") as bar:
            for first in range(0, len(documents), CHUNK):
                indices = list(range(first, min(first + CHUNK, len(documents))))
                encoded = windows.encode(
                    self.tokenizer,
                    sentences,
                    indices,
                    max_length=self.max_length,
                    stride=self.stride,
                    doc_context=self.doc_context,
                    doc_ids=doc_ids,
                )
                bar.total += len(encoded["example_id"])
                bar.refresh()
                logits = self._run(encoded, bar)
                parts = []
                for w, example in enumerate(encoded["example_id"]):
                    index = np.asarray(encoded["word_index"][w])
                    positions = np.flatnonzero(index != windows.IGNORE_INDEX)
                    context = np.asarray(encoded["word_context"][w])[positions]
                    parts.append((example, index[positions], context, logits[w][positions]))
                merged = windows.merge(parts, {i: len(sentences[i]) for i in indices})
                results.extend(self._finish(documents[i], *merged[i]) for i in indices)
        cut = [(r.document.source, r.scores.count(None)) for r in results if None in r.scores]
        if cut:
            logger.warning(
                f"{sum(n for _, n in cut)} words of {len(cut)} texts lie beyond max_seq_length ({self.max_length} "
                f"tokens) and truncate_long_sentences is on: they are tagged "
                f"{'O' if schemes.missing_tag(self.scheme) else 'null (no prediction)'}, with no score (first: "
                f"{cut[0][0]}). "
                "Give a stride (--stride N) to label them in overlapping windows."
            )
        return results

    def _run(self, encoded: dict, bar) -> list[np.ndarray]:
        """Logits `(length, num_labels)` of every window, batched by length (right padding)."""
        import torch

        order = sorted(range(len(encoded["input_ids"])), key=lambda w: -len(encoded["input_ids"][w]))
        out: list[np.ndarray | None] = [None] * len(order)
        pad_id = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(encoded["input_ids"][w]) for w in batch)
            tensors = {}
            for key in self._inputs:
                if key not in encoded:
                    continue
                fill = pad_id if key == "input_ids" else 0
                rows = [list(encoded[key][w]) + [fill] * (width - len(encoded[key][w])) for w in batch]
                tensors[key] = torch.tensor(rows, dtype=torch.long, device=self.device)
            with torch.inference_mode():
                output = self.model(**tensors)
            logits = (output["logits"] if isinstance(output, dict) else output[0]).float().cpu().numpy()
            for row, w in enumerate(batch):
                out[w] = logits[row, : len(encoded["input_ids"][w])]
            bar.update(len(batch))
        return out

    def _finish(self, document: Document, rows: np.ndarray, covered: np.ndarray) -> Prediction:
        n = len(document.words)
        tags, scores = [schemes.missing_tag(self.scheme)] * n, [None] * n
        if covered.any():
            logits = rows[covered].astype(np.float32)
            # the pipeline's softmax, in float32, so that scores match it
            shifted = np.exp(logits - logits.max(-1, keepdims=True))
            probs = shifted / shifted.sum(-1, keepdims=True)
            ids = windows.decode_words(logits, self.constraints)
            for k, (w, i) in enumerate(zip(np.flatnonzero(covered), ids)):
                tags[w], scores[w] = self.id2label[int(i)], float(probs[k, i])
        return Prediction(document, tags, scores, self.entities(document, tags, scores))

    def entities(self, document: Document, tags: Sequence[str], scores: Sequence[float | None]) -> list[dict]:
        """Entity spans of the tags (read the conlleval way, any prefix scheme; every non-O word for plain tags)."""
        text, offsets = document.char_offsets()
        if self.scheme == "plain":
            spans = [(tag, w, w + 1) for w, tag in enumerate(tags) if tag not in ("O", None)]
        else:
            spans = schemes.tag_spans(tags)
        entities = []
        for label, start, end in spans:
            word_scores = [s for s in scores[start:end] if s is not None]
            a, b = offsets[start][0], offsets[end - 1][1]
            entities.append(
                {
                    "label": label,
                    "score": float(np.mean(word_scores)) if word_scores else 0.0,
                    "word": text[a:b],
                    "start": a,
                    "end": b,
                    "start_word": start,
                    "end_word": end,
                }
            )
        return entities


# ---------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m seqft.predict",
        description="Label raw text (one text per line), CoNLL files or JSON Lines with a fine-tuned seqft model.",
    )
    parser.add_argument("model_dir", help="A seqft output directory (full, merged or adapter-only checkpoint).")
    parser.add_argument("inputs", nargs="*", help="Input files; none or '-' reads stdin.")
    parser.add_argument("-o", "--output", default="-", help="Where to write (default: stdout).")
    parser.add_argument("--format", choices=FORMATS, default="jsonl", help="jsonl (entities) or conll (word tag).")
    parser.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default="auto",
        help="auto: by suffix (.jsonl, .conll/.iob/.bio/...), else by content (JSON rows, -DOCSTART-, word-tag "
        "columns), else raw text. A file of one word per line (no tags) needs conll.",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="Windows per forward pass.")
    parser.add_argument("--max-seq-length", type=int, default=None, help="Window length (default: the recipe's).")
    parser.add_argument("--stride", type=int, default=None, help="Window overlap in tokens (default: the recipe's).")
    parser.add_argument("--doc-context", type=int, default=None, help="Context sentences (default: the recipe's).")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar on stderr.")
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the number of texts labelled. Inputs are read and checked before the model loads."""
    args = build_parser().parse_args(argv)
    check_model_dir(args.model_dir)
    prepare_output(args.output)
    from . import seqcls

    if seqcls.is_sequence_classifier_dir(args.model_dir):  # a label (or several) per text: seqft/seqcls.py
        return seqcls.predict_cli(args)
    paths = args.inputs or ["-"]
    contents = [read_lines(path) for path in paths]
    labels = saved_labels(args.model_dir)
    documents = [
        doc for path, lines in zip(paths, contents) for doc in parse_input(path, lines, args.input_format, labels)
    ]
    if args.format == "conll":  # JSONL 'tokens' may hold a space or a newline; a CoNLL line cannot
        spaced = next(((d, i) for d in documents for i, w in enumerate(d.words) if any(c.isspace() for c in w)), None)
        if spaced is not None:
            document, i = spaced
            raise DataError(
                f"{document.source}: word {i + 1} of 'tokens', {document.words[i]!r}, holds whitespace, which "
                "--format conll would write as several words on one line (or across lines); use --format jsonl, "
                "or split it into words."
            )
    if args.no_progress:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    predictor = Predictor(
        args.model_dir,
        device=args.device,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        stride=args.stride,
        doc_context=args.doc_context,
        progress=not args.no_progress,
    )
    predictions = predictor.predict_documents(documents)
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for prediction in predictions:
            if args.format == "jsonl":
                out.write(json.dumps(prediction.to_json(), ensure_ascii=False) + "\n")
            elif prediction.document.words:
                out.write(prediction.to_conll() + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return len(predictions)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(run, argv)


if __name__ == "__main__":
    sys.exit(main())
