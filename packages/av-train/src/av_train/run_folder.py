"""One run folder, one run: what a training must check before it writes into ``weights/checkpoint/<train_id>``.

- **Reuse**: a folder that already holds checkpoints belongs to the run described by its ``config.yaml``. A new
  training with the same ``train_id`` resumes it only when the resolved config is the same (epoch / step limits
  and settings that do not change the result may differ); otherwise it is refused, naming the keys, unless the
  user sets ``allow_config_change=true``. ``config.yaml`` is written only after that check.
- **Lock**: an exclusive ``flock`` on ``.lock`` in the folder for the whole run, so a second live training of the
  same run is refused (the kernel drops the lock when the process dies, even by kill -9).
- **Damaged last.ckpt** (a full disk, a crash during a copy): named, with the two ways on.
- **Stale temporary checkpoints** of a killed save are removed on start.
- **Atomic checkpoints**: `AtomicCheckpointIO` writes beside the final name, fsyncs, then renames.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from av_train.checkpoints import CheckpointError, verify_checkpoint
from av_train.config import ConfigError, TrainingConfig, read_saved_config
from uaspeech_prep.video_io import temp_path_for

log = logging.getLogger(__name__)

# May differ between a run and its resumption without changing what it computes (or only how far it goes).
RESUMABLE_KEYS = frozenset({
    "max_epochs", "max_steps", "validate_model", "progress_bar", "num_workers", "allow_config_change",
    "check_val_every_n_epoch", "log_every_n_steps", "per_speaker_metrics",
})


class RunFolderError(ConfigError):
    pass


def _is_rank_zero() -> bool:
    return all(int(os.environ.get(k, "0") or 0) == 0 for k in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def _defaults() -> dict:
    import dataclasses

    out = {}
    for f in dataclasses.fields(TrainingConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ (ignoring RESUMABLE_KEYS), as 'key: saved -> current'. A key the saved config
    lacks (written before the option existed) counts as its default."""
    defaults = _defaults()
    out = []
    for key in sorted(set(saved) | set(current)):
        if key in RESUMABLE_KEYS:
            continue
        a, b = saved.get(key, defaults.get(key, "<absent>")), current.get(key, defaults.get(key, "<absent>"))
        if a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


def check_reuse(cfg: TrainingConfig) -> None:
    """Refuse to continue another run's checkpoints with a different config (see the module docstring)."""
    folder = cfg.checkpoint_dir
    has_ckpt = any((folder / n).is_file() for n in ("last.ckpt", "best.ckpt"))
    saved_file = folder / "config.yaml"
    if not has_ckpt or not saved_file.is_file():
        return
    saved = read_saved_config(saved_file)
    if saved is None:
        raise RunFolderError(f"{saved_file} is unreadable, but {folder} holds checkpoints: choose another train_id, "
                             "or move the folder away to start afresh")
    diffs = config_differences(saved, cfg.to_dict())
    if diffs and not cfg.allow_config_change:
        shown = "; ".join(diffs[:8]) + (f"; ... ({len(diffs)} keys)" if len(diffs) > 8 else "")
        raise RunFolderError(
            f"{folder} holds a run trained with another config ({shown}). Resuming would mix two runs. "
            "Choose another train_id, move the folder away, or pass allow_config_change=true to continue it "
            "with the new values on purpose."
        )
    if diffs:
        log.info("allow_config_change: continuing %s with changed %s", folder, ", ".join(d.split(":")[0] for d in diffs))


class RunLock:
    """Exclusive lock of a run folder for the lifetime of a training (rank 0 only under DDP)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        if not _is_rank_zero():
            return self
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise RunFolderError(f"{self.path.parent} is in use by another training (pid {holder}); wait for it to "
                                 "end, or use another train_id") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_fresh(cfg: TrainingConfig) -> bool:
    """No run has been here yet: no checkpoint, no saved config (what :func:`remove_failed_start` may undo)."""
    d = cfg.checkpoint_dir
    return not (d / "config.yaml").exists() and not any(d.glob("*.ckpt"))


def remove_failed_start(cfg: TrainingConfig) -> list[Path]:
    """Undo what a fresh run wrote before it failed without a checkpoint: its config.yaml, lock file, empty
    TensorBoard event files and the folders left empty. Anything else (a checkpoint, metrics) is kept."""
    if not _is_rank_zero():
        return []
    d, removed = cfg.checkpoint_dir, []
    if any(d.glob("*.ckpt")):
        return []
    for path in [d / "config.yaml", d / ".lock", *cfg.results_dir.glob("events.out.tfevents.*"),
                 cfg.results_dir / "hparams.yaml"]:
        if path.is_file():
            path.unlink()
            removed.append(path)
    for folder in (d, cfg.results_dir, cfg.results_dir.parent):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass
    return removed


def resumable_last(cfg: TrainingConfig) -> Path | None:
    """last.ckpt when it exists and opens; a damaged one is named with the ways on."""
    last = cfg.checkpoint_dir / "last.ckpt"
    if not last.is_file():
        return None
    try:
        verify_checkpoint(last)
    except CheckpointError as e:
        best = cfg.checkpoint_dir / "best.ckpt"
        way = (f"copy {best} over it to resume from the best epoch, or delete it to start afresh" if best.is_file()
               else "delete it to start afresh")
        raise RunFolderError(f"{e}; cannot resume. Free disk space if it is full, then {way}.") from None
    return last


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Temporary checkpoint files of saves that were killed (their process is gone)."""
    from uaspeech_prep.video_io import remove_stale_temps

    return remove_stale_temps(folder) if Path(folder).is_dir() else []


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their final name, flushed to disk, then renamed over it.

    Lightning's own writer stages in the system temp directory (another file system on clusters: the final
    move is a copy, and a small $TMPDIR fails the save). Here a killed save leaves only ``.<name>.tmp-<pid>``
    next to the checkpoint, which the next start of the run removes; the final name is always complete.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(path)
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:  # the rename itself reaches the disk
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass
