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
            f"(loading it could run code). Only load checkpoints you trust the origin of. Detail: {e}"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from None


def load_state_dict_safely(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a Lightning checkpoint (or a bare state dict file)."""
    ckpt = load_checkpoint_safely(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} has no state_dict of tensors")
    return state
