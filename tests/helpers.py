"""Tiny, offline building blocks shared by the tests: a word-piece tokenizer, tiny encoders, CoNLL fixtures."""

from __future__ import annotations

from pathlib import Path

from transformers import BertConfig, BertTokenizerFast

WORDS = (  # noqa: SIM905 (a sentence reads better than a list literal)
    "john smith lives in new york and works for acme corp . mary visited paris last week with the "
    "united nations team , said reuters on monday . berlin is a city in germany"
).split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PIECES = ["##s", "##er", "##ing", "##ed", "##a", "##b"]

# A small labelled corpus in IOB2, written to disk by `write_conll`.
SENTENCES = [
    (["John", "Smith", "lives", "in", "New", "York", "."], ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"]),
    (["Mary", "visited", "Paris", "last", "week", "."], ["B-PER", "O", "B-LOC", "O", "O", "O"]),
    (
        ["Acme", "Corp", "works", "with", "the", "United", "Nations", "."],
        ["B-ORG", "I-ORG", "O", "O", "O", "B-ORG", "I-ORG", "O"],
    ),
    (["Reuters", "said", "on", "Monday", "."], ["B-ORG", "O", "O", "O", "O"]),
    (["Berlin", "is", "a", "city", "in", "Germany", "."], ["B-LOC", "O", "O", "O", "O", "B-LOC", "O"]),
    (["John", "works", "for", "Acme", "in", "Berlin", "."], ["B-PER", "O", "O", "B-ORG", "O", "B-LOC", "O"]),
]


def tiny_tokenizer(**kwargs) -> BertTokenizerFast:
    """A lower-casing word-piece tokenizer over a fixed vocabulary (pass `vocab=`, never `vocab_file=`)."""
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(SPECIALS + WORDS + PIECES))}
    return BertTokenizerFast(vocab=vocab, **kwargs)


def tiny_bert_config(num_labels: int = 5, **kwargs) -> BertConfig:
    defaults = dict(
        vocab_size=len(tiny_tokenizer()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    defaults.update(kwargs)
    return BertConfig(**defaults)


def save_tiny_bert(path: Path, **kwargs) -> Path:
    """Write a random-initialised tiny BERT encoder and its tokenizer to `path`, like a Hub checkpoint."""
    import torch
    from transformers import BertModel

    torch.manual_seed(0)
    BertModel(tiny_bert_config(**kwargs)).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def write_conll(path: Path, sentences=SENTENCES, docstart: bool = True, extra_columns: int = 0) -> Path:
    """Write `sentences` in CoNLL column format: word [extra columns ...] tag, blank line between sentences."""
    lines = ["-DOCSTART- " + "-X- " * extra_columns + "O", ""] if docstart else []
    for words, tags in sentences:
        for w, t in zip(words, tags):
            lines.append(" ".join([w] + ["X"] * extra_columns + [t]))
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def one_step_args(output_dir, batch: int, accumulation: int = 1, cls=None, **overrides):
    """Arguments of one plain SGD step at rate 1 over the batches in order, no clipping: the weights then move by
    exactly the gradient, so runs that split the same batch differently (accumulation, ranks) can be compared."""
    from seqft import SeqFTConfig

    values = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=1.0,
        optim="sgd",
        lr_scheduler_type="constant",
        train_sampling_strategy="sequential",
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1,
        max_grad_norm=1e9,
    )
    return (cls or SeqFTConfig)(**{**values, **overrides})


def sigterm_driver(at_step: int, rank: str | None = None) -> str:
    """A script running `seqft.train RECIPE` in which transformers' SIGTERM grace period ends (what its timer thread
    does, at a fixed moment) as step `at_step + 1` begins, whose forward and backward come before its optimizer
    step; on `rank` only when given (the other ranks' timers have not fired yet)."""
    return f"""
import os, sys
import transformers
from transformers.trainer_jit_checkpoint import JITCheckpointCallback

class GracePeriodEnds(transformers.TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == {at_step} and {rank!r} in (None, os.environ.get("RANK")):
            for callback in self.trainer.callback_handler.callbacks:
                if isinstance(callback, JITCheckpointCallback):
                    callback.jit_manager.is_checkpoint_requested = True

import seqft.trainer
init = seqft.trainer.SeqFTTrainer.__init__

def with_signal(self, *args, **kwargs):
    init(self, *args, **kwargs)
    callback = GracePeriodEnds()
    callback.trainer = self
    self.add_callback(callback)

seqft.trainer.SeqFTTrainer.__init__ = with_signal
from seqft.train import main
sys.exit(main([sys.argv[1]]))
"""
