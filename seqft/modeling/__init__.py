"""CRF modelling: the pure-torch `CRF` and an encoder-agnostic `SeqFTCRFForTokenClassification`.

Importing this package registers the model with the Auto classes (`AutoConfig`, `AutoModelForTokenClassification`),
so `from_pretrained` and `pipeline(...)` resolve `model_type="seqft_crf"` checkpoints to these classes, and marks
both classes for `save_pretrained` to write `auto_map` and copy their code next to the weights: the checkpoint then
also loads without seqft, with `trust_remote_code=True`.
"""

from transformers import AutoConfig, AutoModelForTokenClassification

from .configuration_crf import SeqFTCRFConfig
from .crf import CRF, allowed_transitions
from .modeling_crf import SeqFTCRFForTokenClassification

AutoConfig.register(SeqFTCRFConfig.model_type, SeqFTCRFConfig, exist_ok=True)
AutoModelForTokenClassification.register(SeqFTCRFConfig, SeqFTCRFForTokenClassification, exist_ok=True)
SeqFTCRFConfig.register_for_auto_class("AutoConfig")
SeqFTCRFForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")

__all__ = ["CRF", "SeqFTCRFConfig", "SeqFTCRFForTokenClassification", "allowed_transitions"]
