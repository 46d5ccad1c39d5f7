"""The errors seqft reports to users: each names the recipe key, file or line at fault and how to fix it."""


class SeqFTError(Exception):
    """Base class; `seqft.train` prints these as one clean message and exits non-zero (no traceback)."""


class RecipeError(SeqFTError, ValueError):
    """A recipe or command-line value is unknown, of the wrong type, or out of range."""


class DataError(SeqFTError, ValueError):
    """Input data is missing, malformed, or inconsistent with the labels."""


class Interrupted(SeqFTError):
    """Training was stopped by a signal after saving a checkpoint: not finished, so no final outputs."""

    exit_status = 143  # 128 + SIGTERM, as a shell reports a process the signal ended


def other_head_size(err: RuntimeError, model_name_or_path: str, num_labels: int, hint: str = "") -> RecipeError | None:
    """The RecipeError for `from_pretrained`'s error on a fine-tuned classifier of another size than the data's
    labels (None for any other RuntimeError, to re-raise)."""
    if "ignore_mismatched_sizes" not in str(err) and "size mismatch" not in str(err):
        return None
    return RecipeError(
        f"'model_name_or_path' = {model_name_or_path!r} has a classifier for another number of labels than the "
        f"data's {num_labels}: set 'ignore_mismatched_sizes': true to train a new one.{hint}"
    )


def run_cli(run, argv=None) -> int:
    """Call `run(argv)`; a SeqFTError becomes one `seqft: error: ...` line on stderr and exit status 2 (an
    `Interrupted` run: `seqft: stopped: ...` and 143)."""
    import sys

    try:
        run(argv)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as a shell tool does
        import contextlib
        import os

        # no second error when Python flushes stdout at exit (a captured stdout has no file descriptor)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
    except Interrupted as err:
        print(f"seqft: stopped: {err}", file=sys.stderr)
        return err.exit_status
    except SeqFTError as err:
        print(f"seqft: error: {err}", file=sys.stderr)
        return 2
    return 0
