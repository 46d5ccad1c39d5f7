"""SeqFTTrainer used as a library, the way the stock Trainer is: its signature, stock arguments, model_init,
subclasses, your own optimiser and model, and what it refuses rather than silently ignores."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from datasets import Dataset
from helpers import SENTENCES, one_step_args, tiny_bert_config, tiny_tokenizer
from torch import nn
from transformers import (
    BertForSequenceClassification,
    BertForTokenClassification,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.modeling_outputs import TokenClassifierOutput

from seqft import SeqFTConfig, SeqFTTrainer
from seqft import data as seqdata
from seqft.errors import RecipeError
from seqft.modeling import SeqFTCRFConfig, SeqFTCRFForTokenClassification

LABEL2ID = {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4, "B-ORG": 5, "I-ORG": 6}


def tokenised():
    raw = Dataset.from_dict(
        {
            "tokens": [w for w, _ in SENTENCES] + [SENTENCES[0][0][:2]] * 2,
            "tags": [t for _, t in SENTENCES] + [SENTENCES[0][1][:2]] * 2,
        }
    )
    return seqdata.tokenize_split(raw, tiny_tokenizer(), LABEL2ID, 32, False).remove_columns(
        ["tokens", "tags", "length", "num_words_kept"]
    )


def bert(seed=0):
    torch.manual_seed(seed)
    config = tiny_bert_config(num_labels=7, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForTokenClassification(config)


def crf():
    tok = tiny_tokenizer()
    return SeqFTCRFForTokenClassification(
        SeqFTCRFConfig(
            encoder_config=tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
            id2label={i: label for label, i in LABEL2ID.items()},
            label2id=LABEL2ID,
            label_scheme="IOB2",
            special_token_ids=[i for i in tok.all_special_ids if i != tok.unk_token_id],
        )
    )


def settings(tmp_path, cls=None, batch=8, accumulation=1, **overrides):
    return one_step_args(tmp_path / f"out-{batch}-{accumulation}", batch, accumulation, cls=cls, **overrides)


def collator():
    return DataCollatorForTokenClassification(tiny_tokenizer())


def test_stock_signature_arguments_and_model_init_train_as_with_a_model(tmp_path):
    """The stock positional order, a stock TrainingArguments and model_init all reach seqft's loss: the same one-step
    loss, and the same under gradient accumulation (model_init used to drop the loss, doubling it under GA 2)."""
    data = tokenised()
    reference = SeqFTTrainer(bert(), settings(tmp_path), collator(), data).train().training_loss
    stock = SeqFTTrainer(model=bert(), args=settings(tmp_path, cls=TrainingArguments), train_dataset=data)
    assert isinstance(stock.args, SeqFTConfig)
    stock.data_collator = collator()
    assert stock.train().training_loss == pytest.approx(reference, rel=1e-6)
    for accumulation in (1, 2):
        trainer = SeqFTTrainer(
            model_init=lambda: bert(),
            args=settings(tmp_path, batch=8 // accumulation, accumulation=accumulation),
            data_collator=collator(),
            train_dataset=data,
        )
        assert trainer.train().training_loss == pytest.approx(reference, rel=1e-5), accumulation
    assert SeqFTTrainer(bert()).args.output_dir == "trainer_output"  # args=None, as the stock Trainer


def test_peft_config_wraps_every_model_model_init_returns(tmp_path):
    trainer = SeqFTTrainer(
        model_init=lambda: bert(),
        args=settings(tmp_path, max_steps=2),
        data_collator=collator(),
        train_dataset=tokenised(),
        peft_config={"peft_type": "LORA", "r": 2, "target_modules": ["query", "value"]},
    )
    assert hasattr(trainer.model, "peft_config")
    trainer.train()  # model_init is called again here: that model is wrapped too
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable), trainable


def test_a_crf_refuses_what_it_would_silently_ignore(tmp_path):
    # label smoothing made the stock Trainer swap the CRF's likelihood for smoothed cross-entropy (CRF untrained)
    with pytest.raises(RecipeError, match=r"label_smoothing_factor = 0.1: SeqFTCRFForTokenClassification computes"):
        SeqFTTrainer(crf(), settings(tmp_path, label_smoothing_factor=0.1), collator(), tokenised())
    with pytest.raises(RecipeError, match=r"class_weights weight seqft's cross-entropy, but SeqFTCRFFor"):
        SeqFTTrainer(crf(), settings(tmp_path, class_weights=[1.0] * 7), collator(), tokenised())
    with pytest.raises(RecipeError, match=r"but compute_loss_func is given: they would be ignored"):
        SeqFTTrainer(
            bert(), settings(tmp_path, class_weights=[1.0] * 7), collator(), tokenised(), compute_loss_func=print
        )
    from seqft.configs import validate_args
    from seqft.parser import parse_recipe

    (tmp_path / "r.json").write_text(
        json.dumps(
            {
                "model_name_or_path": "m",
                "train_file": "t",
                "output_dir": "o",
                "use_crf": True,
                "label_smoothing_factor": 0.1,
            }
        )
    )
    with pytest.raises(RecipeError, match=r"'label_smoothing_factor' smooths a cross-entropy, but 'use_crf'"):
        validate_args(*parse_recipe([str(tmp_path / "r.json")])[:3])


def test_a_compute_loss_override_may_read_its_inputs_after_super(tmp_path):
    seen = []

    class Mine(SeqFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            seen.append(int(inputs["labels"].ne(-100).sum()))  # the stock compute_loss popped them from its dict
            return loss

    Mine(bert(), settings(tmp_path), collator(), tokenised()).train()
    assert seen == [sum(len(w) for w, _ in SENTENCES) + 4]


def test_group_rates_use_the_constructors_optimizer_class(tmp_path):
    sgd = (torch.optim.SGD, {"momentum": 0.9})
    for extra in ({}, {"layer_decay": 0.8}, {"head_learning_rate": 1e-3}):
        trainer = SeqFTTrainer(
            bert(), settings(tmp_path, **extra), collator(), tokenised(), optimizer_cls_and_kwargs=sgd
        )
        optimizer = trainer.create_optimizer()
        assert type(optimizer) is torch.optim.SGD and optimizer.defaults["momentum"] == 0.9, extra
        assert (len(optimizer.param_groups) > 2) == bool(extra)  # seqft's groups, one per depth


class Tagger(nn.Module):
    """A model of the user's own: an embedding, two blocks, a head; no config LLRD could read depths from."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(200, 8)
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(2))
        self.head = nn.Linear(8, 7)

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        hidden = self.embed(input_ids)
        for block in self.blocks:
            hidden = torch.tanh(block(hidden))
        return TokenClassifierOutput(logits=self.head(hidden))


