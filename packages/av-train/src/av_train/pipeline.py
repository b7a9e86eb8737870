"""From a config to trained checkpoints, predictions and metrics: the one training entry point."""

from __future__ import annotations

import json
import logging
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from av_eval import Report, write_predictions
from av_common.cli_errors import ensure_output_dir
from av_common.files import atomic_write_text
from av_eval.report import per_speaker_table, write_report
from av_train.checkpoints import load_checkpoint_safely, load_state_dict_safely
from av_train.config import TrainingConfig
from av_train.data.datamodule import UASpeechDataModule
from av_train.data.targets import TargetEncoder
from av_train.model_factory import build_model
from av_train.module import AVSRModule

log = logging.getLogger(__name__)


class _QuietLightning(logging.Filter):
    """Drop Lightning's advertisement for its cloud logger from every run's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_QuietLightning())


@dataclass
class RunResult:
    checkpoint_dir: Path
    best_checkpoint: Path | None
    results_dir: Path
    report: Report | None
    """The scores of block B2 (``metrics.json``)."""
    predictions_file: Path | None
    heldout_report: Report | None = None
    """model_selection: heldout: the scores of the held-out training utterances (``metrics_heldout.json``)."""


def _monitor_mode(metric: str) -> str:
    return "max" if "wsr" in metric else "min"


class StepSeed(Callback):
    """Reseeds torch / numpy / random before every training batch from (seed, epoch, batch, rank).

    A killed run resumes from last.ckpt, written at an epoch end. The data order and the data
    augmentation are already functions of (seed, epoch, index) (data/samplers.py); with this
    reseeding, dropout, SpecAugment masks and modality dropout of every step are too, so the resumed
    run continues exactly as an uninterrupted one would. (Reseeding once per epoch is not enough:
    Lightning creates the DataLoader iterator, which draws from the global generator, at a different
    moment in a resumed epoch.)
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        s = (((self.seed * 1_000_003 + trainer.current_epoch) * 100_003 + batch_idx) * 1_009 + trainer.global_rank)
        s %= 2**32
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 mixed precision on GPUs that support it, 16-bit mixed on older GPUs, else 32-bit."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def build_trainer(cfg: TrainingConfig, extra_callbacks: list | None = None) -> tuple[L.Trainer, ModelCheckpoint]:
    ckpt = ModelCheckpoint(
        dirpath=cfg.checkpoint_dir, filename="best", monitor=cfg.early_stopping_metric,
        mode=_monitor_mode(cfg.early_stopping_metric), save_top_k=1,
        auto_insert_metric_name=False, enable_version_counter=False,
    )
    # Lightning's save_last only copies a checkpoint when the monitored metric improves: a separate
    # unmonitored callback rewrites last.ckpt at every validation (each check_val_every_n_epoch epochs),
    # so a resume never goes back further than that.
    # (Listed after `ckpt` so that last.ckpt holds the best-checkpoint state of the same epoch.)
    last = ModelCheckpoint(
        dirpath=cfg.checkpoint_dir, filename="last", monitor=None, save_top_k=1,
        auto_insert_metric_name=False, enable_version_counter=False,
    )
    from av_train.divergence import StopOnDivergence

    precision = resolve_precision(cfg.precision)
    diverged = StopOnDivergence(f"run {cfg.train_id} ({cfg.checkpoint_dir / 'config.yaml'})", cfg.learning_rate,
                                check_gradients=not precision.startswith("16"))
    callbacks = [ckpt, last, LearningRateMonitor(logging_interval="step"), StepSeed(cfg.seed), diverged]
    if cfg.early_stopping_patience > 0:
        callbacks.append(
            EarlyStopping(cfg.early_stopping_metric, patience=cfg.early_stopping_patience,
                          mode=_monitor_mode(cfg.early_stopping_metric))
        )
    from av_train.epoch_log import EpochLog, wanted

    if wanted(cfg.progress_bar):
        callbacks.append(EpochLog())
    callbacks += extra_callbacks or []
    logger = TensorBoardLogger(
        save_dir=str(Path(cfg.output_root) / "results"), name=cfg.train_name, version=cfg.train_id,
        default_hp_metric=False,
    )
    from av_train.run_folder import AtomicCheckpointIO

    trainer = L.Trainer(
        plugins=[AtomicCheckpointIO()],
        accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes, strategy=cfg.strategy,
        precision=precision, max_epochs=cfg.max_epochs, max_steps=cfg.max_steps,
        accumulate_grad_batches=cfg.accumulate_grad_batches, gradient_clip_val=cfg.gradient_clip_val,
        check_val_every_n_epoch=cfg.check_val_every_n_epoch, log_every_n_steps=cfg.log_every_n_steps,
        callbacks=callbacks, logger=logger, enable_progress_bar=cfg.progress_bar, num_sanity_val_steps=0,
        default_root_dir=str(cfg.output_root), enable_model_summary=False,
        # "warn": deterministic kernels where PyTorch has them, a warning (not an error) where it does not
        deterministic="warn" if cfg.deterministic else None,
        # The batch samplers shard themselves across ranks (Lightning cannot wrap custom batch samplers).
        use_distributed_sampler=False,
    )
    return trainer, ckpt


