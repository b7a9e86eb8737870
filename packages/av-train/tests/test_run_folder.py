"""One run folder, one run: reuse with another config refused, a live run locks its folder, a damaged
last.ckpt is named, checkpoints are written atomically beside their final name."""

from __future__ import annotations

import os

import pytest
import torch
import yaml

from av_train.checkpoints import CheckpointError, load_checkpoint_safely
from av_train.config import from_dict
from av_train.pipeline import run
from av_train.run_folder import AtomicCheckpointIO, RunFolderError, RunLock, config_differences


def _cfg(tree, model, out, **kw):
    base = {"uaspeech_root": str(tree), "model_name": str(model), "local_model_only": True, "output_root": str(out),
            "train_name": "t", "train_id": "reuse", "batch_size": 8, "max_epochs": 1, "num_workers": 0,
            "learning_rate": 1e-3, "warmup_steps": 2, "progress_bar": False, "max_new_tokens": 4,
            "microphones": ["M5"], "validation_decoding": "teacher_forced"}
    return from_dict({**base, **kw})


@pytest.fixture(scope="module")
def trained(prepared_tree, tiny_whisper_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = _cfg(prepared_tree, tiny_whisper_dir, out)
    run(cfg)
    return cfg


def test_reuse_with_another_config_is_refused_and_config_yaml_kept(trained, prepared_tree, tiny_whisper_dir):
    saved = (trained.checkpoint_dir / "config.yaml").read_text()
    other = _cfg(prepared_tree, tiny_whisper_dir, trained.output_root, learning_rate=5e-4, modality="audio_visual")
    with pytest.raises(RunFolderError, match="learning_rate: 0.001 -> 0.0005") as e:
        run(other)
    assert "modality: 'audio' -> 'audio_visual'" in str(e.value) and "allow_config_change=true" in str(e.value)
    assert (trained.checkpoint_dir / "config.yaml").read_text() == saved  # the finished run is intact
    # epoch limits may differ: the run resumes (and trains on to epoch 2)
    longer = _cfg(prepared_tree, tiny_whisper_dir, trained.output_root, max_epochs=2)
    run(longer)
    assert load_checkpoint_safely(trained.checkpoint_dir / "last.ckpt")["epoch"] == 1
    assert yaml.safe_load((trained.checkpoint_dir / "config.yaml").read_text())["max_epochs"] == 2


def test_differences_ignore_only_limits():
    a = {"max_epochs": 1, "learning_rate": 1e-3, "seed": 1, "progress_bar": True}
    b = {"max_epochs": 5, "learning_rate": 1e-3, "seed": 2, "progress_bar": False}
    assert config_differences(a, b) == ["seed: 1 -> 2"]
    # an option added after the run was saved: absent there means its default
    assert config_differences({"seed": 1}, {"seed": 1, "decode_vocabulary": "open"}) == []
    assert config_differences({"seed": 1}, {"seed": 1, "decode_vocabulary": "uaspeech"}) == [
        "decode_vocabulary: 'open' -> 'uaspeech'"]


def test_a_live_run_locks_its_folder(trained, prepared_tree, tiny_whisper_dir):
    with RunLock(trained.checkpoint_dir):
        with pytest.raises(RunFolderError, match=f"in use by another training \\(pid {os.getpid()}\\)"):
            run(_cfg(prepared_tree, tiny_whisper_dir, trained.output_root, max_epochs=2))
    with RunLock(trained.checkpoint_dir):  # released: can be taken again
        pass


def test_damaged_last_ckpt_is_named_with_the_ways_on(prepared_tree, tiny_whisper_dir, tmp_path):
    cfg = _cfg(prepared_tree, tiny_whisper_dir, tmp_path, train_id="damaged")
    run(cfg)
    last = cfg.checkpoint_dir / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # what a full disk leaves
    stale = cfg.checkpoint_dir / ".last.ckpt.tmp-999999999"
    stale.write_bytes(b"x" * 100)  # a save killed mid-way (its process is gone)
    with pytest.raises(RunFolderError, match="last.ckpt cannot be read") as e:
        run(_cfg(prepared_tree, tiny_whisper_dir, tmp_path, train_id="damaged", max_epochs=2))
    assert "best.ckpt over it" in str(e.value) and "delete it to start afresh" in str(e.value)
    assert not stale.exists()


def test_atomic_checkpoint_io(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpt" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)
    assert load_checkpoint_safely(path)["epoch"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]

    def dies(obj, f, *a, **k):  # the disk fills up half-way through the write
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint_safely(path)["epoch"] == 1  # the previous checkpoint is untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temp left


def test_refused_hostile_checkpoint_does_not_advise_weights_only_false(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint_safely(path)
    assert "weights_only=False" not in str(e.value) and "weights_only" not in str(e.value).split("Detail:")[-1]
    assert "system" in str(e.value)
