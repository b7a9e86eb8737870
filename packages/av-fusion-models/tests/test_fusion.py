"""Gated cross-attention fusion: identity at init, padding invariance, generation, modality dropout."""

import copy

import pytest
import torch
from transformers import WhisperForConditionalGeneration

from av_fusion_models import AVWhisperConfig, AVWhisperForConditionalGeneration, GatedCrossAttentionBlock
from av_fusion_models import testing
from av_fusion_models.testing import open_gates
from av_fusion_models.features import SILENCE_LOG_MEL
from av_fusion_models.modality_dropout import draw_modalities

N_MELS = 80
# Whisper's encoder needs exactly 2 * max_source_positions mel frames (3000 for real checkpoints). The
# tiny test model uses max_source_positions=100 (200 frames) to stay fast; one test uses the real 1500.
SOURCE_POSITIONS = 100
FULL = 2 * SOURCE_POSITIONS
TOL = 1e-5


def tiny_whisper(seed: int = 0, max_source_positions: int = SOURCE_POSITIONS) -> WhisperForConditionalGeneration:
    return testing.tiny_whisper(seed, max_source_positions=max_source_positions, num_mel_bins=N_MELS).eval()


def av_model(whisper=None, seed=0, **cfg) -> AVWhisperForConditionalGeneration:
    cfg.setdefault("resnet_width", 4)
    whisper = tiny_whisper(seed) if whisper is None else whisper
    torch.manual_seed(seed + 1)
    return AVWhisperForConditionalGeneration.from_whisper(whisper, AVWhisperConfig(**cfg)).eval()


