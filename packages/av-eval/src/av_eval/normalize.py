"""The one text normalisation applied before every metric.

UASpeech references are single words as spelled in the word list ("Three", "X-ray", "able-bodied").
Models emit either word-level text (" Three.") or character-level text ("t h r e e"). Both sides go
through :func:`normalize` so that only recognition errors count:

1. Unicode NFKC, then lower case.
2. Character-level text ("t h r e e", every token one character) is joined back ("three").
   Word boundaries inside character-level text are written ``|`` ("x | r a y"); they become spaces.
3. Hyphens and apostrophes are removed, joining the parts ("x-ray" -> "xray", "o'clock" -> "oclock"),
   so "X-ray", "x ray" and "xray" do NOT all match: "x ray" stays two words. This mirrors how the
   word list spells hyphenated words as one item.
4. Any other punctuation becomes a space; runs of whitespace collapse; ends are stripped.
"""

from __future__ import annotations

import re
import unicodedata

_JOINERS = re.compile(r"[-\u2010\u2011\u2012\u2013\u2014'\u2019`]")
_PUNCT = re.compile(r"[^\w\s|]", flags=re.UNICODE)
_SPACES = re.compile(r"\s+")


def is_char_level(text: str) -> bool:
    """True when every whitespace-separated token is a single character (and there are >= 2)."""
    tokens = text.split()
    return len(tokens) >= 2 and all(len(t) == 1 for t in tokens)


def join_chars(text: str) -> str:
    """'t h r e e' -> 'three'; 'x | r a y' -> 'x ray' (``|`` marks a word boundary)."""
    words = text.split("|")
    return " ".join("".join(w.split()) for w in words).strip()


def to_char_level(word: str) -> str:
    """Inverse of :func:`join_chars` for training targets: 'three' -> 't h r e e',
    'x ray' -> 'x | r a y'. Hyphens are kept as characters ('x-ray' -> 'x - r a y')."""
    return " | ".join(" ".join(w) for w in word.split())


def normalize(text: str) -> str:
    """Normalise a reference or hypothesis (see module docstring)."""
    t = unicodedata.normalize("NFKC", text).lower().strip()
    if is_char_level(t) or "|" in t:
        t = join_chars(t)
    t = _JOINERS.sub("", t)
    t = _PUNCT.sub(" ", t).replace("|", " ")
    return _SPACES.sub(" ", t).strip()
