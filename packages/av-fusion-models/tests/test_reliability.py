"""Video reliability scorer: the audio-only fallback is exact, the zero-gate invariant holds, padding does not
change a clip's score, training faults get the right agreement labels, and the scorer can learn to tell
lips that move with the sound from lips that move at another moment."""

import pytest
import torch

from av_fusion_models import AVWhisperConfig, AVWhisperForConditionalGeneration
from av_fusion_models import testing
from av_fusion_models.testing import open_gates
from av_fusion_models.modality_dropout import ModalityDraw, draw_modalities
from av_fusion_models.reliability import (MAX_LAG, SYNC_TEMPERATURE, AVReliabilityScorer, agreement_loss,
                                         audio_at_video_rate, sync_loss)

N_MELS = 80
TOL = 1e-5


def av_model(seed=0, **cfg):
    cfg.setdefault("resnet_width", 4)
    whisper = testing.tiny_whisper(seed, max_source_positions=100, num_mel_bins=N_MELS).eval()
    torch.manual_seed(seed + 1)
    return AVWhisperForConditionalGeneration.from_whisper(whisper, AVWhisperConfig(**cfg)).eval()


def set_reliability_logit(model, logit):
    """Make the scorer output a constant clip logit (its last layer: weights 0, bias = logit)."""
    with torch.no_grad():
        model.reliability.frame_head.weight.zero_()
        model.reliability.frame_head.bias.fill_(logit)
        model.reliability.sync_head[2].weight.zero_()
        model.reliability.sync_head[2].bias.zero_()


def batch(bsz=2, t_a=100, t_v=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(bsz, N_MELS, t_a, generator=g), torch.randint(3, 96, (bsz, 5), generator=g),
            torch.randn(bsz, t_v, 88, 88, generator=g))


def logits(model, feats, ids, video=None, mask=None):
    with torch.no_grad():
        return model(feats, decoder_input_ids=ids, video=video, video_padding_mask=mask).logits


@pytest.mark.parametrize("location", ["encoder", "decoder", "both"])
def test_zero_reliability_is_exactly_the_audio_alone(location):
    model = av_model(fusion_location=location, video_reliability=True)
    open_gates(model)
    feats, ids, video = batch()
    set_reliability_logit(model, -200.0)  # sigmoid underflows to exactly 0
    assert torch.equal(logits(model, feats, ids, video), logits(model, feats, ids))
    set_reliability_logit(model, 3.0)  # trusted lips change the output
    assert (logits(model, feats, ids, video) - logits(model, feats, ids)).abs().max() > 1e-3


@pytest.mark.parametrize("location", ["encoder", "decoder", "both"])
def test_closed_gates_equal_whisper_whatever_the_scorer_says(location):
    model = av_model(fusion_location=location, video_reliability=True)
    plain = testing.tiny_whisper(0, max_source_positions=100, num_mel_bins=N_MELS).eval()
    feats, ids, video = batch(t_a=200)  # plain HF Whisper takes exactly 2 x max_source_positions frames
    with torch.no_grad():
        model.reliability.frame_head.weight.normal_()  # any score
        ref = plain(input_features=feats, decoder_input_ids=ids).logits
    assert (logits(model, feats, ids, video) - ref).abs().max() < TOL


