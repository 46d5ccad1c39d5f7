"""Teacher-student distillation: teacher loading and checks, word alignment, and the distillation losses.

One home, two hooks. `SeqFTTrainer(..., teacher_model=...)` calls `prepare_teacher` at the end of construction;
while training, `SeqFTTrainer.compute_loss` adds `distillation_loss` to `(1 - distill_alpha) * hard loss`.
Evaluation loss stays the hard loss. The losses are pure functions, testable without a Trainer.

**What is distilled.** At every labelled position (labels != -100: the first subword of each word, or every
subword with `label_all_tokens`), the student's tag distribution `p` is pulled towards the teacher's `q`:

    loss_soft = T² · Σ_positions KL(q_T ‖ p_T) / num_items_in_batch,    q_T = softmax(log q / T), p_T likewise

where `q` and `p` are, for each model:

* a plain token classifier: the softmax of its logits, so `q_T = softmax(logits / T)` (Hinton et al., 2015);
* a seqft CRF model (`SeqFTCRFForTokenClassification`): its **posterior marginals** `P(y_t = k | x)`, computed by
  forward-backward over the CRF's chain (every attended non-special token; a word's continuation subwords are
  latent tags, summed out), so `q_T ∝ q^(1/T)`. For a CRF *student* the marginals come from its training-mode
  emissions and current transition scores and are differentiable: the soft loss trains the encoder, the head and
  `crf.transitions` / `start_transitions` / `end_transitions`. This is posterior (marginal) distillation
  (Wang et al., 2020, "Structure-Level Knowledge Distillation"): per-position marginals are matched, not the
  distribution over whole tag sequences, and the teacher's Viterbi path is not used.
* A CRF student cannot give mass to a tag its constraints forbid at a position (I-X on the chain's first token
  under IOB2, say; its log-marginal is about `DISALLOWED_SCORE`): there both distributions are renormalised over the
  tags it allows. Otherwise the KL would carry a term `q · |DISALLOWED_SCORE| / T` that no parameter can reduce,
  and its gradient would push those emissions up without end.
* At a labelled position outside a CRF's chain (a word whose only piece is one of `special_token_ids`): the
  softmax of that model's emissions, as the CRF model's own evaluation logits do there.

`T²` keeps the soft gradients' scale independent of `T`. The sum over positions is divided by
`num_items_in_batch` (labels != -100 over every accumulated micro-batch and every rank) and multiplied by the same
rank factor the Trainer applies to the hard loss, so soft and hard loss are normalised alike and the total does not
depend on gradient accumulation or on the number of ranks. A position without a teacher target (a word cut by the
teacher's own max length, or one its tokenizer maps to no piece) adds nothing but still counts in the denominator.

**Hidden states** (`distill_hidden_weight > 0`): at the same positions, the squared difference between the
student's hidden state (through `distill_projection` when the widths differ) and the teacher's, averaged over
hidden units and over the mapped layer pairs, summed over positions, divided like `loss_soft`. Layers are
`hidden_states` indices: 0 = embedding output, `i` = output of block `i`. `distill_layer_map` maps student → teacher
(e.g. `{"1": 2, "2": 4, "3": 6}`); by default a student built with `student_layers` maps block `j` to the teacher
block it was copied from, any other student maps its block `i` (of `S`) to teacher block `round(i · L / S)` (of
`L`). The projection is an `nn.Linear(student width, teacher width)` put on the student as the submodule
`distill_projection` at construction, so the optimizer trains it (at the head's depth under LLRD); it is listed in
the model's `_keys_to_ignore_on_save`, so the final model does not contain it (nor does a PEFT adapter). A checkpoint
keeps it beside the weights (`distill_projection.safetensors`; DeepSpeed and FSDP checkpoints hold it in their own
states), so a resumed run goes on with the trained projection and its optimiser state.

The returned `"loss"` is `distill_alpha * loss_soft + distill_hidden_weight * loss_hidden`; both parts are
logged (`loss_soft`, `loss_hidden`, next to the trainer's `loss_hard`), and their means over the whole run reach
the end-of-training summary and train_results.json (`train_loss_soft`, ..., beside `train_loss`).

**Tokenizers.**

* Same tokenizer (identical fast-tokenizer definition): the teacher reads the student's own batch each step.
* Different tokenizers: aligned at the word level. Once, at construction, each training sentence's words
  (`tokens` column) are tokenised with the teacher's tokenizer, the teacher's distribution at each word's first
  subword is stored at the student's labelled positions of that word (student word ids from the `word_ids` column
  seqft.data writes; without it, the k-th labelled position is word k), in a `teacher_logprobs` column of the
  training set (NaN = no target), which a collator wrapper pads into each batch. A frozen teacher in eval mode is a
  fixed function of the words, so this equals running it every step.
* `precompute_teacher`: the same column with the same tokenizer, from the student's own input ids, which saves one
  teacher forward per step at the cost of `num_tokens × num_labels` floats of memory.

Every rank precomputes the whole training set (once, at construction).

Hidden-state matching needs the teacher's hidden states at every step: same tokenizer, not precomputed.

**Labels.** The same label set in another order is mapped by name; different sets raise a `RecipeError` naming the
labels only one side has. (`seqft.train` trains the student on the teacher's label list, in its order;
`check_teacher_labels` names the teacher and the data's labels it lacks, before any tokenisation.) A teacher whose
`id2label` holds only transformers' `LABEL_0`... placeholders is a base model, never fine-tuned: refused by name.

**The teacher** (a model, a directory, a Hub id or a `pkg://` path; a seqft CRF checkpoint loads through the Auto
classes): frozen (`requires_grad=False`), in eval mode (dropout off), re-put in eval mode at every use, never in the
optimizer, and kept as a plain attribute of the trainer, not a submodule of the student. It is moved to the
trainer's device with `accelerator.prepare_model(evaluation_mode=True)`, which never wraps it in DDP (it has no
gradients to reduce); under DeepSpeed it gets its own inference engine, sharded under ZeRO-3 and a full replica
(stage 0) otherwise; a CRF teacher's transition scores are gathered read-only for its marginals. A CRF *student*
under ZeRO-3 is refused: its differentiable marginals run outside the CRF's forward, where ZeRO-3 does not gather
its parameters. An adapter-only PEFT directory is refused with the fix (`merge_adapter`).

**Sequence classification** (`*ForSequenceClassification`, seqft/seqcls.py): logits are `(batch, num_labels)`, one
item per text (labels != -100), and the same KL applies per text, divided by the texts of the step; hidden states
are matched at each text's first (`[CLS]`) token. The teacher must share the student's tokenizer and is run every
step (no precomputed targets); multi-label (sigmoid) classifiers are not distilled.

**Student from the teacher.** `build_student_from_teacher(teacher, [0, 2, 4])` deep-copies the teacher keeping those
encoder blocks, in that order (DistilBERT-style initialisation); embeddings, head and CRF are copied.

**Unlabelled sentences** (`distill_unlabelled_file`, token classification). Before training, the teacher tags each
sentence of the file once, as `seqft.predict` would (each word's tag at its first subword; the constrained Viterbi
path for a CRF teacher), and the sentences join the training set with those tags, converted into the student's
scheme (`teacher_tagged_sentences`). The hard loss then learns the teacher's tags there (pseudo-labels), and the soft
and hidden losses apply there as on gold sentences. Each epoch sees them as often as the labelled sentences.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import data as seqdata
from .errors import DataError, RecipeError
from .labels import placeholder_names
from .seqcls import is_sequence_classifier

logger = logging.getLogger(__name__)

__all__ = [
    "TEACHER_COLUMN",
    "DistillPlan",
    "TeacherColumnCollator",
    "align_word_targets",
    "build_student_from_teacher",
    "check_teacher_labels",
    "crf_log_distribution",
    "default_layer_map",
    "distillation_loss",
    "first_subword_positions",
    "hidden_state_loss",
    "label_names",
    "label_permutation",
    "load_teacher",
    "load_teacher_tokenizer",
    "precompute_teacher_targets",
    "prepare_teacher",
    "same_tokenizer",
    "soft_target_loss",
    "student_inputs",
    "student_word_ids",
    "teacher_log_distribution",
]

TEACHER_COLUMN = "teacher_logprobs"
"""Training-set column (and batch key) with the teacher's log-probabilities per student token, NaN = no target."""

