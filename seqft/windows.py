"""Long sentences as overlapping windows, document context, and merging window predictions back into words.

**Windows.** Sentences are cut at word boundaries, never inside a word: `plan_windows` fills a window with whole
words up to the budget (`max_length` minus the tokenizer's special tokens), and the next window starts with the last
words of the previous one that fit in `stride` subword tokens (the overlap). Only a single word longer than the
whole budget is cut, keeping its first subword. Every word's first subword is labelled in every window that holds
it, so each window is a training example. The stock alternative, `return_overflowing_tokens=True, stride=...` on
pre-split words, cuts windows at subword boundaries: a window can start with a word's continuation pieces, whose
first subword (the one that carries the label) sits in the previous window.

**Document context** (`doc_context=k`): a sentence that fits in one window is fed with up to `k` neighbouring
sentences of the same document on each side, nearest words first and alternately left and right, as far as they
fit. Context words get label -100 and no word index: they are never trained on, predicted or counted.

**Merging.** A word held by several windows takes the prediction of the window where it has the most context:
the largest `min(left, right)`, where `left`/`right` count the window's subword tokens before and after the word,
and a window edge at the start or end of the sentence counts as unlimited context. Ties go to the window that
starts earlier in the sentence, whatever the order of the windows in the dataset (evaluation sets are sorted by
length). A word no window holds (only with truncation) is reported, never silently dropped.

**Scheme validity with a CRF.** Each window's Viterbi path is valid over its subwords, but the merged words need
not be: two paths joined at a word can disagree (`O` from one window, `I-PER` from the next), and even within one
window the path may put `B-PER` on a word's second subword, which reads `O I-PER` at word level. After merging,
`decode_words` keeps the per-word argmax when it is valid in the scheme (so a valid single-window result is exactly
the CRF's, as the pipeline shows it) and otherwise runs a constrained Viterbi over the merged per-word
log-probabilities, which returns the highest-scoring valid sequence: valid by construction, whatever the windows
said. Softmax heads are decoded by argmax (as the stock pipeline does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import labels as schemes
from .errors import DataError, RecipeError

IGNORE_INDEX = -100
# models whose position ids start after the padding index: max_position_embeddings - (pad_token_id + 1) positions
_OFFSET_POSITIONS = {
    "roberta",
    "xlm-roberta",
    "camembert",
    "longformer",
    "data2vec-text",
    "xmod",
    "roberta-prelayernorm",
}


def model_positions(config) -> int | None:
    """The longest input (in tokens) the model's position embeddings take, or None when the config does not say.
    RoBERTa-style models lose `pad_token_id + 1` positions (514 -> 512); seqft's CRF config is read through to
    its encoder's."""
    config = getattr(config, "encoder_config", None) or config
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    if getattr(config, "model_type", None) in _OFFSET_POSITIONS:
        limit -= (getattr(config, "pad_token_id", None) or 0) + 1
    return limit


UNLIMITED = 1_000_000
"""The context of a word on a side where its window edge is the sentence's own start or end."""


# ---------------------------------------------------------------------------------------------------------------
# Planning


def window_budget(tokenizer, max_length: int) -> int:
    """Subword tokens a window holds besides the tokenizer's special tokens."""
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if budget < 1:
        raise RecipeError(f"'max_seq_length' = {max_length} leaves no room for words besides the special tokens.")
    return budget


def default_stride(budget: int) -> int:
    """The overlap used when the recipe leaves `stride` unset: a quarter of the window."""
    return budget // 4


def resolve_stride(tokenizer, max_length: int, stride: int | None, truncate: bool = False) -> int | None:
    """The recipe's `stride` / `truncate_long_sentences` as `encode`'s `stride`: None truncates."""
    if truncate:
        return None
    budget = window_budget(tokenizer, max_length)
    stride = default_stride(budget) if stride is None else stride
    check_stride(stride, budget, max_length)
    return stride


def check_stride(stride: int, budget: int, max_length: int) -> None:
    limit = (budget - 1) // 2
    if not 0 <= stride <= limit:
        raise RecipeError(
            f"'stride' = {stride} does not fit max_seq_length {max_length}: a window holds {budget} tokens besides "
            f"the special tokens, so the overlap must be between 0 and {limit} (at most half a window)."
        )