def inputs(bsz=2, t_a=FULL, t_v=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(bsz, N_MELS, t_a, generator=g)
    ids = torch.randint(3, 96, (bsz, 5), generator=g)
    video = torch.randn(bsz, t_v, 88, 88, generator=g)
    return feats, ids, video


def reference_greedy(logits_fn, prompt, n):
    """Greedy decoding without any cache: re-run the full teacher-forced forward each step."""
    ids = prompt
    for _ in range(n):
        nxt = logits_fn(ids)[:, -1].argmax(-1)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
    return ids


CASES = [
    ("none", False),
    ("encoder", False),
    ("decoder", False),
    ("both", False),
    ("encoder", True),
    ("decoder", True),
    ("both", True),
]


@torch.no_grad()
@pytest.mark.parametrize("location,routing", CASES)
def test_closed_gates_reproduce_whisper(location, routing):
    whisper = tiny_whisper()
    plain = copy.deepcopy(whisper)
    feats, ids, video = inputs()
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[1, 4:] = True

    ref = plain(input_features=feats, decoder_input_ids=ids).logits
    model = av_model(whisper, fusion_location=location, soft_fusion_routing=routing, cut_encoder_positions=False)
    out = model(feats, ids, video=video, video_padding_mask=mask)
    assert (out.logits - ref).abs().max() <= TOL
    assert (out.route_probs is not None) == routing

    # greedy generation: same tokens as plain Whisper decoded without a cache
    enc = plain.model.encoder(feats).last_hidden_state
    expected = reference_greedy(lambda x: plain(encoder_outputs=(enc,), decoder_input_ids=x).logits, ids[:, :2], 6)
    got = model.generate(feats, video=video, video_padding_mask=mask, decoder_input_ids=ids[:, :2],
                         max_new_tokens=6, eos_token_id=-1)
    assert torch.equal(got, expected)

    # short input (cut encoder positions): the video path equals the model's own audio-only path
    model.config.cut_encoder_positions = True
    short = feats[..., :120]
    a = model(short, ids, video=video, video_padding_mask=mask).logits
    b = model(short, ids).logits
    assert (a - b).abs().max() <= TOL


@torch.no_grad()
def test_real_3000_frame_input_matches_hf():
    whisper = tiny_whisper(max_source_positions=1500)
    plain = copy.deepcopy(whisper)
    feats, ids, video = inputs(t_a=3000)
    model = av_model(whisper, fusion_location="both", soft_fusion_routing=True, cut_encoder_positions=False)
    hf_enc = plain.model.encoder(feats).last_hidden_state
    assert torch.equal(model.encode(feats), hf_enc)
    assert torch.equal(model.whisper.model.encoder(feats).last_hidden_state, hf_enc)  # HF forward, wrapped layers
    ref = plain(encoder_outputs=(hf_enc,), decoder_input_ids=ids).logits
    assert (model(feats, ids, video=video).logits - ref).abs().max() <= TOL
    model.config.cut_encoder_positions = True
    assert torch.equal(model.encode(feats), hf_enc)
    assert model.encode(feats[..., :100]).shape == (2, 50, 64)


def test_input_length_checks():
    model = av_model(fusion_location="decoder", cut_encoder_positions=False)
    feats, ids, _ = inputs(t_a=120)
    with pytest.raises(ValueError, match=str(FULL)):
        model(feats, ids)
    model.config.cut_encoder_positions = True
    with pytest.raises(ValueError, match="exceeds"):
        model(torch.randn(1, N_MELS, FULL + 2), ids[:1])


@torch.no_grad()
@pytest.mark.parametrize("location", ["encoder", "decoder"])
def test_open_gates_change_output(location):
    model = av_model(fusion_location=location)
    feats, ids, video = inputs(t_a=120)
    base = model(feats, ids, video=video).logits
    open_gates(model)
    fused = model(feats, ids, video=video).logits
    assert (fused - base).abs().max() > 1e-3
    assert torch.equal(model(feats, ids).logits, base)  # no video: blocks are skipped


@torch.no_grad()
@pytest.mark.parametrize("location,routing", CASES[1:])
def test_video_padding_changes_nothing(location, routing):
    # The ResNet front-end (3D conv over time) is exercised in the richest case; the others use precomputed
    # features (faster; the masking in the fused blocks and the router is what they test).
    pixels = (location, routing) == ("both", True)
    extra_cfg = {} if pixels else {"video_encoder": "precomputed", "video_dim": 24}
    model = av_model(fusion_location=location, soft_fusion_routing=routing, **extra_cfg).double()  # float64
    open_gates(model)
    feats, ids, video = inputs(t_a=160, t_v=6)
    if not pixels:
        video = video[..., 0, :24]
    feats, video = feats.double(), video.double()
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 5:] = True  # sample 0 has 5 real frames
    base = model(feats, ids, video=video, video_padding_mask=mask)

    extra = torch.randn(2, 3, *video.shape[2:], dtype=torch.float64) * 5  # garbage in the padding frames
    padded_video = torch.cat([video, extra], dim=1)
    padded_mask = torch.cat([mask, torch.ones(2, 3, dtype=torch.bool)], dim=1)
    padded = model(feats, ids, video=padded_video, video_padding_mask=padded_mask)
    assert (padded.logits - base.logits).abs().max() <= 1e-10
    if routing:
        assert (padded.route_probs - base.route_probs).abs().max() <= 1e-10

    # garbage inside sample 0's own padding frame changes nothing either
    video2 = video.clone()
    video2[0, 5] = 100.0
    again = model(feats, ids, video=video2, video_padding_mask=mask)
    assert (again.logits - base.logits).abs().max() <= 1e-10

    g1 = model.generate(feats, video=video, video_padding_mask=mask, max_new_tokens=5, num_beams=2)
    g2 = model.generate(feats, video=padded_video, video_padding_mask=padded_mask, max_new_tokens=5, num_beams=2)
    assert torch.equal(g1, g2)


@torch.no_grad()
def test_clip_mean_norm_sees_what_moves_and_ignores_padding():
    """video_clip_norm "mean": a still image added to every frame of a clip (another face, other lighting)
    changes nothing; neither does the padding; the encoder's input is each frame minus its clip's mean frame."""
    from av_fusion_models.video_frontend import encoder_frames

    feats, ids, video = inputs(t_a=160, t_v=6)
    feats, video = feats.double(), video.double()
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 4:] = True  # sample 0 has 4 real frames
    frames = encoder_frames(video, mask, "mean")
    assert torch.allclose(frames[0, :4], video[0, :4] - video[0, :4].mean(0), atol=1e-12)
    assert torch.allclose(frames[1], video[1] - video[1].mean(0), atol=1e-12)
    assert torch.equal(frames[0, 4:], torch.zeros_like(frames[0, 4:]))
    assert torch.equal(encoder_frames(video, mask, "none")[1], video[1])

    still = torch.randn(2, 1, 88, 88, dtype=torch.float64) * 3
    padded_garbage = video.clone()
    padded_garbage[0, 4:] = 50.0
    outputs = {}
    for norm in ("mean", "none"):
        model = av_model(fusion_location="decoder", video_clip_norm=norm).double()  # same weights for both
        open_gates(model)
        base = model(feats, ids, video=video, video_padding_mask=mask).logits
        lit = model(feats, ids, video=video + still, video_padding_mask=mask).logits
        assert (model(feats, ids, video=padded_garbage, video_padding_mask=mask).logits - base).abs().max() <= 1e-10
        outputs[norm] = (lit - base).abs().max()
    assert outputs["mean"] <= 1e-9 and outputs["none"] > 1e-3  # the still image only reaches the raw-frame model
    with pytest.raises(ValueError, match="video_clip_norm"):
        AVWhisperConfig(video_clip_norm="std")


@torch.no_grad()
def test_frame_size_averages_pixel_blocks_and_keeps_padding_out():
    """video_frame_size 44 on 88-pixel frames: each output pixel is the mean of its 2 x 2 input block (area
    averaging); padding frames stay zero and still do not reach the clip mean; the model reads the smaller
    frames end to end, and a size below 8 pixels is refused."""
    from av_fusion_models.video_frontend import encoder_frames

    feats, ids, video = inputs(t_a=160, t_v=6)
    video = video.double()
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 4:] = True
    small = encoder_frames(video, mask, "none", frame_size=44)
    assert small.shape == (2, 6, 44, 44)
    by_hand = video.reshape(2, 6, 44, 2, 44, 2).mean(dim=(3, 5))
    assert torch.allclose(small[1], by_hand[1], atol=1e-12) and torch.allclose(small[0, :4], by_hand[0, :4], atol=1e-12)
    assert torch.equal(small[0, 4:], torch.zeros_like(small[0, 4:]))
    centred = encoder_frames(video, mask, "mean", frame_size=44)
    assert torch.allclose(centred[0, :4], by_hand[0, :4] - by_hand[0, :4].mean(0), atol=1e-12)
    assert torch.equal(encoder_frames(video, mask, "none", frame_size=88), encoder_frames(video, mask, "none"))

    model = av_model(fusion_location="decoder", video_frame_size=44).double()
    open_gates(model)
    seen = []
    hook = model.video_encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    model(feats.double(), ids, video=video, video_padding_mask=mask)
    hook.remove()
    assert seen == [torch.Size([2, 6, 44, 44])]
    with pytest.raises(ValueError, match="video_frame_size"):
        AVWhisperConfig(video_frame_size=4)


def reference_beam(logits_fn, prompt, n, k):
    """Beam search without eos and without a cache, one sample [1, P]."""
    beams = [(0.0, prompt[0])]
    for _ in range(n):
        cands = []
        for score, seq in beams:
            logp = torch.log_softmax(logits_fn(seq[None])[0, -1].float(), -1)
            top = logp.topk(k)
            cands += [(score + float(v), torch.cat([seq, seq.new_tensor([int(i)])])) for v, i in zip(top.values, top.indices)]
        beams = sorted(cands, key=lambda c: c[0], reverse=True)[:k]
    return beams[0][1]


