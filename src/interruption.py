"""Stopping a run with Ctrl-C or SIGTERM so that `--resume` continues it as if it had never stopped."""

import signal
import sys
import threading
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

BATCHES_BETWEEN_DDP_CHECKS = 20
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SaveOnInterrupt(pl.Callback):
    """Ctrl-C or SIGTERM: stop at the next training batch's end (or the epoch's end) and save last.ckpt there;
    with several processes, within BATCHES_BETWEEN_DDP_CHECKS batches. In the epoch where training ends, a
    request at or after its end lets training finish; train.py then skips the final test.

    Python's KeyboardInterrupt comes wherever the code happens to be, and left the state half-updated: batch
    norm's running statistics had counted a batch whose step never ran, an epoch's end had half run, or
    validation stopped between batches, which Lightning's restart then skipped. Lightning's own SIGTERM
    handling stops at a batch boundary but lets each DDP process stop at its own, so that the others wait
    for it forever (Lightning issue #20806). Here either signal only records a request; the processes agree
    on it at a batch's end and stop together. A second Ctrl-C stops at once and saves nothing: last.ckpt
    keeps the previous clean state.

    Other exceptions save nothing either: weights after a failure (a NaN loss, say) must not replace a good
    checkpoint. Lightning's OnExceptionCheckpoint saves on every exception and deletes its file at teardown."""

    def __init__(self, checkpoint_dir: Path):
        self.path = checkpoint_dir / "last.ckpt"
        self.saved = False
        self.stop_requested = False
        self._handlers_before_fit: dict = {}
        self._batches_between_checks = 1

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Across processes the check is a collective, which waits for the slowest one: every batch, it cost
        # DDP on 2 CPU processes a quarter of its speed.
        self._batches_between_checks = 1 if trainer.world_size == 1 else BATCHES_BETWEEN_DDP_CHECKS
        if stage == "fit" and threading.current_thread() is threading.main_thread():
            self._handlers_before_fit = {signum: signal.getsignal(signum) for signum in SIGNALS}

    # Lightning installs its SIGTERM handler after on_fit_start (and restores the handlers it found at its
    # teardown); these hooks come after that.
    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._take_over_signals(trainer)

    def on_train_start(self, trainer, pl_module) -> None:
        self._take_over_signals(trainer)

    def _take_over_signals(self, trainer) -> None:
        if self.stop_requested or not self._handlers_before_fit:
            return
        if trainer.received_sigterm:  # a SIGTERM before now: Lightning would stop at its own boundary
            self.stop_requested = True
            trainer._signal_connector.received_sigterm = False

        def request_stop(signum, frame) -> None:
            self.stop_requested = True
            if signum == signal.SIGINT:
                signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once
                if trainer.is_global_zero:
                    print(
                        "\nstopping at the next batch boundary to save a checkpoint; Ctrl-C again stops at once without saving",
                        file=sys.stderr,
                    )

        for signum in SIGNALS:
            signal.signal(signum, request_stop)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # The last batch's check is the epoch end's.
        if (batch_idx + 1) % self._batches_between_checks == 0 and batch_idx + 1 < trainer.num_training_batches:
            self._stop_if_requested(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Not when training ends here anyway (early stopping decided it before this hook runs).
        if trainer.current_epoch + 1 < trainer.max_epochs and not trainer.should_stop:
            self._stop_if_requested(trainer)

    def _stop_if_requested(self, trainer) -> None:
        # Any process's request stops them all. One process only: no collective, nothing read from a device.
        if trainer.strategy.reduce_boolean_decision(self.stop_requested, all=False):
            # Lightning's stop at a boundary: its loop raises SIGTERMException once every hook of this
            # batch (or of the epoch's end) has run. A private attribute: tests/test_robustness.py fails if
            # a Lightning upgrade renames it.
            trainer._signal_connector.received_sigterm = True

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # Back to the handlers from before fit first: a second Ctrl-C during the save below escapes
        # Lightning's teardown, which would otherwise restore them.
        for signum, handler in self._handlers_before_fit.items():
            signal.signal(signum, handler)
        # Only at a boundary this callback chose: not in validation (Lightning raises there for a SIGTERM
        # it caught before the takeover), nor in the final test, which may have the best weights loaded.
        fitting = trainer.state.fn == TrainerFn.FITTING and not (trainer.validating or trainer.sanity_checking)
        if fitting and isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path, weights_only=False)  # the whole state, to resume from
            self.saved = True

    def outcome(self, trainer, run_dir: Path) -> str:
        """What the interrupted run saved, and how to continue it."""
        if self.saved:
            epoch = max(1, trainer.fit_loop.epoch_progress.current.started)
            return f"interrupted in epoch {epoch}: saved {self.path}; continue with the same command and --resume {run_dir}"
        if self.path.exists():
            return f"stopped at once, without saving; continue from its last checkpoint with the same command and --resume {run_dir}"
        return "stopped at once, without saving; the run had no checkpoint yet, so nothing is left to resume"
