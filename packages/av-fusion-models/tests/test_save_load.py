"""save_pretrained / from_pretrained round trip (safetensors, no pickle)."""

import json

import pytest
import torch
from safetensors import safe_open

from av_fusion_models import testing
from av_fusion_models import AVWhisperConfig, AVWhisperForConditionalGeneration


def tiny_whisper():
    return testing.tiny_whisper(0).eval()


@pytest.fixture
def no_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load (pickle) must not be used")

    monkeypatch.setattr(torch, "load", refuse)


@torch.no_grad()
def test_round_trip_identical(tmp_path, no_pickle):
    cfg = AVWhisperConfig(
        fusion_location="both", resnet_width=4, soft_fusion_routing=True, routing_use_level=True, routing_hidden_dim=32
    )
    model = AVWhisperForConditionalGeneration.from_whisper(tiny_whisper(), cfg).eval()
    torch.manual_seed(1)
    for block in model.gated_xattn_blocks:
        block.attn_gate.fill_(0.3)
        block.ff_gate.fill_(-0.2)
    for m in model.video_encoder.modules():  # non-trivial BatchNorm statistics must survive too
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)

    model.save_pretrained(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["config.json", "model.safetensors", "whisper_config.json"]
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "av_whisper"
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "whisper.model.decoder.layers.0.xattn.attn_gate" in keys
    assert "whisper.model.encoder.layers.1.layer.fc1.weight" in keys
    assert "router.level_embed.weight" in keys

    loaded = AVWhisperForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.config == model.config
    assert loaded.whisper.config.d_model == 64
    # tied output projection stays tied
    assert loaded.whisper.proj_out.weight.data_ptr() == loaded.whisper.model.decoder.embed_tokens.weight.data_ptr()
    for (n1, t1), (n2, t2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(t1, t2), n1

    feats = torch.randn(2, 80, 120)
    ids = torch.randint(3, 96, (2, 4))
    video = torch.randn(2, 5, 88, 88)
    levels = torch.tensor([1, 3])
    a = model(feats, ids, video=video, levels=levels)
    b = loaded(feats, ids, video=video, levels=levels)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.route_probs, b.route_probs)
    kw = dict(video=video, levels=levels, max_new_tokens=4, num_beams=2)
    assert torch.equal(model.generate(feats, **kw), loaded.generate(feats, **kw))


@torch.no_grad()
def test_audio_only_round_trip_and_plain_whisper_export(tmp_path, no_pickle):
    whisper = tiny_whisper()
    plain_state = {k: v.clone() for k, v in whisper.state_dict().items()}
    model = AVWhisperForConditionalGeneration.from_whisper(whisper, AVWhisperConfig(fusion_location="decoder", resnet_width=4))
    exported = model.whisper_state_dict()
    assert exported.keys() == plain_state.keys()
    assert all(torch.equal(exported[k], plain_state[k]) for k in plain_state)

    audio_only = AVWhisperForConditionalGeneration.from_whisper(tiny_whisper(), AVWhisperConfig(fusion_location="none"))
    audio_only.save_pretrained(tmp_path)
    loaded = AVWhisperForConditionalGeneration.from_pretrained(tmp_path)
    feats, ids = torch.randn(1, 80, 200), torch.randint(3, 96, (1, 4))
    assert torch.equal(audio_only.eval()(feats, ids).logits, loaded(feats, ids).logits)


@torch.no_grad()
def test_from_whisper_path_shares_loaded_weights(tmp_path):
    whisper = tiny_whisper()
    whisper.save_pretrained(tmp_path / "whisper")
    model = AVWhisperForConditionalGeneration.from_whisper(
        tmp_path / "whisper", AVWhisperConfig(fusion_location="encoder", resnet_width=4), local_files_only=True
    ).eval()
    feats, ids = torch.randn(1, 80, 200), torch.randint(3, 96, (1, 4))
    ref = tiny_whisper()(input_features=feats, decoder_input_ids=ids).logits
    assert (model(feats, ids, video=torch.randn(1, 4, 88, 88)).logits - ref).abs().max() <= 1e-5
    with pytest.raises(TypeError):
        AVWhisperForConditionalGeneration.from_whisper(tiny_whisper(), AVWhisperConfig(), local_files_only=True)


@torch.no_grad()
def test_from_whisper_hub_name_local_files_only(tmp_path):
    """A hub name resolves from the local Hugging Face cache with local_files_only=True (no network)."""
    whisper = tiny_whisper()
    snapshot = tmp_path / "hub" / "models--openai--whisper-tiny" / "snapshots" / ("0" * 40)
    whisper.save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    cfg = AVWhisperConfig(fusion_location="decoder", resnet_width=4)
    model = AVWhisperForConditionalGeneration.from_whisper(
        "openai/whisper-tiny", cfg, local_files_only=True, cache_dir=tmp_path / "hub"
    ).eval()
    feats, ids = torch.randn(1, 80, 200), torch.randint(3, 96, (1, 4))
    ref = whisper(input_features=feats, decoder_input_ids=ids).logits
    assert (model(feats, ids, video=torch.randn(1, 3, 88, 88)).logits - ref).abs().max() <= 1e-5
    with pytest.raises(OSError):  # not in the cache: an error, not a download
        AVWhisperForConditionalGeneration.from_whisper(
            "openai/whisper-base", cfg, local_files_only=True, cache_dir=tmp_path / "hub"
        )