@torch.no_grad()
@pytest.mark.parametrize("num_beams", [1, 2])
def test_generate_with_video_batched(num_beams):
    model = av_model(fusion_location="both", soft_fusion_routing=True)
    open_gates(model, 1.5)
    feats, ids, video = inputs(t_a=120, t_v=5, seed=3)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[1, 3:] = True
    prompt = ids[:, :2]
    batch = model.generate(feats, video=video, video_padding_mask=mask, decoder_input_ids=prompt,
                           max_new_tokens=6, num_beams=num_beams, eos_token_id=-1)
    assert batch.shape == (2, 8)
    assert torch.equal(batch[:, :2], prompt)
    for b in range(2):
        fn = lambda x, b=b: model(feats[b : b + 1], x, video=video[b : b + 1], video_padding_mask=mask[b : b + 1]).logits
        if num_beams == 1:
            expected = reference_greedy(fn, prompt[b : b + 1], 6)[0]
        else:
            expected = reference_beam(fn, prompt[b : b + 1], 6, num_beams)
        assert torch.equal(batch[b], expected)
    # the video matters for the generated tokens of at least one sample
    no_video = model.generate(feats, decoder_input_ids=prompt, max_new_tokens=6, num_beams=num_beams, eos_token_id=-1)
    assert not torch.equal(no_video, batch)


@torch.no_grad()
def test_generate_stops_at_eos_and_pads():
    model = av_model(fusion_location="decoder")
    feats, ids, video = inputs(t_a=120)
    free = model.generate(feats, video=video, max_new_tokens=6, eos_token_id=-1)
    eos = int(free[0, 2])  # make sample 0's second generated token the eos
    out = model.generate(feats, video=video, max_new_tokens=6, eos_token_id=eos, pad_token_id=0)
    assert out[0, 2] == eos and (out[0, 3:] == 0).all()
    assert torch.equal(model.generate(feats, video=video, max_new_tokens=6, eos_token_id=[-5, eos], pad_token_id=0), out)
    beams = model.generate(feats, video=video, max_new_tokens=6, eos_token_id=eos, num_beams=2)
    assert beams.shape[0] == 2 and beams.shape[1] <= 7
    with pytest.raises(TypeError):
        model.generate(feats, max_new_tokens=2, temperature=0.7)


def test_modality_dropout():
    model = av_model(fusion_location="both", video_dropout=1.0)
    open_gates(model)
    feats, ids, video = inputs(t_a=120)
    model.train()
    with torch.no_grad():
        dropped = model(feats, ids, video=video).logits
        model.eval()
        assert (dropped - model(feats, ids).logits).abs().max() <= TOL  # as if there were no video
        assert (model(feats, ids, video=video).logits - dropped).abs().max() > 1e-3  # eval: no dropout

    model.config.video_dropout, model.config.audio_dropout = 0.0, 1.0
    model.train()
    model.video_encoder.eval()  # keep BatchNorm deterministic for the comparison
    with torch.no_grad():
        dropped = model(feats, ids, video=video).logits
        model.eval()
        silent = torch.full_like(feats, SILENCE_LOG_MEL)
        assert (dropped - model(silent, ids, video=video).logits).abs().max() <= TOL

    model.config.video_dropout, model.config.audio_dropout = 0.5, 0.5
    torch.manual_seed(0)
    draw = draw_modalities(model.config, 4000, "cpu")
    assert not (draw.drop_video & draw.drop_audio).any() and not (draw.frozen_video | draw.wrong_video).any()
    assert 0.45 < draw.drop_video.float().mean() < 0.55 and 0.45 < draw.drop_audio.float().mean() < 0.55
    # four exclusive outcomes in the order of their intervals; nothing drawn when every probability is 0
    cfg = AVWhisperConfig(video_dropout=0.1, audio_dropout=0.2, video_frozen_prob=0.3, video_mismatch_prob=0.4)
    draw = draw_modalities(cfg, 20000, "cpu")
    masks = torch.stack([draw.drop_video, draw.drop_audio, draw.frozen_video, draw.wrong_video])
    assert masks.sum(0).max() == 1  # exactly one outcome each (the probabilities sum to 1)
    assert masks.float().mean(1).tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.015)
    assert draw_modalities(AVWhisperConfig(), 4, "cpu") is None
    with pytest.raises(ValueError, match="must be <= 1"):
        AVWhisperConfig(audio_dropout=0.5, video_mismatch_prob=0.6)


