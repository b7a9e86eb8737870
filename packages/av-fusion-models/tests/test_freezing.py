"""Freezing policies give exactly the expected sets of trainable parameters."""

import torch

from av_fusion_models.testing import tiny_whisper
from av_fusion_models import (
    AVWhisperConfig,
    AVWhisperForConditionalGeneration,
    count_parameters,
    freeze_video_encoder,
    freeze_whisper,
    router_train_only,
    trainable_parameter_names,
    unfreeze_all,
    unfreeze_mlp_layers,
)

LAYERS = 2


def build(**cfg):
    whisper = tiny_whisper(0, d_model=32, encoder_layers=LAYERS, decoder_layers=LAYERS, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=50,
                           max_source_positions=50, max_target_positions=20, init_std=0.02)
    cfg.setdefault("resnet_width", 2)
    return AVWhisperForConditionalGeneration.from_whisper(whisper, AVWhisperConfig(**cfg))


def names(model, prefix):
    return {n for n, _ in model.named_parameters() if n.startswith(prefix)}


def xattn_names(model):
    return {n for n, _ in model.named_parameters() if ".xattn." in n}


BLOCK_PARAMS = [
    "attn_layer_norm.weight", "attn_layer_norm.bias", "q_proj.weight", "q_proj.bias", "k_proj.weight",
    "v_proj.weight", "v_proj.bias", "out_proj.weight", "out_proj.bias", "attn_gate",
    "ff_layer_norm.weight", "ff_layer_norm.bias", "ff_in.weight", "ff_in.bias", "ff_out.weight", "ff_out.bias", "ff_gate",
]
ROUTER_PARAMS = {
    "router.audio_proj.0.weight", "router.audio_proj.0.bias", "router.audio_proj.1.weight", "router.audio_proj.1.bias",
    "router.video_proj_router.0.weight", "router.video_proj_router.0.bias",
    "router.video_proj_router.1.weight", "router.video_proj_router.1.bias",
    "router.classifier.0.weight", "router.classifier.0.bias", "router.classifier.3.weight", "router.classifier.3.bias",
}


def test_freeze_whisper_keeps_fusion_trainable():
    model = build(fusion_location="both", soft_fusion_routing=True)
    freeze_whisper(model)
    expected_xattn = {
        f"whisper.model.{side}.layers.{i}.xattn.{p}" for side in ("encoder", "decoder") for i in range(LAYERS)
        for p in BLOCK_PARAMS
    }
    assert xattn_names(model) == expected_xattn
    expected = expected_xattn | names(model, "video_encoder.") | {"video_proj.weight", "video_proj.bias"} | ROUTER_PARAMS
    assert set(trainable_parameter_names(model)) == expected
    assert names(model, "router.") == ROUTER_PARAMS


def test_unfreeze_mlp_layers_adds_exactly_whisper_ffn():
    model = build(fusion_location="decoder")
    freeze_whisper(model)
    before = set(trainable_parameter_names(model))
    unfreeze_mlp_layers(model)
    added = set(trainable_parameter_names(model)) - before
    enc = {f"whisper.model.encoder.layers.{i}.{fc}.{p}" for i in range(LAYERS) for fc in ("fc1", "fc2") for p in ("weight", "bias")}
    dec = {f"whisper.model.decoder.layers.{i}.layer.{fc}.{p}" for i in range(LAYERS) for fc in ("fc1", "fc2") for p in ("weight", "bias")}
    assert added == enc | dec
    freeze_whisper(model)
    unfreeze_mlp_layers(model, encoder=False)
    assert set(trainable_parameter_names(model)) - before == dec


def test_router_train_only():
    model = build(fusion_location="both", soft_fusion_routing=True, routing_use_level=True)
    router_train_only(model)
    assert set(trainable_parameter_names(model)) == ROUTER_PARAMS | {"router.level_embed.weight"}
    total, trainable = count_parameters(model)
    assert trainable == sum(p.numel() for p in model.router.parameters())
    assert total == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    unfreeze_all(model)
    assert count_parameters(model)[1] == total


def test_freeze_video_encoder_keeps_batchnorm_fixed():
    model = build(fusion_location="decoder")
    freeze_video_encoder(model)
    trainable = set(trainable_parameter_names(model))
    assert not trainable & names(model, "video_encoder.")
    assert trainable == {n for n, _ in model.named_parameters() if not n.startswith("video_encoder.")} - {
        "whisper.model.encoder.embed_positions.weight"  # Whisper keeps its sinusoids frozen
    }
    model.train()
    assert model.whisper.training and not model.video_encoder.training
    bn = model.video_encoder.frontend3d[1]
    stats = bn.running_mean.clone()
    model(torch.randn(1, 80, 40), torch.tensor([[1, 5]]), video=torch.randn(1, 3, 88, 88))
    assert torch.equal(bn.running_mean, stats)


def test_count_parameters_shared_weights_counted_once():
    model = build(fusion_location="none")
    total, trainable = count_parameters(model)
    whisper_total = sum(p.numel() for p in model.whisper.parameters())
    assert total == whisper_total  # audio-only: nothing added; tied proj_out counted once
    assert trainable == total - model.whisper.model.encoder.embed_positions.weight.numel()
    freeze_whisper(model)
    assert count_parameters(model) == (total, 0)
