"""FusionRouter: probabilities, scales, masked pooling, level embedding, effect on the fused model."""

import pytest
import torch

from av_fusion_models.testing import tiny_whisper
from av_fusion_models import AVWhisperConfig, AVWhisperForConditionalGeneration, FusionRouter, masked_mean_std


def tiny_av(seed=0, **cfg):
    whisper = tiny_whisper(seed)
    cfg.setdefault("resnet_width", 4)
    cfg.setdefault("routing_dropout", 0.0)
    model = AVWhisperForConditionalGeneration.from_whisper(whisper, AVWhisperConfig(**cfg))
    with torch.no_grad():
        for block in model.gated_xattn_blocks:
            if block.learned_gates:
                block.attn_gate.fill_(0.8)
                block.ff_gate.fill_(0.5)
    return model.eval()


def router_inputs(bsz=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(bsz, 80, 50, generator=g), torch.randn(bsz, 7, 32, generator=g)


@torch.no_grad()
def test_probabilities_and_scales():
    router = FusionRouter(n_mels=80, video_dim=32, hidden_dim=16, dropout=0.0).eval()
    audio, video = router_inputs()
    with torch.no_grad():
        router.classifier[-1].bias.copy_(torch.tensor([2.0, -1.0, 0.5]))
    out = router(audio, video)
    assert out.route_probs.shape == (3, 3) and out.logits.shape == (3, 3)
    assert torch.allclose(out.route_probs.sum(-1), torch.ones(3), atol=1e-6)
    for scale in (out.encoder_scale, out.decoder_scale):
        assert scale.shape == (3,)
        assert ((scale >= 0) & (scale <= 1)).all()  # P(x) + P(both) in [0, 1] (within the [0, 2] contract)
    assert torch.allclose(out.encoder_scale, out.route_probs[:, 0] + out.route_probs[:, 2])
    assert torch.allclose(out.decoder_scale, out.route_probs[:, 1] + out.route_probs[:, 2])


def test_masked_pooling_ignores_padding():
    x = torch.randn(2, 6, 5)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 4:] = True
    pooled = masked_mean_std(x, mask)
    assert torch.allclose(pooled[0, :5], x[0, :4].mean(0), atol=1e-6)
    assert torch.allclose(pooled[0, 5:], torch.sqrt(x[0, :4].var(0, unbiased=False) + 1e-5), atol=1e-6)
    assert torch.allclose(pooled[1, :5], x[1].mean(0), atol=1e-6)
    x2 = x.clone()
    x2[0, 4:] = 1e3  # garbage in the padding
    assert torch.equal(masked_mean_std(x2, mask), pooled)
    assert torch.equal(masked_mean_std(x, torch.ones(2, 6, dtype=torch.bool)), torch.zeros(2, 10))  # no valid step

    router = FusionRouter(n_mels=80, video_dim=5, hidden_dim=8, dropout=0.0).eval()
    audio = torch.randn(2, 80, 20)
    with torch.no_grad():
        a = router(audio, x, mask).route_probs
        b = router(audio, x2, mask).route_probs
        assert torch.equal(a, b)
        # audio padding mask: statistics over the valid mel frames only
        audio_mask = torch.zeros(2, 20, dtype=torch.bool)
        audio_mask[:, 12:] = True
        c = router(audio, x, mask, audio_padding_mask=audio_mask).route_probs
        d = router(audio[..., :12], x, mask).route_probs
        assert torch.allclose(c, d, atol=1e-6)


@torch.no_grad()
def test_level_embedding_only_with_use_level():
    audio, video = router_inputs()
    plain = FusionRouter(80, 32, hidden_dim=16, dropout=0.0).eval()
    assert plain.level_embed is None
    assert torch.equal(plain(audio, video, levels=torch.tensor([0, 1, 2])).logits, plain(audio, video).logits)

    leveled = FusionRouter(80, 32, hidden_dim=16, dropout=0.0, use_level=True, num_levels=4, level_embed_dim=6).eval()
    a = leveled(audio, video, levels=torch.tensor([0, 0, 0])).logits
    b = leveled(audio, video, levels=torch.tensor([3, 3, 3])).logits
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError):
        leveled(audio, video)


@torch.no_grad()
def test_router_in_model_levels():
    feats = torch.randn(2, 80, 120)
    ids = torch.randint(3, 96, (2, 4))
    video = torch.randn(2, 5, 88, 88)
    lv0, lv3 = torch.tensor([0, 0]), torch.tensor([3, 3])

    model = tiny_av(fusion_location="both", soft_fusion_routing=True)
    a, b = model(feats, ids, video=video, levels=lv0), model(feats, ids, video=video, levels=lv3)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.route_probs, b.route_probs)

    model = tiny_av(fusion_location="both", soft_fusion_routing=True, routing_use_level=True)
    a, b = model(feats, ids, video=video, levels=lv0), model(feats, ids, video=video, levels=lv3)
    assert not torch.allclose(a.route_probs, b.route_probs)
    assert not torch.allclose(a.logits, b.logits)
    assert a.route_probs.shape == (2, 3) and a.encoder_scale.shape == (2,) and a.decoder_scale.shape == (2,)
    g = model.generate(feats, video=video, levels=lv0, max_new_tokens=3, num_beams=2)
    assert g.shape[0] == 2