def test_lip_video_faults_in_training_equal_feeding_the_faulty_video():
    """video_frozen_prob = 1 in training is the model fed the first frame held (what `noise-eval --video frozen`
    feeds); video_mismatch_prob = 1 is the model fed each clip's successor in the batch: the audio stays."""
    feats, ids, video = inputs(bsz=3, t_a=120, t_v=6)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, 4:] = True  # the first clip is shorter: its padding travels with it
    for prob, faulty, faulty_mask in (
        ("video_frozen_prob", video[:, :1].expand_as(video), mask),
        ("video_mismatch_prob", video.roll(-1, dims=0), mask.roll(-1, dims=0)),
    ):
        model = av_model(fusion_location="both", video_clip_norm="mean", **{prob: 1.0})
        open_gates(model)
        model.train()
        model.video_encoder.eval()  # running BatchNorm statistics: the two calls then compute exactly alike
        with torch.no_grad():
            faulted = model(feats, ids, video=video, video_padding_mask=mask).logits
            setattr(model.config, prob, 0.0)
            fed = model(feats, ids, video=faulty, video_padding_mask=faulty_mask).logits
            clean = model(feats, ids, video=video, video_padding_mask=mask).logits
        assert (faulted - fed).abs().max() <= TOL
        assert (faulted - clean).abs().max() > 1e-3  # the fault reached the output


def test_loss_and_label_smoothing():
    model = av_model(fusion_location="decoder")
    feats, ids, video = inputs(t_a=120)
    labels = ids.clone()
    labels[0, :2] = -100
    out = model(feats, ids, labels=labels, video=video)
    logits = out.logits.reshape(-1, out.logits.shape[-1])
    keep = labels.reshape(-1) != -100
    manual = -torch.log_softmax(logits[keep], -1).gather(1, labels.reshape(-1)[keep][:, None]).mean()
    assert torch.allclose(out.loss, manual, atol=1e-5)
    smooth = model(feats, ids, labels=labels, video=video, label_smoothing=0.1).loss
    assert not torch.allclose(smooth, out.loss)
    # decoder_input_ids from labels (shifted right), as in HF Whisper
    assert model(feats, labels=ids).logits.shape == (2, 5, 96)


def test_loss_without_logits_projects_only_labelled_positions_with_the_same_loss_and_gradients():
    """Training's path (return_logits=False) gives the full path's loss and gradients: padding adds nothing."""
    feats, ids, video = inputs(t_a=120)
    labels = ids.clone()
    labels[0, 3:] = -100  # a short word padded to the batch's longest
    results = []
    for return_logits in (True, False):
        torch.manual_seed(0)
        model = av_model(fusion_location="decoder")
        open_gates(model)
        out = model(feats, ids, labels=labels, video=video, label_smoothing=0.1, return_logits=return_logits)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (full, full_grads), (kept, kept_grads) = results
    assert full.logits.shape == (2, 5, 96) and kept.logits is None
    assert torch.allclose(full.loss, kept.loss, atol=1e-6)
    assert full_grads.keys() == kept_grads.keys() and len(full_grads) > 10
    for name, grad in full_grads.items():
        assert torch.allclose(grad, kept_grads[name], atol=1e-6), name
    # the projection really saw fewer rows: the 8 labelled positions of 10
    seen = []
    hook = model.whisper.proj_out.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    model(feats, ids, labels=labels, video=video, return_logits=False)
    hook.remove()
    assert seen == [(8, 96)]


