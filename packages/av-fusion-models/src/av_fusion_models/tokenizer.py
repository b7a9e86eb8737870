"""Offline Whisper tokenizer / feature extractor / processor.

CTranslate2 Whisper directories (see :mod:`av_fusion_models.ct2`) ship a
``tokenizer.json`` that often lacks the timestamp tokens (and Hugging Face's pad
token setting). :func:`build_whisper_tokenizer` rebuilds a complete
``WhisperTokenizer`` (in transformers 5 the tokenizers-backed class, also exported
as ``WhisperTokenizerFast``) from it with no network access, placing every special
token at OpenAI's id:

=========================  ====================  =====================
token                      English-only (.en)    multilingual
=========================  ====================  =====================
``<|endoftext|>``          50256                 50257
``<|startoftranscript|>``  50257                 50258
languages (99, or 100)     50258..50356          50259..50357 (..50358)
``<|translate|>``          50357                 50358
``<|transcribe|>``         50358                 50359
``<|startoflm|>``          50359                 50360
``<|startofprev|>``        50360                 50361
``<|nocaptions|>``         50361                 50362
``<|notimestamps|>``       50362                 50363
``<|0.00|>``..``<|30.00|>``  50363..51863         50364..51864
=========================  ====================  =====================

(vocabulary sizes 51864 / 51865; large-v3 adds ``<|yue|>`` for 51866).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

__all__ = [
    "NUM_TIMESTAMP_TOKENS",
    "WHISPER_SAMPLE_RATE",
    "build_feature_extractor",
    "build_whisper_processor",
    "build_whisper_tokenizer",
    "whisper_language_tokens",
    "whisper_special_tokens",
    "whisper_suppress_tokens",
    "whisper_token_ids",
]

WHISPER_SAMPLE_RATE = 16_000
#: ``<|0.00|>`` .. ``<|30.00|>`` in 0.02 s steps.
NUM_TIMESTAMP_TOKENS = 1501
_TASK_TOKENS = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)
_NO_SPEECH_ALIASES = {"<|nocaptions|>", "<|nospeech|>"}
_LANG_TOKEN_RE = re.compile(r"^<\|[a-z]{2,3}\|>$")
ENGLISH_ONLY_VOCAB_SIZE = 51864


def _languages() -> list[str]:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return list(LANGUAGES)


def _layout(vocab_size: int, eot_id: int | None = None) -> tuple[int, int]:
    """(eot id, number of language tokens) for a Whisper vocabulary size."""
    if eot_id is None:
        eot_id = 50256 if vocab_size < 51865 else 50257
    n_langs = vocab_size - eot_id - 2 - len(_TASK_TOKENS) - NUM_TIMESTAMP_TOKENS
    if not 0 <= n_langs <= len(_languages()):
        raise ValueError(
            f"vocabulary size {vocab_size} does not fit Whisper's layout "
            f"(<|endoftext|> at {eot_id}, 0..{len(_languages())} languages, {NUM_TIMESTAMP_TOKENS} timestamps)"
        )
    return eot_id, n_langs


def whisper_special_tokens(vocab_size: int, eot_id: int | None = None) -> list[tuple[int, str]]:
    """OpenAI's special + timestamp tokens, as ``(id, content)``, for a Whisper vocabulary.

    ``eot_id`` defaults to 50256 for English-only sizes (< 51865) and 50257 otherwise.
    """
    eot_id, n_langs = _layout(vocab_size, eot_id)
    names = ["<|endoftext|>", "<|startoftranscript|>"]
    names += [f"<|{code}|>" for code in _languages()[:n_langs]]
    names += list(_TASK_TOKENS)
    names += ["<|%.2f|>" % (i * 0.02) for i in range(NUM_TIMESTAMP_TOKENS)]
    out = [(eot_id + i, name) for i, name in enumerate(names)]
    assert out[-1][0] == vocab_size - 1
    return out


def _compatible(existing: str, canonical: str) -> bool:
    if existing == canonical:
        return True
    if _LANG_TOKEN_RE.match(existing) and _LANG_TOKEN_RE.match(canonical):
        return True  # language code aliases (iw/he, jw/jv ...)
    return existing in _NO_SPEECH_ALIASES and canonical in _NO_SPEECH_ALIASES


def _find_tokenizer_json(src: str | os.PathLike) -> Path:
    path = Path(src)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no tokenizer.json at {path}: a CTranslate2 Whisper directory needs one to build the tokenizer"
        )
    return path


def _vocabulary_txt_size(model_dir: Path) -> int | None:
    path = model_dir / "vocabulary.txt"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    return len(lines)


def complete_tokenizer_json(
    tokenizer_json: dict[str, Any], vocab_size: int, source: str = "tokenizer.json"
) -> dict[str, Any]:
    """Return a copy of a Whisper ``tokenizer.json`` dict with every special/timestamp token.

    Existing added tokens must sit at OpenAI's ids (language-code spellings such as
    ``<|iw|>`` for Hebrew and ``<|nospeech|>`` vs ``<|nocaptions|>`` are kept as
    found); missing ones are added. Timestamp tokens are added as non-special (as in
    Hugging Face's Whisper tokenizers); the others as special.
    """
    tj = dict(tokenizer_json)  # shallow: only "added_tokens" is replaced below
    model = tj.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ValueError(f"{source}: not a byte-level BPE tokenizer.json (model.type={model.get('type')!r})")
    vocab: dict[str, int] = model["vocab"]
    added = {int(t["id"]): t for t in tj.get("added_tokens", [])}
    eot_id = vocab.get("<|endoftext|>")
    if eot_id is None:
        eot_id = next((i for i, t in added.items() if t["content"] == "<|endoftext|>"), None)
    if eot_id is None:
        raise ValueError(f"{source}: no <|endoftext|> token; not a Whisper/GPT-2 tokenizer")
    if max(vocab.values()) > eot_id:
        raise ValueError(f"{source}: BPE vocabulary has ids above <|endoftext|> ({eot_id})")

    canonical = whisper_special_tokens(vocab_size, eot_id)
    by_id = dict(canonical)
    for i, tok in added.items():
        if i not in by_id:
            raise ValueError(f"{source}: added token {tok['content']!r} has id {i}, outside Whisper's special range")
        if not _compatible(tok["content"], by_id[i]):
            raise ValueError(
                f"{source}: token id {i} is {tok['content']!r}, but Whisper's layout has {by_id[i]!r} there"
            )
    for i, name in canonical:
        if i in added:
            continue
        added[i] = {
            "id": i,
            "content": name,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": not name[2:3].isdigit(),
        }
    tj["added_tokens"] = [dict(added[i]) for i in sorted(added)]
    return tj


def build_whisper_tokenizer(
    src: str | os.PathLike,
    vocab_size: int | None = None,
    *,
    model_max_length: int = 1024,
) -> "WhisperTokenizer":
    """Build a complete ``WhisperTokenizer`` offline from a CTranslate2 model dir (or a tokenizer.json).

    ``vocab_size`` is the model's (embedding rows); if omitted it is read from
    ``vocabulary.txt`` next to ``tokenizer.json``, or else assumed from the
    English-only/multilingual layout. Pad, bos, eos and unk are ``<|endoftext|>``
    as in OpenAI's checkpoints on the Hugging Face hub.
    """
    from tokenizers import Tokenizer
    from transformers import WhisperTokenizer

    path = _find_tokenizer_json(src)
    with open(path, encoding="utf-8") as fh:
        try:
            raw = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON ({exc})") from None
    if vocab_size is None:
        vocab_size = _vocabulary_txt_size(path.parent)
    if vocab_size is None:
        eot = raw.get("model", {}).get("vocab", {}).get("<|endoftext|>")
        vocab_size = ENGLISH_ONLY_VOCAB_SIZE if eot == 50256 else ENGLISH_ONLY_VOCAB_SIZE + 1
    tj = complete_tokenizer_json(raw, vocab_size, source=str(path))
    backend = Tokenizer.from_str(json.dumps(tj))
    if backend.get_vocab_size(with_added_tokens=True) != vocab_size:
        raise ValueError(
            f"{path}: completed tokenizer has {backend.get_vocab_size(with_added_tokens=True)} tokens, "
            f"the model {vocab_size}"
        )
    # Hugging Face's Whisper decoding finds the first timestamp id as
    # ``all_special_ids[-1] + 1``: the extra special tokens must be every special
    # token in id order, ending with <|notimestamps|> (as on the hub).
    specials = [t["content"] for t in tj["added_tokens"] if t.get("special")]
    if specials[-1] != "<|notimestamps|>":
        raise ValueError(f"{path}: last special token is {specials[-1]!r}, expected '<|notimestamps|>'")
    tokenizer = WhisperTokenizer(
        tokenizer_object=backend,
        extra_special_tokens=specials,
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        add_prefix_space=False,
        model_max_length=model_max_length,
        errors="replace",
    )
    # Sanity: every special token resolves to its id through the HF wrapper too.
    for i, name in ((t["id"], t["content"]) for t in tj["added_tokens"]):
        got = tokenizer.convert_tokens_to_ids(name)
        if got != i:  # pragma: no cover - would be a transformers behaviour change
            raise RuntimeError(f"tokenizer maps {name!r} to {got}, expected {i}")
    if tokenizer.all_special_ids[-1] + 1 != tokenizer.convert_tokens_to_ids("<|0.00|>"):  # pragma: no cover
        raise RuntimeError("special-token order does not put <|0.00|> right after the last special token")
    return tokenizer


def whisper_token_ids(tokenizer: Any) -> dict[str, int]:
    """Ids of Whisper's named special tokens (``endoftext``, ``startoftranscript``, ...)."""
    ids: dict[str, int] = {}
    for name in ("endoftext", "startoftranscript") + tuple(t[2:-2] for t in _TASK_TOKENS):
        tok = f"<|{name}|>"
        i = tokenizer.convert_tokens_to_ids(tok)
        if name == "nocaptions" and (i is None or i == tokenizer.unk_token_id):
            i = tokenizer.convert_tokens_to_ids("<|nospeech|>")
        if i is None:
            raise ValueError(f"tokenizer has no {tok}")
        ids[name] = int(i)
    if ids["endoftext"] == ids["startoftranscript"]:
        raise ValueError("tokenizer lacks Whisper's special tokens")
    return ids


def whisper_language_tokens(tokenizer: Any) -> dict[str, int]:
    """``{"<|en|>": id, ...}`` with Hugging Face's language codes, by position after ``<|startoftranscript|>``."""
    ids = whisper_token_ids(tokenizer)
    n = ids["translate"] - ids["startoftranscript"] - 1
    codes = _languages()[:n]
    return {f"<|{code}|>": ids["startoftranscript"] + 1 + k for k, code in enumerate(codes)}


def whisper_suppress_tokens(tokenizer: Any) -> list[int]:
    """OpenAI's default ``suppress_tokens`` ("-1"): non-speech symbols plus task/control tokens.

    Same rule as openai-whisper's ``Tokenizer.non_speech_tokens``; used when a
    CTranslate2 ``config.json`` has no ``suppress_ids``.
    """

    def enc(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
    symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
    misc = set("♩♪♫♬♭♮♯")
    result = {enc(" -")[0], enc(" '")[0]}
    for symbol in symbols + sorted(misc):
        for tokens in (enc(symbol), enc(" " + symbol)):
            if len(tokens) == 1 or symbol in misc:
                result.add(tokens[0])
    ids = whisper_token_ids(tokenizer)
    control = ("translate", "transcribe", "startoftranscript", "startofprev", "startoflm", "nocaptions")
    result |= {ids[k] for k in control}
    return sorted(result)


def build_feature_extractor(num_mel_bins: int = 80) -> "WhisperFeatureExtractor":
    """Whisper log-mel front end: 16 kHz, 25 ms window / 10 ms hop, padded to 30 s (3000 frames)."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=num_mel_bins,
        sampling_rate=WHISPER_SAMPLE_RATE,
        hop_length=160,
        chunk_length=30,
        n_fft=400,
        padding_value=0.0,
        return_attention_mask=False,
    )


def build_whisper_processor(
    tokenizer_or_src: "WhisperTokenizer | str | os.PathLike",
    num_mel_bins: int = 80,
    vocab_size: int | None = None,
) -> "WhisperProcessor":
    """``WhisperProcessor`` = :func:`build_feature_extractor` + :func:`build_whisper_tokenizer`."""
    from transformers import WhisperProcessor

    if isinstance(tokenizer_or_src, (str, os.PathLike)):
        tokenizer = build_whisper_tokenizer(tokenizer_or_src, vocab_size=vocab_size)
    else:
        tokenizer = tokenizer_or_src
    return WhisperProcessor(feature_extractor=build_feature_extractor(num_mel_bins), tokenizer=tokenizer)