def test_llrd_on_a_model_of_ones_own_through_the_override_points(tmp_path, caplog):
    class Mine(SeqFTTrainer):
        def get_num_layers(self, model):
            return 2

        def get_layer_id(self, name, num_layers):
            if name.startswith("embed"):
                return 0
            return int(name.split(".")[1]) + 1 if name.startswith("blocks") else num_layers + 1

    args = settings(tmp_path, layer_decay=0.5, learning_rate=0.1, optim="adamw_torch")
    with pytest.raises(ValueError, match=r"Cannot tell how many transformer blocks Tagger has.*override get_num_lay"):
        SeqFTTrainer(Tagger(), args, collator(), tokenised()).create_optimizer()
    with caplog.at_level(logging.WARNING, logger="seqft"):
        trainer = Mine(Tagger(), args, collator(), tokenised())
    assert "seqft trains Tagger with its own loss (SeqFTTrainer.token_loss" in caplog.text  # not the model's
    rates = {g["layer_name"]: g["lr"] for g in trainer.create_optimizer().param_groups}
    assert rates["embeddings"] == pytest.approx(0.1 * 0.5**2) and rates["layer_00"] == pytest.approx(0.1 * 0.5)
    trainer.train()


def test_a_regression_head_trains_with_squared_error_of_the_whole_step(tmp_path):
    tok = tiny_tokenizer()
    texts = [" ".join(w) for w, _ in SENTENCES]
    data = Dataset.from_dict({"text": texts, "label": [float(i) for i in range(len(texts))]})
    data = data.map(lambda row: tok(row["text"]), remove_columns=["text"])
    losses = []
    for accumulation in (1, 2):
        torch.manual_seed(0)
        model = BertForSequenceClassification(tiny_bert_config(num_labels=1, hidden_dropout_prob=0.0))
        args = settings(tmp_path, batch=6 // accumulation, accumulation=accumulation, learning_rate=1e-3)
        losses.append(SeqFTTrainer(model, args, DataCollatorWithPadding(tok), data).train().training_loss)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)  # a float target no longer crashes cross-entropy