def plan_windows(counts: Sequence[int], budget: int, stride: int | None) -> list[tuple[int, int]]:
    """Word spans `[start, end)` of the windows of one sentence, given each word's number of subword tokens.

    Each window takes whole words while they fit in `budget` tokens (at least one word: a longer word is cut by
    the tokenizer, keeping its first subword). The next window starts with the longest run of the previous
    window's last words totalling at most `stride` tokens, and always at least one word further. `stride=None`
    truncates: only the first window. An empty sentence has no window.
    """
    n = len(counts)
    spans: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end, used = start, 0
        while end < n and used + counts[end] <= budget:
            used += counts[end]
            end += 1
        end = max(end, start + 1)
        spans.append((start, end))
        if end >= n or stride is None:
            break
        following, overlap = end, 0
        while following - 1 > start and overlap + counts[following - 1] <= stride:
            overlap += counts[following - 1]
            following -= 1
        start = following
    return spans


def fill_context(left: Sequence[int], right: Sequence[int], room: int) -> tuple[int, int]:
    """How many context words to take on each side, nearest first, within `room` subword tokens.

    `left` lists the piece counts of the preceding words nearest first, `right` of the following words. Words are
    taken alternately from the side with less context so far (left on a tie) until neither side's next word fits.
    """
    taken, used, side_used = [0, 0], 0, [0, 0]
    sides = (left, right)
    while True:
        open_sides = [s for s in (0, 1) if taken[s] < len(sides[s]) and used + sides[s][taken[s]] <= room]
        if not open_sides:
            return taken[0], taken[1]
        side = min(open_sides, key=lambda s: (side_used[s], s))
        cost = sides[side][taken[side]]
        used += cost
        side_used[side] += cost
        taken[side] += 1


def document_neighbours(doc_ids: Sequence | None, index: int, doc_context: int) -> tuple[list[int], list[int]]:
    """Up to `doc_context` sentences before and after `index` with its document id (nearest first)."""
    if not doc_context or doc_ids is None:
        return [], []
    before, after = [], []
    i = index - 1
    while i >= 0 and len(before) < doc_context and doc_ids[i] == doc_ids[index]:
        before.append(i)
        i -= 1
    i = index + 1
    while i < len(doc_ids) and len(after) < doc_context and doc_ids[i] == doc_ids[index]:
        after.append(i)
        i += 1
    return before, after


# ---------------------------------------------------------------------------------------------------------------
# Encoding


def piece_counts(tokenizer, sentences: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[list[int]]]:
    """Subword tokens per word, and the words with any word that has no piece at all replaced (`placeholder`).

    A word the tokenizer maps to nothing (e.g. a lone zero-width space) would get no label and no prediction.
    """
    words, counts, _ = _tokenise(tokenizer, sentences)
    return words, counts


def placeholder(tokenizer) -> str:
    """The word that stands in for a word without pieces: the unknown token, or, when the tokenizer reads it as
    text (training saves tokenizers with `split_special_tokens`, so "[UNK]" gives four pieces), the first of a few
    one-piece marks, so each word keeps exactly one piece, as the window plan counts it."""
    for text in (tokenizer.unk_token, tokenizer.pad_token, "?", "-", "."):
        if text and len(tokenizer([[text]], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]) == 1:
            return text
    raise ValueError(f"{type(tokenizer).__name__}: no one-piece word to stand in for a word without pieces.")


def _tokenise(tokenizer, sentences: Sequence[Sequence[str]]):
    """`piece_counts`, plus each sentence's encoding with the special tokens as `(encoding, row, word ids)`, or None
    when the sentence is empty or had a word replaced: a sentence that fits in one window is tokenised only once."""
    unk = None
    words = [list(s) for s in sentences]
    counts = [[0] * len(s) for s in words]
    rows = [None] * len(words)
    filled = [i for i, s in enumerate(words) if s]
    if not filled:
        return words, counts, rows
    enc = tokenizer([words[i] for i in filled], is_split_into_words=True)
    for row, i in enumerate(filled):
        rows[i] = (enc, row, enc.word_ids(row))
        for w in rows[i][2]:
            if w is not None:
                counts[i][w] += 1
        for w, c in enumerate(counts[i]):
            if c == 0:
                unk = unk or placeholder(tokenizer)
                words[i][w] = unk
                counts[i][w] = 1
                rows[i] = None
    return words, counts, rows


