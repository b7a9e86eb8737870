"""What the UASpeech corpus is: speakers, intelligibility levels, blocks, microphones, words, file names.

Everything here is built in, so the package works without the licensed release. When the real
``speaker_wordlist.xls`` is at hand, :mod:`uaspeech_prep.wordlist` reads it and cross-checks it
against these tables.

Facts (see docs/UASpeech.md):
- file names are ``<SPK>_<B1|B2|B3>_<WORDID>_<M2..M8>.wav``; the microphone is the LAST token
  (speaker ids such as M01 also start with M);
- word ids: digits D0-D9, radio alphabet LA-LZ, commands C1-C19, common words CW1-CW100, and
  100 uncommon words per block UW1-UW100, keyed in the word list as ``B1_UW1`` (block prefix);
- 255 words per block (155 shared + 100 block-specific), 765 per speaker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from av_common.corpus import LEVELS, SAMPLE_RATE  # noqa: F401  (the corpus's numbers, one home: av_common.corpus)

BLOCKS: tuple[str, ...] = ("B1", "B2", "B3")
MICROPHONES: tuple[str, ...] = ("M2", "M3", "M4", "M5", "M6", "M7", "M8")
TRAIN_BLOCKS: tuple[str, ...] = ("B1", "B3")
TEST_BLOCKS: tuple[str, ...] = ("B2",)

CATEGORIES: tuple[str, ...] = ("digit", "letter", "command", "common", "uncommon")


@dataclass(frozen=True)
class Speaker:
    """One UASpeech speaker. ``intelligibility`` is the listener transcription accuracy in percent
    (None for controls); ``level`` is derived from it with :func:`level_for_intelligibility`."""

    id: str
    intelligibility: float | None
    diagnosis: str = ""

    @property
    def is_control(self) -> bool:
        return self.id.startswith("C")

    @property
    def level(self) -> str | None:
        return None if self.intelligibility is None else level_for_intelligibility(self.intelligibility)

    @property
    def level_id(self) -> int | None:
        lvl = self.level
        return None if lvl is None else LEVELS.index(lvl)


def level_for_intelligibility(percent: float) -> str:
    """Map intelligibility (%) to the corpus's four groups: <25 very_low, <50 low, <75 mid, else high."""
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"intelligibility must be within 0..100 %, got {percent}")
    if percent < 25:
        return "very_low"
    if percent < 50:
        return "low"
    if percent < 75:
        return "mid"
    return "high"


# Dysarthric speakers released with audio, intelligibility from the corpus's Speaker sheet.
_DYSARTHRIC = {
    "M04": (2.0, "Spastic"),
    "F03": (6.0, "Spastic"),
    "M12": (7.4, "Mixed"),
    "M01": (15.0, "Spastic"),
    "M07": (28.0, "Spastic"),
    "F02": (29.0, "Spastic"),
    "M16": (43.0, "Spastic"),
    "M05": (58.0, "Spastic"),
    "F04": (62.0, "Athetoid (or mixed)"),
    "M11": (62.0, "Athetoid"),
    "M09": (86.0, "Spastic"),
    "M14": (90.4, "Spastic"),
    "M08": (93.0, "Spastic"),
    "M10": (93.0, "Not sure"),
    "F05": (95.0, "Spastic"),
}
CONTROL_SPEAKERS: tuple[str, ...] = (
    "CF02", "CF03", "CF04", "CF05", "CM01", "CM04", "CM05", "CM06", "CM08", "CM09", "CM10", "CM12", "CM13",
)

SPEAKERS: dict[str, Speaker] = {
    **{sid: Speaker(sid, pct, diag) for sid, (pct, diag) in _DYSARTHRIC.items()},
    **{sid: Speaker(sid, None, "Control") for sid in CONTROL_SPEAKERS},
}
DYSARTHRIC_SPEAKERS: tuple[str, ...] = tuple(_DYSARTHRIC)

AV_SPEAKERS: tuple[str, ...] = ("M12", "F02", "M07", "M16", "F04", "M05", "M11", "F05", "M08", "M09", "M10", "M14")
"""The 12 speakers of the audio-visual set (video available and synced), by level:
very_low M12 | low F02 M07 M16 | mid F04 M05 M11 | high F05 M08 M09 M10 M14."""


def speaker(speaker_id: str) -> Speaker:
    try:
        return SPEAKERS[speaker_id.strip()]
    except KeyError:
        raise KeyError(
            f"unknown UASpeech speaker {speaker_id!r}; known: {', '.join(sorted(SPEAKERS))}"
        ) from None


