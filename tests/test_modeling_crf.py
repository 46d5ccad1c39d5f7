"""SeqFTCRFForTokenClassification: save/load, remote code, pipeline parity, loss normalisation, Trainer wiring."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import SENTENCES, save_tiny_bert, tiny_bert_config, tiny_tokenizer
from safetensors import safe_open
from transformers import (
    AutoModel,
    AutoModelForTokenClassification,
    DistilBertConfig,
    RobertaConfig,
    pipeline,
)

from seqft.modeling import CRF, SeqFTCRFConfig, SeqFTCRFForTokenClassification, allowed_transitions

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
LABEL2ID = {label: i for i, label in enumerate(LABELS)}
TEXTS = ["johns smith lives in new yorked", "mary visited paris with the united nations team", "berlin"]
# Structural special tokens only: [UNK] stands for a word and must stay in the CRF chain.
SPECIAL_IDS = [i for i in tiny_tokenizer().all_special_ids if i != tiny_tokenizer().unk_token_id]


def no_dropout_bert(**kwargs):
    return tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kwargs)


def encoder_config(family: str):
    vocab_size = len(tiny_tokenizer())
    if family == "bert":
        return no_dropout_bert()
    if family == "distilbert":
        return DistilBertConfig(
            vocab_size=vocab_size,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=37,
            max_position_embeddings=64,
            dropout=0.0,
        )
    if family == "roberta":
        return RobertaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=70,
            pad_token_id=0,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    raise ValueError(family)


def make_model(family: str = "bert", seed: int = 0, **config_kwargs) -> SeqFTCRFForTokenClassification:
    torch.manual_seed(seed)
    config = SeqFTCRFConfig(
        encoder_config=encoder_config(family),
        id2label=dict(enumerate(LABELS)),
        label2id=LABEL2ID,
        label_scheme="IOB2",
        special_token_ids=SPECIAL_IDS,
        classifier_dropout=0.0,
        **config_kwargs,
    )
    return SeqFTCRFForTokenClassification(config)


def spice_up(model: SeqFTCRFForTokenClassification, seed: int = 0, scale: float = 2.0):
    """Random, non-trivial transition and head weights, so that the CRF actually matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in (model.crf.transitions, model.crf.start_transitions, model.crf.end_transitions):
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=generator))
    return model


def toy_batch(texts=TEXTS):
    """Tokenised texts with run_ner-style labels: a random valid IOB2 word tag on the first subword, -100 elsewhere."""
    tokenizer = tiny_tokenizer()
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    generator = torch.Generator().manual_seed(1)
    allowed, allowed_start, _ = allowed_transitions(LABELS, "IOB2")
    labels = torch.full(batch["input_ids"].shape, -100)
    for row in range(len(texts)):
        previous_word, previous_tag = None, None
        for col, word in enumerate(batch.word_ids(row)):
            if word is not None and word != previous_word:
                options = allowed_start if previous_tag is None else allowed[previous_tag]
                choices = options.nonzero().flatten()
                previous_tag = int(choices[torch.randint(len(choices), (1,), generator=generator)])
                labels[row, col] = previous_tag
            previous_word = word
    return dict(batch), labels


# ---------------------------------------------------------------------------------------------------- structure


def test_structure_config_and_auto_registration():
    model = make_model()
    names = dict(model.named_children())
    assert {"encoder", "dropout", "classifier", "crf"} <= set(names)
    assert isinstance(model.crf, CRF) and isinstance(model.classifier, torch.nn.Linear)
    assert model.encoder.pooler is None  # no unused parameters (DDP)
    assert SeqFTCRFForTokenClassification.accepts_loss_kwargs is True
    assert model.base_model is model.encoder
    assert model.get_input_embeddings() is model.encoder.embeddings.word_embeddings
    # constraints derived from id2label + scheme, not stored anywhere
    assert not model.crf.allowed[LABEL2ID["O"], LABEL2ID["I-PER"]]
    assert not model.crf.allowed_start[LABEL2ID["I-LOC"]]
    assert not any(name.startswith("crf.allowed") for name in model.state_dict())
    assert model.crf.transitions.abs().max() < 0.2  # initialised near zero
    unconstrained = make_model(crf_constraints=False)
    assert unconstrained.crf.allowed.all() and unconstrained.crf.allowed_start.all()