def encode(
    tokenizer,
    sentences: Sequence[Sequence[str]],
    indices: Sequence[int],
    *,
    max_length: int,
    stride: int | None,
    doc_context: int = 0,
    doc_ids: Sequence | None = None,
    tags: Sequence[Sequence[str]] | None = None,
    label2id: dict | None = None,
    label_all_tokens: bool = False,
) -> dict[str, list]:
    """The windows of `sentences[i]` for each `i` in `indices`, one row per window, as tokenizer columns plus:

    - `labels` (with `tags`): the word's tag on its first subword in the window, -100 on special tokens, context
      words and (unless `label_all_tokens`) continuation pieces;
    - `word_index`: the sentence's word index on each labelled word's first subword, -100 elsewhere;
    - `word_context`: on the same positions, the word's context in this window (see the module docstring);
    - `word_ids`: each token's word among the window's labelled words (`window_start` is 0), -100 on special
      tokens and context words (aligns a distillation teacher with another tokenizer, seqft.distill);
    - `example_id` (= `i`), `window_start`/`window_end` (the labelled words), `num_words` (of the sentence),
      `num_words_kept` (words this window is the first to hold), `length` (tokens).

    `stride=None` truncates each sentence to its first window. Neighbouring sentences (`doc_ids`, `doc_context`)
    may lie outside `indices`.
    """
    budget = window_budget(tokenizer, max_length)
    if stride is not None:
        check_stride(stride, budget, max_length)
    neighbours = {j for i in indices for side in document_neighbours(doc_ids, i, doc_context) for j in side}
    needed = sorted(set(indices) | neighbours)
    fixed, counts, encoded = _tokenise(tokenizer, [sentences[j] for j in needed])
    words = dict(zip(needed, fixed))
    pieces = dict(zip(needed, counts))
    whole = dict(zip(needed, encoded))

    plans = []  # (example, start, end, left words, right words)
    for i in indices:
        spans = plan_windows(pieces[i], budget, stride)
        before, after = document_neighbours(doc_ids, i, doc_context)
        for start, end in spans:
            left_words, right_words = [], []
            if (start, end) == (0, len(words[i])) and (before or after):
                left_pool = [w for j in before for w in reversed(words[j])]
                left_counts = [c for j in before for c in reversed(pieces[j])]
                right_pool = [w for j in after for w in words[j]]
                right_counts = [c for j in after for c in pieces[j]]
                n_left, n_right = fill_context(left_counts, right_counts, budget - sum(pieces[i]))
                left_words = list(reversed(left_pool[:n_left]))
                right_words = right_pool[:n_right]
            plans.append((i, start, end, left_words, right_words))

    columns: dict[str, list] = {
        key: []
        for key in (
            "example_id",
            "window_start",
            "window_end",
            "num_words",
            "num_words_kept",
            "word_index",
            "word_context",
            "word_ids",
            "length",
        )
    }
    if tags is not None:
        columns["labels"] = []
    if not plans:
        for key in tokenizer([["x"]], is_split_into_words=True):
            columns[key] = []
        return columns
    # A window that is its whole sentence without context keeps the encoding made for the piece counts when it fits
    # in max_length (the usual case: one tokenisation); the other windows are tokenised here.
    rows, todo = [], []  # each window's (encoding, row, word ids); (window, words) of those tokenised here
    for i, start, end, left, right in plans:
        known = whole[i] if (start, end) == (0, len(words[i])) and not left and not right else None
        if known is not None and len(known[2]) <= max_length:
            rows.append(known)
        else:
            todo.append((len(rows), left + words[i][start:end] + right))
            rows.append(None)
    if todo:
        enc = tokenizer([text for _, text in todo], is_split_into_words=True, truncation=True, max_length=max_length)
        for row, (k, _) in enumerate(todo):
            rows[k] = (enc, row, enc.word_ids(row))
    for key in rows[0][0]:
        columns[key] = [enc[key][row] for enc, row, _ in rows]

    covered: dict[int, int] = {}
    for (_, _, word_ids), (i, start, end, left, _) in zip(rows, plans):
        n = len(words[i])
        shift = len(left) - start  # token word id - shift = the word's index in the sentence
        if start > 0 or end < n:  # a word's context ends at the window's edge
            present = [p for p, w in enumerate(word_ids) if w is not None]
            lo, hi = (present[0], present[-1] + 1) if present else (0, 0)
            last_piece = {w: p for p, w in enumerate(word_ids)}
        sentence_tags = tags[i] if tags is not None else None
        word_index, word_context, window_words, label_ids, held = [], [], [], [], []
        previous = None
        for p, w in enumerate(word_ids):
            word = None if w is None else w - shift
            if word is None or not start <= word < end:  # special token or context word
                word_index.append(IGNORE_INDEX)
                word_context.append(IGNORE_INDEX)
                window_words.append(IGNORE_INDEX)
                label_ids.append(IGNORE_INDEX)
            elif w != previous:  # the word's first subword
                before_ctx = UNLIMITED if start == 0 else p - lo
                after_ctx = UNLIMITED if end == n else hi - last_piece[w] - 1
                word_index.append(word)
                word_context.append(min(before_ctx, after_ctx))
                window_words.append(word - start)
                label_ids.append(label2id[sentence_tags[word]] if sentence_tags is not None else IGNORE_INDEX)
                held.append(word)
            else:
                word_index.append(IGNORE_INDEX)
                word_context.append(IGNORE_INDEX)
                window_words.append(word - start)
                if sentence_tags is not None and label_all_tokens:
                    label_ids.append(label2id[schemes.b_to_i(sentence_tags[word])])
                else:
                    label_ids.append(IGNORE_INDEX)
            previous = w
        held.sort()
        if held != list(range(start, end)):
            raise DataError(
                f"internal: window {start}-{end} of sentence {i} holds words {held[:5]}...; the tokenizer split words "
                "differently when they were tokenised together. Please report this with the tokenizer's name."
            )
        kept = end - max(start, covered.get(i, start))
        covered[i] = max(end, covered.get(i, 0))
        columns["example_id"].append(i)
        columns["window_start"].append(start)
        columns["window_end"].append(end)
        columns["num_words"].append(n)
        columns["num_words_kept"].append(kept)
        columns["word_index"].append(word_index)
        columns["word_context"].append(word_context)
        columns["word_ids"].append(window_words)
        columns["length"].append(len(word_ids))
        if tags is not None:
            columns["labels"].append(label_ids)
    return columns


