"""The recommended workflow end to end on a tiny model (docs/MULTI_SEED.md):
audio-only multi-seed -> AV-both multi-seed from the ``{seed}`` audio checkpoints (one seed fails and
the other goes on) -> soft routing with router_train_only (only router parameters change)."""

import json

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from av_train.checkpoints import load_state_dict_safely
from av_train.config import from_dict
from av_train.multi_seed_command import main as multi_seed_main
from av_train.pipeline import run

BASE = {
    "local_model_only": True, "train_name": "wf", "batch_size": 8, "max_epochs": 1, "num_workers": 0,
    "learning_rate": 1e-3, "warmup_steps": 1, "progress_bar": False, "max_new_tokens": 6,
    "microphones": ["M5"], "early_stopping_patience": 0,
}
AV = {"modality": "audio_visual", "fusion_location": "both", "resnet_width": 8, "freeze_whisper": True}


class Snapshot(Callback):
    """Keeps a copy of every parameter and buffer when training starts."""

    def on_train_start(self, trainer, pl_module):
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


@pytest.mark.slow
def test_audio_then_av_both_then_soft_routing_multi_seed(prepared_tree, tiny_whisper_dir, tmp_path, capsys):
    common = {**BASE, "uaspeech_root": str(prepared_tree), "model_name": str(tiny_whisper_dir), "output_root": str(tmp_path)}
    audio_yaml = tmp_path / "audio.yaml"
    audio_yaml.write_text(yaml.safe_dump({**common, "train_id": "audio", "per_speaker_metrics": True}))

    # 1. audio-only, 2 seeds -> audio_1, audio_2
    assert multi_seed_main([str(audio_yaml), "--num_seeds", "2", "--start_seed", "1"]) == 0
    for n in (1, 2):
        ckpt_dir = tmp_path / "weights" / "checkpoint" / f"audio_{n}"
        assert (ckpt_dir / "best.ckpt").is_file() and (ckpt_dir / "last.ckpt").is_file()
        assert yaml.safe_load((ckpt_dir / "config.yaml").read_text())["seed"] == n
        assert (tmp_path / "results" / "wf" / f"audio_{n}" / "predictions_B2.jsonl").is_file()
    summary = json.loads((tmp_path / "results" / "wf" / "audio_multi_seed.json").read_text())
    assert [s["seed"] for s in summary["seeds"]] == [1, 2] and summary["failed"] == []
    assert summary["aggregate"]["wer"]["n"] == 2
    out = capsys.readouterr().out
    assert "| speaker | WER | CER | WSR | n |" in out and "| M12 |" in out and "| F05 |" in out  # per_speaker_metrics
    assert "| mean +- std | 2 seed(s) |" in out
    # different seeds, different runs (data order and augmentation follow the seed)
    a1 = load_state_dict_safely(tmp_path / "weights/checkpoint/audio_1/last.ckpt")
    a2 = load_state_dict_safely(tmp_path / "weights/checkpoint/audio_2/last.ckpt")
    key = "model.whisper.model.encoder.conv1.weight"
    assert not torch.equal(a1[key], a2[key])

    # 2. AV-both for seeds 2 and 3 from audio_{seed}: there is no audio_3, so seed 3 fails and is reported
    av_yaml = tmp_path / "av.yaml"
    av_yaml.write_text(yaml.safe_dump({**common, **AV, "train_id": "av",
                                       "pt_audio_ckpt": str(tmp_path / "weights/checkpoint/audio_{seed}/best.ckpt")}))
    assert multi_seed_main([str(av_yaml), "--num_seeds", "2", "--start_seed", "2"]) == 1
    out = capsys.readouterr()
    assert "seed 3 (av_3) FAILED" in out.out and "audio_3/best.ckpt" in out.out
    assert "1 of 2 seed(s) failed" in out.err
    summary = json.loads((tmp_path / "results" / "wf" / "av_multi_seed.json").read_text())
    assert summary["failed"] == [3] and [s["ok"] for s in summary["seeds"]] == [True, False]
    av2 = load_state_dict_safely(tmp_path / "weights/checkpoint/av_2/best.ckpt")
    assert torch.equal(av2[key], load_state_dict_safely(tmp_path / "weights/checkpoint/audio_2/best.ckpt")[key])

    # 3. soft routing from av_{seed}, router only
    snap = Snapshot()
    soft = from_dict({**common, **AV, "fusion_location": None, "freeze_whisper": False, "train_id": "soft_2", "seed": 2,
                      "soft_fusion_routing": True, "router_train_only": True, "learning_rate": 1e-2,
                      "pt_video_ckpt": str(tmp_path / "weights/checkpoint/av_{seed}/best.ckpt")})
    result = run(soft, extra_callbacks=[snap])
    final = load_state_dict_safely(tmp_path / "weights/checkpoint/soft_2/last.ckpt")
    assert set(final) == set(snap.state)
    changed = {k for k in final if not torch.equal(final[k], snap.state[k])}
    assert changed and all(k.startswith("model.router.") for k in changed), sorted(changed)[:5]
    # everything but the router came from the AV-both checkpoint, unchanged
    for k, v in av2.items():
        assert torch.equal(final[k], v), k
    # route probabilities per level are logged and written with the predictions
    preds = [json.loads(line) for line in (result.results_dir / "predictions_B2.jsonl").open()]
    assert all(len(p["route_probs"]) == 3 and abs(sum(p["route_probs"]) - 1) < 1e-4 for p in preds)
