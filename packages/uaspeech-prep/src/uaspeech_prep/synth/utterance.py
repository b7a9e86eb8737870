"""One synthetic utterance: espeak speech of the word, degraded for the speaker's level, padded with
silence, and its microphone channels. Deterministic for (seed, utterance id)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from uaspeech_prep import corpus
from uaspeech_prep.synth import degrade as dg
from uaspeech_prep.synth.profiles import SpeakerProfile
from uaspeech_prep.synth.tts import SAMPLE_RATE, Voice, synthesize

LEAD_S = (0.12, 0.25)  # silence before the word (uniform range, s)
TRAIL_S = (0.12, 0.25)  # silence after the word
TARGET_RMS_DBFS = -20.0  # loudness of the active speech before the microphone gain
PEAK_LIMIT = 0.9


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator seeded from the global seed and string keys (stable across processes and runs)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *(zlib.crc32(k.encode()) for k in keys)]))


@dataclass
class Utterance:
    utt_id: str
    word: str
    audio: np.ndarray  # degraded, normalized speech (float32, 16 kHz), before the microphones
    phonemes: list[tuple[float, str]]  # (time s in ``audio``, espeak phoneme)
    rate_wpm: int

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def channel(self, mic: str, seed: int) -> np.ndarray:
        """The microphone channel ``mic`` as float32 in [-1, 1]."""
        return dg.microphone(self.audio, mic, rng_for(seed, self.utt_id, mic))


def synth_utterance(profile: SpeakerProfile, block: str, word_id: str, seed: int,
                    wordlist: dict[str, str] | None = None) -> Utterance:
    utt_id = f"{profile.speaker}_{block}_{word_id}"
    word = corpus.word_for(block, word_id, wordlist)
    rng = rng_for(seed, utt_id)
    p = dg.params_for(profile.level)
    rate = profile.rate * p.rate_factor * float(np.exp(p.rate_jitter * rng.standard_normal()))
    rate = int(np.clip(round(rate), 80, 450))
    voice = Voice(profile.voice, rate=rate, pitch=profile.pitch, range=profile.pitch_range)
    syn = synthesize(word, voice, seed=int(rng.integers(1 << 31)))
    lead = int(rng.uniform(*LEAD_S) * SAMPLE_RATE)
    trail = int(rng.uniform(*TRAIL_S) * SAMPLE_RATE)
    x = np.concatenate([np.zeros(lead, np.float32), syn.audio, np.zeros(trail, np.float32)])
    times = np.array([ph.time for ph in syn.phonemes], dtype=np.float64) + lead / SAMPLE_RATE
    d = dg.degrade(x, profile.level, rng)
    y = d.audio
    rms = dg.rms_active(y)
    if rms > 0:
        y = y * (10 ** (TARGET_RMS_DBFS / 20) / rms)
    peak = float(np.abs(y).max(initial=0.0))
    if peak > PEAK_LIMIT:
        y = y * (PEAK_LIMIT / peak)
    mapped = d.time_map.to_output(times) if len(times) else times
    phonemes = [(float(t), ph.name) for t, ph in zip(mapped, syn.phonemes, strict=True)]
    return Utterance(utt_id=utt_id, word=word, audio=y.astype(np.float32), phonemes=phonemes, rate_wpm=rate)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
