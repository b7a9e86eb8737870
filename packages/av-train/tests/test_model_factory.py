"""Building the model of a run: video encoder initialisation and freezing."""

import pytest
import torch
from safetensors.torch import save_file

from av_train.checkpoints import CheckpointError
from av_train.config import from_dict
from av_train.model_factory import build_model


def _cfg(tree, model, **kw):
    return from_dict({"uaspeech_root": str(tree), "model_name": str(model), "local_model_only": True,
                      "modality": "audio_visual", "resnet_width": 8, **kw})


def test_video_encoder_ckpt_safetensors_and_lightning_checkpoint(prepared_tree, tiny_whisper_dir, tmp_path):
    torch.manual_seed(123)
    donor, *_ = build_model(_cfg(prepared_tree, tiny_whisper_dir))
    state = {k: v.clone() for k, v in donor.video_encoder.state_dict().items()}
    save_file(state, tmp_path / "resnet.safetensors")
    torch.save({"state_dict": {f"model.video_encoder.{k}": v for k, v in state.items()}, "global_step": 3},
               tmp_path / "av.ckpt")
    for path in ("resnet.safetensors", "av.ckpt"):
        torch.manual_seed(7)  # a different random init, overwritten by the file
        model, *_ = build_model(_cfg(prepared_tree, tiny_whisper_dir, video_encoder_ckpt=str(tmp_path / path)))
        got = model.video_encoder.state_dict()
        assert all(torch.equal(got[k], v) for k, v in state.items()), path

    with pytest.raises(CheckpointError, match=r"resnet.safetensors does not match the resnet video encoder"):
        build_model(_cfg(prepared_tree, tiny_whisper_dir, resnet_width=4,
                         video_encoder_ckpt=str(tmp_path / "resnet.safetensors")))


def test_router_train_only_freezes_all_but_the_router_and_fixes_batchnorm(prepared_tree, tiny_whisper_dir):
    model, *_ = build_model(_cfg(prepared_tree, tiny_whisper_dir, soft_fusion_routing=True, router_train_only=True))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("router.") for n in trainable)
    model.train()
    assert not model.video_encoder.training  # BatchNorm statistics stay as loaded
    assert model.router.training
