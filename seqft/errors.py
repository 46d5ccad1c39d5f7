"""The errors seqft reports to users: each names the recipe key, file or line at fault and how to fix it."""


class SeqFTError(Exception):
    """Base class; `seqft.train` prints these as one clean message and exits non-zero (no traceback)."""


class RecipeError(SeqFTError, ValueError):
    """A recipe or command-line value is unknown, of the wrong type, or out of range."""


class DataError(SeqFTError, ValueError):
    """Input data is missing, malformed, or inconsistent with the labels."""


def run_cli(run, argv=None) -> int:
    """Call `run(argv)`; a SeqFTError becomes one `seqft: error: ...` line on stderr and exit status 2."""
    import sys

    try:
        run(argv)
    except SeqFTError as err:
        print(f"seqft: error: {err}", file=sys.stderr)
        return 2
    return 0