def level_of(speaker_id: str) -> str:
    """Intelligibility level of a dysarthric speaker ('very_low', 'low', 'mid', 'high')."""
    lvl = speaker(speaker_id).level
    if lvl is None:
        raise ValueError(f"{speaker_id} is a control speaker and has no intelligibility level")
    return lvl


# --- words --------------------------------------------------------------------------------------

_WORD_ID = r"D\d|L[A-Z]|C\d{1,2}|CW\d{1,3}|UW\d{1,3}"
_WORD_ID_RE = re.compile(rf"^(?:{_WORD_ID})$")
AUDIO_NAME_RE = re.compile(
    rf"^(?P<speaker>C?[MF]\d{{2}})_(?P<block>B[123])_(?P<word_id>{_WORD_ID})_(?P<mic>M[2-8])\.wav$"
)
UTT_ID_RE = re.compile(rf"^(?P<speaker>C?[MF]\d{{2}})_(?P<block>B[123])_(?P<word_id>{_WORD_ID})$")


def category_of(word_id: str) -> str:
    """Word category from its id: digit (D0-D9), letter (LA-LZ), command (C1-C19),
    common (CW1-CW100) or uncommon (UW1-UW100)."""
    if not _WORD_ID_RE.match(word_id):
        raise ValueError(f"not a UASpeech word id: {word_id!r} (expected D0-D9, LA-LZ, C1-C19, CW1-CW100, UW1-UW100)")
    if word_id.startswith("D"):
        return "digit"
    if word_id.startswith("CW"):
        return "common"
    if word_id.startswith("C"):
        return "command"
    if word_id.startswith("UW"):
        return "uncommon"
    return "letter"


def wordlist_key(block: str, word_id: str) -> str:
    """Key of a word in the word list: uncommon words carry their block ('B2_UW7'), others not."""
    return f"{block}_{word_id}" if word_id.startswith("UW") else word_id


@lru_cache(maxsize=1)
def builtin_wordlist() -> dict[str, str]:
    """The corpus word list (455 keys -> word as spelled in the list), built in."""
    text = resources.files("uaspeech_prep").joinpath("data/wordlist.tsv").read_text(encoding="utf-8")
    table: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, word = line.split("\t")
            table[key] = word
    return table


def word_ids_for_block(block: str) -> list[str]:
    """The 255 word ids recorded in one block, in a stable order: D, L, C, CW, then UW."""
    if block not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; expected one of {BLOCKS}")
    ids = [f"D{i}" for i in range(10)]
    ids += [f"L{chr(c)}" for c in range(ord("A"), ord("Z") + 1)]
    ids += [f"C{i}" for i in range(1, 20)]
    ids += [f"CW{i}" for i in range(1, 101)]
    ids += [f"UW{i}" for i in range(1, 101)]
    return ids


def word_for(block: str, word_id: str, wordlist: dict[str, str] | None = None) -> str:
    """The spoken word of (block, word id), e.g. ('B1', 'D3') -> 'Three', ('B2', 'UW1') -> 'mouth'."""
    table = builtin_wordlist() if wordlist is None else wordlist
    key = wordlist_key(block, word_id)
    try:
        return table[key]
    except KeyError:
        raise KeyError(f"word list has no entry {key!r} (block {block}, word id {word_id})") from None


@dataclass(frozen=True)
class AudioName:
    speaker: str
    block: str
    word_id: str
    mic: str

    @property
    def utt_id(self) -> str:
        return f"{self.speaker}_{self.block}_{self.word_id}"


def parse_audio_name(name: str) -> AudioName:
    """Parse ``<SPK>_<BLK>_<WORDID>_<MIC>.wav`` strictly; raises ValueError naming the file otherwise."""
    m = AUDIO_NAME_RE.match(name)
    if not m:
        raise ValueError(
            f"{name!r} is not a UASpeech audio file name: expected <SPK>_<B1|B2|B3>_<WORDID>_<M2..M8>.wav, "
            "e.g. F02_B1_D3_M5.wav"
        )
    return AudioName(**m.groupdict())


def parse_utt_id(utt_id: str) -> tuple[str, str, str]:
    """Parse ``<SPK>_<BLK>_<WORDID>`` (an utterance id, no microphone) -> (speaker, block, word id)."""
    m = UTT_ID_RE.match(utt_id.strip())
    if not m:
        raise ValueError(f"{utt_id!r} is not a UASpeech utterance id: expected <SPK>_<B1|B2|B3>_<WORDID>, e.g. F05_B1_D3")
    return m["speaker"], m["block"], m["word_id"]


def split_of_block(block: str) -> str:
    """Standard split: B1 and B3 train, B2 test (also used for validation, as the field does)."""
    if block in TRAIN_BLOCKS:
        return "train"
    if block in TEST_BLOCKS:
        return "test"
    raise ValueError(f"unknown block {block!r}")
