"""`SeqFTCRFForTokenClassification`: any `AutoModel` encoder -> dropout -> linear `classifier` -> linear-chain `crf`.

Imports only torch, transformers and same-folder modules (relative imports), so that `save_pretrained` can copy this
file, `configuration_crf.py` and `crf.py` next to the weights: a checkpoint then loads without seqft installed,
with `AutoModelForTokenClassification.from_pretrained(path, trust_remote_code=True)`.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification, PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import TokenClassifierOutput

from .configuration_crf import SeqFTCRFConfig
from .crf import CRF, allowed_transitions

VITERBI_MARGIN = 1e-3
"""In eval-mode logits, how far (in log space) the Viterbi tag is lifted above its best competitor when needed."""


def _classifier_dropout(config: SeqFTCRFConfig) -> float:
    if config.classifier_dropout is not None:
        return config.classifier_dropout
    encoder_config = config.encoder_config
    for name in ("classifier_dropout", "hidden_dropout_prob", "hidden_dropout", "dropout"):
        value = getattr(encoder_config, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.1


def _drop_optional_pooler(encoder: nn.Module) -> None:
    """Same as `add_pooling_layer=False` in the library's `*ForTokenClassification` models.

    A pooler the loss never uses would make DDP fail on unused parameters and waste optimizer state. Only encoders
    whose constructor takes `add_pooling_layer` (BERT, RoBERTa, XLM-R, ...) are touched: their forward skips a `None`
    pooler.
    """
    optional = "add_pooling_layer" in inspect.signature(type(encoder).__init__).parameters
    if optional and getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None


class SeqFTCRFForTokenClassification(PreTrainedModel):
    r"""Token classifier with a linear-chain CRF over any `AutoModel` encoder.

    **Which tokens the CRF sees.** `crf_mask = attention_mask & ~isin(input_ids, config.special_token_ids)`: every
    attended, non-special token, in training and at inference. `special_token_ids` should list the structural
    tokens (CLS/SEP/PAD/BOS/EOS), not `[UNK]`: an unknown word is still a word that needs a tag. Labels are `-100` on the non-first subwords of a word
    (the `run_ner` convention); inside `crf_mask` those are *latent*: the loss marginalises over their tag instead of
    skipping the position. Training therefore scores the same token chain that decoding runs over, and decoding
    needs no word information, which makes the stock token-classification pipeline exact.

    **Loss.** The summed sequence negative log-likelihood divided by `num_items_in_batch` when the Trainer passes it
    (the number of labels != -100 in the whole accumulated, all-rank batch: `accepts_loss_kwargs = True` makes the
    loss independent of gradient accumulation and of the number of ranks), else divided by the number of observed
    labels of this batch. With `crf_constraints`, gold tags must follow `label_scheme`: each transition it forbids
    costs about 1e4 (`crf.DISALLOWED_SCORE`) in the summed loss. Except at the edges: a sequence whose first (last)
    gold tag is one the scheme forbids there, as a window or a truncation cut inside an entity leaves it (`I-X`
    first in IOB2, `B-X` last in BIOES), has that tag unobserved, so the path it marginalises over is valid.

    **Logits.**

    * `model.train()`: the emissions `(batch, seq_len, num_labels)`.
    * `model.eval()`: log posterior marginals from forward-backward, `log P(tag_t = k | x)`, whose argmax is the
      Viterbi tag at every `crf_mask` position, so the Trainer's argmax metrics and
      `pipeline("token-classification")` both see the Viterbi path. Where the Viterbi tag already leads every
      other tag by more than `VITERBI_MARGIN` in log space (nearly always), `softmax(logits)` is exactly the
      posterior marginal, so pipeline scores are calibrated confidences in (0, 1]. Elsewhere (posterior and Viterbi
      decoding disagree, or nearly tie) only the Viterbi tag's logit is raised to `VITERBI_MARGIN` above its best
      competitor, and the softmax gives it just over the competitor's probability. Positions outside `crf_mask`
      get `log_softmax(emissions)`.

    `decode(...)` returns the Viterbi tags, `marginals(...)` the posterior marginals, from the same inputs as
    `forward`. The CRF's transition scores are model weights (`crf.transitions`, `crf.start_transitions`,
    `crf.end_transitions`); its constraint masks are re-derived from `config.id2label`, `label_scheme` and
    `crf_constraints` whenever the model is built, never saved.
    """

    config_class = SeqFTCRFConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"
    accepts_loss_kwargs = True
    supports_gradient_checkpointing = True
    # The encoder checks its own attention implementation; the wrapper only needs not to veto it.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True

    def __init__(self, config: SeqFTCRFConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        if encoder is None:
            encoder = AutoModel.from_config(config.encoder_config)
        _drop_optional_pooler(encoder)
        # One shared encoder config object, so that later updates (e.g. the attention implementation) stay in sync.
        config.encoder_config._attn_implementation_internal = encoder.config._attn_implementation
        encoder.config = config.encoder_config
        self.encoder = encoder
        self.num_labels = config.num_labels
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.encoder_config.hidden_size, config.num_labels)
        self.crf = CRF(config.num_labels, *self._constraint_masks())

        parameters = inspect.signature(encoder.forward).parameters
        self._encoder_arguments = frozenset(parameters)
        self._encoder_takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        self.post_init()

    # ---------------------------------------------------------------------------------------------- construction

    @classmethod
    def load_encoder(
        cls, model_name_or_path: str, encoder_config: PretrainedConfig | None = None, **from_pretrained_kwargs
    ) -> tuple[PreTrainedModel, PreTrainedModel | None]:
        """The pretrained encoder in `model_name_or_path`, and the fine-tuned model it came from when the folder
        holds one whose head can carry on, else None: a model of this class (an earlier CRF run), or a softmax token
        classifier whose head is one linear layer on the encoder (BERT, RoBERTa, DeBERTa, ELECTRA, DistilBERT ...).
        `encoder_config`, when given, replaces the encoder's own configuration (not for an earlier CRF run, whose
        encoder is as it was trained)."""
        saved = AutoConfig.from_pretrained(model_name_or_path, **from_pretrained_kwargs)
        if saved.model_type == cls.config_class.model_type:
            trained = cls.from_pretrained(model_name_or_path, **from_pretrained_kwargs)
            return trained.encoder, trained
        if encoder_config is None and any(a.endswith("ForTokenClassification") for a in saved.architectures or []):
            trained = AutoModelForTokenClassification.from_pretrained(model_name_or_path, **from_pretrained_kwargs)
            children = {name for name, _ in trained.named_children()}
            simple = isinstance(getattr(trained, "classifier", None), nn.Linear) and children <= {
                trained.base_model_prefix,
                "dropout",
                "classifier",
            }
            return trained.base_model, trained if simple else None
        if encoder_config is not None:
            from_pretrained_kwargs = {**from_pretrained_kwargs, "config": encoder_config}
        return AutoModel.from_pretrained(model_name_or_path, **from_pretrained_kwargs), None

    @classmethod
    def from_encoder(
        cls,
        model_name_or_path: str,
        *,
        id2label: dict[int, str] | list[str],
        label_scheme: str,
        special_token_ids: list[int],
        classifier_dropout: float | None = None,
        crf_constraints: bool = True,
        encoder_config: PretrainedConfig | None = None,
        **from_pretrained_kwargs,
    ) -> SeqFTCRFForTokenClassification:
        """Wrap a pretrained encoder (`AutoModel.from_pretrained(model_name_or_path, **from_pretrained_kwargs)`).

        The classifier and the CRF are freshly initialised (transition scores near zero). For
        `special_token_ids` pass the tokenizer's structural special tokens, e.g.
        `[i for i in tokenizer.all_special_ids if i != tokenizer.unk_token_id]`.

        `encoder_config`, when given, replaces the encoder's own configuration (a recipe's `config_name`).
        `model_name_or_path` may also be a model of this class (training on from an earlier CRF run): with the same
        labels and scheme its classifier and CRF are kept, as `from_pretrained` keeps a softmax head; otherwise only
        its encoder is. A fine-tuned softmax token classifier with the same labels (and scheme, when its config
        says) keeps its classifier as the CRF's emission layer, under a new CRF.
        """
        if isinstance(id2label, (list, tuple)):
            id2label = dict(enumerate(id2label))
        id2label = {int(i): str(label) for i, label in id2label.items()}
        if sorted(id2label) != list(range(len(id2label))):
            raise ValueError(f"id2label keys must be 0..{len(id2label) - 1}, got {sorted(id2label)}")
        encoder, trained = cls.load_encoder(model_name_or_path, encoder_config, **from_pretrained_kwargs)
        # a fine-tuned model with these labels (and scheme; None: trained elsewhere, its config does not say): its
        # classifier, and an earlier CRF run's CRF, carry on
        same = trained is not None and {int(i): str(v) for i, v in trained.config.id2label.items()} == id2label
        kept = trained if same and getattr(trained.config, "label_scheme", None) in (label_scheme, None) else None
        config = SeqFTCRFConfig(
            encoder_config=encoder.config,
            id2label=id2label,
            label2id={label: i for i, label in id2label.items()},
            label_scheme=label_scheme,
            special_token_ids=[int(i) for i in special_token_ids],
            classifier_dropout=classifier_dropout,
            crf_constraints=crf_constraints,
        )
        model = cls(config, encoder=encoder)
        model.name_or_path = model.config._name_or_path = str(model_name_or_path)  # where the weights came from
        if kept is not None:
            model.classifier.load_state_dict(kept.classifier.state_dict())
            if isinstance(kept, cls):
                model.crf.load_state_dict(kept.crf.state_dict())
        model.classifier.to(device=encoder.device, dtype=encoder.dtype)
        model.crf.to(device=encoder.device)
        return model

    def _open_edges(self, labels: torch.Tensor, crf_mask: torch.Tensor) -> torch.Tensor:
        """`labels` with a first (last) tag inside `crf_mask` that the constraints forbid at a sequence's start (end)
        made unobserved (-100): a window cut inside an entity. Charged as a forbidden transition, it added about 1e4
        to the loss and pushed its emission up without end."""
        if not self.config.crf_constraints:
            return labels
        rows = torch.arange(labels.size(0), device=labels.device)
        present = crf_mask.any(dim=1)
        first = crf_mask.int().argmax(dim=1)  # shape: (batch,)
        last = crf_mask.size(1) - 1 - crf_mask.flip(1).int().argmax(dim=1)  # shape: (batch,)
        out = labels
        for index, allowed in ((first, self.crf.allowed_start), (last, self.crf.allowed_end)):
            tag = labels[rows, index]
            forbidden = present & (tag >= 0) & ~allowed[tag.clamp(min=0)]
            if forbidden.any():
                out = out.clone() if out is labels else out
                out[rows[forbidden], index[forbidden]] = -100
        return out

    def _constraint_masks(self) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        config = self.config
        if not config.crf_constraints:
            return None, None, None
        missing = [i for i in range(config.num_labels) if i not in config.id2label]
        if missing:
            raise ValueError(f"config.id2label must map every id 0..{config.num_labels - 1}; missing {missing}")
        labels = [config.id2label[i] for i in range(config.num_labels)]
        try:
            return allowed_transitions(labels, config.label_scheme)
        except ValueError as err:
            raise ValueError(
                f"{err}. Fix config.id2label, or set label_scheme='plain' or crf_constraints=False."
            ) from None

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The encoder's modules are dispatched to the encoder's own `_init_weights`; here: classifier and CRF.
        std = getattr(self.config.encoder_config, "initializer_range", None) or 0.02
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, CRF):
            init.normal_(module.transitions, mean=0.0, std=std)
            init.normal_(module.start_transitions, mean=0.0, std=std)
            init.normal_(module.end_transitions, mean=0.0, std=std)
            # Non-persistent buffers are never loaded: always re-derive them from the config.
            masks = self._constraint_masks()
            for name, mask in zip(("allowed", "allowed_start", "allowed_end"), masks):
                buffer = getattr(module, name)
                value = torch.ones_like(buffer, device="cpu") if mask is None else mask
                init.copy_(buffer, value.to(buffer.device))

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    # ----------------------------------------------------------------------------------------------------- forward

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> TokenClassifierOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Gold tags in `[0, num_labels)`; `-100` inside `crf_mask` is an unobserved (marginalised) tag. Positions
            outside `crf_mask` (special tokens, padding) are ignored whatever their label.
        num_items_in_batch (`int` or `torch.Tensor`, *optional*):
            Passed by the Trainer: the number of labels != -100 in the accumulated, all-rank batch. The loss is the
            summed negative log-likelihood divided by it; without it, by this batch's number of observed labels.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        emissions, crf_mask, outputs = self._emissions(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            **kwargs,
        )
        loss = None
        if labels is not None:
            labels = self._open_edges(labels.to(emissions.device), crf_mask)
            if num_items_in_batch is None:
                loss = self.crf(emissions, labels, crf_mask, reduction="token_mean")
            else:
                if isinstance(num_items_in_batch, torch.Tensor):
                    count = num_items_in_batch.to(emissions.device)
                    count = torch.where(count > 0, count, torch.ones_like(count))
                else:
                    count = num_items_in_batch if num_items_in_batch > 0 else 1
                # An accumulated batch without a single label gives a zero loss, not 0 / 0.
                loss = self.crf(emissions, labels, crf_mask, reduction="sum") / count
        logits = emissions if self.training else self._viterbi_logits(emissions, crf_mask)
        output = TokenClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )
        return output if return_dict else output.to_tuple()

    def decode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pad_value: int = -100,
        **kwargs,
    ) -> torch.Tensor:
        """Viterbi tags `(batch, seq_len)` over `crf_mask`; `pad_value` elsewhere.

        Takes the same inputs as `forward` (a Trainer batch can be passed as is: `labels` and `num_items_in_batch`
        are ignored). Like `forward`, it runs the encoder in the current train/eval mode.
        """
        kwargs.pop("labels", None)
        kwargs.pop("num_items_in_batch", None)
        emissions, crf_mask, _ = self._emissions(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs
        )
        return self.crf.decode(emissions, crf_mask, pad_value=pad_value)

    def marginals(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        log: bool = False,
        **kwargs,
    ) -> torch.Tensor:
        """Posterior marginals `(batch, seq_len, num_labels)` over `crf_mask` (0 elsewhere; `log=True`: log
        probabilities, `-inf` elsewhere). Same inputs as `decode`."""
        kwargs.pop("labels", None)
        kwargs.pop("num_items_in_batch", None)
        emissions, crf_mask, _ = self._emissions(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs
        )
        return self.crf.marginals(emissions, crf_mask, log=log)

    def crf_mask(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The positions the CRF runs over, `(batch, seq_len)` bool: attended and not one of `special_token_ids`.

        With `inputs_embeds` and no `input_ids`, special tokens cannot be recognised: only the attention mask counts.
        """
        if attention_mask is not None:
            mask = attention_mask.bool()
        elif input_ids is not None:
            mask = torch.ones_like(input_ids, dtype=torch.bool)
        elif inputs_embeds is not None:
            mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.bool, device=inputs_embeds.device)
        else:
            raise ValueError("crf_mask needs input_ids, attention_mask or inputs_embeds")
        if input_ids is not None and self.config.special_token_ids:
            special = torch.tensor(self.config.special_token_ids, dtype=input_ids.dtype, device=input_ids.device)
            mask = mask & ~torch.isin(input_ids, special)
        return mask

    # --------------------------------------------------------------------------------------------------- internals

    def _emissions(
        self,
        input_ids,
        attention_mask,
        token_type_ids,
        position_ids,
        inputs_embeds,
        output_hidden_states=None,
        output_attentions=None,
        **kwargs,
    ):
        encoder_inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds}
        # Only what the encoder's forward declares (DistilBERT has no token_type_ids) ...
        for name, value in (("token_type_ids", token_type_ids), ("position_ids", position_ids)):
            if value is not None and name in self._encoder_arguments:
                encoder_inputs[name] = value
        # ... while output flags may also travel through `**kwargs` (transformers' `TransformersKwargs`).
        for name, value in (
            ("output_hidden_states", output_hidden_states),
            ("output_attentions", output_attentions),
            ("return_dict", True),
        ):
            if value is not None and (name in self._encoder_arguments or self._encoder_takes_kwargs):
                encoder_inputs[name] = value
        outputs = self.encoder(**encoder_inputs, **kwargs)
        sequence_output = outputs[0]  # shape: (batch, seq_len, hidden)
        emissions = self.classifier(self.dropout(sequence_output))  # shape: (batch, seq_len, num_labels)
        mask = self.crf_mask(input_ids, attention_mask, inputs_embeds)  # shape: (batch, seq_len)
        return emissions, mask.to(emissions.device), outputs

    def _viterbi_logits(self, emissions: torch.Tensor, crf_mask: torch.Tensor) -> torch.Tensor:
        """Log posterior marginals whose strict argmax is the Viterbi tag on `crf_mask` (see the class docstring)."""
        log_marginals = self.crf.marginals(emissions, crf_mask, log=True)  # shape: (batch, seq_len, num_labels)
        on = crf_mask.unsqueeze(-1)  # shape: (batch, seq_len, 1)
        logits = torch.where(on, log_marginals, emissions.to(log_marginals.dtype).log_softmax(-1))
        viterbi = self.crf.decode(emissions, crf_mask, pad_value=0).unsqueeze(-1)  # shape: (batch, seq_len, 1)
        viterbi_logit = logits.gather(-1, viterbi)  # shape: (batch, seq_len, 1)
        best_other = logits.scatter(-1, viterbi, float("-inf")).amax(-1, keepdim=True)  # (batch, seq_len, 1)
        lifted = torch.maximum(viterbi_logit, best_other + VITERBI_MARGIN)
        return torch.where(on, logits.scatter(-1, viterbi, lifted), logits)


__all__ = ["SeqFTCRFForTokenClassification"]
