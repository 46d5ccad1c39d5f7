"""The errors seqft reports to users: each names the recipe key, file or line at fault and how to fix it."""


class SeqFTError(Exception):
    """Base class; `seqft.train` prints these as one clean message and exits non-zero (no traceback)."""


class RecipeError(SeqFTError, ValueError):
    """A recipe or command-line value is unknown, of the wrong type, or out of range."""


class DataError(SeqFTError, ValueError):
    """Input data is missing, malformed, or inconsistent with the labels."""
