"""One plain line per epoch for logs that are files or pipes (clusters, CI, ``nohup``).

A progress bar redraws one line with carriage returns; in a log file it is one long unreadable line, and
Lightning's Rich bar shows only its final state. When the output is not a terminal (or the bar is off),
:class:`EpochLog` prints after every epoch: the epoch, the step, the logged metrics and the seconds it took.
"""

from __future__ import annotations

import math
import sys
import time

import lightning as L
from lightning.pytorch.callbacks import Callback


def wanted(progress_bar: bool, stream=None) -> bool:
    """Lines are printed when there is no live bar to read: bar off, or the output is not a terminal."""
    stream = sys.stderr if stream is None else stream
    return not progress_bar or not (hasattr(stream, "isatty") and stream.isatty())


def format_metrics(metrics: dict) -> str:
    """``name value`` pairs, sorted, 4 significant digits; non-scalars and NaN left out."""
    parts = []
    for name in sorted(metrics):
        value = metrics[name]
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            parts.append(f"{name} {value:.4g}")
    return "  ".join(parts)


class EpochLog(Callback):
    """Prints ``epoch E/N step S  metric value ...  (T s)`` at the end of each training epoch (rank 0)."""

    def __init__(self, stream=None):
        self.stream = stream
        self._t0 = time.monotonic()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        line = (f"epoch {trainer.current_epoch + 1}/{total} step {trainer.global_step}  "
                f"{format_metrics(trainer.callback_metrics)}  ({time.monotonic() - self._t0:.1f} s)")
        print(line, file=self.stream if self.stream is not None else sys.stderr, flush=True)
