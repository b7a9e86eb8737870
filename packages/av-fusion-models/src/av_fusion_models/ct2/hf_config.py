"""Hugging Face ``WhisperConfig`` / ``GenerationConfig`` for a converted CTranslate2 Whisper.

Sizes come from the variables (:class:`~.weight_map.WhisperDims`), special-token ids from the
tokenizer (or OpenAI's vocabulary layout without one), suppress lists and alignment heads from
CTranslate2's ``config.json``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from ..tokenizer import whisper_language_tokens, whisper_special_tokens, whisper_suppress_tokens, whisper_token_ids
from .dtypes import torch_dtype
from .reader import CT2FormatError
from .weight_map import WhisperDims

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import GenerationConfig, WhisperConfig

__all__ = ["generation_config_from_ct2", "whisper_config_from_ct2"]


def whisper_config_from_ct2(
    dims: WhisperDims,
    ct2_config: dict[str, Any] | None = None,
    tokenizer: Any | None = None,
    dtype: "str | torch.dtype" = "float32",
) -> "WhisperConfig":
    """``WhisperConfig`` from the variable-derived sizes plus CTranslate2's ``config.json``."""
    from transformers import WhisperConfig

    ct2_config = ct2_config or {}
    ids = whisper_token_ids(tokenizer) if tokenizer is not None else _default_ids(dims)
    suppress, begin = _suppress_lists(dims, ct2_config, tokenizer, ids)
    dtype_ = torch_dtype(dtype)
    config = WhisperConfig(
        vocab_size=dims.vocab_size,
        num_mel_bins=dims.num_mel_bins,
        d_model=dims.d_model,
        encoder_layers=dims.encoder_layers,
        decoder_layers=dims.decoder_layers,
        encoder_attention_heads=dims.encoder_attention_heads,
        decoder_attention_heads=dims.decoder_attention_heads,
        encoder_ffn_dim=dims.encoder_ffn_dim,
        decoder_ffn_dim=dims.decoder_ffn_dim,
        max_source_positions=dims.max_source_positions,
        max_target_positions=dims.max_target_positions,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        use_cache=True,
        bos_token_id=ids["startoftranscript"] if not dims.is_multilingual else ids["endoftext"],
        eos_token_id=ids["endoftext"],
        pad_token_id=ids["endoftext"],
        decoder_start_token_id=ids["startoftranscript"],
        suppress_tokens=suppress,
        begin_suppress_tokens=begin,
    )
    config.architectures = ["WhisperForConditionalGeneration"]
    config.dtype = str(dtype_).replace("torch.", "")
    return config


def _default_ids(dims: WhisperDims) -> dict[str, int]:
    """Special-token ids from OpenAI's vocabulary layout when no tokenizer is at hand."""
    table = {name: i for i, name in whisper_special_tokens(dims.vocab_size)}
    return {
        "endoftext": table["<|endoftext|>"],
        "startoftranscript": table["<|startoftranscript|>"],
        "translate": table["<|translate|>"],
        "transcribe": table["<|transcribe|>"],
        "startoflm": table["<|startoflm|>"],
        "startofprev": table["<|startofprev|>"],
        "nocaptions": table["<|nocaptions|>"],
        "notimestamps": table["<|notimestamps|>"],
    }


def _suppress_lists(
    dims: WhisperDims, ct2_config: dict[str, Any], tokenizer: Any | None, ids: dict[str, int]
) -> tuple[list[int] | None, list[int]]:
    suppress = ct2_config.get("suppress_ids")
    begin = ct2_config.get("suppress_ids_begin")
    if suppress is None and tokenizer is not None:
        suppress = whisper_suppress_tokens(tokenizer)
    if begin is None:
        begin = [220, ids["endoftext"]]
    for name, lst in (("suppress_ids", suppress), ("suppress_ids_begin", begin)):
        if lst is not None and any(not (0 <= int(i) < dims.vocab_size) for i in lst):
            raise CT2FormatError(f"config.json {name} has ids outside the vocabulary (0..{dims.vocab_size - 1})")
    return ([int(i) for i in suppress] if suppress is not None else None), [int(i) for i in begin]


def generation_config_from_ct2(
    dims: WhisperDims,
    ct2_config: dict[str, Any] | None = None,
    tokenizer: Any | None = None,
) -> "GenerationConfig":
    """Whisper ``GenerationConfig`` (English-only or multilingual) for the converted model."""
    from transformers import GenerationConfig

    ct2_config = ct2_config or {}
    ids = whisper_token_ids(tokenizer) if tokenizer is not None else _default_ids(dims)
    suppress, begin = _suppress_lists(dims, ct2_config, tokenizer, ids)
    kwargs: dict[str, Any] = dict(
        decoder_start_token_id=ids["startoftranscript"],
        bos_token_id=ids["startoftranscript"] if not dims.is_multilingual else ids["endoftext"],
        eos_token_id=ids["endoftext"],
        pad_token_id=ids["endoftext"],
        no_timestamps_token_id=ids["notimestamps"],
        prev_sot_token_id=ids["startofprev"],
        begin_suppress_tokens=begin,
        is_multilingual=dims.is_multilingual,
        max_initial_timestamp_index=50,  # 1.0 s at 0.02 s per timestamp token
        max_length=dims.max_target_positions,
        return_timestamps=False,
    )
    if suppress is not None:
        kwargs["suppress_tokens"] = suppress
    heads = ct2_config.get("alignment_heads")
    if heads:
        heads = [[int(a), int(b)] for a, b in heads]
        for layer, head in heads:
            if not (0 <= layer < dims.decoder_layers and 0 <= head < dims.decoder_attention_heads):
                raise CT2FormatError(f"config.json alignment head {[layer, head]} is out of range")
        kwargs["alignment_heads"] = heads
    if dims.is_multilingual:
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to build lang_to_id for a multilingual model")
        lang_to_id = whisper_language_tokens(tokenizer)
        lang_ids = ct2_config.get("lang_ids")
        if lang_ids and set(int(i) for i in lang_ids) - set(lang_to_id.values()):
            warnings.warn("config.json lang_ids do not match the tokenizer's language tokens; using the tokenizer's")
        kwargs["lang_to_id"] = lang_to_id
        kwargs["task_to_id"] = {"translate": ids["translate"], "transcribe": ids["transcribe"]}
    return GenerationConfig(**kwargs)