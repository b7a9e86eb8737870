"""One synthetic utterance: espeak speech of the word with this repetition's rate, pitch and phoneme
durations (:mod:`.variation`: the block's session and the word's own draw), degraded for the speaker's
level, padded with silence, and its microphone channels. Deterministic for (seed, utterance id)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from uaspeech_prep import corpus
from uaspeech_prep.synth import degrade as dg
from uaspeech_prep.synth import variation as var
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
    pitch: int = 50  # espeak pitch used (0..100)
    mouth_scale: float = 1.0  # factor on the mouth opening (session x utterance)
    open_factors: tuple[float, ...] = ()  # per phoneme factor on its mouth target's opening
    av_lag_s: float = 0.0  # the mouth runs this much later than the sound (negative: earlier)

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def channel(self, mic: str, seed: int) -> np.ndarray:
        """The microphone channel ``mic`` as float32 in [-1, 1]."""
        return dg.microphone(self.audio, mic, rng_for(seed, self.utt_id, mic))


def session_for(speaker: str, block: str, seed: int) -> var.Session:
    """The recording session (speaker, block): rate, pitch, loudness, mouth, head pose and lighting."""
    return var.draw_session(rng_for(seed, speaker, block, "session"))


def synth_utterance(profile: SpeakerProfile, block: str, word_id: str, seed: int,
                    wordlist: dict[str, str] | None = None, vary: bool = True) -> Utterance:
    """``vary=False``: no session / utterance variation (the speaker's voice and level only)."""
    utt_id = f"{profile.speaker}_{block}_{word_id}"
    word = corpus.word_for(block, word_id, wordlist)
    rng = rng_for(seed, utt_id)
    if vary:
        ses = session_for(profile.speaker, block, seed)
        uv = var.draw_utterance(rng_for(seed, utt_id, "vary"))
    else:
        ses, uv = var.NEUTRAL_SESSION, var.NEUTRAL_UTTERANCE
    vrng = rng_for(seed, utt_id, "timing")
    p = dg.params_for(profile.level)
    want = profile.rate * p.rate_factor * float(np.exp(p.rate_jitter * rng.standard_normal())) * ses.rate * uv.rate
    rate = int(np.clip(round(want), 80, 450))
    # espeak stops at 80 wpm: what is left of a slower rate is done by the time-scale step below
    slower = rate / want if vary and want < 80 else 1.0
    pitch = int(np.clip(round(profile.pitch + ses.pitch + uv.pitch), 0, 100))
    prange = int(np.clip(round(profile.pitch_range + ses.pitch_range + uv.pitch_range), 0, 100))
    voice = Voice(profile.voice, rate=rate, pitch=pitch, range=prange)
    syn = synthesize(word, voice, seed=int(rng.integers(1 << 31)))
    audio = syn.audio
    times = np.array([ph.time for ph in syn.phonemes], dtype=np.float64)
    if (uv.duration_std > 0 or slower != 1.0) and len(times):  # articulation timing: each phoneme longer or shorter
        k_in, k_out = var.phoneme_time_map(times, syn.duration, uv.duration_std, vrng, scale=slower)
        audio = var.wsola(audio, k_in, k_out, SAMPLE_RATE)
        times = np.interp(times, k_in, k_out)
    lead = int(rng.uniform(*LEAD_S) * SAMPLE_RATE)
    trail = int(rng.uniform(*TRAIL_S) * SAMPLE_RATE)
    x = np.concatenate([np.zeros(lead, np.float32), audio, np.zeros(trail, np.float32)])
    times = times + lead / SAMPLE_RATE
    d = dg.degrade(x, profile.level, rng)
    y = d.audio
    rms = dg.rms_active(y)
    if rms > 0:
        y = y * (10 ** ((TARGET_RMS_DBFS + ses.gain_db + uv.gain_db) / 20) / rms)
    peak = float(np.abs(y).max(initial=0.0))
    if peak > PEAK_LIMIT:
        y = y * (PEAK_LIMIT / peak)
    mapped = d.time_map.to_output(times) if len(times) else times
    phonemes = [(float(t), ph.name) for t, ph in zip(mapped, syn.phonemes, strict=True)]
    factors = np.exp(uv.target_std * vrng.standard_normal(len(phonemes))) if uv.target_std > 0 else np.ones(len(phonemes))
    return Utterance(utt_id=utt_id, word=word, audio=y.astype(np.float32), phonemes=phonemes, rate_wpm=rate,
                     pitch=pitch, mouth_scale=ses.mouth * uv.mouth,
                     open_factors=tuple(float(f) for f in factors), av_lag_s=uv.av_lag_s)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
