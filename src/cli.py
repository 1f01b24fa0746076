"""What every command shares: one-line user errors, argument parsing, and quiet Lightning logs."""

import argparse
import logging
import os
import select
import sys
import warnings
from collections.abc import Callable

from src.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is a one-line UserError instead of usage text and exit."""

    def error(self, message: str):
        raise UserError(self.prog, message)


def run_command(command: Callable[[], int]) -> int:
    """Run an entry point; a UserError becomes `error: <thing>: <what is wrong>` and exit status 2, Ctrl-C
    one line and 130, output piped to a reader that stopped early (`| head`) a quiet 141."""
    try:
        status = command()
        sys.stdout.flush()  # here, so that a reader that stopped early is caught below, not at exit
        return status
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        if not stdout_has_no_reader():  # another pipe: an --output FIFO whose reader died, say
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # for Python's own flush at exit
        return 141  # 128 + SIGPIPE, as a shell reports a command that signal ended
    except KeyboardInterrupt:  # outside training, which saves a checkpoint and says how to resume
        print("interrupted", file=sys.stderr)
        return 130


def stdout_has_no_reader() -> bool:
    """Whether standard output is a pipe whose reader has gone (`| head` read what it wanted)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (a replaced sys.stdout), no poll
        return False


def devices_value(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def limit_value(text: str) -> int | float:
    """Lightning's convention: an int is a number of batches, a float a fraction."""
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a batch count or a fraction, got {text!r}") from None


def quiet_lightning() -> None:
    """Our hardware summary replaces Lightning's device lines; silence only known noise."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.accelerators.cuda").setLevel(logging.WARNING)
    # Batches are sliced from in-memory tensors: worker processes would only add copying.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # Epoch metrics are synced by torchmetrics' compute() before they are logged, so Lightning's advice
    # to add sync_dist does not apply; and the one-process tester after DDP needs no training callbacks.
    warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")
    warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint need to be provided.*")
    # Each new run gets a fresh version_N directory, so a non-empty one means --resume, which is the point.
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
    # The training batches resume where Lightning's progress says the epoch stood (TrainBatches).
    warnings.filterwarnings("ignore", message=r".*ended before the epoch ended and your dataloader is not resumable.*")
    # Lightning 2.6's pytree helper uses what torch 2.14 deprecates; nothing for a user to do.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    # Lightning's all_gather (ValidationFigures under DDP) calls a torch function that torch now deprecates.
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.nn\.functional\.all_gather is deprecated.*")