@pytest.mark.parametrize(
    "num_labels, labels",
    [
        (1, [1, 2, 3, 4, 5, 3]),  # integer targets: was a cross-entropy IndexError
        (1, [[0.5], [1.0], [2.5], [4.0], [0.0], [3.0]]),  # (B, 1) float targets: was binary cross-entropy
        (2, [[0.5, 3.0], [1.0, 2.0], [2.5, 0.0], [4.0, 1.0], [0.0, 0.0], [3.0, 3.0]]),  # was binary cross-entropy
    ],
)
def test_a_regression_config_gets_the_stock_squared_error(tmp_path, num_labels, labels):
    """problem_type 'regression' decides the loss, as in transformers' classifiers, whatever the targets' form."""
    tok = tiny_tokenizer()
    data = Dataset.from_dict({"text": [" ".join(w) for w, _ in SENTENCES], "label": labels})
    data = data.map(lambda row: tok(row["text"]), remove_columns=["text"])
    losses = []
    for cls in (Trainer, SeqFTTrainer):
        torch.manual_seed(0)
        model = BertForSequenceClassification(tiny_bert_config(num_labels=num_labels, problem_type="regression"))
        trainer = cls(model, settings(tmp_path, batch=3), DataCollatorWithPadding(tok), eval_dataset=data)
        losses.append(trainer.evaluate()["eval_loss"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)


def test_a_ready_optimizer_or_an_lr_in_its_kwargs_is_refused_with_group_rates(tmp_path):
    """Both used to drop layer_decay / head_learning_rate silently (one group at the optimiser's rate)."""
    model = bert()
    ready = (torch.optim.AdamW(model.parameters(), lr=1e-3), None)
    with pytest.raises(RecipeError, match="optimizers= passes a ready one, which would ignore them"):
        SeqFTTrainer(model, settings(tmp_path, layer_decay=0.8), collator(), tokenised(), optimizers=ready)
    with pytest.raises(RecipeError, match="optimizer_cls_and_kwargs sets lr = 0.5, but with layer_decay"):
        SeqFTTrainer(
            bert(), settings(tmp_path, head_learning_rate=1e-2), collator(), tokenised(),
            optimizer_cls_and_kwargs=(torch.optim.SGD, {"lr": 0.5}),
        )  # fmt: skip
    trainer = SeqFTTrainer(model, settings(tmp_path), collator(), tokenised(), optimizers=ready)  # no group rates
    assert trainer.create_optimizer() is ready[0]


def test_training_arguments_of_ones_own_are_refused_with_how_to_keep_them(tmp_path):
    import dataclasses

    @dataclasses.dataclass
    class MyArgs(TrainingArguments):
        my_flag: int = 3

    args = MyArgs(output_dir=str(tmp_path), my_flag=5, use_cpu=True, report_to="none")
    with pytest.raises(TypeError, match="fields my_flag a SeqFTConfig does not have. Derive MyArgs from seqft.SeqF"):
        SeqFTTrainer(bert(), args)  # was: SeqFTConfig.__init__() got an unexpected keyword argument 'my_flag'

    @dataclasses.dataclass
    class MyConfig(SeqFTConfig):
        my_flag: int = 3

    assert SeqFTTrainer(bert(), MyConfig(output_dir=str(tmp_path), my_flag=5, use_cpu=True)).args.my_flag == 5


def test_a_step_without_a_labelled_position_has_loss_zero_not_nan():
    logits = torch.randn(2, 3, 7, requires_grad=True)
    labels = torch.full((2, 3), -100)
    for count in (torch.tensor(0), 0, None):
        loss = SeqFTTrainer.token_loss({"logits": logits}, labels, count)
        loss.backward()
        assert loss.item() == 0.0 and torch.isfinite(logits.grad).all(), count


def test_model_init_models_get_the_eva_pass_the_first_model_got(tmp_path):
    """EVA ran once, in __init__, on the model train() then replaced with a new one from model_init: that one
    trained from a plain LoRA init, without a word."""
    spec = {"peft_type": "LORA", "r": 2, "target_modules": ["query", "value"], "init_lora_weights": "eva"}
    trainer = SeqFTTrainer(
        model_init=lambda: bert(),
        args=settings(tmp_path, learning_rate=1e-12),
        data_collator=collator(),
        train_dataset=tokenised(),
        peft_config=spec,
    )
    first = trainer.model
    trainer.train()
    assert trainer.model is not first
    adapted = next(m for m in trainer.model.modules() if "default" in getattr(m, "lora_A", {}))
    a = adapted.lora_A["default"].weight.detach()
    torch.testing.assert_close(a @ a.T, torch.eye(a.shape[0]), rtol=0, atol=1e-4)  # EVA's orthonormal rows


class MeanLossTrainer:
    """A `compute_loss` override of one's own that never calls super(): a per-batch mean, as in many tutorials."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = nn.functional.cross_entropy(outputs.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return (loss, outputs) if return_outputs else loss


class PlainTagger(nn.Module):
    """A model of one's own: no config, a forward without **kwargs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.head = nn.Embedding(len(tiny_tokenizer()), 8), nn.Linear(8, 7)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        return TokenClassifierOutput(logits=self.head(torch.tanh(self.emb(input_ids))))


def test_an_override_that_does_not_call_super_is_scaled_as_the_stock_trainer_scales_it(tmp_path):
    """seqft's compute_loss_func told the stock training_step that every loss was already divided for gradient
    accumulation, so an override returning its own per-batch mean trained with twice the loss under GA 2."""
    data = tokenised().select(range(8))
    results = {}
    for base in (Trainer, SeqFTTrainer):
        for accumulation in (1, 2):
            model = PlainTagger()
            before = model.head.weight.detach().clone()
            args = settings(tmp_path, cls=TrainingArguments, batch=8 // accumulation, accumulation=accumulation)
            trainer = type("Mine", (MeanLossTrainer, base), {})(model, args, collator(), data)
            loss = trainer.train().training_loss
            results[base.__name__, accumulation] = (loss, (model.head.weight - before).norm().item())
    for accumulation in (1, 2):
        stock, seqft = results["Trainer", accumulation], results["SeqFTTrainer", accumulation]
        assert seqft == pytest.approx(stock, rel=1e-5), accumulation
    assert results["SeqFTTrainer", 2][0] == pytest.approx(results["SeqFTTrainer", 1][0], rel=0.01)


def test_class_weights_on_a_model_without_a_config(tmp_path):
    args = settings(tmp_path, class_weights=[1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    trainer = SeqFTTrainer(PlainTagger(), args, collator(), tokenised())
    assert trainer.train().training_loss > 0
    with pytest.raises(RecipeError, match="'balanced' needs the number of labels .* PlainTagger has no config"):
        SeqFTTrainer(PlainTagger(), settings(tmp_path, class_weights="balanced"), collator(), tokenised())


def test_resuming_in_code_checks_the_checkpoint(tmp_path):
    """Only the recipe runner checked a checkpoint before resuming: in code, one without its optimizer and
    scheduler resumed with fresh ones, and `True` took the last checkpoint even when it was incomplete."""
    args = settings(
        tmp_path, max_steps=4, save_strategy="steps", save_steps=2, optim="adamw_torch", learning_rate=1e-3
    )
    SeqFTTrainer(bert(), args, collator(), tokenised()).train()
    out = tmp_path / "out-8-1"
    for name in ("optimizer.pt", "scheduler.pt"):
        (out / "checkpoint-4" / name).unlink()
    with pytest.raises(RecipeError, match="checkpoint-4' cannot be resumed from: no optimizer state .*; no scheduler"):
        SeqFTTrainer(bert(), args, collator(), tokenised()).train(resume_from_checkpoint=str(out / "checkpoint-4"))
    steps = []

    class Steps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)

    resumed = SeqFTTrainer(bert(), args, collator(), tokenised(), callbacks=[Steps()])
    resumed.train(resume_from_checkpoint=True)  # the last complete one, checkpoint-2: 2 steps remain
    assert steps == [3, 4]
