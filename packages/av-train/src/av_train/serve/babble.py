"""Babble noise for the comparison tab: the upload's sound with other talkers mixed in at a chosen SNR.

The mixing is ``av_train.data.noise``'s (the functions of training and of ``av-cli noise-eval``): babble is
the sum of ``talkers`` utterances, each at unit power and from a random start, scaled so that
10 log10(P_speech / P_noise) = SNR over the whole clip. The talkers are audio files of a folder
(``--babble DIR``, e.g. a prepared corpus's ``audio/``), or, without one, the upload itself played
backwards: speech-like noise (the same voice, spectrum and rhythm) that says no word. The noise depends
only on the seed and the clip, so both models of the comparison hear exactly the same input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from av_train.data.noise import babble, mix_at_snr
from av_train.inference.media import AUDIO_SUFFIXES, MediaError, read_audio

RATE = 16000  # Whisper's rate: the mix is made (and written) at it
TALKERS = 4


def _to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == RATE:
        return samples.astype(np.float32)
    import torch
    import torchaudio

    return torchaudio.functional.resample(torch.from_numpy(samples.astype(np.float32)), rate, RATE).numpy()


class BabbleSource:
    """Talkers for babble: the audio files under ``folder`` (searched recursively), or the clip itself."""

    def __init__(self, folder: str | Path | None = None, talkers: int = TALKERS, seed: int = 0):
        self.folder = None if folder is None else Path(folder)
        self.talkers, self.seed = talkers, seed
        self.files: list[Path] = []
        if self.folder is not None:
            if not self.folder.is_dir():
                raise FileNotFoundError(f"--babble {self.folder}: no such folder (pass a folder of audio files, "
                                        "e.g. demo_out/corpus/audio)")
            self.files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            if len(self.files) < talkers:
                raise FileNotFoundError(f"--babble {self.folder}: {len(self.files)} audio files, babble needs at "
                                        f"least {talkers}")

    def describe(self) -> str:
        if self.folder is None:
            return f"{self.talkers} copies of the clip itself played backwards (speech-like, no word)"
        return f"{self.talkers} talkers drawn from the {len(self.files)} recordings under {self.folder}"

    def noise(self, speech: np.ndarray) -> np.ndarray:
        """Babble as long as ``speech`` (16 kHz), the same for the same clip."""
        rng = np.random.default_rng([self.seed, speech.size])
        if self.folder is None:
            others = [speech[::-1].copy()] * self.talkers
        else:
            picks = rng.choice(len(self.files), size=self.talkers, replace=False)
            others = []
            for k in picks:
                a = read_audio(self.files[int(k)])
                others.append(_to_16k(a.samples, a.rate))
        return babble(others, speech.size, rng)

    def mix(self, src: Path, snr_db: float, dst: Path) -> Path:
        """The sound of ``src`` (audio file or video) with babble at ``snr_db``, written to ``dst`` (16 kHz wav)."""
        import soundfile as sf

        a = read_audio(src)
        speech = _to_16k(a.samples, a.rate)
        try:
            mixed = mix_at_snr(speech, self.noise(speech), float(snr_db))
        except ValueError as e:  # silent clip or silent talkers
            raise MediaError(f"{src.name}: cannot add noise ({e})") from None
        peak = float(np.max(np.abs(mixed))) if mixed.size else 0.0
        if peak > 1.0:  # a wav of floats above 1 clips when played; the SNR is kept
            mixed = mixed / peak
        sf.write(dst, mixed, RATE, subtype="FLOAT")
        return dst
