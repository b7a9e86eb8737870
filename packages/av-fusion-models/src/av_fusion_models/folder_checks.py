"""Reading a model folder written by someone else: every damaged file is one line naming it and the fix.

A truncated ``model.safetensors`` (or a header claiming an impossible length), a config with a field of the wrong
kind, weights of another shape or another set of tensors: each raises `ModelFolderError` (a ValueError) saying
which file of which folder, what is wrong, and what to do, instead of a traceback or a state-dict dump. Nothing
here executes code from the folder: configs are JSON, weights safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

REEXPORT = "export the model again (av-cli export RUN_OR_CKPT OUT_DIR)"


class ModelFolderError(ValueError):
    """A model folder's file is missing, damaged, or does not fit the rest of the folder."""


def read_json(path: Path) -> dict:
    """A JSON object from ``path``, or a ModelFolderError naming it."""
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing; {REEXPORT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFolderError(f"{path}: not valid JSON ({e}); the file is damaged: {REEXPORT}") from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path}: a JSON object was expected, got {type(data).__name__}; {REEXPORT}")
    return data


def whisper_config(path: Path):
    """`WhisperConfig` from ``path`` with its sizes checked (a string where a number belongs would fail later, deep
    inside the model's construction, as an AttributeError)."""
    from transformers import WhisperConfig

    data = read_json(path)
    sizes = ("num_mel_bins", "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
             "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "vocab_size", "max_source_positions",
             "max_target_positions")
    for key in sizes:
        if key in data and (not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 1):
            raise ModelFolderError(f"{path}: field {key!r} must be a positive integer, got {data[key]!r}; {REEXPORT}")
    try:
        return WhisperConfig(**data)
    except (TypeError, ValueError, AttributeError) as e:
        raise ModelFolderError(f"{path}: not a Whisper configuration ({e}); {REEXPORT}") from None


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load ``path`` (safetensors) into ``model``, strictly: every tensor present, none extra, each of its shape."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    if not path.is_file():
        raise ModelFolderError(f"{path}: missing; {REEXPORT}")
    state = model.state_dict()
    # tied tensors (Whisper's proj_out is its embed_tokens) are stored once: either name of a group will do
    groups: dict[int, list[str]] = {}
    for name, t in state.items():
        groups.setdefault(t.untyped_storage().data_ptr(), []).append(name)
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError, MemoryError) as e:
        size = path.stat().st_size
        raise ModelFolderError(f"{path}: not a readable safetensors file ({size} bytes; {e}); it is damaged or "
                               f"truncated: copy it again or {REEXPORT}") from None
    expected = {}
    for names in groups.values():
        stored = [n for n in names if n in found] or names[:1]
        expected.update({n: tuple(state[n].shape) for n in stored})
    check_tensors(path, found, expected)
    try:
        load_model(model, str(path), strict=True)
    except (SafetensorError, OSError, RuntimeError, MemoryError) as e:  # the header was whole, the data is not
        raise ModelFolderError(f"{path}: its tensors cannot be read ({e}); the file is truncated: copy it again "
                               f"or {REEXPORT}") from None


def check_tensors(path: Path, found: dict[str, tuple], expected: dict[str, tuple], fix: str = REEXPORT) -> None:
    """One line for the first mismatch between the tensors ``found`` in ``path`` and the model's ``expected``."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
    if missing:
        raise ModelFolderError(f"{path}: {len(missing)} of the model's tensors are missing, first: {missing[0]}; "
                               f"the weights are of another model: {fix}")
    if extra:
        raise ModelFolderError(f"{path}: {len(extra)} tensors the model does not have, first: {extra[0]}; the "
                               f"weights are of another model: {fix}")
    if wrong:
        k = wrong[0]
        raise ModelFolderError(f"{path}: {len(wrong)} tensors differ in shape, first: {k} is {list(found[k])} in the "
                               f"file, {list(expected[k])} in the model: {fix}")