def run(cfg: TrainingConfig, extra_callbacks: list | None = None) -> RunResult:
    """Train (or, with ``validate_model``, only validate) one run; resume from last.ckpt if present.

    The run folder is locked for the whole run, and a folder holding another config's checkpoints is refused
    (av_train.run_folder)."""
    from av_train.run_folder import (
        RunLock,
        check_reuse,
        is_fresh,
        remove_failed_start,
        remove_stale_temporaries,
        resumable_last,
    )

    fresh = is_fresh(cfg)
    try:
        # a read-only or full output fails now, not at the first checkpoint after an epoch of work
        ensure_output_dir(cfg.checkpoint_dir, "run folder")
        ensure_output_dir(cfg.results_dir, "results folder")
        with RunLock(cfg.checkpoint_dir):
            if not cfg.validate_model:  # validation reads best.ckpt and leaves the run as it is
                check_reuse(cfg)
            for stale in remove_stale_temporaries(cfg.checkpoint_dir):
                log.info("removed %s (a checkpoint save that was killed)", stale)
            resume = None if cfg.validate_model else resumable_last(cfg)
            return _run_locked(cfg, resume, extra_callbacks)
    except BaseException:
        if fresh:  # a run that failed before its first checkpoint leaves nothing behind (no lying config.yaml)
            remove_failed_start(cfg)
        raise


def _run_locked(cfg: TrainingConfig, resume: Path | None, extra_callbacks: list | None) -> RunResult:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model, tokenizer, n_mels, new_names = build_model(cfg)
    targets = TargetEncoder(tokenizer, char_level=cfg.char_level)
    module = AVSRModule(model, targets, cfg, new_names)
    datamodule = UASpeechDataModule(cfg, targets, n_mels=n_mels)
    cfg.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    trained = any((cfg.checkpoint_dir / n).is_file() for n in ("best.ckpt", "last.ckpt"))
    if not (cfg.validate_model and trained):  # (check_reuse has passed: the saved config is this one)
        cfg.save(cfg.checkpoint_dir / "config.yaml")
    trainer, ckpt_cb = build_trainer(cfg, extra_callbacks)
    best = cfg.checkpoint_dir / "best.ckpt"

    with warnings.catch_warnings(), _exit_143_on_sigterm(cfg):
        # Lightning suggests more workers on small machines; we chose the number in the config.
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        # config.yaml lives next to the checkpoints on purpose (docs/LAYOUT.md).
        warnings.filterwarnings("ignore", ".*exists and is not empty.*")
        # Lightning 2.6 calls a torch pytree API that torch 2.11 deprecates; nothing for us to fix.
        warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")
        if cfg.validate_model:
            if best.is_file():
                log.info("validate_model: validating %s", best)
                module.load_state_dict(load_state_dict_safely(best))
            else:
                log.info("validate_model: no checkpoint at %s; validating the initial weights", best)
            trainer.validate(module, datamodule=datamodule, verbose=False)
        else:
            if resume:
                log.info("resuming from %s", resume)
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
            best_path = Path(ckpt_cb.best_model_path) if ckpt_cb.best_model_path else (best if best.is_file() else None)
            if best_path is not None and best_path.is_file():
                module.load_state_dict(load_state_dict_safely(best_path))
            # Final scores: always autoregressive, as the model will be used.
            module.cfg = _with_decoding(cfg, "autoregressive")
            trainer.validate(module, datamodule=datamodule, verbose=False)
        heldout = heldout_preds = None
        if cfg.model_selection == "heldout":
            # validation was the held-out training utterances: the scores of the chosen weights are B2's
            log.info("model_selection heldout: scoring the selected weights on B2")
            heldout, heldout_preds = module.last_report, module.last_predictions
            module.last_report, module.last_predictions = None, []
            trainer.test(module, datamodule=datamodule, verbose=False)

    report = module.last_report
    preds_file = None
    if trainer.is_global_zero and heldout is not None:
        write_predictions(cfg.results_dir / "predictions_heldout.jsonl", heldout_preds)
        write_report(heldout, cfg.results_dir, stem="metrics_heldout")
    if report is not None and trainer.is_global_zero:
        preds_file = write_predictions(cfg.results_dir / "predictions_B2.jsonl", module.last_predictions)
        write_report(report, cfg.results_dir, stem="metrics")
        gates = model.gate_values()
        if gates:  # how far each fused branch is open (tanh g) in the scored model
            atomic_write_text(cfg.results_dir / "gates.json", json.dumps(gates, indent=2) + "\n")
        if cfg.per_speaker_metrics:
            log.info("%s", per_speaker_table(report))
    return RunResult(cfg.checkpoint_dir, best if best.is_file() else None, cfg.results_dir, report, preds_file,
                     heldout)


SIGTERM_EXIT = 143  # 128 + SIGTERM, what shells and schedulers read as "terminated"


class _exit_143_on_sigterm:
    """Lightning turns SIGTERM (a scheduler's time limit, preemption, `docker stop`) into a SystemExit with code 0
    at the next batch boundary: a terminated run would look successful. Say where it stopped, exit 143."""

    def __init__(self, cfg: TrainingConfig):
        self.cfg = cfg

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if exc_type is None or not issubclass(exc_type, SIGTERMException):
            return False
        last = self.cfg.checkpoint_dir / "last.ckpt"
        where = "no checkpoint yet"
        if last.is_file():
            try:
                epoch = load_checkpoint_safely(last).get("epoch")
                where = f"{last} holds the state after epoch {int(epoch) + 1}" if epoch is not None else str(last)
            except Exception:  # a damaged file is reported on the rerun
                where = str(last)
        log.error("av-train: stopped by SIGTERM (%s); %s. Run the same command again to resume.", self.cfg.train_id,
                  where)
        raise SystemExit(SIGTERM_EXIT)


def _with_decoding(cfg: TrainingConfig, decoding: str) -> TrainingConfig:
    from dataclasses import replace

    return replace(cfg, validation_decoding=decoding)


def main_train(cfg: TrainingConfig) -> RunResult:
    torch.set_float32_matmul_precision("high")
    return run(cfg)
