from pathlib import Path

import pytest

from av_train.config import ConfigError, TrainingConfig, describe_fields, from_dict, load_config

REPO = Path(__file__).resolve().parents[3]


def base(**kw):
    return {"uaspeech_root": "/data/prepared", **kw}


def test_unknown_key_names_key_and_suggests_nearest():
    with pytest.raises(ConfigError, match=r"unknown option 'fusion_locaton'.*Did you mean 'fusion_location'"):
        from_dict(base(modality="audio_visual", fusion_locaton="both"), source="x.yaml")


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"x.yaml: option 'batch_size' must be int, got 'eight'"):
        from_dict(base(batch_size="eight"), source="x.yaml")
    with pytest.raises(ConfigError, match="freeze_whisper"):
        from_dict(base(freeze_whisper="yes"))
    with pytest.raises(ConfigError, match="fusion_location"):
        from_dict(base(modality="audio_visual", fusion_location="middle"))


def test_ints_are_accepted_for_floats():
    cfg = from_dict(base(learning_rate=1))
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"fusion_location": "both"}, "audio-visual option but modality is 'audio'"),
        ({"modality": "audio_visual", "soft_fusion_routing": True, "fusion_location": "decoder"}, "must be 'both'"),
        ({"modality": "audio_visual", "router_train_only": True}, "needs soft_fusion_routing"),
        ({"unfreeze_mlp_layers": True}, "only makes sense with freeze_whisper"),
        ({"modality": "audio_visual", "video_dropout": 0.6, "audio_dropout": 0.5}, "must be < 1"),
        ({"microphones": []}, "at least one channel"),
        ({"noise_snr_db": [20.0, 0.0]}, "noise_snr_db"),
    ],
)
def test_contradictions_are_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(base(**options))


def test_missing_root_is_an_error():
    with pytest.raises(ConfigError, match="uaspeech_root"):
        from_dict({})


def test_effective_fusion_location_and_seed_paths():
    assert from_dict(base()).effective_fusion_location == "none"
    assert from_dict(base(modality="audio_visual")).effective_fusion_location == "decoder"
    cfg = from_dict(base(modality="audio_visual", soft_fusion_routing=True, seed=3,
                         pt_audio_ckpt="weights/checkpoint/audio_{seed}/best.ckpt"))
    assert cfg.effective_fusion_location == "both"
    assert cfg.resolve_seed_path(cfg.pt_audio_ckpt) == "weights/checkpoint/audio_3/best.ckpt"
    assert cfg.checkpoint_dir == Path("weights/checkpoint/run")
    assert cfg.results_dir == Path("results/uaspeech/run")


def test_save_and_reload_round_trip(tmp_path):
    cfg = from_dict(base(modality="audio_visual", speakers=["M09", "F02"], speaker_weights={"M09": 2.0}))
    path = cfg.save(tmp_path / "config.yaml")
    assert load_config(path) == cfg


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path, {"uaspeech_root": "/data/prepared"})
    assert isinstance(cfg, TrainingConfig)


def test_field_table_documents_every_field():
    table = describe_fields()
    for name in TrainingConfig.__dataclass_fields__:
        assert f"| `{name}` |" in table
    assert "Whisper hub name" in table
