"""Loading a CTranslate2 Whisper into ``WhisperForConditionalGeneration``, in memory or as a folder.

:func:`load_ct2_whisper` builds the model in memory; :func:`convert_ct2_to_hf` writes a complete,
offline-loadable Hugging Face directory (weights, configs, tokenizer, feature extractor),
atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..tokenizer import build_whisper_processor, build_whisper_tokenizer
from .dtypes import torch_dtype
from .hf_config import generation_config_from_ct2, whisper_config_from_ct2
from .reader import read_ct2_config, read_ct2_model
from .weight_map import WhisperWeights, ct2_whisper_state_dict

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import WhisperForConditionalGeneration

__all__ = ["CONVERSION_RECORD", "convert_ct2_to_hf", "load_ct2_whisper"]

#: Provenance file of every converted folder; it marks a folder that ``overwrite=True`` may replace.
CONVERSION_RECORD = "ct2_conversion.json"


def _model_dir(src: str | os.PathLike) -> Path:
    path = Path(src)
    return path.parent if path.is_file() else path


@dataclass
class _Loaded:
    weights: WhisperWeights
    config: Any
    generation_config: Any
    tokenizer: Any
    ct2_config: dict[str, Any] = field(default_factory=dict)


def _load_parts(
    src: str | os.PathLike,
    dtype: "str | torch.dtype",
    parts: Sequence[str | os.PathLike] | None = None,
) -> _Loaded:
    model_dir = _model_dir(src)
    weights = ct2_whisper_state_dict(read_ct2_model(parts if parts else src), dtype=dtype)
    ct2_config = read_ct2_config(model_dir)
    tokenizer = build_whisper_tokenizer(model_dir, vocab_size=weights.dims.vocab_size)
    config = whisper_config_from_ct2(weights.dims, ct2_config, tokenizer, dtype=dtype)
    generation_config = generation_config_from_ct2(weights.dims, ct2_config, tokenizer)
    return _Loaded(weights, config, generation_config, tokenizer, ct2_config)


def _instantiate(config: Any, state_dict: dict[str, "torch.Tensor"]) -> "WhisperForConditionalGeneration":
    import torch
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.tie_weights()
    leftover = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if leftover:  # pragma: no cover - would mean a non-persistent buffer appeared upstream
        raise RuntimeError(f"parameters left uninitialised after loading: {leftover}")
    model.eval()
    return model


def load_ct2_whisper(
    src: str | os.PathLike,
    dtype: "str | torch.dtype" = "float32",
    parts: Sequence[str | os.PathLike] | None = None,
) -> "WhisperForConditionalGeneration":
    """Build a ``WhisperForConditionalGeneration`` in memory straight from a CTranslate2 model dir.

    ``parts`` optionally lists split ``model.bin`` parts in order (otherwise they
    are discovered in ``src``). The returned model carries the generation config;
    pair it with :func:`av_fusion_models.tokenizer.build_whisper_processor`.
    """
    loaded = _load_parts(src, dtype, parts)
    model = _instantiate(loaded.config, loaded.weights.state_dict)
    model.generation_config = loaded.generation_config
    return model


def convert_ct2_to_hf(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    dtype: str = "float32",
    *,
    overwrite: bool = False,
    parts: Sequence[str | os.PathLike] | None = None,
) -> Path:
    """Write a complete, offline-loadable Hugging Face Whisper directory from a CTranslate2 one.

    ``dst`` receives config.json, generation_config.json, model.safetensors, the
    tokenizer files and preprocessor_config.json, so that
    ``WhisperForConditionalGeneration``, ``WhisperTokenizer`` (= ``WhisperTokenizerFast``),
    ``WhisperFeatureExtractor`` and ``WhisperProcessor`` all load it with
    ``from_pretrained(dst)`` and no network. The directory is written next to
    ``dst`` under a temporary name and renamed into place, so ``dst`` is either
    complete or absent. An existing ``dst`` is replaced only with ``overwrite=True``.
    """
    from safetensors.torch import save_file

    dst = Path(dst)
    if dst.exists() and not overwrite:
        what = "a folder" if dst.is_dir() else "a file, not a folder"
        raise FileExistsError(f"{dst} already exists and is {what}: choose another destination, or replace an "
                              "earlier conversion with overwrite=True (av-cli import-ct2 --overwrite)")
    if dst.exists():
        _check_replaceable(dst)
    loaded = _load_parts(src, dtype, parts)
    processor = build_whisper_processor(
        loaded.tokenizer, num_mel_bins=loaded.weights.dims.num_mel_bins
    )

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        sd = dict(loaded.weights.state_dict)
        if loaded.weights.tied:
            del sd["proj_out.weight"]  # tied: stored once, as HF checkpoints do
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        loaded.config.save_pretrained(tmp)
        loaded.generation_config.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        # The classic per-component file, so WhisperFeatureExtractor.from_pretrained(dst)
        # (and older transformers) find the front-end settings without processor_config.json.
        processor.feature_extractor.save_pretrained(tmp)
        _write_provenance(tmp, loaded, dtype)
        if dst.exists():
            old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dst, old)
            try:
                os.replace(tmp, dst)
            except BaseException:
                os.replace(old, dst)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _check_replaceable(dst: Path) -> None:
    """``overwrite`` replaces an earlier conversion (it has ct2_conversion.json) or an empty folder, nothing else:
    a mistyped destination must never cost a user's folder."""
    if not dst.is_dir():
        raise FileExistsError(f"{dst} is a file, not an earlier conversion: not replaced; choose another destination")
    if any(dst.iterdir()) and not (dst / CONVERSION_RECORD).is_file():
        raise FileExistsError(
            f"{dst} is not empty and is not an earlier conversion (no ct2_conversion.json): not replaced; "
            "choose another destination or empty it yourself")


def _write_provenance(out: Path, loaded: _Loaded, dtype: str) -> None:
    w = loaded.weights
    info = {
        "converted_from": w.source,
        "converter": "av_fusion_models.ct2.convert_ct2_to_hf",  # the public name (lives in ct2.convert)
        "dtype": str(torch_dtype(dtype)).replace("torch.", ""),
        "tied_word_embeddings": w.tied,
        "dims": w.dims.__dict__,
    }
    with open(out / CONVERSION_RECORD, "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=2)
        fh.write("\n")