def test_bad_labels_for_the_scheme_fail_at_construction():
    config = SeqFTCRFConfig(
        encoder_config=no_dropout_bert(), id2label={0: "O", 1: "B-PER", 2: "E-PER"}, label_scheme="IOB2"
    )
    with pytest.raises(
        ValueError, match=r"label 'E-PER' is not a valid IOB2 tag.*label_scheme='plain' or crf_constraints=False"
    ):
        SeqFTCRFForTokenClassification(config)
    with pytest.raises(
        ValueError, match=r"label_scheme must be one of \['IOB2', 'IOB1', 'BIOES', 'plain'\], got 'BILOU'"
    ):
        SeqFTCRFConfig(label_scheme="BILOU")
    assert SeqFTCRFConfig(label_scheme="bioes").label_scheme == "BIOES"


@pytest.mark.parametrize("family", ["bert", "distilbert", "roberta"])
def test_save_load_roundtrip_gives_identical_outputs(family, tmp_path):
    model = spice_up(make_model(family)).eval()
    batch, labels = toy_batch()
    with torch.no_grad():
        expected = model(**batch, labels=labels)
    model.save_pretrained(tmp_path)

    config = json.loads((tmp_path / "config.json").read_text())
    assert (
        config["model_type"] == "seqft_crf"
        and config["encoder_config"]["model_type"] == model.encoder.config.model_type
    )
    assert config["auto_map"] == {
        "AutoConfig": "configuration_crf.SeqFTCRFConfig",
        "AutoModelForTokenClassification": "modeling_crf.SeqFTCRFForTokenClassification",
    }
    assert "transition" not in (tmp_path / "config.json").read_text()  # CRF state lives in the weights only
    assert {"modeling_crf.py", "configuration_crf.py", "crf.py"} <= set(os.listdir(tmp_path))
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as weights:
        keys = set(weights.keys())
    assert {"crf.transitions", "crf.start_transitions", "crf.end_transitions", "classifier.weight"} <= keys
    assert not any("allowed" in key or "pooler" in key for key in keys)

    loaded = AutoModelForTokenClassification.from_pretrained(tmp_path)
    assert type(loaded) is SeqFTCRFForTokenClassification and not loaded.training
    for name in ("transitions", "start_transitions", "end_transitions"):
        assert torch.equal(getattr(loaded.crf, name), getattr(model.crf, name))
    for name in ("allowed", "allowed_start", "allowed_end"):  # re-derived, not garbage from an uninitialised buffer
        assert torch.equal(getattr(loaded.crf, name), getattr(model.crf, name))
    with torch.no_grad():
        actual = loaded(**batch, labels=labels)
    torch.testing.assert_close(actual.logits, expected.logits, rtol=0, atol=0)
    torch.testing.assert_close(actual.loss, expected.loss, rtol=0, atol=0)


def test_distilbert_ignores_token_type_ids():
    model = make_model("distilbert").eval()
    batch, labels = toy_batch()
    assert "token_type_ids" in batch
    with torch.no_grad():
        with_types = model(**batch, labels=labels)
        without = model(**{k: v for k, v in batch.items() if k != "token_type_ids"}, labels=labels)
    torch.testing.assert_close(with_types.logits, without.logits)


def test_from_encoder_keeps_pretrained_weights(tmp_path):
    save_tiny_bert(tmp_path)
    model = SeqFTCRFForTokenClassification.from_encoder(
        str(tmp_path), id2label=LABELS, label_scheme="IOB2", special_token_ids=SPECIAL_IDS
    )
    reference = AutoModel.from_pretrained(tmp_path).state_dict()
    state = model.encoder.state_dict()
    assert state and all(torch.equal(value, reference[key]) for key, value in state.items())
    assert model.config.id2label == dict(enumerate(LABELS)) and model.config.label2id == LABEL2ID
    assert model.config.special_token_ids == SPECIAL_IDS
    assert model.config.encoder_config._attn_implementation is not None
    assert model.crf.transitions.abs().max() < 0.2 and model.crf.transitions.abs().sum() > 0
    assert not model.crf.allowed[LABEL2ID["B-LOC"], LABEL2ID["I-PER"]]


