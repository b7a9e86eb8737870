"""The processor of an audio-visual Whisper: raw inputs -> model inputs, generated ids -> text.

In the manner of a Transformers processor, one object holds everything a trained model needs around
it, and is saved beside the model (``processor_config.json`` + the tokenizer files + an optional
``vocabulary.txt``):

* audio: any rate, mono or multi-channel -> mono 16 kHz -> Whisper's log-mel, cut to the clip (or
  padded to 30 s when the model keeps Whisper's full positional table);
* video: mouth crops (the lip ROI of ``uaspeech-prep``: grey 96 x 96 at 25 fps) -> the central
  88 x 88 crop, normalised as in training; a lip-reading model gets digital silence as its audio;
* the decoder prompt (``<|startoftranscript|>`` [language, task] ``<|notimestamps|>``);
* targets: a word as the decoder text it was trained on (" three", or " t h r e e" for character-level
  training) and back (" t h r e e" -> "three");
* an optional closed vocabulary (e.g. UASpeech's 455 words) for constrained decoding.

It depends on torch, numpy and the tokenizer only: no Lightning, no training code.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .constrained import TokenTrie, word_target_text
from .features import SAMPLING_RATE, log_mel, pad_log_mel_batch
from .video_transforms import CROP_SIZE, VIDEO_MEAN, VIDEO_STD, center_crop, normalize_video

PROCESSOR_CONFIG_NAME = "processor_config.json"
VOCABULARY_NAME = "vocabulary.txt"
MODALITIES = ("audio", "video", "audio_visual")
# Whisper's window: longer inputs do not fit its encoder.
MAX_SECONDS = 30.0
MIN_VIDEO_SECONDS = 0.2  # the shortest UASpeech words last about 0.3 s; fewer frames cannot show one
# ITU-R BT.601 luma, the weights OpenCV's BGR2GRAY uses when the ROI videos are read for training.
_LUMA_RGB = (0.299, 0.587, 0.114)


class InputError(ValueError):
    """An input the model cannot take (wrong shape, too long, missing modality)."""


def join_char_level(text: str) -> str:
    """Character-level decoder text back to words: " t h r e e" -> "three", "x | r a y" -> "x ray"."""
    words = [w.replace(" ", "") for w in text.strip().split("|")]
    return " ".join(w for w in words if w)


def decoder_prompt(tokenizer: Any) -> list[int]:
    """``<|startoftranscript|>`` (+ ``<|en|><|transcribe|>`` for multilingual Whispers) ``<|notimestamps|>``.

    English-only Whispers (vocabulary 51864) have no language or task tokens in their prompt.
    """
    sot = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    prompt = [sot]
    en = tokenizer.convert_tokens_to_ids("<|en|>")
    if isinstance(en, int) and en != tokenizer.unk_token_id and len(tokenizer) >= 51865:
        prompt += [en, tokenizer.convert_tokens_to_ids("<|transcribe|>")]
    prompt.append(tokenizer.convert_tokens_to_ids("<|notimestamps|>"))
    return prompt


@dataclass
class AVWhisperProcessor:
    """Turns waveforms and mouth crops into `AVWhisperForConditionalGeneration` inputs, and ids into words.

    Args:
        tokenizer: the model's Whisper tokenizer (saved with the processor).
        modality: ``"audio"`` (video ignored), ``"video"`` (lip reading: audio ignored, silence fed) or
            ``"audio_visual"``.
        n_mels: mel bins of the model (80; 128 for large-v3).
        pad_audio_to_30s: pad every log-mel to 3000 frames (a model without ``cut_encoder_positions``).
        video_fps: frame rate the model was trained on (the ROI videos of uaspeech-prep: 25).
        roi_size: side of the mouth crops in training (96); other sizes are resized to it first.
        crop_size: the central crop the model sees (88).
        char_level: the model was trained on character-level targets (" t h r e e").
        lowercase: targets were lower-cased.
        max_new_tokens, num_beams, loop_repeats: the decoding the model was validated with (``loop_repeats``:
            copies of one unit that end a looping transcript, see `AVWhisperForConditionalGeneration.generate`;
            None: off).
        vocabulary: closed vocabulary (one word or phrase per entry) for constrained decoding, or None.
        prompt_ids, eos_token_id: derived from the tokenizer unless given.
    """

    tokenizer: Any
    modality: str = "audio_visual"
    n_mels: int = 80
    pad_audio_to_30s: bool = False
    video_fps: float = 25.0
    roi_size: int = 96
    crop_size: int = CROP_SIZE
    video_mean: float = VIDEO_MEAN
    video_std: float = VIDEO_STD
    char_level: bool = True
    lowercase: bool = True
    max_new_tokens: int = 24
    num_beams: int = 1
    loop_repeats: int | None = None
    vocabulary: list[str] | None = None
    prompt_ids: list[int] = field(default_factory=list)
    eos_token_id: int | None = None
    _trie: TokenTrie | None = field(default=None, init=False, repr=False, compare=False)
    _words_by_tokens: dict | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        self._check_numbers()
        if self.loop_repeats is not None and self.loop_repeats < 2:
            raise ValueError(f"loop_repeats must be None (no cut) or >= 2 copies, got {self.loop_repeats}")
        if not self.prompt_ids:
            self.prompt_ids = decoder_prompt(self.tokenizer)
        if self.eos_token_id is None:
            self.eos_token_id = int(self.tokenizer.convert_tokens_to_ids("<|endoftext|>"))
        if self.vocabulary is not None:
            words = [w.strip() for w in self.vocabulary if w.strip()]
            if not words:
                raise ValueError("a closed vocabulary needs at least one word (or pass vocabulary=None)")
            self.vocabulary = list(dict.fromkeys(words))

    def _check_numbers(self) -> None:
        """Every number of the contract in its range (a damaged processor_config.json must not load)."""
        def number(name: str, kind: type, low: float, high: float = math.inf) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or float(v).is_integer())
            if not ok or not (low <= v <= high) or not math.isfinite(float(v)):
                raise ValueError(f"field {name!r} must be a{'n integer' if kind is int else ' number'} in "
                                 f"[{low:g}, {high:g}], got {v!r}")

        number("n_mels", int, 1, 512)
        number("video_fps", float, 1, 240)
        number("roi_size", int, 8, 1024)
        number("crop_size", int, 8, self.roi_size if isinstance(self.roi_size, int) else 1024)
        number("video_mean", float, 0, 255)
        number("video_std", float, 1e-6, 255)
        number("max_new_tokens", int, 1, 448)
        number("num_beams", int, 1, 64)

    # ------------------------------------------------------------------ what the model reads
    @property
    def uses_audio(self) -> bool:
        return self.modality != "video"

    @property
    def uses_video(self) -> bool:
        return self.modality != "audio"

    def audio_features(self, waveform: np.ndarray | torch.Tensor, sampling_rate: int = SAMPLING_RATE) -> torch.Tensor:
        """One waveform -> log-mel [n_mels, T].

        ``waveform``: [N] mono, or [N, C] / [C, N] (the smaller dimension is taken as channels and averaged),
        float (-1..1) or integer PCM, at ``sampling_rate`` (resampled to 16 kHz with torchaudio).
        """
        wav = torch.as_tensor(np.asarray(waveform) if not torch.is_tensor(waveform) else waveform)
        if not wav.is_floating_point():
            wav = wav.to(torch.float32) / float(torch.iinfo(wav.dtype).max + 1)
        wav = wav.to(torch.float32)
        if wav.ndim == 2:
            wav = wav.mean(dim=0 if wav.shape[0] < wav.shape[1] else 1)
        elif wav.ndim != 1:
            raise InputError(f"audio must be [samples] or [samples, channels], got shape {tuple(wav.shape)}")
        if wav.numel() == 0:
            raise InputError("audio is empty")
        bad = int((~torch.isfinite(wav)).sum())
        if bad:
            raise InputError(f"{bad} of {wav.numel()} audio samples are NaN or infinite; the recording is damaged")
        if sampling_rate != SAMPLING_RATE:
            import torchaudio.functional as AF

            wav = AF.resample(wav, int(sampling_rate), SAMPLING_RATE)
        seconds = wav.numel() / SAMPLING_RATE
        if seconds > MAX_SECONDS:
            raise InputError(f"audio is {seconds:.1f} s long; the model takes at most {MAX_SECONDS:g} s")
        return log_mel(wav, self.n_mels)

    def video_frames(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Mouth crops -> the uint8 frames the model sees, [T, crop, crop].

        ``frames``: [T, H, W] grey or [T, H, W, 3] colour (RGB; a grey video stored as three equal channels,
        as the ROI videos are, reads the same in any channel order), uint8 or float 0..255. Crops whose side
        is not ``roi_size`` are resized to it (area interpolation), then the central ``crop_size`` square is
        kept, exactly as validation does.
        """
        x = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
        if x.ndim == 4 and x.shape[-1] in (3, 4):
            rgb = x[..., :3].to(torch.float32)
            x = (rgb * torch.tensor(_LUMA_RGB)).sum(-1).round().clamp(0, 255)
        if x.ndim != 3:
            raise InputError(f"video must be [frames, H, W] or [frames, H, W, 3], got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise InputError("video has no frames")
        least = math.ceil(MIN_VIDEO_SECONDS * self.video_fps)
        if x.shape[0] < least:
            raise InputError(f"video has {x.shape[0]} frame(s) ({x.shape[0] / self.video_fps:.2f} s); a word needs at "
                             f"least {MIN_VIDEO_SECONDS:g} s of lips ({least} frames at {self.video_fps:g} fps)")
        seconds = x.shape[0] / self.video_fps
        if seconds > MAX_SECONDS:
            raise InputError(f"video is {seconds:.1f} s long at {self.video_fps:g} fps; at most {MAX_SECONDS:g} s")
        if tuple(x.shape[1:]) != (self.roi_size, self.roi_size):
            x = F.interpolate(x[:, None].to(torch.float32), size=(self.roi_size, self.roi_size), mode="area")[:, 0]
            x = x.round().clamp(0, 255)
        return center_crop(x, self.crop_size).to(torch.uint8).contiguous()

    def __call__(
        self,
        audio: Sequence[np.ndarray | torch.Tensor | None] | np.ndarray | torch.Tensor | None = None,
        video: Sequence[np.ndarray | torch.Tensor | None] | np.ndarray | torch.Tensor | None = None,
        sampling_rate: int | Sequence[int] = SAMPLING_RATE,
    ) -> dict[str, torch.Tensor]:
        """A batch of model inputs from one input (arrays) or several (lists of arrays).

        Returns:
            input_features [B, n_mels, T_a] and input_lengths [B] (absent for a lip-reading model, which
            makes its own silence), video [B, T_v, crop, crop] float and video_padding_mask [B, T_v]
            (True = padding) for models that read the lips.
        """
        audios, videos = _as_list(audio), _as_list(video)
        n = max(len(audios), len(videos))
        if n == 0:
            raise InputError("nothing to process: pass audio and/or video")
        audios = audios or [None] * n
        videos = videos or [None] * n
        if len(audios) != len(videos):
            raise InputError(f"{len(audios)} audio inputs but {len(videos)} videos")
        rates = [sampling_rate] * n if isinstance(sampling_rate, (int, float)) else list(sampling_rate)
        batch: dict[str, torch.Tensor] = {}
        if self.uses_audio:
            if any(a is None for a in audios):
                raise InputError("this model listens: every input needs audio")
            feats = [self.audio_features(a, r) for a, r in zip(audios, rates)]
            batch["input_features"], batch["input_lengths"] = pad_log_mel_batch(
                feats, pad_to=3000 if self.pad_audio_to_30s else None
            )
        if self.uses_video:
            if any(v is None for v in videos):
                raise InputError("this model reads the lips: every input needs mouth frames")
            clips = [self.video_frames(v) for v in videos]
            t_max = max(c.shape[0] for c in clips)
            frames = torch.zeros((n, t_max, self.crop_size, self.crop_size), dtype=torch.uint8)
            mask = torch.ones((n, t_max), dtype=torch.bool)
            for i, c in enumerate(clips):
                frames[i, : c.shape[0]] = c
                mask[i, : c.shape[0]] = False
            batch["video"] = normalize_video(frames, self.video_mean, self.video_std)
            batch["video_padding_mask"] = mask
        return batch

    # ------------------------------------------------------------------------------- text
    def target_text(self, word: str) -> str:
        """The decoder text of a word as the model was trained: " three" or " t h r e e"."""
        return word_target_text(word, self.char_level, self.lowercase)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Generated ids (prompt and end-of-text included or not) -> the words."""
        ids = ids.tolist() if torch.is_tensor(ids) else list(ids)
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return join_char_level(text) if self.char_level else text

    def batch_decode(self, sequences: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(seq) for seq in sequences]

    def words_by_tokens(self) -> dict[tuple[int, ...], str]:
        """Token sequence of each closed-vocabulary word (its decoder text) -> the word; tokenized once."""
        if self.vocabulary is None:
            return {}
        if self._words_by_tokens is None:
            table: dict[tuple[int, ...], str] = {}
            for w in self.vocabulary:
                table.setdefault(tuple(self.tokenizer.encode(self.target_text(w), add_special_tokens=False)), w)
            self._words_by_tokens = table
        return self._words_by_tokens

    def constraint(self) -> TokenTrie | None:
        """Prefix trie of the closed vocabulary's decoder texts (None for open decoding); built once."""
        if self.vocabulary is None:
            return None
        if self._trie is None:
            self._trie = TokenTrie(self.words_by_tokens())
        return self._trie

    def with_vocabulary(self, vocabulary: Sequence[str] | None) -> AVWhisperProcessor:
        """A copy of this processor with another closed vocabulary (None: open decoding)."""
        from dataclasses import replace

        return replace(self, vocabulary=None if vocabulary is None else list(vocabulary))

    # ----------------------------------------------------------------------- save / load
    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("tokenizer", "vocabulary") and not k.startswith("_")}
        d["processor_class"] = type(self).__name__
        d["closed_vocabulary"] = self.vocabulary is not None
        return d

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write processor_config.json, the tokenizer files and vocabulary.txt (closed vocabulary only)."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(path))
        _atomic_write(path / PROCESSOR_CONFIG_NAME, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        if self.vocabulary is not None:
            _atomic_write(path / VOCABULARY_NAME, "\n".join(self.vocabulary) + "\n")
        elif (path / VOCABULARY_NAME).exists():
            (path / VOCABULARY_NAME).unlink()

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> AVWhisperProcessor:
        """Load from a folder written by `save_pretrained` (JSON and text files only; nothing executes)."""
        from transformers import WhisperTokenizer

        path = Path(directory)
        cfg_file = path / PROCESSOR_CONFIG_NAME
        if not cfg_file.is_file():
            raise FileNotFoundError(
                f"{cfg_file} not found: {path} is not an exported audio-visual Whisper folder "
                "(write one with `av-cli export RUN_OR_CKPT OUT_DIR`)"
            )
        try:
            raw = json.loads(cfg_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg_file}: not valid JSON ({e.msg}); export the model again") from None
        closed = raw.pop("closed_vocabulary", False)
        raw.pop("processor_class", None)
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_")} - {"tokenizer", "vocabulary"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{cfg_file}: unknown fields {unknown} (written by a newer av-fusion-models?)")
        vocabulary = None
        if closed:
            vocab_file = path / VOCABULARY_NAME
            if not vocab_file.is_file():
                raise FileNotFoundError(f"{cfg_file} says the model decodes a closed vocabulary, but {vocab_file} "
                                        "is missing; export the model again")
            vocabulary = vocab_file.read_text(encoding="utf-8").splitlines()
        from .folder_checks import read_json

        for name in ("tokenizer.json", "tokenizer_config.json"):  # without them the tokenizer loads empty
            read_json(path / name)
        try:
            tokenizer = WhisperTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as e:  # the tokenizers library's errors have no common type
            raise ValueError(f"{path / 'tokenizer.json'}: not a usable Whisper tokenizer ({e}); export the model "
                             "again") from None
        try:
            return cls(tokenizer=tokenizer, vocabulary=vocabulary, **raw)
        except ValueError as e:  # a field out of range (modality, loop_repeats, ...): say which file holds it
            raise ValueError(f"{cfg_file}: {e}; fix the field or export the model again") from None


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