def test_gradient_checkpointing_same_gradients():
    feats, ids, video = inputs(t_a=100, t_v=4)
    grads = []
    for checkpointing in (False, True):
        model = av_model(fusion_location="both", soft_fusion_routing=True, routing_dropout=0.0)
        open_gates(model)
        model.train()
        model.video_encoder.eval()
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert all(block.gradient_checkpointing for block in model.gated_xattn_blocks)
        model(feats, ids, labels=ids, video=video).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert any("xattn" in n for n in grads[0]) and any(n.startswith("video_encoder.") for n in grads[0])
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name


def test_gated_block_zero_init_and_all_padding():
    block = GatedCrossAttentionBlock(32, 4).eval()
    assert block.attn_gate.shape == () and block.attn_gate.item() == 0 and block.ff_gate.item() == 0
    x, v = torch.randn(2, 5, 32), torch.randn(2, 3, 32)
    assert torch.equal(block(x, v), x)
    with torch.no_grad():
        block.attn_gate.fill_(1.0)
        block.ff_gate.fill_(1.0)
    mask = torch.tensor([[True, True, True], [False, False, True]])
    out = block(x, v, mask)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], x[0])  # no valid frame: identity
    assert not torch.allclose(out[1], x[1])


def test_config_validation():
    with pytest.raises(ValueError):
        AVWhisperConfig(fusion_location="middle")
    with pytest.raises(ValueError):
        AVWhisperConfig(fusion_location="none", soft_fusion_routing=True)
    with pytest.raises(ValueError):
        AVWhisperConfig(video_dropout=0.7, audio_dropout=0.5)
    with pytest.raises(ValueError, match="avhubert_size"):
        AVWhisperConfig(video_encoder="avhubert", avhubert_size="huge")
    assert AVWhisperConfig(video_encoder="avhubert", avhubert_size="large").resolved_video_dim == 1024
    cfg = AVWhisperConfig(fusion_location="decoder", soft_fusion_routing=True)
    assert cfg.fuse_encoder and cfg.fuse_decoder and cfg.resolved_video_dim == 512
    assert AVWhisperConfig.from_dict(cfg.to_dict()) == cfg
    none = av_model(fusion_location="none")
    assert none.video_encoder is None and none.video_proj is None and not none.gated_xattn_blocks
    with pytest.raises(ValueError, match="already wrapped"):
        AVWhisperForConditionalGeneration.from_whisper(av_model(fusion_location="decoder").whisper, AVWhisperConfig())


@torch.no_grad()
def test_precomputed_video_features():
    model = av_model(fusion_location="decoder", video_encoder="precomputed", video_dim=24)
    open_gates(model)
    feats, ids, _ = inputs(t_a=100)
    out = model(feats, ids, video=torch.randn(2, 7, 24))
    assert out.logits.shape == (2, 5, 96) and model.video_encoder is None


@torch.no_grad()
def test_video_positions_option():
    """video_positional adds Whisper's sinusoid at each frame's encoder time (frame t -> position 2 t at 25 fps);
    without it the fused model is invariant to the order of the video frames (attention is a set operation)."""
    from av_fusion_models import sinusoidal_positions

    model = av_model(fusion_location="decoder", video_encoder="precomputed", video_dim=8, video_positional=True)
    pos = model.video_positions(3)
    whisper_table = model.whisper.model.encoder.embed_positions.weight  # Whisper's own sinusoids at 0, 1, 2, ...
    assert torch.allclose(pos, whisper_table[[0, 2, 4]], atol=1e-5)
    assert torch.allclose(sinusoidal_positions(torch.tensor([1.5]), 64)[0, 32], torch.cos(torch.tensor(1.5)))
    open_gates(model)
    feats, ids, _ = inputs(t_a=100)
    video = torch.randn(2, 5, 8)
    perm = torch.tensor([4, 0, 3, 1, 2])
    with_pos = model(feats, ids, video=video).logits
    assert (model(feats, ids, video=video[:, perm]).logits - with_pos).abs().max() > 1e-2
    model.config.video_positional = False
    no_pos = model(feats, ids, video=video).logits
    assert (model(feats, ids, video=video[:, perm]).logits - no_pos).abs().max() <= 1e-4