def test_from_encoder_keeps_a_fine_tuned_softmax_classifier_with_the_same_labels(tmp_path):
    """A CRF put on a fine-tuned softmax tagger started its emission layer from scratch, throwing the trained rows
    away; with the same labels (and scheme, where the config says) they now carry on, under a new CRF."""
    from transformers import BertForTokenClassification

    torch.manual_seed(3)
    tagger = BertForTokenClassification(
        tiny_bert_config(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id=LABEL2ID)
    )
    tagger.config.label_scheme = "IOB2"
    tagger.save_pretrained(tmp_path / "tagger")

    def build(labels=LABELS, scheme="IOB2"):
        return SeqFTCRFForTokenClassification.from_encoder(
            str(tmp_path / "tagger"), id2label=labels, label_scheme=scheme, special_token_ids=SPECIAL_IDS
        )

    model = build()
    assert torch.equal(model.classifier.weight, tagger.classifier.weight)
    assert torch.equal(model.classifier.bias, tagger.classifier.bias)
    reference = tagger.bert.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in model.encoder.state_dict().items())
    assert model.crf.transitions.abs().max() < 0.2  # the CRF is new
    for other in (build(LABELS[::-1]), build(scheme="IOB1")):  # other labels, or another scheme: a new classifier
        assert not torch.equal(other.classifier.weight, tagger.classifier.weight[: other.num_labels])
        assert all(torch.equal(value, reference[key]) for key, value in other.encoder.state_dict().items())


def test_a_gold_path_cut_inside_an_entity_is_open_at_that_edge():
    """Windows (and truncation) cut sentences between words, inside entities too: a window's gold path may start
    with I-X (IOB2) or end with B-X (BIOES). Charged as forbidden, each added about 1e4 to the loss (an audit saw a
    train_loss of 15.5 against 0.18 without windows). That edge tag is now unobserved; inside, a forbidden
    transition still costs DISALLOWED_SCORE."""
    model = make_model().eval()
    batch = tiny_tokenizer()(["john smith lives"], return_tensors="pt")  # [CLS] john smith lives [SEP]
    O, B, I = (LABEL2ID[t] for t in ("O", "B-PER", "I-PER"))  # noqa: E741

    def loss(tags, **kwargs):
        labels = torch.tensor([[-100, *tags, -100]])
        return model(**batch, labels=labels, num_items_in_batch=3, **kwargs).loss.item()

    assert loss([I, I, O]) == pytest.approx(loss([-100, I, O]))  # starts inside an entity: open start
    assert loss([I, I, O]) < 100
    assert loss([O, I, O]) > 1000  # a forbidden transition inside the path is still charged
    bioes_labels = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    torch.manual_seed(0)
    bioes = SeqFTCRFForTokenClassification(
        SeqFTCRFConfig(
            encoder_config=no_dropout_bert(),
            id2label=dict(enumerate(bioes_labels)),
            label_scheme="BIOES",
            special_token_ids=SPECIAL_IDS,
            classifier_dropout=0.0,
        )
    ).eval()

    def bioes_loss(tags):
        labels = torch.tensor([[-100, *tags, -100]])
        return bioes(**batch, labels=labels, num_items_in_batch=3).loss.item()

    assert (
        bioes_loss([0, 1, 2]) == pytest.approx(bioes_loss([0, 1, -100])) and bioes_loss([0, 1, 2]) < 100
    )  # ends in one
    assert bioes_loss([2, 3, 0]) == pytest.approx(bioes_loss([-100, 3, 0]))