def test_reliability_scales_the_fused_output_linearly():
    """r multiplies every block's output: the first fused decoder block adds r * tanh(g) * XAttn(...)."""
    model = av_model(fusion_location="decoder", video_reliability=True)
    open_gates(model)
    feats, ids, video = batch(bsz=1)
    out = {}
    for logit in (0.0, 200.0):  # r = 0.5 and r = 1
        set_reliability_logit(model, logit)
        fusion = model.prepare_fusion(feats, video)
        model.encoder_states(fusion)
        out[logit] = fusion.reliability
        kw = fusion.kwargs("decoder")
        block = model.whisper.model.decoder.layers[0].xattn
        hidden = torch.randn(1, 5, model.whisper.config.d_model, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            out[("delta", logit)] = block(hidden, kw["av_video_states"], kw["av_video_padding_mask"],
                                          kw["av_fusion_scale"]) - hidden
    assert out[0.0].item() == pytest.approx(0.5) and out[200.0].item() == pytest.approx(1.0)
    # the attention branch is linear in the scale; the dense branch then sees a slightly different input,
    # so compare the attention contribution alone through a block with the dense gate closed
    with torch.no_grad():
        for b in model.gated_xattn_blocks:
            b.ff_gate.zero_()
    deltas = []
    for logit in (0.0, 200.0):
        set_reliability_logit(model, logit)
        fusion = model.prepare_fusion(feats, video)
        model.encoder_states(fusion)
        kw = fusion.kwargs("decoder")
        with torch.no_grad():
            deltas.append(block(hidden, kw["av_video_states"], kw["av_video_padding_mask"], kw["av_fusion_scale"])
                          - hidden)
    assert torch.allclose(deltas[0] * 2, deltas[1], atol=1e-5)


def test_cutoff_falls_back_on_the_audio_at_inference_only():
    model = av_model(fusion_location="decoder", video_reliability=True, reliability_cutoff=0.6)
    open_gates(model)
    feats, ids, video = batch()
    set_reliability_logit(model, 0.0)  # r = 0.5 < 0.6: cut to 0
    assert torch.equal(logits(model, feats, ids, video), logits(model, feats, ids))
    set_reliability_logit(model, 1.0)  # r = 0.73: kept
    assert not torch.equal(logits(model, feats, ids, video), logits(model, feats, ids))


def test_padding_does_not_change_a_clips_reliability():
    torch.manual_seed(0)
    scorer = AVReliabilityScorer(16, hidden_dim=8).eval()
    with torch.no_grad():
        scorer.frame_head.weight.normal_()
        scorer.sync_head[2].weight.normal_()
    audio = torch.randn(1, 20, 16)
    video = torch.randn(1, 10, 16)
    alone = scorer(audio, None, video, None)
    padded_audio = torch.cat([audio, torch.randn(1, 8, 16)], dim=1)
    padded_video = torch.cat([video, torch.randn(1, 4, 16)], dim=1)
    amask = torch.arange(28)[None] >= 20
    vmask = torch.arange(14)[None] >= 10
    padded = scorer(padded_audio, amask, padded_video, vmask)
    assert torch.allclose(alone.logit, padded.logit, atol=1e-5)
    assert torch.allclose(alone.frame_logits, padded.frame_logits[:, :10], atol=1e-5)
    assert torch.allclose(alone.lag_profile, padded.lag_profile, atol=1e-5)


@pytest.mark.parametrize("shift", [-9, -3, 0, 4, 11])
def test_lag_profile_peaks_at_the_pictures_delay(shift):
    """Video frame t showing the audio of t - shift (the picture ``shift`` frames late, as video_faults' late-)
    peaks the profile at lag +shift, with cos = 1 there."""
    g = torch.Generator().manual_seed(shift + 20)
    x = torch.randn(1, 40, 8, generator=g)
    video = x[:, (torch.arange(40) - shift).clamp(0, 39)]
    profile, ok = AVReliabilityScorer.lag_profile(x, video, torch.ones(1, 40))
    assert int(profile.argmax(dim=1)) - MAX_LAG == shift
    assert float(profile[0, MAX_LAG + shift]) > 0.9 and bool(ok.all())


def test_sync_loss_by_hand():
    from av_fusion_models.reliability import ReliabilityOutput

    profile = torch.zeros(2, 2 * MAX_LAG + 1)
    profile[0, MAX_LAG] = 0.5  # in sync: lag 0 at 0.5, every other lag 0
    valid = torch.ones_like(profile, dtype=torch.bool)
    out = ReliabilityOutput(torch.zeros(2), torch.zeros(2), torch.zeros(2, 3), profile, valid)
    n = 2 * MAX_LAG + 1
    expected = -torch.log(torch.exp(torch.tensor(0.5 / SYNC_TEMPERATURE))
                          / (torch.exp(torch.tensor(0.5 / SYNC_TEMPERATURE)) + n - 1))
    assert sync_loss(out, torch.tensor([True, False])).item() == pytest.approx(expected.item(), rel=1e-5)
    assert sync_loss(out, torch.tensor([False, False])) is None
    assert out.offset_frames.tolist() == [0, -MAX_LAG]  # a flat profile: the first lag


def test_audio_at_video_rate_averages_frame_pairs_and_marks_missing_audio():
    audio = torch.arange(10, dtype=torch.float32).view(1, 10, 1)  # 5 video frames of audio
    mask = torch.arange(10)[None] >= 7  # steps 7.. are padding
    out, missing = audio_at_video_rate(audio, mask, num_frames=6)
    assert out[0, :, 0].tolist() == [0.5, 2.5, 4.5, 6.0, 0.0, 0.0]  # frame 3: step 6 alone
    assert missing[0].tolist() == [False, False, False, False, True, True]


def test_a_clip_without_video_gets_zero_reliability():
    model = av_model(fusion_location="decoder", video_reliability=True)
    feats, ids, video = batch()
    mask = torch.zeros(2, video.shape[1], dtype=torch.bool)
    mask[1] = True
    with torch.no_grad():
        out = model(feats, decoder_input_ids=ids, video=video, video_padding_mask=mask)
    assert out.video_reliability[0] > 0.9 and out.video_reliability[1] == 0


def test_generate_reports_the_reliability_it_applied():
    model = av_model(fusion_location="decoder", video_reliability=True)
    open_gates(model)
    feats, ids, video = batch()
    set_reliability_logit(model, 1.0)
    ids, routes, trust = model.generate(feats, video=video, max_new_tokens=3, return_video_reliability=True)
    assert routes is None and torch.allclose(trust, torch.sigmoid(torch.tensor([1.0, 1.0])))
    plain = av_model(fusion_location="decoder")
    assert plain.generate(feats, video=video, max_new_tokens=2, return_video_reliability=True)[2] is None


def test_training_draw_labels_and_dropped_audio_keeps_full_trust():
    model = av_model(fusion_location="decoder", video_reliability=True, audio_dropout=1.0)
    open_gates(model)
    model.train()
    feats, ids, video = batch()
    set_reliability_logit(model, -5.0)
    out = model(feats, labels=ids, video=video)
    assert out.video_reliability.tolist() == [1.0, 1.0]  # the lips alone: no sound to disagree with
    assert out.reliability_loss is None  # dropped audio has no agreement label

    draw = ModalityDraw(*(torch.tensor(x) for x in ([True, False, False, False, False],
                                                    [False, True, False, False, False],
                                                    [False, False, True, False, False],
                                                    [False, False, False, True, False])))
    agree = draw.agree
    assert torch.isnan(agree[0]) and torch.isnan(agree[1]) and agree[2:].tolist() == [0.0, 0.0, 1.0]


def test_video_faults_reach_the_agreement_loss():
    torch.manual_seed(0)
    config = AVWhisperConfig(video_fault_prob=1.0, video_fault_classes=["frozen", "wrong"], resnet_width=4)
    draw = draw_modalities(config, 64, "cpu")
    assert draw.faults is not None and bool((draw.faults.kind >= 0).all())
    assert draw.agree.tolist() == [0.0] * 64  # still faces and wrong lips: the lips do not belong to the sound
    assert int(draw.all_wrong.sum()) == int((draw.faults.kind == 0).sum()) > 0
    model = av_model(fusion_location="decoder", video_reliability=True, video_fault_prob=1.0,
                     video_fault_classes=["frozen"])
    model.train()
    feats, ids, video = batch()
    set_reliability_logit(model, 0.0)
    out = model(feats, labels=ids, video=video)
    # every label is 0 and every clip logit is 0: BCE = log 2
    assert out.reliability_loss.item() == pytest.approx(float(torch.log(torch.tensor(2.0))), abs=1e-5)


def test_agreement_loss_ignores_unlabelled_samples():
    logit = torch.tensor([2.0, -1.0, 5.0])
    loss = agreement_loss(logit, torch.tensor([1.0, float("nan"), 0.0]))
    ref = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([2.0, 5.0]), torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(ref.item())
    assert agreement_loss(logit, torch.full((3,), float("nan"))) is None


@pytest.mark.parametrize("kwargs, message", [
    ({"video_reliability": True, "video_only": True}, "video_reliability needs audio and video"),
    ({"video_reliability": True, "fusion_location": "none"}, "video_reliability needs audio and video"),
    ({"video_fault_classes": ["shift", "upside_down"]}, "video_fault_classes"),
    ({"video_fault_prob": 0.6, "audio_dropout": 0.5}, "must be <= 1"),
    ({"video_fault_prob": 0.3, "video_encoder": "precomputed", "video_dim": 16}, "video_fault_prob needs lip frames"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AVWhisperConfig(**kwargs)


def test_the_scorer_learns_to_tell_in_sync_from_shifted_lips():
    """Audio features are a random sequence; the lips are a fixed linear view of the same sequence, in sync or
    shifted by 8 frames (320 ms). 100 steps of the agreement loss separate the two on held-out clips."""
    torch.manual_seed(0)
    d, t_v = 16, 30
    mix = torch.randn(d, d)
    scorer = AVReliabilityScorer(d, hidden_dim=16)
    opt = torch.optim.Adam(scorer.parameters(), lr=3e-3)

    def clips(n, seed):
        g = torch.Generator().manual_seed(seed)
        source = torch.randn(n, t_v + 16, d, generator=g)
        audio = source[:, 8 : 8 + t_v].repeat_interleave(2, dim=1)  # 50 Hz
        shift = torch.randint(0, 2, (n,), generator=g).bool()
        sync = source[:, 8 : 8 + t_v]
        late = source[:, 0:t_v]
        video = torch.where(shift[:, None, None], late, sync) @ mix
        return audio, video, (~shift).float()

    for step in range(100):
        audio, video, label = clips(24, step)
        loss = agreement_loss(scorer(audio, None, video, None).logit, label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    audio, video, label = clips(200, 10_000)
    with torch.no_grad():
        r = scorer(audio, None, video, None).reliability
    accuracy = ((r > 0.5).float() == label).float().mean().item()
    assert accuracy > 0.9


def test_training_wrong_lips_are_stretched_to_the_clips_length():
    from av_fusion_models.modality_dropout import swap_video_stretched
    from av_fusion_models.video_faults import stretch_index

    states = torch.arange(2 * 8 * 1, dtype=torch.float32).view(2, 8, 1)
    mask = torch.tensor([[False] * 4 + [True] * 4, [False] * 8])
    out = swap_video_stretched(states, mask, torch.tensor([True, False]))
    assert out[0, :4, 0].tolist() == states[1, stretch_index(8, 4), 0].tolist() == [8.0, 10.0, 13.0, 15.0]
    assert torch.equal(out[0, 4:], states[0, 4:]) and torch.equal(out[1], states[1])  # padding and others kept


def test_sync_loss_counts_other_clips_lips_as_negatives_by_hand():
    from av_fusion_models.reliability import ReliabilityOutput

    n = 2 * MAX_LAG + 1
    profile = torch.zeros(2, n)
    profile[0, MAX_LAG] = 0.5
    cross = torch.tensor([[0.5, 0.3], [0.2, 0.4]])  # clip 0's sound against clip 1's lips: 0.3
    out = ReliabilityOutput(torch.zeros(2), torch.zeros(2), torch.zeros(2, 3), profile,
                            torch.ones(2, n, dtype=torch.bool), cross)  # reliability_content_negatives
    e = lambda x: torch.exp(torch.tensor(x / SYNC_TEMPERATURE))  # noqa: E731
    expected = -torch.log(e(0.5) / (e(0.5) + (n - 1) + e(0.3)))
    assert sync_loss(out, torch.tensor([True, False])).item() == pytest.approx(expected.item(), rel=1e-5)
