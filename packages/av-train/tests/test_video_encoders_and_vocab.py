"""AV-HuBERT as the video front-end of a run, and the seen / unseen test vocabularies."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest
import torch

from av_train.checkpoints import CheckpointError
from av_train.config import from_dict
from av_train.data.manifest import load_samples
from av_train.model_factory import build_model


def _avhubert_cfg(tiny_whisper_dir, prepared_tree, **extra):
    return from_dict({
        "uaspeech_root": str(prepared_tree), "model_name": str(tiny_whisper_dir), "local_model_only": True,
        "modality": "audio_visual", "fusion_location": "decoder", "video_encoder": "avhubert",
        "avhubert_size": "tiny", **extra,
    })


def test_avhubert_video_encoder_is_built_and_fuses(tiny_whisper_dir, prepared_tree):
    from av_fusion_models.avhubert import AVHubertVideoEncoder

    model, _tok, n_mels, new_names = build_model(_avhubert_cfg(tiny_whisper_dir, prepared_tree))
    assert isinstance(model.video_encoder, AVHubertVideoEncoder)
    assert any(n.startswith("video_encoder.") for n in new_names)
    model.eval()
    feats = torch.randn(2, n_mels, 100)
    video = torch.randn(2, 20, 88, 88)
    dec = torch.tensor([[50257, 50362, 220], [50257, 50362, 256]])
    with torch.no_grad():
        logits = model(input_features=feats, decoder_input_ids=dec, video=video).logits
    assert logits.shape == (2, 3, 51864) and torch.isfinite(logits).all()


def test_avhubert_checkpoint_that_executes_code_is_refused(tiny_whisper_dir, prepared_tree, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "avhubert_evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"model": Evil(), "cfg": None}, f)
    with pytest.raises(CheckpointError, match="avhubert_evil.pt"):
        build_model(_avhubert_cfg(tiny_whisper_dir, prepared_tree, video_encoder_ckpt=str(bad)))
    assert not marker.exists()


def test_missing_avhubert_checkpoint_names_the_file(tiny_whisper_dir, prepared_tree, tmp_path):
    missing = tmp_path / "nope" / "base_vox_iter5.pt"
    with pytest.raises(CheckpointError, match="base_vox_iter5.pt"):
        build_model(_avhubert_cfg(tiny_whisper_dir, prepared_tree, video_encoder_ckpt=str(missing)))


def test_seen_and_unseen_vocabularies_filter_the_test_block_only(prepared_tree, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(prepared_tree, root)
    records = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    for rec in records:  # pretend "Three" is never spoken in B1 / B3
        rec["seen_in_train"] = rec["word"] != "Three"
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    all_test, _ = load_samples(root, "test", ["M5"])
    seen, _ = load_samples(root, "test", ["M5"], vocabulary="seen")
    unseen, _ = load_samples(root, "test", ["M5"], vocabulary="unseen")
    assert len(all_test) == 8 and len(seen) == 6 and len(unseen) == 2
    assert {s.word for s in unseen} == {"Three"}
    assert len(load_samples(root, "train", ["M5"], vocabulary="unseen")[0]) == len(load_samples(root, "train", ["M5"])[0])


def test_seen_falls_back_to_the_word_list_without_manifest_field(prepared_tree):
    # The fixture's words (zero..three) are digits, spoken in every block: all seen.
    assert len(load_samples(prepared_tree, "test", ["M5"], vocabulary="seen")[0]) == 8
    assert load_samples(prepared_tree, "test", ["M5"], vocabulary="unseen")[0] == []
