"""The docs/API.md snippet runs in a fresh virtual environment where only av-fusion-models is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def snippet() -> str:
    text = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- pip-alone-snippet -->\n```python\n(.*?)```", text, re.S)
    assert m, "docs/API.md lost its pip-alone snippet"
    return m.group(1)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_api_snippet_in_a_fresh_venv_with_av_fusion_models_alone(tmp_path):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (it makes the fresh environment)")
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from av_fusion_models import AVWhisperConfig, AVWhisperForConditionalGeneration, AVWhisperProcessor, recognize
    from av_fusion_models.ct2 import bundled_tiny_en_dir
    from av_fusion_models.tokenizer import build_whisper_tokenizer

    # an exported audio-visual model (what `av-cli export` writes: model + processor folders)
    tok = build_whisper_tokenizer(bundled_tiny_en_dir())
    torch.manual_seed(0)
    wcfg = WhisperConfig(vocab_size=len(tok), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=2,
                         encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                         max_source_positions=200, max_target_positions=48, decoder_start_token_id=50257,
                         eos_token_id=50256, pad_token_id=50256, bos_token_id=50256, init_std=0.5)
    model = AVWhisperForConditionalGeneration.from_whisper(
        WhisperForConditionalGeneration(wcfg), AVWhisperConfig(fusion_location="decoder", resnet_width=2,
                                                               xattn_gate_init=0.5)).eval()
    proc = AVWhisperProcessor(tok, vocabulary=["three", "seven", "paragraph", "zero", "air"])
    work = tmp_path / "work"
    model.save_pretrained(work / "my_model")
    proc.save_pretrained(work / "my_model")
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, 16000).astype(np.float32)
    mouth = rng.integers(0, 256, (25, 96, 96), dtype=np.uint8)
    np.save(work / "word_audio.npy", audio)
    np.save(work / "word_mouth.npy", mouth)
    (work / "snippet.py").write_text(snippet())
    [expected] = recognize(model, proc, audio=audio, video=mouth, sampling_rate=16000, top_k=3)

    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT_ENVIRONMENT")}
    py_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([uv, "venv", "-q", str(venv), "--python", py_version], check=True, env=env)
    python = venv / "bin" / "python"
    subprocess.run([uv, "pip", "install", "-q", "--python", str(python), str(ROOT / "packages" / "av-fusion-models")],
                   check=True, env=env, timeout=800)
    present = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print([m for m in ('lightning', 'av_train', 'av_eval', "
                            "'uaspeech_prep', 'mediapipe', 'av_cli') if u.find_spec(m)])"],
        check=True, env=env, capture_output=True, text=True).stdout.strip()
    assert present == "[]", f"the fresh environment has more than av-fusion-models: {present}"
    out = subprocess.run([str(python), "snippet.py"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    printed = out.stdout.strip().splitlines()[-1]
    assert printed.startswith(expected.text + " [")
    import ast

    top_k = ast.literal_eval(printed[len(expected.text) + 1:])
    assert [w for w, _ in top_k] == [w for w, _ in expected.top_k]
    assert np.allclose([lp for _, lp in top_k], [lp for _, lp in expected.top_k], atol=1e-4)
