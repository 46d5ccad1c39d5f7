"""seqft: fine-tune transformer encoders for sequence labelling with the Hugging Face Trainer."""

__version__ = "0.1.0"

from .configs import DataArguments, ModelArguments, SeqFTConfig  # noqa: E402
from .errors import DataError, RecipeError, SeqFTError  # noqa: E402
from .trainer import SeqFTTrainer  # noqa: E402

__all__ = [
    "DataArguments",
    "DataError",
    "ModelArguments",
    "RecipeError",
    "SeqFTConfig",
    "SeqFTError",
    "SeqFTTrainer",
]
