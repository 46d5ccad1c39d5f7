"""Configuration of `SeqFTCRFForTokenClassification`: any `AutoModel` encoder + linear head + CRF.

Imports only transformers: this file is copied into self-contained checkpoints (`auto_map`, `trust_remote_code`).
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

LABEL_SCHEMES = ("IOB2", "IOB1", "BIOES", "plain")


class SeqFTCRFConfig(PreTrainedConfig):
    r"""Configuration of an encoder-agnostic token classifier with a linear-chain CRF on top.

    Args:
        encoder_config (`PreTrainedConfig` or `dict`, *optional*):
            The encoder's configuration; any model type `AutoModel` knows (BERT, RoBERTa, DeBERTa-v2, ELECTRA,
            DistilBERT, XLM-R, ...). A dict is resolved through its `model_type` (default `"bert"`).
        label_scheme (`str`, *optional*, defaults to `"IOB2"`):
            Tagging scheme of `id2label`: `"IOB2"`, `"IOB1"`, `"BIOES"` or `"plain"` (no grammar). With
            `crf_constraints`, the CRF never decodes a path the scheme forbids.
        special_token_ids (`list[int]`, *optional*):
            Token ids the CRF skips (CLS/SEP/PAD/BOS/EOS, ...): the tokenizer's special ids except `[UNK]` (an
            unknown word is still a word). The CRF runs over the other attended tokens, in training and at
            inference.
        classifier_dropout (`float`, *optional*):
            Dropout before the linear head; defaults to the encoder's `classifier_dropout`, then its hidden dropout,
            then 0.1.
        crf_constraints (`bool`, *optional*, defaults to `True`):
            Whether to forbid the transitions `label_scheme` disallows (derived from `id2label` when the model is
            built; never stored in the weights).

    The CRF's parameters live in the model weights (`crf.transitions`, ...), never in this configuration.
    """

    model_type = "seqft_crf"
    sub_configs_defaults = {"encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder_config: dict | PreTrainedConfig | None = None
    label_scheme: str = "IOB2"
    special_token_ids: list[int] | None = None
    classifier_dropout: float | int | None = None
    crf_constraints: bool = True

    def __post_init__(self, **kwargs):
        # The base class resets the sub-configs' attention implementation; keep the one a given encoder config
        # already resolved (e.g. `encoder.config` of a loaded encoder) unless one is requested explicitly.
        encoder_attn = getattr(self.encoder_config, "_attn_implementation_internal", None)
        super().__post_init__(**kwargs)
        if encoder_attn is not None and kwargs.get("attn_implementation") is None:
            self.encoder_config._attn_implementation_internal = encoder_attn
        canonical = {scheme.lower(): scheme for scheme in LABEL_SCHEMES}
        if not isinstance(self.label_scheme, str) or self.label_scheme.lower() not in canonical:
            raise ValueError(f"label_scheme must be one of {list(LABEL_SCHEMES)}, got {self.label_scheme!r}")
        self.label_scheme = canonical[self.label_scheme.lower()]
        ids = [] if self.special_token_ids is None else list(self.special_token_ids)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ValueError(f"special_token_ids must be a list of ints, got {self.special_token_ids!r}")
        self.special_token_ids = ids
        if self.classifier_dropout is not None and not 0 <= self.classifier_dropout < 1:
            raise ValueError(f"classifier_dropout must be in [0, 1), got {self.classifier_dropout!r}")

    @property
    def hidden_size(self) -> int:
        return self.encoder_config.hidden_size

    @property
    def vocab_size(self) -> int:
        """The encoder's vocabulary size (peft's prompt methods look for the word embeddings by it)."""
        return self.encoder_config.vocab_size

    @vocab_size.setter
    def vocab_size(self, value: int) -> None:  # `resize_token_embeddings` sets it
        self.encoder_config.vocab_size = value

    @property
    def max_position_embeddings(self) -> int | None:
        return getattr(self.encoder_config, "max_position_embeddings", None)


__all__ = ["SeqFTCRFConfig"]
