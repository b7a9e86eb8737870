"""``decode_vocabulary``: the words decoding may produce (open, UASpeech's closed set, or a file)."""

from __future__ import annotations

from pathlib import Path

from av_train.config import ConfigError

OPEN = "open"
UASPEECH = "uaspeech"


def decode_words(spec: str | None) -> list[str] | None:
    """None for open decoding; else the closed vocabulary's words (file: one word or phrase per line,
    blank lines and lines starting with # ignored)."""
    if spec is None or spec == OPEN:
        return None
    if spec == UASPEECH:
        from uaspeech_prep.vocab import closed_vocabulary

        return closed_vocabulary()
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"decode_vocabulary {spec!r}: no such file. Use 'open', 'uaspeech' or a text file with one word per line."
        )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; decode_vocabulary needs one word per line") from None
    words = list(dict.fromkeys(w.strip() for w in lines if w.strip() and not w.lstrip().startswith("#")))
    if not words:
        raise ConfigError(f"{path}: no words (decode_vocabulary needs one word or phrase per line)")
    return words


def constraint_for(tokenizer, words: list[str] | None, char_level: bool):
    """The TokenTrie of ``words`` as training targets spell them (None for open decoding)."""
    if words is None:
        return None
    from av_fusion_models import TokenTrie

    return TokenTrie.from_words(tokenizer, words, char_level=char_level)