# ---------------------------------------------------------------------------------------------------------------
# Merging and decoding


def merge(
    windows: Sequence[tuple[int, np.ndarray, np.ndarray, np.ndarray]], num_words: dict[int, int]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per-word rows of each example, each from the window where the word has the most context.

    `windows` holds `(example_id, word_index (K,), word_context (K,), rows (K, ...))` for each window's K labelled
    words, in any order; `num_words` maps each example id to its length. Returns, per example id,
    `(rows (n, ...), covered (n,) bool)`: rows of words no window holds are zero and not covered.
    """
    best: dict[int, list] = {}
    for example, index, context, rows in windows:
        n = num_words[example]
        if example not in best:
            shape = (n, *np.shape(rows)[1:])
            best[example] = [
                np.zeros(shape, dtype=np.asarray(rows).dtype),
                np.full(n, -1, dtype=np.int64),  # context of the chosen window
                np.full(n, np.iinfo(np.int64).max, dtype=np.int64),  # its first word: ties go to the earlier one
            ]
        out, chosen, first = best[example]
        index, context = np.asarray(index, dtype=np.int64), np.asarray(context, dtype=np.int64)
        if index.size == 0:
            continue
        start = index.min()
        better = (context > chosen[index]) | ((context == chosen[index]) & (start < first[index]))
        out[index[better]] = np.asarray(rows)[better]
        chosen[index[better]] = context[better]
        first[index[better]] = start
    result = {example: (out, chosen >= 0) for example, (out, chosen, _) in best.items()}
    for example, n in num_words.items():
        if example not in result:  # an empty sentence, or no window at all
            result[example] = (np.zeros((n, 0)), np.zeros(n, dtype=bool))
    return result


def decode_constraints(config) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The scheme constraints to decode merged words with: those of a CRF model trained with them, else None."""
    if getattr(config, "model_type", None) != "seqft_crf" or not getattr(config, "crf_constraints", True):
        return None
    labels = [config.id2label[i] for i in range(len(config.id2label))]
    return scheme_constraints(labels, getattr(config, "label_scheme", None) or "IOB2")


def scheme_constraints(labels: Sequence[str], scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """`(allowed[from, to], allowed_start, allowed_end)` boolean arrays for the scheme; None for plain tags."""
    if scheme == "plain":
        return None
    from .modeling.crf import allowed_transitions

    return tuple(mask.numpy() for mask in allowed_transitions(list(labels), scheme))


def is_valid(tag_ids: Sequence[int], constraints) -> bool:
    if constraints is None or len(tag_ids) == 0:
        return True
    allowed, allowed_start, allowed_end = constraints
    ids = np.asarray(tag_ids)
    return bool(allowed_start[ids[0]] and allowed_end[ids[-1]] and allowed[ids[:-1], ids[1:]].all())


def constrained_decode(scores: np.ndarray, constraints) -> np.ndarray:
    """The tag sequence with the highest summed `scores` `(n, num_tags)` among those the constraints allow."""
    allowed, allowed_start, allowed_end = constraints
    n = scores.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    penalty = np.where(allowed, 0.0, -np.inf)  # shape: (num_tags, num_tags)
    total = np.where(allowed_start, scores[0], -np.inf)  # shape: (num_tags,)
    back = np.zeros((n, scores.shape[1]), dtype=np.int64)
    for t in range(1, n):
        candidates = total[:, None] + penalty  # shape: (from, to)
        back[t] = candidates.argmax(0)
        total = candidates.max(0) + scores[t]
    total = np.where(allowed_end, total, -np.inf)
    path = [int(total.argmax())]
    for t in range(n - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return np.asarray(path[::-1], dtype=np.int64)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def decode_words(rows: np.ndarray, constraints=None) -> np.ndarray:
    """Tag ids of one sentence from merged per-word rows: logits `(n, C)` or already chosen ids `(n,)`.

    Without constraints: the argmax. With them: the argmax when it is valid, else the best valid sequence
    (constrained Viterbi over log-softmax scores; for ids, the valid sequence that changes the fewest of them).
    """
    rows = np.asarray(rows)
    if rows.ndim == 1:
        ids = rows.astype(np.int64)
        if is_valid(ids, constraints):
            return ids
        num_tags = constraints[0].shape[0]
        return constrained_decode(np.eye(num_tags)[ids] - 1.0, constraints)
    ids = rows.argmax(-1) if rows.shape[0] else np.zeros(0, dtype=np.int64)
    if is_valid(ids, constraints):
        return ids
    return constrained_decode(log_softmax(rows), constraints)


def _prediction_rows(predictions) -> list[np.ndarray]:
    """Per-window rows of Trainer outputs: one array (N, T, ...), or a list of batch arrays."""
    if isinstance(predictions, tuple):
        predictions = predictions[0]
    if isinstance(predictions, list):
        return [row for batch in predictions for row in np.asarray(batch)]
    return list(np.asarray(predictions))


class WindowedSplit:
    """The window -> word map of one tokenised split, read once, to merge Trainer outputs back into sentences."""

    def __init__(self, windows_dataset):
        # `[:]` reads the columns whole: iterating a datasets `Column` reads it row by row (seqft.data.read_column)
        columns = windows_dataset.select_columns(["example_id", "word_index", "word_context", "num_words"])[:]
        self.example_ids = list(columns["example_id"])
        self.num_words = dict(zip(self.example_ids, columns["num_words"]))
        self.word_index, self.word_context, self.positions = [], [], []
        for index, context in zip(columns["word_index"], columns["word_context"]):
            index = np.asarray(index, dtype=np.int64)
            keep = index != IGNORE_INDEX
            self.positions.append(np.flatnonzero(keep))
            self.word_index.append(index[keep])
            self.word_context.append(np.asarray(context, dtype=np.int64)[keep])

    def __len__(self) -> int:
        return len(self.example_ids)

    def merge(self, predictions, label_ids=None) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Per example id: `(rows, covered, gold)`, the merged rows of `predictions` (logits `(n, C)` or ids
        `(n,)`) and, with `label_ids`, the merged gold ids `(n,)`.

        Labelled positions are read from `label_ids` when given (any padding side), else from the word map
        (right padding).
        """
        rows = _prediction_rows(predictions)
        labels = _prediction_rows(label_ids) if label_ids is not None else None
        if len(rows) != len(self):
            raise ValueError(
                f"got predictions for {len(rows)} windows, but this split has {len(self)}: compute_metrics was built "
                "for another dataset."
            )
        parts, gold_parts = [], []
        for w, row in enumerate(rows):
            positions = self.positions[w]
            if labels is not None:
                positions = np.flatnonzero(np.asarray(labels[w]) != IGNORE_INDEX)
                if len(positions) != len(self.word_index[w]):
                    raise ValueError(
                        f"window {w}: {len(positions)} labelled positions but {len(self.word_index[w])} words; "
                        "evaluation sets must label each word on its first subword only."
                    )
                gold_parts.append(
                    (self.example_ids[w], self.word_index[w], self.word_context[w], np.asarray(labels[w])[positions])
                )
            parts.append((self.example_ids[w], self.word_index[w], self.word_context[w], np.asarray(row)[positions]))
        merged = merge(parts, self.num_words)
        gold = merge(gold_parts, self.num_words) if labels is not None else {}
        return {
            example: (rows, covered, gold[example][0] if labels is not None else None)
            for example, (rows, covered) in merged.items()
        }


def word_predictions(
    split: WindowedSplit, predictions, id2label: dict, constraints=None, label_ids=None, fill: str | None = "O"
) -> tuple[list[list[str | None]], list[list[str | None]] | None, int]:
    """Merged word tags of every example, in example-id order: `(predicted, gold or None, words with no window)`.

    Words no window holds (truncation) are predicted `fill` (their gold is None) and counted: `O` for prefix
    schemes, None for plain tags (`labels.missing_tag`).
    """
    lookup = {int(k): v for k, v in id2label.items()}
    merged = split.merge(predictions, label_ids)
    predicted, gold, missing = [], [] if label_ids is not None else None, 0
    for example in sorted(merged):
        rows, covered, gold_ids = merged[example]
        ids = np.zeros(len(covered), dtype=np.int64)
        if covered.any():
            ids[covered] = decode_words(rows[covered], constraints)
        predicted.append([lookup[int(i)] if ok else fill for i, ok in zip(ids, covered)])
        missing += int((~covered).sum())
        if gold is not None:
            gold.append([lookup[int(i)] if ok else None for i, ok in zip(gold_ids, covered)])
    return predicted, gold, missing


def build_compute_metrics(
    windows_dataset, id2label: dict, scheme: str, entity_level: bool = False, constraints=None, gold=None
):
    """A `compute_metrics` for a windowed evaluation split: merges windows into words, then `sequence_metrics`.

    Every word counts exactly once. `gold` (the split's tag lists, in example order) scores words that no window
    holds (truncation) as predicted `labels.missing_tag(scheme)`; without it only words some window holds are
    scored.
    """
    from .metrics import model_entity_types, sequence_metrics

    split = WindowedSplit(windows_dataset)
    missing = schemes.missing_tag(scheme)
    types = model_entity_types(id2label.values(), scheme)  # every type's keys, every time
    gold = gold[:] if gold is not None else None  # a datasets `Column` is read whole once, not a row per example

    def compute_metrics(eval_prediction: Any) -> dict[str, float]:
        label_ids = eval_prediction.label_ids
        if isinstance(label_ids, tuple):
            label_ids = label_ids[0]
        predicted, merged_gold, _ = word_predictions(
            split, eval_prediction.predictions, id2label, constraints, label_ids=label_ids, fill=missing
        )
        examples = sorted(split.num_words)
        true, pred = [], []
        for k, example in enumerate(examples):
            if gold is not None:
                true.append(list(gold[example]))
                pred.append(predicted[k])
            else:
                keep = [t is not None for t in merged_gold[k]]
                true.append([t for t, ok in zip(merged_gold[k], keep) if ok])
                pred.append([p for p, ok in zip(predicted[k], keep) if ok])
        return sequence_metrics(true, pred, scheme, entity_level, types)

    return compute_metrics


def describe(windows_dataset, sentences: int) -> str | None:
    """One log line when some sentence was cut into several windows."""
    windows = len(windows_dataset)
    if windows <= sentences:
        return None
    counts: dict[int, int] = {}
    for example in windows_dataset["example_id"][:]:
        counts[example] = counts.get(example, 0) + 1
    long = sum(c > 1 for c in counts.values())
    longest = max(counts.values())
    return (
        f"{long} sentences longer than max_seq_length were cut into overlapping windows: {windows} windows for "
        f"{sentences} sentences (at most {longest} per sentence); each word is predicted once."
    )


__all__ = [
    "UNLIMITED",
    "WindowedSplit",
    "build_compute_metrics",
    "constrained_decode",
    "decode_constraints",
    "decode_words",
    "default_stride",
    "document_neighbours",
    "encode",
    "fill_context",
    "merge",
    "piece_counts",
    "plan_windows",
    "resolve_stride",
    "scheme_constraints",
    "word_predictions",
]
