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


def test_frozen_token_embeddings_keep_every_output_vector_and_train_the_rest(prepared_tree, tiny_whisper_dir):
    """freeze_token_embeddings: the embedding table, and the output projection tied to it, stay exactly as
    loaded through a training step; the rest of Whisper trains."""
    cfg = from_dict({"uaspeech_root": str(prepared_tree), "model_name": str(tiny_whisper_dir),
                     "local_model_only": True, "modality": "audio", "freeze_token_embeddings": True})
    model, *_ = build_model(cfg)
    table = model.whisper.get_input_embeddings().weight
    assert model.whisper.proj_out.weight is table and not table.requires_grad
    before = table.detach().clone()
    conv = model.whisper.model.encoder.conv1.weight.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    n_mels = model.whisper.config.num_mel_bins
    labels = torch.randint(3, table.shape[0], (2, 4))
    model(torch.randn(2, n_mels, 40), labels=labels).loss.backward()
    opt.step()
    assert torch.equal(table, before) and table.grad is None
    assert not torch.equal(model.whisper.model.encoder.conv1.weight, conv)


def test_pt_checkpoints_of_another_shape_are_one_line(prepared_tree, tiny_whisper_dir, tmp_path):
    """(issue: hardening round two, class 4: this used to be a 119-line state-dict dump)"""
    donor, *_ = build_model(_cfg(prepared_tree, tiny_whisper_dir, resnet_width=4))
    torch.save({"state_dict": {f"model.{k}": v for k, v in donor.state_dict().items()}}, tmp_path / "av4.ckpt")
    with pytest.raises(CheckpointError) as e:
        build_model(_cfg(prepared_tree, tiny_whisper_dir, pt_video_ckpt=str(tmp_path / "av4.ckpt")))
    msg = str(e.value)
    assert "\n" not in msg and "av4.ckpt: " in msg and "tensors differ in shape, first: video_encoder." in msg
    assert "same Whisper, video encoder and fusion blocks" in msg
    audio_donor, *_ = build_model(_cfg(prepared_tree, tiny_whisper_dir, modality="audio", resnet_width=8))
    audio = dict(audio_donor.state_dict())
    audio["whisper.model.encoder.conv1.weight"] = audio["whisper.model.encoder.conv1.weight"][:, :40]
    torch.save({"state_dict": {f"model.{k}": v for k, v in audio.items()}}, tmp_path / "audio.ckpt")
    with pytest.raises(CheckpointError) as e:
        build_model(_cfg(prepared_tree, tiny_whisper_dir, pt_audio_ckpt=str(tmp_path / "audio.ckpt")))
    msg = str(e.value)
    assert "\n" not in msg and "1 tensors differ in shape, first: whisper.model.encoder.conv1.weight" in msg
    assert "audio-only run of the same Whisper size" in msg
