"""``finetune: lora``: adapters on Whisper's own layers only, training starts from Whisper exactly, and the
merged model (evaluation, export, warm starts) computes what the adapted one does."""

from __future__ import annotations

import pytest
import torch

from av_fusion_models import AVWhisperForConditionalGeneration
from av_train.config import ConfigError, from_dict
from av_train.evaluation.loading import load_run
from av_train.export import export_hf
from av_train.lora import merge_lora
from av_train.model_factory import build_model


def _cfg(tree, whisper, out, **kw):
    return from_dict({"uaspeech_root": str(tree), "model_name": str(whisper), "local_model_only": True,
                      "output_root": str(out), "microphones": ["M5"], "num_workers": 0, **kw})


def _logits(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, 80, 3000, generator=g)
    ids = torch.tensor([[50257, 50362, 220, 83], [50257, 50362, 220, 78]])
    model.eval()
    with torch.no_grad():
        return model(input_features=feats, decoder_input_ids=ids).logits


def test_adapters_sit_on_whispers_layers_only_and_start_from_whisper(prepared_tree, tiny_whisper_dir, tmp_path):
    plain, *_ = build_model(_cfg(prepared_tree, tiny_whisper_dir, tmp_path))
    lora, *_ = build_model(_cfg(prepared_tree, tiny_whisper_dir, tmp_path, finetune="lora", lora_rank=4))
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # tiny: 2 encoder layers x 4 self-attention projections + 2 decoder layers x (4 self + 4 cross)
    adapted = {n.split(".lora_A.")[0] for n in trainable if ".lora_A." in n}
    assert len(adapted) == 24 and not any(".xattn." in n or "fc1" in n for n in adapted)
    assert torch.equal(_logits(plain), _logits(lora))  # B starts at zero: W + BA = W


def test_attention_mlp_targets_and_av_fusion_blocks_stay_full(prepared_tree, tiny_whisper_dir, tmp_path):
    model, *_ = build_model(_cfg(prepared_tree, tiny_whisper_dir, tmp_path, finetune="lora",
                                 lora_targets="attention_mlp", modality="audio_visual", resnet_width=4))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert {n.split(".lora_A.")[0] for n in trainable if ".lora_A." in n} >= {
        "whisper.model.decoder.layers.0.layer.fc1", "whisper.model.encoder.layers.1.fc2"}  # (decoder fusion wraps the decoder layers only)
    assert any(".xattn." in n and "lora" not in n for n in trainable)  # fusion blocks: full training
    assert any(n.startswith("video_encoder.") for n in trainable)
    assert not any(n.startswith("whisper.") and "lora" not in n and ".xattn." not in n for n in trainable)


def test_merged_equals_adapted_and_export_has_plain_names(make_run, prepared_tree, tiny_whisper_dir, tmp_path):
    # make_run perturbs every parameter, adapters included: a LoRA run whose B A is far from zero
    cfg = make_run(prepared_tree, tiny_whisper_dir, tmp_path, seed=2, train_id="lora", finetune="lora",
                   lora_rank=4, noise=0.3)
    adapted, *_ = build_model(cfg)
    state = torch.load(cfg.checkpoint_dir / "best.ckpt", weights_only=True)["state_dict"]
    adapted.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    expected = _logits(adapted)

    run = load_run(cfg.checkpoint_dir / "best.ckpt", device="cpu")  # merged on load
    plain, *_ = build_model(_cfg(prepared_tree, tiny_whisper_dir, tmp_path))
    assert set(run.model.state_dict()) == set(plain.state_dict())
    torch.testing.assert_close(_logits(run.model), expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(_logits(plain), expected, atol=1e-3)  # the adapters did change the model

    folder = export_hf(cfg.checkpoint_dir, tmp_path / "export").path
    exported = AVWhisperForConditionalGeneration.from_pretrained(folder)
    torch.testing.assert_close(_logits(exported), expected, rtol=1e-4, atol=1e-4)


def test_a_later_stage_starts_from_the_merged_lora_run(make_run, prepared_tree, tiny_whisper_dir, tmp_path):
    cfg = make_run(prepared_tree, tiny_whisper_dir, tmp_path, seed=4, train_id="lora_audio", finetune="lora",
                   lora_rank=4, noise=0.3)
    merged = load_run(cfg.checkpoint_dir / "best.ckpt", device="cpu").model
    nxt, *_ = build_model(_cfg(prepared_tree, tiny_whisper_dir, tmp_path, modality="audio_visual", resnet_width=4,
                               pt_audio_ckpt=str(cfg.checkpoint_dir / "best.ckpt")))
    own = nxt.whisper.state_dict()
    for k, v in merged.whisper.state_dict().items():
        torch.testing.assert_close(own[k if k in own else _wrapped(k, own)], v)
    assert all(p.requires_grad for n, p in nxt.named_parameters() if n.startswith("whisper."))  # full fine-tune


def _wrapped(key: str, own: dict) -> str:
    """An audio-only model's layer key in a fused model, whose Whisper layers sit under ``.layer.``."""
    head, sep, tail = key.partition("layers.")
    idx, _, rest = tail.partition(".")
    wrapped = f"{head}{sep}{idx}.layer.{rest}"
    assert wrapped in own, key
    return wrapped


@pytest.mark.parametrize("bad, match", [
    ({"finetune": "lora", "freeze_whisper": True}, "already freezes"),
    ({"lora_rank": 4}, "applies to finetune: lora"),
    ({"finetune": "lora", "lora_rank": 0}, "lora_rank >= 1"),
])
def test_lora_options_are_checked(prepared_tree, tiny_whisper_dir, tmp_path, bad, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(prepared_tree, tiny_whisper_dir, tmp_path, **bad)


def test_merge_without_adapters_is_a_no_op(prepared_tree, tiny_whisper_dir, tmp_path):
    model, *_ = build_model(_cfg(prepared_tree, tiny_whisper_dir, tmp_path))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert merge_lora(model) == 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
