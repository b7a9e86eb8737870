"""The audio check (audio_check.py): the audio alone scores the word the lips lead to against its own, and overrules
the lips by more than the margin; scoring is the search's own log-probabilities, the check is off at margin 0,
and an overruled clip is decoded exactly as the audio alone decodes it and reported with reliability 0."""

import pytest
import torch

from av_fusion_models import AVWhisperConfig, AVWhisperForConditionalGeneration, testing
from av_fusion_models.generation import ModelStep, greedy_search
from av_fusion_models.testing import open_gates

N_MELS = 80


def av_model(location="decoder", **cfg):
    whisper = testing.tiny_whisper(0, max_source_positions=100, num_mel_bins=N_MELS).eval()
    torch.manual_seed(1)
    model = AVWhisperForConditionalGeneration.from_whisper(
        whisper, AVWhisperConfig(fusion_location=location, video_reliability=True, resnet_width=4, **cfg)).eval()
    open_gates(model)
    with torch.no_grad():  # trust every clip fully (r = sigmoid(30) = 1 in float32), whatever the lips
        model.reliability.frame_head.weight.zero_()
        model.reliability.frame_head.bias.fill_(30.0)
        model.reliability.sync_head[2].weight.zero_()
        model.reliability.sync_head[2].bias.zero_()
    return model


def inputs(bsz=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(bsz, N_MELS, 100, generator=g), torch.randn(bsz, 12, 88, 88, generator=g) * 3


def test_score_is_the_sum_of_the_searchs_log_probabilities_up_to_eos():
    model = av_model()
    feats, video = inputs(bsz=3)
    step, _ = model.decoder_step(feats, video)
    prompt = torch.tensor([[1], [1], [1]])
    ids = greedy_search(step, prompt, 5, eos=[], pad=0)
    per_token = []
    fresh, _ = model.decoder_step(feats, video)
    for t in range(1, ids.shape[1]):  # the cached step, one token at a time: the same numbers as the search's
        lp = fresh(ids[:, t - 1 : t], ids[:, :t])
        per_token.append(lp.gather(1, ids[:, t : t + 1]).squeeze(1))
    per_token = torch.stack(per_token, dim=1)  # [3, 5]
    assert torch.allclose(step.score(ids, 1, eos=[]), per_token.sum(1), atol=1e-4)
    # a row ends at its first eos (here: row 0's first generated token, so row 0 is cut short): it counts, what
    # follows does not
    eos = int(ids[0, 1])
    expected = per_token.sum(1).clone()
    for row in range(3):
        hits = (ids[row, 1:] == eos).nonzero()
        if len(hits):
            expected[row] = per_token[row, : int(hits[0]) + 1].sum()
    assert expected[0] == per_token[0, 0] and expected[0] != per_token[0].sum()
    assert torch.allclose(step.score(ids, 1, eos=[eos]), expected, atol=1e-4)


def test_margin_zero_is_no_check_and_a_huge_margin_changes_nothing():
    feats, video = inputs()
    off = av_model().generate(feats, video=video, max_new_tokens=4, return_video_reliability=True)
    huge = av_model(reliability_audio_margin=1e6).generate(feats, video=video, max_new_tokens=4,
                                                           return_video_reliability=True)
    assert torch.equal(off[0], huge[0]) and torch.equal(off[2], huge[2])
    assert torch.all(off[2] == 1.0)


@pytest.mark.parametrize("location", ["decoder", "both"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_overruled_clips_are_the_audio_alone_and_report_zero_reliability(location, num_beams):
    model = av_model(location)
    feats, video = inputs()
    kw = dict(max_new_tokens=4, num_beams=num_beams)
    with_lips = model.generate(feats, video=video, **kw)
    alone = model.generate(feats, **kw)  # no video: Whisper's own decoding
    step, _ = model.decoder_step(feats)  # the audio alone scores both hypotheses
    eos = [model.whisper.config.eos_token_id]
    gap = step.score(alone, 1, eos) - step.score(with_lips, 1, eos)
    margin = float(gap.median())  # some clips on each side
    overruled = gap > margin
    assert 0 < int(overruled.sum()) < len(gap)
    model.config.reliability_audio_margin = margin
    checked, _, trust = model.generate(feats, video=video, return_video_reliability=True, **kw)
    assert torch.equal(checked[overruled], alone[overruled])
    assert torch.equal(checked[~overruled], with_lips[~overruled])
    assert torch.equal(trust, torch.where(overruled, 0.0, 1.0))


@pytest.mark.parametrize("kwargs, message", [
    ({"video_reliability": True, "reliability_audio_margin": -1.0}, ">= 0 nats"),
    ({"reliability_audio_margin": 2.0, "video_only": True}, "needs audio and video"),
    ({"reliability_audio_margin": 2.0, "fusion_location": "none"}, "needs audio and video"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AVWhisperConfig(**kwargs)


def test_a_model_without_a_scorer_reports_which_clips_the_audio_overruled():
    whisper = testing.tiny_whisper(0, max_source_positions=100, num_mel_bins=N_MELS).eval()
    torch.manual_seed(1)
    model = AVWhisperForConditionalGeneration.from_whisper(
        whisper, AVWhisperConfig(fusion_location="decoder", resnet_width=4)).eval()
    open_gates(model)
    feats, video = inputs()
    with_lips = model.generate(feats, video=video, max_new_tokens=4)
    assert model.generate(feats, video=video, max_new_tokens=4, return_video_reliability=True)[2] is None  # (off)
    alone = model.generate(feats, max_new_tokens=4)
    step, _ = model.decoder_step(feats)
    eos = [model.whisper.config.eos_token_id]
    gap = step.score(alone, 1, eos) - step.score(with_lips, 1, eos)
    positive = gap[gap > 0].sort().values
    assert len(positive) >= 2, gap
    model.config.reliability_audio_margin = float(positive[0] + positive[-1]) / 2  # some clips on each side
    overruled = gap > model.config.reliability_audio_margin
    assert 0 < int(overruled.sum()) < len(gap)
    checked, _, used = model.generate(feats, video=video, max_new_tokens=4, return_video_reliability=True)
    assert torch.equal(used, torch.where(overruled, 0.0, 1.0))
    assert torch.equal(checked[overruled], alone[overruled]) and torch.equal(checked[~overruled], with_lips[~overruled])