@torch.no_grad()
def test_route_scales_gate_each_side():
    """Routing (almost) all mass to 'decoder only' switches the encoder fusion off, and vice versa."""
    feats = torch.randn(2, 80, 120)
    ids = torch.randint(3, 96, (2, 4))
    video = torch.randn(2, 5, 88, 88)
    model = tiny_av(fusion_location="decoder", soft_fusion_routing=True)  # routing forces both sides
    assert model.config.fuse_encoder and model.config.fuse_decoder
    enc_blocks = [m.xattn for m in model.whisper.model.encoder.layers]
    dec_blocks = [m.xattn for m in model.whisper.model.decoder.layers]

    def logits_with_gates(blocks_closed):
        saved = [(b.attn_gate.clone(), b.ff_gate.clone()) for b in blocks_closed]
        for b in blocks_closed:
            b.attn_gate.zero_()
            b.ff_gate.zero_()
        # the router itself is unchanged; use its probabilities with the closed gates
        out = model(feats, ids, video=video)
        for b, (ga, gf) in zip(blocks_closed, saved):
            b.attn_gate.copy_(ga)
            b.ff_gate.copy_(gf)
        return out.logits

    bias = model.router.classifier[-1].bias
    for route, closed in ((1, enc_blocks), (0, dec_blocks)):  # decoder only / encoder only
        bias.zero_()
        bias[route] = 60.0
        routed = model(feats, ids, video=video)
        assert routed.route_probs[:, route].min() > 1 - 1e-6
        assert (routed.logits - logits_with_gates(closed)).abs().max() <= 1e-4
    bias.zero_()
    bias[2] = 60.0  # both: scales ~1 on each side
    both = model(feats, ids, video=video)
    assert torch.allclose(both.encoder_scale, torch.ones(2)) and torch.allclose(both.decoder_scale, torch.ones(2))


def _with_gates(model, attn, ff):
    with torch.no_grad():
        for block in model.gated_xattn_blocks:
            block.attn_gate.fill_(attn)
            block.ff_gate.fill_(ff)
    return model


@torch.no_grad()
def test_router_emits_gates_ablation():
    """router_emits_gates: blocks carry no gates and the router's side scale is every block's gate.

    Checked against the default design with the same weights: gates tanh(g) = 1 on every block make
    the two identical (scale * 1 == scale), and the ablation is NOT plain Whisper at initialisation,
    while the default (gates 0) is.
    """
    feats = torch.randn(2, 80, 120)
    ids = torch.randint(3, 96, (2, 4))
    video = torch.randn(2, 5, 88, 88)
    with pytest.raises(ValueError, match="router_emits_gates needs soft_fusion_routing"):
        AVWhisperConfig(fusion_location="both", router_emits_gates=True)

    torch.manual_seed(0)
    emits = tiny_av(fusion_location="both", soft_fusion_routing=True, router_emits_gates=True)
    assert all(b.attn_gate is None and b.ff_gate is None for b in emits.gated_xattn_blocks)
    assert not any("gate" in name for name, _ in emits.named_parameters())

    scaled = tiny_av(fusion_location="both", soft_fusion_routing=True)
    missing, unexpected = scaled.load_state_dict(emits.state_dict(), strict=False)
    assert unexpected == [] and all(k.endswith(("attn_gate", "ff_gate")) for k in missing) and missing
    big = 10.0
    assert torch.tanh(torch.tensor(big)).item() == 1.0  # exactly 1 in float32
    _with_gates(scaled, big, big)
    a, b = emits(feats, ids, video=video), scaled(feats, ids, video=video)
    assert torch.equal(a.route_probs, b.route_probs)
    assert (a.logits - b.logits).abs().max() <= 1e-5

    _with_gates(scaled, 0.0, 0.0)
    # plain Whisper on the same weights and the same (cut) input: the layers without video kwargs
    ref = scaled.whisper.proj_out(scaled.decode(ids, scaled.encode(feats))[0])
    assert (scaled(feats, ids, video=video).logits - ref).abs().max() <= 1e-5  # gates 0: plain Whisper
    assert (emits(feats, ids, video=video).logits - ref).abs().max() > 1e-2  # emitted gates: not plain Whisper