PROJECTION = "distill_projection"
"""Name of the student submodule projecting its hidden states to the teacher's width."""

# Fill for tags outside a student's support (finite, far below any real log-probability).
_OUTSIDE = -1e9

# Blocks of a backbone, by attribute path: BERT/RoBERTa/XLM-R/ELECTRA/DeBERTa/MiniLM, DistilBERT, ModernBERT.
_BLOCK_PATHS = ("encoder.layer", "transformer.layer", "layers")


# ---------------------------------------------------------------------------------------------------------------
# Losses (pure)


def _normaliser(num_items_in_batch, count: torch.Tensor, device: torch.device):
    if num_items_in_batch is None:
        return count.clamp(min=1).to(device)
    if torch.is_tensor(num_items_in_batch):
        return num_items_in_batch.to(device)
    return num_items_in_batch


def soft_target_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
    num_items_in_batch: torch.Tensor | int | None = None,
    support: torch.Tensor | None = None,
) -> torch.Tensor:
    """`T² · Σ_mask KL(softmax(teacher/T) ‖ softmax(student/T)) / num_items_in_batch`.

    `student_logits`, `teacher_logits`: `(batch, seq_len, num_labels)` logits or log-probabilities (log-marginals),
    labels in the same order; teacher rows outside `mask` may be anything, NaN included. `mask`: `(batch, seq_len)`
    bool, the positions to distil. Without `num_items_in_batch`, divides by the number of masked positions.
    `support`: optional `(batch, seq_len, num_labels)` bool, the tags the student can take at each position; both
    distributions are then renormalised over it (a CRF student's constraint-forbidden tags).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher scores must have the same shape (batch, seq_len, num_labels), got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if mask.shape != student_logits.shape[:-1]:
        raise ValueError(f"mask must have shape {tuple(student_logits.shape[:-1])}, got {tuple(mask.shape)}")
    mask = mask.to(student_logits.device)
    student = student_logits[mask].float() / temperature  # shape: (N, num_labels)
    teacher = teacher_logits.to(student_logits.device)[mask].float() / temperature  # shape: (N, num_labels)
    if support is None:
        kl = F.kl_div(student.log_softmax(-1), teacher.log_softmax(-1), log_target=True, reduction="sum")
    else:
        support = support.to(student.device)[mask]  # shape: (N, num_labels)
        # A finite fill: outside the support q = exp(fill) = 0 exactly and every term stays finite (no 0 · inf).
        log_p = student.masked_fill(~support, _OUTSIDE).log_softmax(-1)  # shape: (N, num_labels)
        log_q = teacher.masked_fill(~support, _OUTSIDE).log_softmax(-1)  # shape: (N, num_labels)
        kl = torch.where(support, log_q.exp() * (log_q - log_p), 0.0).sum()
    return kl * temperature**2 / _normaliser(num_items_in_batch, mask.sum(), kl.device)


def hidden_state_loss(
    student_hidden: Sequence[torch.Tensor],
    teacher_hidden: Sequence[torch.Tensor],
    layer_map: Mapping[int, int],
    mask: torch.Tensor,
    projection: nn.Module | None = None,
    num_items_in_batch: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """`Σ_mask mean_(s→t in layer_map) mean_units (proj(h_s) - h_t)² / num_items_in_batch`.

    `student_hidden`/`teacher_hidden`: the models' `hidden_states` tuples (index 0 = embedding output), each
    `(batch, seq_len, width)`; `projection` maps the student's width to the teacher's (identity when `None`).
    """
    if not layer_map:
        raise ValueError("layer_map is empty: map at least one student layer to a teacher layer")
    total = None
    for s, t in layer_map.items():
        hs = student_hidden[s]
        mask_s = mask.to(hs.device)
        hs = hs[mask_s]  # shape: (N, student width)
        if projection is not None:
            hs = projection(hs.to(projection.weight.dtype))  # shape: (N, teacher width)
        ht = teacher_hidden[t].to(hs.device)[mask_s]  # shape: (N, teacher width)
        if hs.shape[-1] != ht.shape[-1]:
            raise ValueError(
                f"student layer {s} has width {hs.shape[-1]} but teacher layer {t} has {ht.shape[-1]}: pass a "
                "projection"
            )
        term = F.mse_loss(hs.float(), ht.float(), reduction="none").mean(-1).sum()
        total = term if total is None else total + term
    total = total / len(layer_map)
    return total / _normaliser(num_items_in_batch, mask.sum(), total.device)


def crf_log_distribution(
    model: nn.Module, emissions: torch.Tensor, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """Log tag distribution of a seqft CRF model, `(batch, seq_len, num_labels)`: log posterior marginals on the CRF's
    chain (`model.crf_mask`), `log_softmax(emissions)` elsewhere. Differentiable in `emissions` and the CRF's scores."""
    mask = model.crf_mask(input_ids, attention_mask).to(emissions.device)  # shape: (batch, seq_len)
    log_marginals = model.crf.marginals(emissions, mask, log=True)  # shape: (batch, seq_len, num_labels)
    fallback = emissions.to(log_marginals.dtype).log_softmax(-1)  # shape: (batch, seq_len, num_labels)
    return torch.where(mask.unsqueeze(-1), log_marginals, fallback)


