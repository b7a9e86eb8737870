"""Per-speaker synthetic identity: espeak voice (variant, pitch, rate), degradation level, and look.

The 12 audio-visual speakers have hand-picked distinct voices (female variants for F02, F04, F05);
any other UASpeech speaker gets a voice derived from a hash of its id (stable across runs).
The level comes from :mod:`uaspeech_prep.corpus` (controls: no level, no degradation).

Video quality by level (far milder than the audio degradation, so the lips stay readable):

| level    | blur sigma (px) | pixel noise std (0-255) |
|----------|-----------------|-------------------------|
| control  | 0.0             | 0.0                     |
| high     | 0.0             | 0.0                     |
| mid      | 0.3             | 0.8                     |
| low      | 0.5             | 1.2                     |
| very_low | 0.7             | 1.6                     |
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from uaspeech_prep import corpus
from uaspeech_prep.synth.face import Look

# speaker -> (espeak voice+variant, pitch 0..100, rate wpm, pitch range 0..100)
_AV_VOICES: dict[str, tuple[str, int, int, int]] = {
    "M12": ("en-us+m8", 38, 168, 40),  # very_low
    "F02": ("en-us+f2", 62, 172, 55),  # low
    "M07": ("en-us+m5", 45, 165, 50),
    "M16": ("en-us+m7", 50, 175, 45),
    "F04": ("en-us+f3", 58, 170, 60),  # mid
    "M05": ("en-us+m4", 42, 172, 50),
    "M11": ("en-us+max", 55, 166, 55),
    "F05": ("en-us+f4", 66, 174, 60),  # high
    "M08": ("en-us+m1", 40, 170, 45),
    "M09": ("en-us+m6", 48, 176, 50),
    "M10": ("en-us+m2", 52, 168, 55),
    "M14": ("en-us+m3", 46, 172, 50),
}
"""The high speakers get espeak's plainest variants (m1, m2, m3, m6, f4: formants near the default). The
others, with shifted formants (m5: F2 at 80 %), a strong spectral tilt (m8) or a weak voicing source (m7),
go to worse levels, where the degradation dominates anyway; the Klatt synthesizer is not used (it sounded the
least like the others and was the hardest for Whisper: 63 % zero-shot WER on clean words, against 47-55 %)."""
_MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "klatt", "max")
_FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "linda", "belinda")

VIDEO_QUALITY: dict[str, tuple[float, float]] = {
    "control": (0.0, 0.0),
    "high": (0.0, 0.0),
    "mid": (0.3, 0.8),
    "low": (0.5, 1.2),
    "very_low": (0.7, 1.6),
}
"""level -> (Gaussian blur sigma px, pixel noise std) of the synthetic video."""


@dataclass(frozen=True)
class SpeakerProfile:
    speaker: str
    level: str | None
    voice: str
    pitch: int
    rate: int
    pitch_range: int
    look: Look


def _u(key: str, salt: str) -> float:
    """Stable pseudo-random number in [0, 1) from a key (no dependence on PYTHONHASHSEED)."""
    return zlib.crc32(f"{salt}:{key}".encode()) / 2**32


def profile_for(speaker_id: str) -> SpeakerProfile:
    spk = corpus.speaker(speaker_id)
    level = spk.level
    if spk.id in _AV_VOICES:
        voice, pitch, rate, prange = _AV_VOICES[spk.id]
    else:
        female = spk.id.lstrip("C").startswith("F")
        variants = _FEMALE_VARIANTS if female else _MALE_VARIANTS
        voice = "en-us+" + variants[int(_u(spk.id, "variant") * len(variants))]
        pitch = int((55 if female else 38) + 14 * _u(spk.id, "pitch"))
        rate = int(162 + 16 * _u(spk.id, "rate"))
        prange = int(40 + 20 * _u(spk.id, "range"))
    blur, noise = VIDEO_QUALITY["control" if level is None else level]
    look = Look(
        scale=round(0.96 + 0.08 * _u(spk.id, "scale"), 3),
        shift=(round(-3 + 6 * _u(spk.id, "dx"), 1), round(-3 + 6 * _u(spk.id, "dy"), 1)),
        brightness=round(0.9 + 0.2 * _u(spk.id, "bright"), 3),
        blur=blur,
        noise=noise,
    )
    return SpeakerProfile(spk.id, level, voice, pitch, rate, prange, look)
