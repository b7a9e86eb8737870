"""End to end on a tiny model: audio-only -> audio-visual from its checkpoint, resume, validate_model."""

import json

import pytest
import torch

from av_common.cli_errors import configure_cli_logging
from av_train.checkpoints import CheckpointError, load_state_dict_safely
from av_train.config import from_dict
from av_train.pipeline import run


def _cfg(tree, model, out, **kw):
    base = {
        "uaspeech_root": str(tree), "model_name": str(model), "local_model_only": True, "output_root": str(out),
        "train_name": "t", "batch_size": 8, "max_epochs": 1, "num_workers": 0, "learning_rate": 1e-3,
        "warmup_steps": 2, "progress_bar": False, "max_new_tokens": 8, "microphones": ["M5"],
    }
    return from_dict({**base, **kw})


@pytest.mark.slow
def test_audio_then_audio_visual_then_resume_and_validate(prepared_tree, tiny_whisper_dir, tmp_path, capsys):
    configure_cli_logging()  # the pipeline logs; the commands print its INFO lines on stdout (run_command does this)
    audio = run(_cfg(prepared_tree, tiny_whisper_dir, tmp_path, train_id="audio_1", seed=1))
    ckpt_dir = tmp_path / "weights" / "checkpoint" / "audio_1"
    assert (ckpt_dir / "best.ckpt").is_file() and (ckpt_dir / "last.ckpt").is_file()
    assert (ckpt_dir / "config.yaml").is_file()
    assert audio.report is not None and audio.report.total.n == 8
    preds = [json.loads(line) for line in (tmp_path / "results" / "t" / "audio_1" / "predictions_B2.jsonl").open()]
    assert len(preds) == 8 and {p["level"] for p in preds} == {"very_low", "high"}
    assert (tmp_path / "results" / "t" / "audio_1" / "metrics.json").is_file()
    assert list((tmp_path / "results" / "t" / "audio_1").glob("events.out.tfevents.*"))

    # Audio-visual, initialised from the {seed} audio checkpoint: Whisper weights carried over exactly.
    av_cfg = _cfg(prepared_tree, tiny_whisper_dir, tmp_path, train_id="av_1", seed=1, modality="audio_visual",
                  fusion_location="both", resnet_width=8, freeze_whisper=True,
                  pt_audio_ckpt=str(tmp_path / "weights/checkpoint/audio_{seed}/best.ckpt"))
    av = run(av_cfg)
    audio_state = load_state_dict_safely(ckpt_dir / "best.ckpt")
    av_state = load_state_dict_safely(tmp_path / "weights/checkpoint/av_1/best.ckpt")
    key = "model.whisper.model.encoder.conv1.weight"
    assert torch.equal(audio_state[key], av_state[key])  # frozen Whisper stays as the audio run left it
    assert any(".xattn." in k for k in av_state)
    gates = [v for k, v in av_state.items() if k.endswith("attn_gate")]
    assert gates and any(g.abs().item() > 0 for g in gates)  # the gates learned
    assert av.report is not None

    # Resume: a finished run started again does not train further (same step count).
    steps_before = torch.load(tmp_path / "weights/checkpoint/av_1/last.ckpt", weights_only=True)["global_step"]
    run(av_cfg)
    assert "resuming from" in capsys.readouterr().out
    assert torch.load(tmp_path / "weights/checkpoint/av_1/last.ckpt", weights_only=True)["global_step"] == steps_before

    # validate_model: from best.ckpt when present, else initial weights; says which.
    run(_cfg(prepared_tree, tiny_whisper_dir, tmp_path, train_id="av_1", modality="audio_visual",
             fusion_location="both", resnet_width=8, validate_model=True))
    out = capsys.readouterr().out
    assert "validate_model: validating" in out and "av_1/best.ckpt" in out
    run(_cfg(prepared_tree, tiny_whisper_dir, tmp_path, train_id="never_trained", validate_model=True))
    assert "validating the initial weights" in capsys.readouterr().out


def test_malicious_checkpoint_is_refused(tmp_path):
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    bad = tmp_path / "evil.ckpt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    with pytest.raises(CheckpointError, match="evil.ckpt"):
        load_state_dict_safely(bad)
    assert not (tmp_path / "pwned").exists()


def test_same_seed_same_data_gives_bit_identical_weights(prepared_tree, tiny_whisper_dir, tmp_path):
    """`deterministic` (default on) switches PyTorch to deterministic kernels for the run, and two runs with
    the same config and 2 threads end with equal weights, bit for bit. (On this tiny model the default kernels
    happen to agree too; on Whisper tiny.en with the demo corpus they differed by ~1e-6 after one epoch
    with 2 threads, and agreed bit for bit with this option or with 1 thread.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ckpts = []
        for k in range(2):
            torch.use_deterministic_algorithms(False)
            res = run(_cfg(prepared_tree, tiny_whisper_dir, tmp_path, train_id=f"det_{k}", seed=3,
                           modality="audio_visual"))
            assert torch.are_deterministic_algorithms_enabled()
            ckpts.append(load_state_dict_safely(res.checkpoint_dir / "last.ckpt"))
        torch.use_deterministic_algorithms(False)
        run(_cfg(prepared_tree, tiny_whisper_dir, tmp_path, train_id="nondet", deterministic=False))
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
    a, b = ckpts
    assert set(a) == set(b)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