def default_layer_map(
    num_student_layers: int, num_teacher_layers: int, student_layers: Sequence[int] | None = None
) -> dict[int, int]:
    """Student `hidden_states` index → teacher index: the copied block for a student built with `student_layers`
    (block `j` ← teacher block `student_layers[j]`), else evenly spaced (`i → round(i · L / S)`)."""
    if student_layers is not None and len(student_layers) == num_student_layers:
        return {j + 1: int(layer) + 1 for j, layer in enumerate(student_layers)}
    s, t = num_student_layers, num_teacher_layers
    return {i: (2 * i * t + s) // (2 * s) for i in range(1, s + 1)}


def parse_layer_map(raw: Mapping, num_student_layers: int, num_teacher_layers: int) -> dict[int, int]:
    """`distill_layer_map` from a recipe (JSON object keys are strings) → {student index: teacher index}, checked."""
    out = {}
    for key, value in raw.items():
        try:
            s, t = int(key), int(value)
            if isinstance(value, bool) or float(value) != t:  # 2.7 is no layer (int() would read 2)
                raise ValueError
        except (TypeError, ValueError):
            raise RecipeError(
                f"'distill_layer_map' entry {key!r}: {value!r} is not a layer number pair; expected e.g. "
                '{"1": 2, "2": 4} (student layer -> teacher layer).'
            ) from None
        if not 0 <= s <= num_student_layers or not 0 <= t <= num_teacher_layers:
            raise RecipeError(
                f"'distill_layer_map' entry {key!r}: {value!r} is out of range: student layers are 0..{num_student_layers}"
                f" and teacher layers 0..{num_teacher_layers} (0 = embeddings, i = output of block i)."
            )
        out[s] = t
    if not out:
        raise RecipeError("'distill_layer_map' is empty: map at least one student layer to a teacher layer.")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Labels


def label_names(model: nn.Module) -> list[str]:
    """The model's labels in id order (from `config.id2label`)."""
    return _id2label_names(getattr(_base(model).config, "id2label", None))


def _id2label_names(id2label) -> list[str]:
    id2label = id2label or {}
    return [str(id2label[i]) for i in sorted(id2label, key=int)]


def _teacher_name(teacher: nn.Module) -> str:
    return getattr(_base(teacher), "name_or_path", None) or type(_base(teacher)).__name__


def _unnamed_teacher_error(subject: str, names: Sequence[str], sequence_level: bool) -> RecipeError:
    task = "sequence classification" if sequence_level else "token classification"
    return RecipeError(
        f"{subject} has no label names: its config's id2label holds only transformers' placeholders "
        f"({names[0]}..{names[-1]}), so it looks like a base model that was never fine-tuned for {task} (its "
        "classifier would be untrained). Distil from a fine-tuned teacher: fine-tune one on this data first "
        "(seqft.train without teacher_model_name_or_path) and pass its output_dir as teacher_model_name_or_path."
    )


def check_teacher_labels(teacher: nn.Module, raw: Mapping) -> None:
    """Check before training that the teacher predicts every label of the data, which `seqft.train` gives the
    student with the teacher's label list (`raw`: split name -> the raw split of `seqft.data.load_raw_splits`, with
    `tags` and `source` columns, or of `seqft.seqcls.load_raw_splits`, with `label` and `source`).

    Raises `RecipeError` for a teacher of the other task (a sequence classifier for tagged words, or the reverse),
    a teacher without label names (transformers' `LABEL_0`... placeholders: a base model) and for labels of the
    data the teacher lacks, naming the teacher, those labels, where the first one occurs and
    the fixes. Entity tags are compared by entity type, plain tags (POS, class names) by name. Prefixes and tags
    whose form is wrong are left to `seqft.data.prepare_labels`, which converts schemes and reports what remains.
    """
    from . import labels as schemes

    teacher_labels = label_names(teacher)
    name = _teacher_name(teacher)
    texts = any("label" in split.column_names for split in raw.values())  # seqcls splits; token splits have tags
    if is_sequence_classifier(_base(teacher)) != texts:
        kinds = {True: "a sequence classifier (one label per text)", False: "a token tagger (a label per word)"}
        raise RecipeError(
            f"the teacher ({name}) is {kinds[not texts]}, but this recipe's 'task' trains {kinds[texts]}: distil "
            "from a teacher fine-tuned for the same task."
        )
    if placeholder_names(teacher_labels):
        raise _unnamed_teacher_error(f"the teacher ({name})", teacher_labels, is_sequence_classifier(_base(teacher)))
    known = set(teacher_labels)
    prefixed = any(schemes.split_tag(label)[0] in schemes.PREFIXES for label in teacher_labels)
    teacher_types = {schemes.split_tag(label)[1] for label in teacher_labels}

    def lacks(tag) -> bool:
        if not isinstance(tag, str) or tag == schemes.OUTSIDE:
            return False
        if not prefixed:  # plain tags (POS) or class names: by name
            return tag not in known
        prefix, type_ = schemes.split_tag(tag)
        return prefix in schemes.PREFIXES and type_ not in teacher_types

    missing: dict[str, None] = {}  # in order of first occurrence
    first = None
    for split_name, split in raw.items():
        columns = split.column_names
        column = "tags" if "tags" in columns else "label" if "label" in columns else None
        if column is None:
            continue
        values = seqdata.read_column(split, column)
        sources = seqdata.read_column(split, "source") if "source" in columns else [None] * len(values)
        for value, source in zip(values, sources):
            found = [t for t in (value if isinstance(value, list) else [value]) if lacks(t)]
            if found and first is None:
                first = (source, split_name)
            missing.update(dict.fromkeys(found))
    if not missing:
        return
    tags = list(missing)

    def counted(word: str, items: list[str]) -> str:
        return f"{word}{'s' if len(items) > 1 else ''} {', '.join(items)}"

    if prefixed:
        types = list(dict.fromkeys(schemes.split_tag(t)[1] for t in tags))
        what = f"{counted('entity type', types)} ({counted('tag', tags)})"
    else:
        what = counted("label", tags)
    where = f"first at {first[0]}, {first[1]} split" if first and first[0] else f"{first[1]} split" if first else ""
    raise RecipeError(
        f"the teacher ({name}) does not predict {what}, which the data uses ({where}). The student learns the "
        f"teacher's labels ({', '.join(teacher_labels)}), so every label of the data must be one of them: distil "
        f"from a teacher fine-tuned with {'these labels' if len(tags) > 1 else 'this label'}, or map or remove "
        f"{'them' if len(tags) > 1 else 'it'} in the data (rename to one of the teacher's labels"
        f"{', or tag O' if prefixed else ''})."
    )


def label_permutation(teacher_labels: Sequence[str], student_labels: Sequence[str]) -> list[int] | None:
    """Index into the teacher's label axis giving the student's order (`None` when already equal).

    Raises `RecipeError` naming the labels only one side has when the label sets differ.
    """
    teacher_labels, student_labels = list(teacher_labels), list(student_labels)
    only_teacher = [label for label in teacher_labels if label not in student_labels]
    only_student = [label for label in student_labels if label not in teacher_labels]
    if only_teacher or only_student or len(set(teacher_labels)) != len(teacher_labels):
        sides = []
        if only_teacher:
            sides.append(f"only the teacher has {', '.join(only_teacher)}")
        if only_student:
            sides.append(f"only the student has {', '.join(only_student)}")
        raise RecipeError(
            f"the teacher and the student predict different labels: {'; '.join(sides) or 'duplicate names'}. "
            "Distillation needs the same label set (in any order): train the student on the teacher's labels "
            "(seqft.train does so when teacher_model_name_or_path is set) or use a teacher fine-tuned on this "
            "label set."
        )
    if teacher_labels == student_labels:
        return None
    return [teacher_labels.index(label) for label in student_labels]


# ---------------------------------------------------------------------------------------------------------------
# Word alignment (pure)


def first_subword_positions(word_ids: Sequence[int | None]) -> dict[int, int]:
    """Word index → position of its first subword (`None`/negative word ids are special tokens or padding)."""
    starts: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is not None and word >= 0 and word not in starts:
            starts[word] = position
    return starts


def student_word_ids(
    labels: Sequence[int], word_ids: Sequence[int | None] | None = None, num_words: int | None = None
) -> list[int]:
    """Word index of each student token, -1 where none.

    From `word_ids` (seqft.data's column, -100 for special tokens) when given; otherwise from `labels`, numbering the
    labelled positions 0, 1, 2, ... (right when only first subwords are labelled). Raises `DataError` when there are
    more labelled positions than the sentence's `num_words`.
    """
    if word_ids is not None:
        return [-1 if w is None or w < 0 else int(w) for w in word_ids]
    out, word = [], 0
    for label in labels:
        if label == -100:
            out.append(-1)
        else:
            out.append(word)
            word += 1
    if num_words is not None and word > num_words:
        raise DataError(
            f"a training sentence has {word} labelled subwords but only {num_words} words, so its labels cannot be "
            "matched to words for a teacher with another tokenizer: label continuation subwords only together with "
            "a 'word_ids' column (seqft.data writes one), or set label_all_tokens to false."
        )
    return out


def align_word_targets(
    teacher_rows: np.ndarray,
    teacher_word_ids: Sequence[int | None],
    student_word_ids: Sequence[int],
    labels: Sequence[int],
) -> np.ndarray:
    """Teacher scores per teacher token `(teacher_len, C)` → per student token `(len(labels), C)`, float32.

    A labelled student token of word `w` gets the teacher's row at `w`'s first subword; every other row is NaN
    (no target), including words the teacher's tokenisation dropped or truncated.
    """
    starts = first_subword_positions(teacher_word_ids)
    out = np.full((len(labels), teacher_rows.shape[-1]), np.nan, dtype=np.float32)
    for position, (word, label) in enumerate(zip(student_word_ids, labels)):
        if label != -100 and word >= 0 and word in starts:
            out[position] = teacher_rows[starts[word]]
    return out


def same_tokenizer(a, b) -> bool:
    """Whether two tokenizers turn any text into the same ids: identical fast-tokenizer definitions (normaliser,
    pre-tokeniser, vocabulary, post-processor, added tokens), truncation and padding state aside."""
    if a is b:
        return True
    if a is None or b is None:
        return False
    try:
        definitions = [json.loads(t.backend_tokenizer.to_str()) for t in (a, b)]
    except AttributeError:  # slow tokenizers: compare what is comparable
        return type(a) is type(b) and a.get_vocab() == b.get_vocab()
    for definition in definitions:
        definition.pop("truncation", None)
        definition.pop("padding", None)
    return definitions[0] == definitions[1]


# ---------------------------------------------------------------------------------------------------------------
# Models


def _base(model: nn.Module) -> nn.Module:
    """The transformers model inside DDP/DeepSpeed/compile wrappers and a PEFT model."""
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model)
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def _is_crf(model: nn.Module) -> bool:
    """A seqft CRF model (or any with its interface: `crf` with `marginals`, `crf_mask`, `encoder`, `classifier`)."""
    return hasattr(model, "crf") and callable(getattr(model, "crf_mask", None)) and hasattr(model, "classifier")


