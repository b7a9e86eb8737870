"""av-cli export: self-contained pickle-free folders that decode exactly like the run, safe destinations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from av_fusion_models import AVWhisperForConditionalGeneration, AVWhisperProcessor, join_char_level, recognize
from av_train.data.dataset import load_audio
from av_train.evaluation.decoding import decode_runs
from av_train.evaluation.loading import load_run
from av_train.export import ExportError, export_hf
from av_train.export.cli import main as export_main
from uaspeech_prep.video_io import read_frames


@pytest.mark.parametrize("modality", ["audio", "audio_visual", "video"])
def test_export_decodes_exactly_like_the_run(make_run, prepared_tree, tiny_whisper_dir, tmp_path, modality, monkeypatch):
    kw = {"modality": modality, "resnet_width": 4}
    if modality != "audio":
        kw["gate_init"] = 0.5
    cfg = make_run(prepared_tree, tiny_whisper_dir, tmp_path, **kw)
    out = tmp_path / "exported"
    res = export_hf(cfg.checkpoint_dir, out)
    names = set(res.files)
    assert {"config.json", "whisper_config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
            "training_config.yaml", "metrics.json", "README.md", "export.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl", ".ckpt"))]
    assert not list(tmp_path.glob(".exported*"))  # no staging left behind
    assert yaml.safe_load((out / "training_config.yaml").read_text())["modality"] == modality

    run = load_run(cfg.checkpoint_dir / "best.ckpt", device="cpu")
    preds = decode_runs([run], "B2", batch_size=1, progress=False)
    with monkeypatch.context() as m:  # the export loads without pickle
        m.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("pickle")))
        model = AVWhisperForConditionalGeneration.from_pretrained(out)
        processor = AVWhisperProcessor.from_pretrained(out)
    assert processor.modality == modality
    from av_train.data.manifest import load_samples

    samples, _ = load_samples(prepared_tree, "test", ["M5"], need_video=modality != "audio")
    by_id = {p.utt_id: p for p in preds}
    for s in samples:
        audio = load_audio(s.audio) if modality != "video" else None
        video = np.stack(read_frames(s.roi, gray=True)) if modality != "audio" else None
        [r] = recognize(model, processor, audio=audio, video=video)
        # the run's prediction is character-level text ("t h r e e"); the processor joins it into words
        assert r.text == join_char_level(by_id[s.utt_id].hypothesis)


def test_closed_vocabulary_and_model_card(make_run, prepared_tree, tiny_whisper_dir, tmp_path):
    cfg = make_run(prepared_tree, tiny_whisper_dir, tmp_path, modality="audio_visual", resnet_width=4)
    words = tmp_path / "words.txt"
    words.write_text("# my words\nzero\none\n\ntwo\nthree\nzero\n")
    out = tmp_path / "closed"
    assert export_main([str(cfg.checkpoint_dir / "best.ckpt"), str(out), "--decode-vocabulary", str(words)]) == 0
    assert (out / "vocabulary.txt").read_text().split() == ["zero", "one", "two", "three"]
    model = AVWhisperForConditionalGeneration.from_pretrained(out)
    proc = AVWhisperProcessor.from_pretrained(out)
    rng = np.random.default_rng(0)
    [r] = recognize(model, proc, audio=rng.normal(0, 0.1, 8000).astype(np.float32),
                    video=rng.integers(0, 256, (12, 96, 96), dtype=np.uint8), top_k=4)
    assert r.text in {"zero", "one", "two", "three"}
    assert sorted(w for w, _ in r.top_k) == ["one", "three", "two", "zero"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["license"] == "mit" and meta["library_name"] == "av-fusion-models"
    assert "| very_low | 50.0 | 20.0 | 50.0 | 4 |" in card and "| **total** | 25.0 |" in card
    assert "closed vocabulary of 4 words" in card
    assert "synthetic" not in card.lower().split("## intended use")[0]  # a real (test) tree, not the synthetic one


def test_destination_safety(make_run, prepared_tree, tiny_whisper_dir, tmp_path, capsys):
    cfg = make_run(prepared_tree, tiny_whisper_dir, tmp_path, modality="audio")
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("precious")
    with pytest.raises(ExportError, match="not an earlier export"):
        export_hf(cfg.checkpoint_dir, thesis, overwrite=True)
    assert (thesis / "chapter1.tex").read_text() == "precious" and len(list(thesis.iterdir())) == 1
    out = tmp_path / "model"
    export_hf(cfg.checkpoint_dir, out)
    assert export_main([str(cfg.checkpoint_dir), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    before = (out / "export.json").read_text()
    assert export_main([str(cfg.checkpoint_dir), str(out), "--overwrite"]) == 0
    assert json.loads((out / "export.json").read_text())["exported"] >= json.loads(before)["exported"]
    capsys.readouterr()
    # clear one-line errors
    assert export_main([str(tmp_path / "nope"), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such checkpoint" in err
    assert export_main([str(cfg.checkpoint_dir), str(tmp_path / "y"), "--decode-vocabulary", "missing.txt"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_ct2_refuses_video_runs(make_run, prepared_tree, tiny_whisper_dir, tmp_path, capsys):
    cfg = make_run(prepared_tree, tiny_whisper_dir, tmp_path, modality="audio_visual", resnet_width=4)
    assert export_main([str(cfg.checkpoint_dir), str(tmp_path / "c"), "--format", "ct2"]) == 2
    assert "no video path" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_push_to_hub_uses_huggingface_hub(make_run, prepared_tree, tiny_whisper_dir, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo, **kw):
            calls.append(("create", repo, kw))

        def upload_folder(self, **kw):
            calls.append(("upload", kw["repo_id"], sorted(p.name for p in __import__("pathlib").Path(kw["folder_path"]).iterdir())))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    cfg = make_run(prepared_tree, tiny_whisper_dir, tmp_path, modality="audio")
    assert export_main([str(cfg.checkpoint_dir), str(tmp_path / "m"), "--push-to-hub", "me/dysarthric", "--private"]) == 0
    assert calls[0] == ("create", "me/dysarthric", {"repo_type": "model", "private": True, "exist_ok": True})
    assert calls[1][1] == "me/dysarthric" and "model.safetensors" in calls[1][2]


def test_two_exports_into_one_folder_do_not_mix(tmp_path, capsys, make_run, prepared_tree, tiny_whisper_dir):
    """(issue: hardening round two, class 1) while one export writes OUT, a second is refused with the holder's pid,
    and leaves OUT, and the first's staging folder, alone"""
    import os

    from av_common.files import output_lock, private_staging
    from av_train.export.cli import main as export_main

    cfg = make_run(prepared_tree, tiny_whisper_dir, tmp_path / "runs", seed=3, train_id="busy")
    out = tmp_path / "out"
    with output_lock(out, "av-cli export"):
        staging = private_staging(out, "export-tmp")
        (staging / "half_written").write_text("x")
        rc = export_main([str(cfg.checkpoint_dir), str(out)])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert rc == 2 and f"{out} is being written by another process (pid {os.getpid()}: av-cli export)" in err
        assert not out.exists() and (staging / "half_written").is_file()
    assert not (tmp_path / ".out.lock").exists()  # the holder removes its lock
    assert export_main([str(cfg.checkpoint_dir), str(out)]) == 0
    from av_common.files import current_umask

    for f in out.iterdir():  # the user's umask decides the modes, as for any file they write (not 0600)
        assert f.stat().st_mode & 0o777 == 0o666 & ~current_umask(), f