@pytest.mark.parametrize("location", ["encoder", "decoder", "both"])
def test_gate_init_decides_whether_the_video_encoder_learns(location):
    """Closed gates (the identity at initialisation) give the video encoder exactly zero gradient;
    gates opened a little (xattn_gate_init) give it a gradient from the first step."""
    feats, ids, video = inputs(t_a=120)
    grads = {}
    for g0 in (0.0, 0.1):
        model = av_model(fusion_location=location, xattn_gate_init=g0).train()
        loss = model(feats, labels=ids, video=video).loss
        loss.backward()
        grads[g0] = sum(float(p.grad.abs().sum()) for p in model.video_encoder.parameters())
        assert model.gate_values() and all(
            v == pytest.approx(torch.tanh(torch.tensor(g0)).item()) for g in model.gate_values().values() for v in g.values()
        )
    assert grads[0.0] == 0.0 and grads[0.1] > 0.0


def test_video_only_model_hears_silence_of_the_video_length():
    model = av_model(fusion_location="both", video_only=True, xattn_gate_init=0.5)
    _, ids, video = inputs(t_v=6)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[1, 4:] = True  # the second clip has 4 frames
    feats, lengths = model.silent_audio(video, mask)
    assert torch.all(feats == SILENCE_LOG_MEL)
    assert lengths.tolist() == [24, 16]  # 6 and 4 frames at 25 fps = 0.24 s and 0.16 s at 100 mel frames / s
    assert feats.shape[-1] == 24
    with torch.no_grad():
        a = model(None, ids, video=video, video_padding_mask=mask).logits
        b = model(torch.randn(2, N_MELS, 120), ids, video=video, video_padding_mask=mask).logits
        assert torch.equal(a, b)  # whatever audio is passed, the lip reader does not hear it
        out = model.generate(video=video, video_padding_mask=mask, max_new_tokens=3, eos_token_id=-1)
    assert out.shape == (2, 4)
    with pytest.raises(ValueError, match="needs the video"):
        model(None, ids)
    with pytest.raises(ValueError, match="video_only"):
        AVWhisperConfig(fusion_location="none", video_only=True)


def test_lip_reader_encodes_its_silence_once_with_the_same_values_and_gradients():
    """Decoder fusion: every row hears the same silence, so the encoder runs on one row (encoder_states)."""
    model = av_model(fusion_location="decoder", video_only=True, xattn_gate_init=0.5).train()
    _, ids, video = inputs(t_v=6)
    fusion = model.prepare_fusion(None, video, modality_dropout=False)
    once = model.encoder_states(fusion)
    every_row = model.encode(fusion.input_features, fusion)
    assert once.stride(0) == 0  # one row, repeated
    torch.testing.assert_close(once, every_row)
    params = [p for p in model.whisper.model.encoder.parameters() if p.requires_grad]
    assert params
    g = torch.randn_like(every_row)
    ref = torch.autograd.grad((every_row * g).sum(), params)
    got = torch.autograd.grad((model.encoder_states(fusion) * g).sum(), params)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # encoder fusion sees each row's own video: every row is encoded
    both = av_model(fusion_location="both", video_only=True, xattn_gate_init=0.5)
    assert both.encoder_states(both.prepare_fusion(None, video)).stride(0) != 0
