"""Resume after a kill (same step, same data order, same result as an uninterrupted run) and DDP on
CPU with 2 processes. Both start real training processes, as a user would."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from av_train.checkpoints import load_state_dict_safely
from av_train.config import load_config
from av_train.pipeline import run

BASE = {
    "local_model_only": True, "train_name": "rs", "batch_size": 4, "num_workers": 0, "learning_rate": 1e-3,
    "warmup_steps": 2, "progress_bar": False, "max_new_tokens": 4, "early_stopping_patience": 0,
    "log_every_n_steps": 1,
}


def _yaml(tmp_path, prepared_tree, tiny_whisper_dir, **kw):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**BASE, "uaspeech_root": str(prepared_tree), "model_name": str(tiny_whisper_dir),
                                    "output_root": str(tmp_path), **kw}))
    return path


def _train_cmd(path, *overrides):
    return [sys.executable, "-m", "av_train.cli", str(path), *overrides]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _step(path):
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


@pytest.mark.slow
def test_killed_run_resumes_from_last_ckpt_like_an_uninterrupted_run(prepared_tree, tiny_whisper_dir, tmp_path):
    # 2 speakers x 2 blocks x 4 words = 16 clips, batch 4 -> 4 steps per epoch, 3 epochs
    path = _yaml(tmp_path, prepared_tree, tiny_whisper_dir, microphones=["M5"], max_epochs=3)
    torch.set_num_threads(1)  # same arithmetic as the single-threaded child processes
    reference = run(load_config(path, {"train_id": "uninterrupted"}))
    ref_last = reference.checkpoint_dir / "last.ckpt"
    assert _step(ref_last) == 12

    last = tmp_path / "weights" / "checkpoint" / "killed" / "last.ckpt"
    proc = subprocess.Popen(_train_cmd(path, "train_id=killed"), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not last.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # our own child's process group
    proc.wait()
    assert last.is_file(), "the run was killed before it wrote last.ckpt"
    step_at_kill = _step(last)
    assert step_at_kill % 4 == 0 and step_at_kill < 12, step_at_kill  # an epoch boundary, run unfinished

    out = subprocess.run(_train_cmd(path, "train_id=killed"), env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"resuming from {last}" in out.stdout
    # continued (not restarted) up to the same final step, and ended where the uninterrupted run ended:
    # same data order, same augmentation, same dropout after the restart
    assert _step(last) == 12
    a, b = load_state_dict_safely(ref_last), load_state_dict_safely(last)
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    # TensorBoard shows the steps before the kill once and the rest after the restart
    events = list((tmp_path / "results" / "rs" / "killed").glob("events.out.tfevents.*"))
    assert len(events) >= 2


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes_through_the_multi_seed_runner(prepared_tree, tiny_whisper_dir, tmp_path, capsys,
                                                                   monkeypatch):
    """A distributed config makes the multi-seed runner start each seed as its own process
    (``python -m av_train.cli``), which Lightning's DDP launcher then re-runs for rank 1."""
    import json

    from av_train.multi_seed_command import main as multi_seed_main

    # 16 training clips, batch 4 per device -> 4 batches shared by 2 ranks -> 2 optimizer steps per epoch
    path = _yaml(tmp_path, prepared_tree, tiny_whisper_dir, microphones=["M5"], max_epochs=1, train_id="ddp",
                 accelerator="cpu", devices=2, strategy="ddp")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two ranks share 2 cores
    assert multi_seed_main([str(path), "--num_seeds", "1", "--start_seed", "5"]) == 0
    assert "one after another (distributed runs)" in capsys.readouterr().out
    ckpt = tmp_path / "weights" / "checkpoint" / "ddp_5"
    assert _step(ckpt / "last.ckpt") == 2
    saved = yaml.safe_load((ckpt / "config.yaml").read_text())
    assert (saved["strategy"], saved["devices"], saved["seed"]) == ("ddp", 2, 5)
    preds = (tmp_path / "results" / "rs" / "ddp_5" / "predictions_B2.jsonl").read_text().splitlines()
    # both ranks' validation shards gathered, each B2 utterance scored once
    assert len(preds) == 8 and len({json.loads(p)["utt_id"] for p in preds}) == 8
    summary = json.loads((tmp_path / "results" / "rs" / "ddp_multi_seed.json").read_text())
    assert summary["failed"] == [] and summary["seeds"][0]["metrics"]["wer"] >= 0