def _encoder_config(model: nn.Module):
    config = _base(model).config
    return getattr(config, "encoder_config", None) or config


def _num_layers(model: nn.Module) -> int:
    return int(_encoder_config(model).num_hidden_layers)


def _hidden_size(model: nn.Module) -> int:
    return int(_encoder_config(model).hidden_size)


def _is_zero3(module: nn.Module) -> bool:
    return any(hasattr(p, "ds_id") for p in module.parameters())


def _gathered(module: nn.Module):
    """Read-only access to a module's ZeRO-3-partitioned parameters outside its forward (no-op otherwise)."""
    if not _is_zero3(module):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None)


def _accepted(module: nn.Module, inputs: Mapping) -> dict:
    """The model inputs `module.forward` declares (DistilBERT takes no token_type_ids)."""
    parameters = inspect.signature(module.forward).parameters
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return {k: inputs[k] for k in keys if inputs.get(k) is not None and k in parameters}


@torch.no_grad()
def teacher_log_distribution(
    teacher: nn.Module, batch: Mapping, output_hidden_states: bool = False
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """The teacher's log tag distribution `(batch, seq_len, num_teacher_labels)` float32, in the teacher's label
    order, and its hidden states when asked. A CRF teacher gives log posterior marginals (`crf_log_distribution`),
    from one encoder pass."""
    base = _base(teacher)
    extra = {"output_hidden_states": True} if output_hidden_states else {}
    if _is_crf(base):
        encoder_outputs = base.encoder(**_accepted(base.encoder, batch), **extra)
        sequence_output = encoder_outputs[0]  # shape: (batch, seq_len, hidden)
        dropout = getattr(base, "dropout", None) or nn.Identity()  # identity in eval mode
        emissions = base.classifier(dropout(sequence_output))  # shape: (batch, seq_len, num_labels)
        with _gathered(base.crf):  # `marginals` is no forward: ZeRO-3 would not gather the CRF's scores for it
            log_q = crf_log_distribution(base, emissions, batch.get("input_ids"), batch.get("attention_mask"))
        hidden = getattr(encoder_outputs, "hidden_states", None)
    else:
        outputs = teacher(**_accepted(base, batch), **extra)
        log_q = outputs["logits"].float().log_softmax(-1)
        hidden = getattr(outputs, "hidden_states", None)
    if output_hidden_states and hidden is None:
        raise ValueError(f"{type(base).__name__} returned no hidden_states; hidden-state matching needs them")
    return log_q.float(), (hidden if output_hidden_states else None)


LOAD_KWARGS = "seqft_load_kwargs"  # attribute of a loaded teacher: how its tokenizer loads the same way


def load_teacher(name_or_path: str, **kwargs) -> nn.Module:
    """A fine-tuned token-classification model from a directory, Hub id or `pkg://` path; a seqft CRF checkpoint
    loads through the Auto classes. `kwargs` go to `from_pretrained` (cache_dir, revision, token, ...)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    from . import modeling  # noqa: F401  registers SeqFTCRFForTokenClassification with the Auto classes

    path = seqdata.resolve_path(name_or_path)
    if (
        os.path.isdir(path)
        and os.path.isfile(os.path.join(path, "adapter_config.json"))
        and not os.path.isfile(os.path.join(path, "config.json"))
    ):
        raise RecipeError(
            f"teacher_model_name_or_path={name_or_path!r} holds a PEFT adapter without its base model. Distil from "
            "a full model: train the teacher with merge_adapter: true and use its output_dir/merged."
        )
    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise RecipeError(
            f"teacher_model_name_or_path={name_or_path!r}: could not load a token-classification model ({err})."
        ) from err
    sequence_level = is_sequence_classifier(config)  # (B, C) logits
    names = _id2label_names(getattr(config, "id2label", None))
    if placeholder_names(names):  # checked before loading weights: a base encoder is no teacher
        raise _unnamed_teacher_error(f"teacher_model_name_or_path={name_or_path!r}", names, sequence_level)
    try:
        auto = AutoModelForSequenceClassification if sequence_level else AutoModelForTokenClassification
        teacher = auto.from_pretrained(path, config=config, **kwargs)
    except (OSError, ValueError) as err:
        raise RecipeError(
            f"teacher_model_name_or_path={name_or_path!r}: could not load a token-classification model ({err})."
        ) from err
    setattr(teacher, LOAD_KWARGS, {k: v for k, v in kwargs.items() if v is not None})  # for its tokenizer
    return teacher


def load_teacher_tokenizer(teacher: nn.Module):
    """The tokenizer saved with the teacher (from its `name_or_path`), or `None` when there is none to load."""
    path = getattr(_base(teacher), "name_or_path", None)
    if not path:
        return None
    try:  # with the kwargs the teacher loaded with (cache_dir, revision, token), as set by load_teacher
        return seqdata.load_tokenizer(path, split_special_tokens=True, **getattr(_base(teacher), LOAD_KWARGS, {}))
    except (OSError, ValueError) as err:  # DataError is a ValueError
        logger.info(f"No tokenizer loaded from the teacher's path {path!r}: {err}")
        return None


def teacher_tagged_sentences(
    teacher: nn.Module,
    path: str,
    label_names: Sequence[str],
    scheme: str,
    *,
    first_doc_id: int = 0,
    batch_size: int = 32,
    device: torch.device | str | None = None,
):
    """The sentences of `path` tagged by the teacher, as training rows (`tokens`, `tags`, `doc_id`, `source`).

    `path` is read as `seqft.predict` reads its input: plain text (one sentence per line, split on whitespace),
    CoNLL (words in the first column; any other column, gold tags included, is ignored) or JSONL (`tokens` or
    `text`). Each word gets the teacher's tag at its first subword (the constrained Viterbi path for a CRF
    teacher; long sentences in the teacher's windows), converted into `scheme`, the student's scheme. Blank
    sentences are skipped. Documents get ids from `first_doc_id` on, so they never join a training document.
    """
    from datasets import Dataset

    from . import labels as schemes
    from .predict import Predictor, read_input

    tokenizer = load_teacher_tokenizer(teacher)
    if tokenizer is None:
        raise RecipeError(
            f"distill_unlabelled_file: the teacher ({getattr(_base(teacher), 'name_or_path', '?')}) has no "
            "tokenizer saved with it, so it cannot tag new sentences; save the tokenizer in its directory."
        )
    model_dir = getattr(_base(teacher), "name_or_path", "") or ""
    if _is_zero3(teacher):  # loaded partitioned (ZeRO-3): gathered whole for this one pass, where its shards live
        device = next(teacher.parameters()).device
    with _gathered(teacher):
        predictor = Predictor(model_dir, model=teacher, tokenizer=tokenizer, device=device, batch_size=batch_size)
        if list(predictor.labels) != list(label_names):
            raise DataError(
                f"distill_unlabelled_file: the teacher tags with {predictor.labels}, the student learns "
                f"{list(label_names)}."
            )
        documents = [d for d in read_input(path, labels=predictor.labels) if d.words]
        if not documents:
            raise DataError(f"{path}: no sentences to tag (every line is blank).")
        tagged = predictor.predict_documents(documents)
    doc_ids: dict = {}
    rows = {"tokens": [], "tags": [], "doc_id": [], "source": []}
    for document, prediction in zip(documents, tagged):
        tags = list(prediction.tags)
        if predictor.scheme != scheme:
            tags = schemes.convert(tags, predictor.scheme, scheme)
        rows["tokens"].append(list(document.words))
        rows["tags"].append(tags)
        rows["doc_id"].append(first_doc_id + doc_ids.setdefault(document.doc_id, len(doc_ids)))
        rows["source"].append(document.source)
    logger.info(f"The teacher tagged {len(documents)} sentences of {path} for training.")
    return Dataset.from_dict(rows)


def build_student_from_teacher(teacher: nn.Module, layers: Sequence[int], use_crf: bool | None = None) -> nn.Module:
    """A copy of `teacher` keeping encoder blocks `layers` (0-based, increasing), DistilBERT-style.

    Embeddings, head and CRF are copied; `num_hidden_layers` becomes `len(layers)`. Works for BERT-family encoders
    (`encoder.layer`), DistilBERT (`transformer.layer`), ModernBERT (`layers`) and seqft's CRF model, whose encoder
    sits under `.encoder`. `use_crf` (the recipe's), when given, must agree with the teacher.
    """
    if callable(getattr(teacher, "get_base_model", None)):
        raise RecipeError("student_layers needs a full teacher model, not a PEFT model: merge the adapter first.")
    if use_crf is not None and bool(use_crf) != _is_crf(teacher):
        raise RecipeError(
            f"student_layers copies the teacher, which {'has' if _is_crf(teacher) else 'has no'} CRF, but use_crf is "
            f"{str(bool(use_crf)).lower()}: set use_crf to {str(_is_crf(teacher)).lower()}."
        )
    student = copy.deepcopy(teacher)
    backbone = getattr(student, getattr(student, "base_model_prefix", ""), None) or student
    owner, name, blocks = _find_blocks(backbone)
    layers = list(layers)
    if (
        not layers
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers)
        or any(not 0 <= i < len(blocks) for i in layers)
        or any(a >= b for a, b in zip(layers, layers[1:]))
    ):
        raise RecipeError(
            f"'student_layers' = {layers!r}: expected increasing block numbers in 0..{len(blocks) - 1} (the model "
            f"the blocks are copied from, the teacher or with student_init 'model' model_name_or_path, has "
            f"{len(blocks)}), e.g. [0, 2, 4]."
        )
    kept = nn.ModuleList([blocks[i] for i in layers])
    setattr(owner, name, kept)
    for index, block in enumerate(kept):
        for module in block.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = index
    config = backbone.config
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == len(blocks):
        config.layer_types = [layer_types[i] for i in layers]
    config.num_hidden_layers = len(layers)
    student.requires_grad_(True)
    return student


def _find_blocks(backbone: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    for path in _BLOCK_PATHS:
        *parents, name = path.split(".")
        owner = backbone
        for part in parents:
            owner = getattr(owner, part, None)
        blocks = getattr(owner, name, None) if owner is not None else None
        if isinstance(blocks, nn.ModuleList):
            return owner, name, blocks
    raise RecipeError(
        f"student_layers: cannot find the transformer blocks of {type(backbone).__name__} (looked for "
        f"{', '.join(_BLOCK_PATHS)}); build the student yourself and pass it as the model."
    )


# ---------------------------------------------------------------------------------------------------------------
# Precomputed teacher targets


def _pad(rows: Mapping[str, list], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the model inputs of dataset rows into tensors."""
    ids = rows["input_ids"]
    length = max(len(x) for x in ids)
    out = {"input_ids": torch.full((len(ids), length), pad_token_id, dtype=torch.long)}
    out["attention_mask"] = torch.zeros((len(ids), length), dtype=torch.long)
    if "token_type_ids" in rows:
        out["token_type_ids"] = torch.zeros((len(ids), length), dtype=torch.long)
    for i, seq in enumerate(ids):
        out["input_ids"][i, : len(seq)] = torch.tensor(seq)
        out["attention_mask"][i, : len(seq)] = 1
        if "token_type_ids" in rows:
            out["token_type_ids"][i, : len(seq)] = torch.tensor(rows["token_type_ids"][i])
    return out


def precompute_teacher_targets(
    teacher: nn.Module,
    dataset,
    *,
    teacher_tokenizer=None,
    permutation: Sequence[int] | None = None,
    batch_size: int = 32,
    pad_token_id: int = 0,
    device: torch.device | str | None = None,
) -> list[np.ndarray]:
    """The teacher's log-probabilities per student token for every row of a tokenised dataset, `(len, C)` float32
    arrays in the student's label order, NaN where there is no target (unlabelled positions included).

    Without `teacher_tokenizer` the teacher reads the rows' own `input_ids` (same tokenizer). With it, each row's
    words (`tokens`) are re-tokenised for the teacher and aligned at the word level (`align_word_targets`).
    """
    needed = ["labels"] + (["tokens"] if teacher_tokenizer is not None else ["input_ids"])
    missing = [c for c in needed if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"precomputing the teacher's targets needs the training set's {', '.join(missing)} column(s); it has "
            f"{', '.join(dataset.column_names)}."
        )
    keep = [c for c in ("labels", "tokens", "word_ids", "input_ids", "token_type_ids") if c in dataset.column_names]
    dataset = dataset.select_columns(keep)
    if device is None:
        device = next(_base(teacher).parameters()).device
    max_length = None
    if teacher_tokenizer is not None:
        max_length = min(teacher_tokenizer.model_max_length, 512)
        positions = getattr(_encoder_config(teacher), "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            max_length = min(max_length, positions)
    out = []
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        labels = rows["labels"]
        if teacher_tokenizer is None:
            batch = _pad(rows, pad_token_id)
        else:
            batch = teacher_tokenizer(
                rows["tokens"],
                is_split_into_words=True,
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
        log_q, _ = teacher_log_distribution(teacher, {k: v.to(device) for k, v in batch.items()})
        if permutation is not None:
            log_q = log_q[..., list(permutation)]
        log_q = log_q.cpu().numpy()  # shape: (rows, seq_len, num_labels)
        for i, row_labels in enumerate(labels):
            if teacher_tokenizer is None:
                target = log_q[i, : len(row_labels)].astype(np.float32)
                target[np.asarray(row_labels) == -100] = np.nan
            else:
                word_ids = rows["word_ids"][i] if "word_ids" in rows else None
                words = student_word_ids(row_labels, word_ids, len(rows["tokens"][i]))
                target = align_word_targets(log_q[i], batch.word_ids(i), words, row_labels)
            out.append(target)
    return out


class TeacherColumnCollator:
    """Wraps a data collator: pads each row's `teacher_logprobs` to the batch's sequence length (NaN) and adds it to
    the batch as `(batch, seq_len, num_labels)` float32. Rows without the column pass through unchanged."""

    def __init__(self, collator, num_labels: int, padding_side: str = "right"):
        self.collator = collator
        self.num_labels = num_labels
        self.padding_side = padding_side

    def __call__(self, features):
        if not features or TEACHER_COLUMN not in features[0]:
            return self.collator(features)
        targets = [torch.tensor(f[TEACHER_COLUMN], dtype=torch.float32).reshape(-1, self.num_labels) for f in features]
        batch = self.collator([{k: v for k, v in f.items() if k != TEACHER_COLUMN} for f in features])
        length = batch["labels"].shape[1] if "labels" in batch else batch["input_ids"].shape[1]
        out = torch.full((len(features), length, self.num_labels), float("nan"))
        for i, target in enumerate(targets):
            target = target[:length]
            if self.padding_side == "left":
                out[i, length - len(target) :] = target
            else:
                out[i, : len(target)] = target
        batch[TEACHER_COLUMN] = out
        return batch


# ---------------------------------------------------------------------------------------------------------------
# Trainer wiring


@dataclass(frozen=True)
class DistillPlan:
    """What `prepare_teacher` decided, read by `distillation_loss` (as `trainer.distill_plan`)."""

    permutation: tuple[int, ...] | None  # teacher label index for each student label; None = same order
    teacher_crf: bool
    student_crf: bool
    same_tokenizer: bool
    precomputed: bool  # the teacher's targets travel in the batch (TEACHER_COLUMN)
    layer_map: dict[int, int] | None  # hidden-state matching: student index -> teacher index; None = off


def prepare_teacher(teacher_model, trainer) -> nn.Module:
    """Load (when a path), check, freeze and place the teacher; set `trainer.distill_plan`; add the student's
    `distill_projection` when hidden states of different widths are matched; precompute the teacher's targets into
    the training set when its tokenizer differs or `precompute_teacher` is set. Returns the teacher."""
    args = trainer.args
    teacher = (
        load_teacher(os.fspath(teacher_model)) if isinstance(teacher_model, (str, os.PathLike)) else teacher_model
    )
    student = _base(trainer.model)
    if _base(teacher) is student:
        raise RecipeError("the teacher is the student itself: pass a separately loaded (fine-tuned) teacher model.")
    teacher_labels, student_labels = label_names(teacher), label_names(student)
    if placeholder_names(teacher_labels) and teacher_labels != student_labels:
        subject = f"the teacher ({_teacher_name(teacher)})"
        raise _unnamed_teacher_error(subject, teacher_labels, is_sequence_classifier(_base(teacher)))
    permutation = label_permutation(teacher_labels, student_labels)
    if (
        _is_crf(student)
        and trainer.is_deepspeed_enabled
        and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
    ):
        raise RecipeError(
            "distilling into a CRF student under DeepSpeed ZeRO-3 is not supported: its marginals are computed "
            "outside the CRF's forward, where ZeRO-3 does not gather the transition scores. Use ZeRO-2 or DDP."
        )
    teacher.requires_grad_(False)
    teacher.eval()

    teacher_tokenizer = load_teacher_tokenizer(teacher)
    student_tokenizer = trainer.processing_class
    if teacher_tokenizer is None or student_tokenizer is None:
        vocab_size = getattr(_encoder_config(teacher), "vocab_size", None)
        if student_tokenizer is not None and isinstance(vocab_size, int) and len(student_tokenizer) > vocab_size:
            raise RecipeError(
                f"the teacher has no tokenizer saved with it and a vocabulary of {vocab_size}, smaller than the "
                f"student's tokenizer ({len(student_tokenizer)}): save the teacher's tokenizer next to its weights."
            )
        logger.warning(
            "Distillation: the teacher's or the student's tokenizer is unknown; assuming they are the same."
        )
        same = True
    else:
        same = same_tokenizer(teacher_tokenizer, student_tokenizer)
    precomputed = args.precompute_teacher or not same
    if same:
        _check_teacher_length(teacher, trainer.train_dataset)
    if is_sequence_classifier(student):  # one (B, C) distribution per text: same tokenizer, softmax heads only
        if precomputed:
            why = "precompute_teacher is set" if same else "the teacher's tokenizer differs from the student's"
            raise RecipeError(f"distilling a sequence classifier reads the teacher every step, but {why}.")
        for who, model in (("student", student), (f"teacher ({_teacher_name(teacher)})", _base(teacher))):
            if getattr(model.config, "problem_type", None) == "multi_label_classification":
                raise RecipeError(
                    f"the {who} is a multi-label classifier (sigmoid outputs): distillation of classifiers reads "
                    "softmax distributions over one label per text, so it is not supported."
                )

    layer_map = None
    if args.distill_hidden_weight > 0:
        if precomputed:
            why = "precompute_teacher is set" if same else "the teacher's tokenizer differs from the student's"
            raise RecipeError(
                f"distill_hidden_weight > 0 needs the teacher's hidden states at every step, but {why}: set "
                "distill_hidden_weight to 0"
                + (" or precompute_teacher to false." if same else ", or use a teacher with the student's tokenizer.")
            )
        num_student, num_teacher = _num_layers(student), _num_layers(teacher)
        if args.distill_layer_map:
            layer_map = parse_layer_map(args.distill_layer_map, num_student, num_teacher)
        else:
            # the blocks a student copied from the teacher map to those; others (student_init 'model'): spaced
            copied = args.student_layers if args.student_init == "teacher" else None
            layer_map = default_layer_map(num_student, num_teacher, copied)
        _add_projection(student, _hidden_size(student), _hidden_size(teacher))
    elif args.distill_layer_map:
        logger.warning("distill_layer_map is set but distill_hidden_weight is 0: hidden states are not matched.")

    teacher = _place(teacher, trainer)
    trainer.distill_plan = DistillPlan(
        permutation=None if permutation is None else tuple(permutation),
        teacher_crf=_is_crf(_base(teacher)),
        student_crf=_is_crf(student),
        same_tokenizer=same,
        precomputed=precomputed,
        layer_map=layer_map,
    )
    if precomputed and trainer.train_dataset is not None:
        _attach_teacher_targets(trainer, teacher, None if same else teacher_tokenizer, permutation)
    return teacher


PROJECTION_FILE = f"{PROJECTION}.safetensors"


def prepare_student(student: nn.Module, trainer) -> None:
    """On a new student (what `model_init` returns when `train()` starts), what `prepare_teacher` set up on the
    trainer's model: the `distill_projection`, same widths (a fresh one, as the first model's was)."""
    projection = getattr(_base(trainer.model), PROJECTION, None) if trainer.model is not None else None
    if isinstance(projection, nn.Linear):
        _add_projection(_base(student), projection.in_features, projection.out_features)


def save_projection(student: nn.Module, folder: str) -> None:
    """The student's `distill_projection` into a checkpoint folder (the weights file leaves it out), if it has one."""
    from safetensors.torch import save_file

    projection = getattr(_base(student), PROJECTION, None)
    if isinstance(projection, nn.Linear):
        state = {key: value.detach().cpu().contiguous() for key, value in projection.state_dict().items()}
        save_file(state, os.path.join(folder, PROJECTION_FILE))


def load_projection(student: nn.Module, folder: str) -> None:
    """Restore the student's `distill_projection` from a checkpoint folder (`save_projection`), if it has one."""
    from safetensors.torch import load_file

    projection = getattr(_base(student), PROJECTION, None)
    if not isinstance(projection, nn.Linear):
        return
    path = os.path.join(folder, PROJECTION_FILE)
    if not os.path.isfile(path):
        logger.warning(
            f"{folder} has no {PROJECTION_FILE} (a checkpoint of seqft before 2026-12-08): the hidden-state "
            "projection starts afresh, so the resumed run differs from an uninterrupted one."
        )
        return
    reference = projection.weight
    state = {key: value.to(device=reference.device, dtype=reference.dtype) for key, value in load_file(path).items()}
    projection.load_state_dict(state)


def _check_teacher_length(teacher: nn.Module, dataset) -> None:
    """A teacher that reads the student's inputs must take their length: one with fewer position embeddings failed
    at the first step that held a long sentence, maybe hours in."""
    from .windows import model_positions

    limit = model_positions(_base(teacher).config)
    if limit is None or dataset is None or "input_ids" not in getattr(dataset, "column_names", ()):
        return
    lengths = seqdata.read_column(dataset, "length") if "length" in dataset.column_names else None
    longest = max(lengths) if lengths else max((len(ids) for ids in dataset["input_ids"]), default=0)
    if longest > limit:
        raise RecipeError(
            f"the teacher ({_teacher_name(teacher)}) takes at most {limit} tokens, but the student's training inputs "
            f"reach {longest}: set 'max_seq_length' to at most {limit} (longer sentences are cut into windows)."
        )


def _add_projection(student: nn.Module, student_width: int, teacher_width: int) -> None:
    if student_width == teacher_width:
        return
    projection = getattr(student, PROJECTION, None)
    if not isinstance(projection, nn.Linear) or (projection.in_features, projection.out_features) != (
        student_width,
        teacher_width,
    ):
        reference = next(student.parameters())
        projection = nn.Linear(student_width, teacher_width).to(device=reference.device, dtype=reference.dtype)
        student.add_module(PROJECTION, projection)
    # Only a training aid: never in the final model (exact keys, as save_pretrained matches them); checkpoints keep it
    # in a file of its own (save_projection).
    ignored = set(getattr(student, "_keys_to_ignore_on_save", None) or ())
    student._keys_to_ignore_on_save = ignored | {f"{PROJECTION}.weight", f"{PROJECTION}.bias"}


def _place(teacher: nn.Module, trainer) -> nn.Module:
    """On the trainer's device, never DDP-wrapped; its own inference engine under DeepSpeed."""
    if trainer.is_deepspeed_enabled:
        return _deepspeed_engine(teacher, trainer.accelerator)
    teacher = trainer.accelerator.prepare_model(teacher, evaluation_mode=True)
    reference = next(teacher.parameters(), None)
    if reference is not None and reference.device != trainer.args.device:  # FSDP leaves placement to the wrapper
        teacher.to(trainer.args.device)
    return teacher


def _deepspeed_engine(teacher: nn.Module, accelerator):
    """An inference DeepSpeed engine for the teacher, configured from the student's DeepSpeed config: ZeRO-3 shards
    it like the student (buckets sized from its hidden size), any other stage keeps a full replica (stage 0). No
    optimizer or scheduler: it is never trained. Any value still "auto" falls back to DeepSpeed's default."""
    import deepspeed

    config = copy.deepcopy(accelerator.state.deepspeed_plugin.deepspeed_config)
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        hidden = _hidden_size(teacher)
        zero.update(
            reduce_bucket_size=hidden * hidden,
            stage3_param_persistence_threshold=10 * hidden,
            stage3_prefetch_bucket_size=int(0.9 * hidden * hidden),
        )
    else:
        zero["stage"] = 0

    def drop_auto(node):
        if isinstance(node, dict):
            return {k: drop_auto(v) for k, v in node.items() if v != "auto"}
        return node

    engine, *_ = deepspeed.initialize(model=teacher, config=drop_auto(config))
    engine.eval()
    return engine


def _keep_column(trainer, name: str) -> None:
    """Keep a dataset column the model's forward does not declare (the Trainer drops those before batching)."""
    trainer._set_signature_columns_if_needed()
    if name not in trainer._signature_columns:
        trainer._signature_columns.append(name)


def _attach_teacher_targets(trainer, teacher, teacher_tokenizer, permutation) -> None:
    from datasets import Dataset, Value

    try:
        from datasets import List
    except ImportError:  # datasets < 4
        from datasets import Sequence as List

    dataset = trainer.train_dataset
    if not isinstance(dataset, Dataset):
        raise RecipeError(
            "precomputing the teacher's targets (precompute_teacher, or a teacher with another tokenizer) needs the "
            f"training set as a datasets.Dataset, got {type(dataset).__name__}."
        )
    student_tokenizer = trainer.processing_class
    pad_token_id = getattr(student_tokenizer, "pad_token_id", None) or 0
    with torch.no_grad(), trainer.accelerator.autocast():
        targets = precompute_teacher_targets(
            teacher,
            dataset,
            teacher_tokenizer=teacher_tokenizer,
            permutation=permutation,
            batch_size=trainer.args.per_device_eval_batch_size,
            pad_token_id=pad_token_id,
        )
    if TEACHER_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(TEACHER_COLUMN)
    num_labels = len(label_names(trainer.model))
    trainer.train_dataset = dataset.add_column(
        TEACHER_COLUMN, [t.tolist() for t in targets], feature=List(List(Value("float32")))
    )
    collator = trainer.data_collator
    side = getattr(getattr(collator, "tokenizer", None), "padding_side", None)
    side = side or getattr(student_tokenizer, "padding_side", None) or "right"
    trainer.data_collator = TeacherColumnCollator(collator, num_labels, side)
    _keep_column(trainer, TEACHER_COLUMN)
    logger.info(f"Distillation: teacher targets precomputed for {len(targets)} training sentences.")


def student_inputs(trainer, inputs: Mapping) -> dict:
    """The student's forward inputs: the batch without the teacher's targets, asking for hidden states when they
    are matched."""
    out = {k: v for k, v in inputs.items() if k != TEACHER_COLUMN}
    if trainer.distill_plan.layer_map is not None:
        out["output_hidden_states"] = True
    return out


def _rank_scale(trainer, num_items_in_batch) -> int:
    """The factor the stock `Trainer.compute_loss` multiplies the hard loss by when `num_items_in_batch` counts every
    rank's labels (DDP then averages gradients over ranks): the soft loss gets the same."""
    args = trainer.args
    if not (
        args.average_tokens_across_devices
        and (trainer.model_accepts_loss_kwargs or trainer.compute_loss_func)
        and num_items_in_batch is not None
    ):
        return 1
    return trainer.accelerator.num_processes // trainer.get_tp_size() if args.n_gpu <= 1 else args.n_gpu


def distillation_loss(trainer, model, inputs: Mapping, student_outputs, num_items_in_batch=None) -> dict:
    """`{"loss": distill_alpha * loss_soft + distill_hidden_weight * loss_hidden, "loss_soft": ..., "loss_hidden": ...}`
    for one training micro-batch (see the module docstring). The parts are detached, for logging."""
    args = trainer.args
    plan: DistillPlan = trainer.distill_plan
    labels = inputs["labels"]
    mask = labels.ne(-100)  # shape: (batch, seq_len)
    student = _base(model)
    logits = student_outputs["logits"]  # shape: (batch, seq_len, num_labels); a CRF's emissions in training
    support = None
    if plan.student_crf:
        from .modeling.crf import DISALLOWED_SCORE

        student_scores = crf_log_distribution(student, logits, inputs.get("input_ids"), inputs.get("attention_mask"))
        # Tags the CRF's constraints forbid here (log-marginal ~ DISALLOWED_SCORE, e.g. I-X on a first token):
        # no parameter can give them mass, so the teacher's distribution is renormalised over the others.
        support = student_scores.detach() > DISALLOWED_SCORE / 2
    else:
        student_scores = logits

    want_hidden = plan.layer_map is not None
    teacher_hidden = None
    if TEACHER_COLUMN in inputs:
        teacher_scores = inputs[TEACHER_COLUMN]  # already in the student's label order
    elif plan.precomputed:
        raise DataError(
            f"the batch has no '{TEACHER_COLUMN}': the teacher's targets were precomputed into the training set the "
            "trainer was built with; build a new trainer to train on another dataset."
        )
    else:
        teacher = trainer.teacher_model
        teacher.eval()  # re-asserted at the point of use: a `.train()` elsewhere must not turn its dropout on
        with trainer.accelerator.autocast():
            teacher_scores, teacher_hidden = teacher_log_distribution(teacher, inputs, want_hidden)
        if plan.permutation is not None:
            teacher_scores = teacher_scores[..., list(plan.permutation)]
    teacher_scores = teacher_scores.to(logits.device)
    valid = mask & torch.isfinite(teacher_scores).all(-1)

    soft = soft_target_loss(
        student_scores, teacher_scores, valid, args.distill_temperature, num_items_in_batch, support=support
    )
    loss = args.distill_alpha * soft
    parts = {"loss_soft": soft}
    if want_hidden:
        student_hidden = student_outputs["hidden_states"]
        if logits.dim() == 2:  # sequence classification: one item per text, matched at its first ([CLS]) token
            student_hidden, teacher_hidden = [h[:, 0] for h in student_hidden], [h[:, 0] for h in teacher_hidden]
        hidden = hidden_state_loss(
            student_hidden,
            teacher_hidden,
            plan.layer_map,
            mask,
            getattr(student, PROJECTION, None),
            num_items_in_batch,
        )
        loss = loss + args.distill_hidden_weight * hidden
        parts["loss_hidden"] = hidden
    scale = _rank_scale(trainer, num_items_in_batch)
    return {"loss": loss * scale, **{k: v.detach() * scale for k, v in parts.items()}}
