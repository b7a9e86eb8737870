"""Stop a run whose loss or gradients are no longer numbers, before they reach the weights.

One optimizer step on a NaN or infinite gradient makes every weight it touches NaN, and the run then trains garbage
to the end, saves it as best.ckpt and exits 0 (a learning rate of 1000 does it from the first step). The check runs
after the backward pass and before the optimizer step, so the weights (and last.ckpt, written at epoch ends) stay
those of the last good step: the run stops with `TrainingDiverged` (one line: config, step, likely cause), which the
commands turn into exit code 2.

With 16-bit mixed precision the gradient scaler produces infinite gradients on purpose now and then (it lowers its
scale and skips the step), so there only the loss is checked.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm of a training step is NaN or infinite."""


class StopOnDivergence(Callback):
    def __init__(self, source: str, learning_rate: float, check_gradients: bool = True):
        self.source, self.learning_rate, self.check_gradients = source, learning_rate, check_gradients

    def _stop(self, trainer: L.Trainer, what: str) -> None:
        step = trainer.global_step + 1
        raise TrainingDiverged(
            f"{self.source}: the training {what} at step {step} (epoch {trainer.current_epoch + 1}); stopped before "
            f"it reached the weights. Likely cause: a learning rate too high for this model (learning_rate: "
            f"{self.learning_rate:g}; the recipes use 1e-5 to 1e-3), or a damaged input clip. Lower learning_rate "
            f"(or set gradient_clip_val) and run again."
        )

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if not self.check_gradients:
            return
        norms = [p.grad.detach().norm() for p in pl_module.parameters() if p.grad is not None]
        if norms:
            total = float(torch.stack([n.float() for n in norms]).norm())
            if not math.isfinite(total):
                self._stop(trainer, f"gradient norm is {total}")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(trainer, f"loss is {float(loss)}")
