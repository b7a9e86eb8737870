"""SIGTERM (scheduler time limit, preemption, docker stop) ends a training with exit 143 and says how to resume."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import yaml


@pytest.mark.slow
def test_sigterm_exits_143_and_the_rerun_resumes(prepared_tree, tiny_whisper_dir, tmp_path):
    cfg = {"uaspeech_root": str(prepared_tree), "model_name": str(tiny_whisper_dir), "local_model_only": True,
           "output_root": str(tmp_path), "train_name": "t", "train_id": "term", "batch_size": 4, "max_epochs": 500,
           "num_workers": 0, "progress_bar": False, "microphones": ["M5"], "validation_decoding": "teacher_forced",
           "early_stopping_patience": 0}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    last = tmp_path / "weights" / "checkpoint" / "term" / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-m", "av_train.cli", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert last.is_file(), "the run never wrote last.ckpt"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-2000:]
    assert "stopped by SIGTERM (term)" in out and "Run the same command again to resume" in out
    assert "Traceback" not in out
    assert not list(last.parent.glob(".*.tmp-*"))  # no half-written checkpoint left