def test_token_embeddings_resize_and_reload(tmp_path):
    """`resize_token_embeddings` (after adding tokens to the tokenizer) stopped half-way: the config's vocab_size
    was read-only, with the embeddings already resized."""
    model = make_model()
    size = model.config.vocab_size
    model.resize_token_embeddings(size + 3)
    assert model.config.vocab_size == model.config.encoder_config.vocab_size == size + 3
    assert model.get_input_embeddings().weight.shape[0] == size + 3
    model.save_pretrained(tmp_path)
    loaded = AutoModelForTokenClassification.from_pretrained(tmp_path)
    ids = torch.tensor([[1, size + 2, 5]])
    model.eval()
    torch.testing.assert_close(loaded.eval()(input_ids=ids).logits, model(input_ids=ids).logits)


# ------------------------------------------------------------------------------------------------- CRF positions


def test_crf_skips_special_tokens_and_padding_and_marginalises_subwords():
    model = spice_up(make_model()).eval()
    batch, labels = toy_batch(TEXTS + ["zorro visited paris"])
    tokenizer = tiny_tokenizer()
    assert (batch["input_ids"] == tokenizer.unk_token_id).any()
    special = torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id])
    expected_mask = batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], special)
    assert torch.equal(model.crf_mask(batch["input_ids"], batch["attention_mask"]), expected_mask)
    with torch.no_grad():
        tags = model.decode(**batch, labels=labels)  # a Trainer batch can be passed as is
    assert torch.all((tags == -100) == ~expected_mask)
    assert torch.all(tags[:, 0] == -100)  # [CLS]

    # Non-first subwords (-100 inside crf_mask) are latent: they are part of the chain, not skipped.
    model.train()
    emissions = model(**batch).logits
    latent_inside = expected_mask & (labels == -100)
    assert latent_inside.any()
    full = model.crf(emissions, labels, expected_mask, reduction="sum")
    skipped = model.crf(emissions, labels, expected_mask & (labels != -100), reduction="sum")
    assert not torch.allclose(full, skipped)


def test_loss_is_summed_nll_over_num_items_in_batch():
    model = spice_up(make_model()).train()
    batch, labels = toy_batch()
    out = model(**batch, labels=labels, num_items_in_batch=torch.tensor(17))
    mask = model.crf_mask(batch["input_ids"], batch["attention_mask"])
    nll = model.crf(out.logits, labels, mask, reduction="sum")
    torch.testing.assert_close(out.loss, nll / 17)
    count = int((labels != -100).sum())
    default = model(**batch, labels=labels).loss
    torch.testing.assert_close(default, nll / count)
    assert model(**batch, labels=labels, num_items_in_batch=count).loss.item() == pytest.approx(default.item())
    nothing = torch.full_like(labels, -100)  # an accumulated batch without labels: zero loss, not 0 / 0
    assert model(**batch, labels=nothing, num_items_in_batch=torch.tensor(0)).loss.abs().item() < 1e-4
    assert model(**batch, labels=nothing, num_items_in_batch=0).loss.abs().item() < 1e-4
    loss, logits = model(**batch, labels=labels, return_dict=False)
    torch.testing.assert_close(loss, default)
    assert logits.shape == (*labels.shape, len(LABELS))


def test_gradient_accumulation_invariance():
    """Two half batches, each divided by the total label count, sum to the full-batch gradient."""
    model = spice_up(make_model()).train()  # no dropout anywhere
    texts = [words for words, _ in SENTENCES[:4]]
    batch, labels = toy_batch([" ".join(words).lower() for words in texts])
    total = (labels != -100).sum()

    def grads(batches):
        model.zero_grad()
        for inputs, target in batches:
            model(**inputs, labels=target, num_items_in_batch=total).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    full = grads([(batch, labels)])
    halves = []
    for rows in (slice(0, 2), slice(2, 4)):
        inputs = {key: value[rows] for key, value in batch.items()}
        keep = int(inputs["attention_mask"].sum(1).max())  # re-pad each half to its own length
        halves.append(({key: value[:, :keep] for key, value in inputs.items()}, labels[rows, :keep]))
    accumulated = grads(halves)
    assert full.keys() == accumulated.keys() and "crf.transitions" in full
    for name in full:
        torch.testing.assert_close(accumulated[name], full[name], rtol=1e-4, atol=1e-6, msg=name)


