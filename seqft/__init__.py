"""seqft: fine-tune transformer encoders for sequence labelling with the Hugging Face Trainer."""

__version__ = "0.1.0"

from .configs import DataArguments, ModelArguments, SeqFTConfig  # noqa: E402
from .errors import DataError, RecipeError, SeqFTError  # noqa: E402
from .modeling import CRF, SeqFTCRFConfig, SeqFTCRFForTokenClassification  # noqa: E402  (registers Auto classes)
from .trainer import SeqFTTrainer  # noqa: E402

__all__ = [
    "CRF",
    "SeqFTCRFConfig",
    "SeqFTCRFForTokenClassification",
    "DataArguments",
    "DataError",
    "ModelArguments",
    "RecipeError",
    "SeqFTConfig",
    "SeqFTError",
    "SeqFTTrainer",
]
