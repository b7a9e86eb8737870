"""Loading checkpoints without executing code from them."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch


class CheckpointError(ValueError):
    pass


def load_checkpoint_safely(path: str | Path) -> dict:
    """``torch.load(weights_only=True)``: tensors and plain containers only; a pickle that tries to
    build arbitrary objects (and so run code) is refused with an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain containers, so it was not loaded "
            f"(loading it could run code). Only load checkpoints you trust the origin of. Detail: {_refusal(e)}"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from None


def _refusal(error: Exception) -> str:
    """What torch refused (e.g. "Unsupported global: GLOBAL os.system"), without its advice to retry with
    weights_only=False, which is exactly what must not be done with a stranger's file."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    keep = [ln for ln in lines if "unsupported global" in ln.lower() or "unsupported operand" in ln.lower()]
    detail = keep[0] if keep else (lines[-1] if lines else type(error).__name__)
    return detail.split("WeightsUnpickler error:")[-1].strip()


def verify_checkpoint(path: str | Path) -> None:
    """Raise CheckpointError when ``path`` cannot be opened as a checkpoint (truncated by a full disk, or
    a crash during a copy). Memory-maps the file: cheap even for large Whispers."""
    path = Path(path)
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path} holds objects other than tensors ({_refusal(e)})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read (truncated or corrupt: {str(e).splitlines()[0][:200]})") from None


def load_state_dict_safely(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a Lightning checkpoint (or a bare state dict file)."""
    ckpt = load_checkpoint_safely(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} has no state_dict of tensors")
    return state