def test_optimizer_steps_move_the_crf():
    model = make_model().train()
    batch, labels = toy_batch()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for name in ("crf.transitions", "crf.start_transitions", "crf.end_transitions", "classifier.weight"):
        assert not torch.equal(before[name], dict(model.named_parameters())[name]), name
    # transitions the scheme forbids get no gradient: they stay at their initial value
    forbidden = ~model.crf.allowed
    assert torch.equal(model.crf.transitions[forbidden], before["crf.transitions"][forbidden])


def test_gradient_checkpointing_trains():
    model = make_model().train()
    model.activation_checkpointing_enable()
    batch, labels = toy_batch()
    model(**batch, labels=labels).loss.backward()
    assert model.crf.transitions.grad is not None


# ---------------------------------------------------------------------------------------------- eval-mode logits


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eval_logits_argmax_is_viterbi_and_softmax_is_the_posterior(seed):
    model = spice_up(make_model(seed=seed), seed=seed, scale=3.0).eval()
    batch, labels = toy_batch()
    with torch.no_grad():
        logits = model(**batch, labels=labels).logits
        viterbi = model.decode(**batch)
        marginals = model.marginals(**batch)
    mask = model.crf_mask(batch["input_ids"], batch["attention_mask"])
    assert torch.equal(logits.argmax(-1)[mask], viterbi[mask])
    probs = logits.softmax(-1)
    assert torch.all(torch.isfinite(logits))
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]))
    # where the posterior already ranks the Viterbi tag first, the scores are exactly the marginals
    agree = mask & (marginals.argmax(-1) == viterbi)
    torch.testing.assert_close(probs[agree], marginals[agree], rtol=1e-4, atol=1e-6)
    assert agree.any()


def test_eval_logits_when_viterbi_and_posterior_disagree():
    """Search random models for positions where max-marginal and Viterbi tags differ; argmax must still be Viterbi."""
    disagreements = 0
    batch, _ = toy_batch()
    mask = None
    for seed in range(12):
        model = spice_up(make_model(seed=seed, crf_constraints=False), seed=seed, scale=1.0).eval()
        with torch.no_grad():
            model.classifier.weight.mul_(0.05)  # flat emissions: the transitions decide
            logits = model(**batch).logits
            viterbi = model.decode(**batch)
            marginals = model.marginals(**batch)
        mask = model.crf_mask(batch["input_ids"], batch["attention_mask"])
        assert torch.equal(logits.argmax(-1)[mask], viterbi[mask])
        differ = mask & (marginals.argmax(-1) != viterbi)
        disagreements += int(differ.sum())
        probs = logits.softmax(-1)
        picked = probs.gather(-1, viterbi.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        assert torch.all(picked[differ] > marginals.gather(-1, viterbi.clamp(min=0).unsqueeze(-1)).squeeze(-1)[differ])
    assert disagreements > 0


def test_trainer_predictions_are_viterbi_paths(tmp_path):
    from datasets import Dataset
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    model = spice_up(make_model())
    tokenizer = tiny_tokenizer()
    batch, labels = toy_batch()
    rows = [
        {"input_ids": ids[mask.bool()].tolist(), "labels": lab[mask.bool()].tolist()}
        for ids, mask, lab in zip(batch["input_ids"], batch["attention_mask"], labels)
    ]
    dataset = Dataset.from_list(rows * 2)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        per_device_eval_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=2,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    seen = []
    original_forward = model.forward

    def spy(*a, **kw):
        seen.append(kw.get("num_items_in_batch"))
        return original_forward(*a, **kw)

    model.forward = spy
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForTokenClassification(tokenizer),
    )
    before = model.crf.transitions.detach().clone()
    trainer.train()
    assert not torch.equal(before, model.crf.transitions)
    assert seen and all(n is not None for n in seen)  # accepts_loss_kwargs: the Trainer normalises, not rescales

    prediction = trainer.predict(dataset.select(range(3)))
    model.eval()
    with torch.no_grad():
        expected = model.decode(**batch)
    predicted = torch.from_numpy(prediction.predictions).argmax(-1)
    mask = model.crf_mask(batch["input_ids"], batch["attention_mask"])
    width = min(predicted.size(1), mask.size(1))
    assert torch.equal(predicted[:, :width][mask[:, :width]], expected[:, :width][mask[:, :width]])


# ----------------------------------------------------------------------------------- checkpoints without seqft


def test_checkpoint_loads_without_seqft_via_trust_remote_code(tmp_path):
    model_dir = tmp_path / "model"
    model = spice_up(make_model()).eval()
    model.save_pretrained(model_dir)
    batch, labels = toy_batch()
    torch.save({"batch": batch, "labels": labels}, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = model(**batch, labels=labels)

    script = textwrap.dedent(
        f"""
        import importlib.abc, json, sys

        class BlockSeqFT(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "seqft" or name.startswith("seqft."):
                    raise ImportError("seqft must not be needed to load this checkpoint")

        sys.meta_path.insert(0, BlockSeqFT())
        import torch
        from transformers import AutoModelForTokenClassification

        torch.set_num_threads(1)
        model = AutoModelForTokenClassification.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
        inputs = torch.load({str(tmp_path / "inputs.pt")!r})
        with torch.no_grad():
            out = model(**inputs["batch"], labels=inputs["labels"])
        torch.save({{"logits": out.logits, "loss": out.loss, "transitions": model.crf.transitions.detach(),
                     "allowed": model.crf.allowed}}, {str(tmp_path / "outputs.pt")!r})
        print(json.dumps({{"module": type(model).__module__, "seqft_loaded": "seqft" in sys.modules}}))
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-4000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info == {"module": info["module"], "seqft_loaded": False}
    assert info["module"].startswith("transformers_modules.") and info["module"].endswith("modeling_crf")
    outputs = torch.load(tmp_path / "outputs.pt")
    torch.testing.assert_close(outputs["logits"], expected.logits, rtol=0, atol=0)
    torch.testing.assert_close(outputs["loss"], expected.loss, rtol=0, atol=0)
    assert torch.equal(outputs["transitions"], model.crf.transitions)
    assert torch.equal(outputs["allowed"], model.crf.allowed)


# --------------------------------------------------------------------------------------------- pipeline parity


def group_word_entities(words: list[tuple[int, int]], tags: list[str]) -> list[tuple[str, int, int]]:
    """Spans from word-level tags with the pipeline's grouping rule (a B- or a change of type opens a group)."""
    spans = []
    for (start, end), tag in zip(words, tags):
        bio, _, entity = tag.partition("-") if tag != "O" else ("O", "", "O")
        if spans and spans[-1][0] == entity and bio != "B":
            spans[-1][2] = end
        else:
            spans.append([entity, start, end])
    return [(entity, start, end) for entity, start, end in spans if entity != "O"]


@pytest.mark.parametrize("seed", [0, 3])
def test_pipeline_matches_viterbi_on_first_subwords(seed, tmp_path):
    model = spice_up(make_model(seed=seed), seed=seed).eval()
    tokenizer = tiny_tokenizer()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    ner = pipeline("token-classification", model=str(tmp_path), aggregation_strategy="first", device="cpu")

    found_entities = 0
    for text in TEXTS + ["zorro and johns visited paris"]:  # zorro is [UNK]
        encoding = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            tags = model.decode(**encoding)[0]
            probs = model(**encoding).logits[0].softmax(-1)
        word_ids = encoding.word_ids(0)
        firsts = [i for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        assert len(firsts) == len(words)
        word_tags = [LABELS[int(tags[i])] for i in firsts]
        expected = group_word_entities(words, word_tags)

        entities = ner(text)
        assert [(e["entity_group"], e["start"], e["end"]) for e in entities] == expected
        found_entities += len(entities)
        for entity in entities:
            assert entity["word"] == text[entity["start"] : entity["end"]]
            assert 0 < float(entity["score"]) <= 1
            members = [i for i, (start, end) in zip(firsts, words) if entity["start"] <= start < entity["end"]]
            score = torch.stack([probs[i, tags[i]] for i in members]).mean()
            assert float(entity["score"]) == pytest.approx(float(score), rel=1e-5)
    assert found_entities > 0
