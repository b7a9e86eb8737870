"""Dataset of (log-mel, lip video, target) examples and the batch collator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch.utils.data import Dataset

from av_common.corpus import ROI_FPS, SAMPLE_RATE  # noqa: F401  (the corpus's numbers, one home; LAYOUT.md 2)
from av_fusion_models import log_mel, mel_frames_for_video, normalize_video, pad_log_mel_batch, silence_log_mel
from av_fusion_models.video_transforms import CROP_SIZE, center_crop, random_crop, random_horizontal_flip
from av_train.data.manifest import Sample
from av_train.data.noise import add_white_noise, babble, mix_at_snr, pick_others
from av_train.data.targets import TargetEncoder
from uaspeech_prep.video_io import read_frames

CROP = CROP_SIZE
NOISE_TYPES = ("white", "babble", "mixed")


def load_audio(path: Path) -> np.ndarray:
    """Mono float32 audio at 16 kHz (resampled with torchaudio when the file has another rate)."""
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for bad files
        raise RuntimeError(f"cannot read audio {path}: {e}. Re-run `uaspeech-prep prepare` for this tree.") from e
    audio = audio.mean(axis=1)
    if audio.size == 0:
        raise RuntimeError(f"audio file {path} is empty; re-run preparation or drop the utterance")
    if sr != SAMPLE_RATE:
        audio = AF.resample(torch.from_numpy(audio), sr, SAMPLE_RATE).numpy()
    return audio


class UASpeechAVDataset(Dataset):
    """Examples of one split. Training mode adds noise (option) and random crop + flip of the lips;
    evaluation mode takes the centre crop.

    ``with_audio=False`` (lip reading): the audio file is never read; the log-mel is digital silence as
    long as the lip video. Babble noise (``noise_type``) is made of other utterances of this same set, so
    a training set's babble never contains a test utterance.
    """

    def __init__(
        self,
        samples: list[Sample],
        targets: TargetEncoder,
        with_video: bool,
        train: bool,
        n_mels: int = 80,
        noise_prob: float = 0.0,
        noise_snr_db: tuple[float, float] = (0.0, 20.0),
        cache_features: bool = True,
        seed: int = 0,
        with_audio: bool = True,
        noise_type: str = "white",
        noise_talkers: int = 4,
    ):
        if noise_type not in NOISE_TYPES:
            raise ValueError(f"noise_type must be one of {NOISE_TYPES}, got {noise_type!r}")
        if not (with_audio or with_video):
            raise ValueError("a dataset without audio needs the video")
        self.samples = samples
        self.targets = targets
        self.with_video = with_video
        self.train = train
        self.n_mels = n_mels
        self.noise_prob = noise_prob if train else 0.0
        self.noise_snr_db = noise_snr_db
        self.noise_type = noise_type
        self.noise_talkers = noise_talkers
        self.with_audio = with_audio
        # Only clean features are cached: a clip drawn clean in an epoch (1 - noise_prob of them) reuses them.
        self.cache_features = cache_features
        self._cache: dict[int, torch.Tensor] = {}
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def _rng(self, index: int, epoch: int, stream: int) -> np.random.Generator:
        # Deterministic per (seed, epoch, index), independent of worker count and order.
        return np.random.default_rng([self.seed, epoch, index, stream])

    def _babble(self, index: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """Babble of ``noise_talkers`` other utterances of this set (never another channel of this one)."""
        own = self.samples[index].utt_id
        picks = pick_others(len(self.samples), index, self.noise_talkers, rng)
        talkers = [load_audio(self.samples[int(k)].audio) for k in picks if self.samples[int(k)].utt_id != own]
        if not talkers:
            raise RuntimeError(f"babble noise for {own}: the training set has no other utterance")
        return babble(talkers, n, rng)

    def _noise_stream(self, index: int, epoch: int) -> np.random.Generator | None:
        """The clip's noise draws for this epoch, or None when it stays clean (probability 1 - noise_prob)."""
        if self.noise_prob <= 0:
            return None
        rng = self._rng(index, epoch, 0)
        return rng if rng.random() < self.noise_prob else None

    def _add_noise(self, index: int, audio: np.ndarray, epoch: int) -> np.ndarray:
        rng = self._noise_stream(index, epoch)
        return audio if rng is None else self._mix_noise(index, audio, rng)

    def _mix_noise(self, index: int, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        snr = float(rng.uniform(*self.noise_snr_db))
        kind = self.noise_type
        if kind == "mixed":
            kind = "white" if rng.random() < 0.5 else "babble"
        if kind == "white":
            return add_white_noise(audio, snr, rng)
        return mix_at_snr(audio, self._babble(index, audio.size, rng), snr)

    def features(self, index: int, epoch: int = 0) -> torch.Tensor:
        noise = self._noise_stream(index, epoch)
        if noise is None and index in self._cache:
            return self._cache[index]
        audio = load_audio(self.samples[index].audio)
        if noise is not None:
            return log_mel(self._mix_noise(index, audio, noise), self.n_mels)
        feats = log_mel(audio, self.n_mels)
        if self.cache_features:
            self._cache[index] = feats
        return feats

    def video(self, index: int, epoch: int = 0) -> torch.Tensor:
        roi = self.samples[index].roi
        if roi is None:
            raise RuntimeError(f"{self.samples[index].utt_id} has no lip ROI video but the run uses video")
        decoded = read_frames(roi, gray=True)
        if not decoded:
            raise RuntimeError(f"lip ROI video {roi} has no frames; re-run `uaspeech-prep prepare --overwrite`")
        frames = np.stack(decoded)  # [T, H, W] uint8
        if self.train:
            rng = self._rng(index, epoch, 1)
            clip = random_horizontal_flip(random_crop(frames, rng, CROP), rng)
        else:
            clip = center_crop(frames, CROP)
        return clip.contiguous()

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        s = self.samples[index]
        dec_in, labels = self.targets.encode(s.word)
        video = self.video(index, epoch) if self.with_video else None
        if self.with_audio:
            feats = self.features(index, epoch)
        else:  # lip reading: silence as long as the video; the audio file is never read
            feats = silence_log_mel(mel_frames_for_video(video.shape[0], ROI_FPS), self.n_mels)
        item = {
            "index": index,
            "input_features": feats,
            "decoder_input_ids": torch.tensor(dec_in),
            "labels": torch.tensor(labels),
            "meta": {"utt_id": s.utt_id, "speaker": s.speaker, "level": s.level, "category": s.category,
                     "word": s.word, "mic": s.mic},
        }
        if video is not None:
            item["video"] = video
        return item


class Collator:
    """Pads a list of examples to the longest audio / video / text in the batch."""

    def __init__(self, pad_id: int, pad_audio_to: int | None = None):
        self.pad_id = pad_id
        # 3000 mel frames (30 s) when Whisper's full positional table is kept.
        self.pad_audio_to = pad_audio_to

    def __call__(self, items: list[dict]) -> dict:
        feats, feat_lengths = pad_log_mel_batch([it["input_features"] for it in items], pad_to=self.pad_audio_to)
        max_len = max(len(it["labels"]) for it in items)
        dec = torch.full((len(items), max_len), self.pad_id, dtype=torch.long)
        labels = torch.full((len(items), max_len), -100, dtype=torch.long)
        for i, it in enumerate(items):
            n = len(it["labels"])
            dec[i, :n] = it["decoder_input_ids"]
            labels[i, :n] = it["labels"]
        batch = {
            "index": torch.tensor([it["index"] for it in items]),
            "input_features": feats,
            "feature_lengths": feat_lengths,
            "decoder_input_ids": dec,
            "labels": labels,
            "meta": [it["meta"] for it in items],
        }
        if "video" in items[0]:
            t_max = max(it["video"].shape[0] for it in items)
            h, w = items[0]["video"].shape[1:]
            video = torch.zeros((len(items), t_max, h, w), dtype=torch.uint8)
            mask = torch.ones((len(items), t_max), dtype=torch.bool)  # True = padding
            for i, it in enumerate(items):
                n = it["video"].shape[0]
                video[i, :n] = it["video"]
                mask[i, :n] = False
            batch["video"] = normalize_video(video)
            batch["video_padding_mask"] = mask
        return batch
