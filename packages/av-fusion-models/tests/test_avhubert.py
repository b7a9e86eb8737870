"""AV-HuBERT video encoder port: official key names / shapes, fairseq-style checkpoints, safe loading."""

from __future__ import annotations

import argparse
import enum
import os
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from av_fusion_models.testing import tiny_whisper
from av_fusion_models import AVWhisperConfig, AVWhisperForConditionalGeneration
from av_fusion_models.avhubert import AVHubertConfig, AVHubertVideoEncoder, WeightNormConv1d, load_avhubert_checkpoint
from av_fusion_models.safe_checkpoint import OpaqueObject, UnsafeCheckpointError, load_untrusted_checkpoint


# ------------------------------------------------------------------ the official layout, written by hand
def official_shapes(dim: int, layers: int, ffn: int, width: int = 64, final_dim: int = 256, n_classes: int = 504):
    """Parameter names and shapes of fairseq's AVHubertModel (facebookresearch/av_hubert, hubert.py /
    resnet.py, wav2vec2 TransformerEncoder with layer_norm_first), written independently of the port."""
    s: dict[str, tuple[int, ...]] = {}

    def bn(prefix, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            s[f"{prefix}.{p}"] = (c,)
        s[f"{prefix}.num_batches_tracked"] = ()

    def linear(prefix, out, inp):
        s[f"{prefix}.weight"] = (out, inp)
        s[f"{prefix}.bias"] = (out,)

    linear("feature_extractor_audio.proj", dim, 104)  # 26 filterbanks x 4 stacked frames
    r = "feature_extractor_video.resnet"
    s[f"{r}.frontend3D.0.weight"] = (width, 1, 5, 7, 7)
    bn(f"{r}.frontend3D.1", width)
    s[f"{r}.frontend3D.2.weight"] = (width,)
    c_in = width
    for i in range(4):
        c = width * 2**i
        for j in range(2):
            b = f"{r}.trunk.layer{i + 1}.{j}"
            s[f"{b}.conv1.weight"] = (c, c_in if j == 0 else c, 3, 3)
            bn(f"{b}.bn1", c)
            s[f"{b}.relu1.weight"] = (c,)
            s[f"{b}.conv2.weight"] = (c, c, 3, 3)
            bn(f"{b}.bn2", c)
            s[f"{b}.relu2.weight"] = (c,)
            if j == 0 and i > 0:
                s[f"{b}.downsample.0.weight"] = (c, c_in, 1, 1)
                bn(f"{b}.downsample.1", c)
        c_in = c
    linear("feature_extractor_video.proj", dim, 8 * width)
    s["mask_emb"] = (104,)
    s["encoder.pos_conv.0.bias"] = (dim,)
    s["encoder.pos_conv.0.weight_g"] = (1, 1, 128)
    s["encoder.pos_conv.0.weight_v"] = (dim, dim // 16, 128)
    for n in range(layers):
        p = f"encoder.layers.{n}"
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            linear(f"{p}.self_attn.{proj}", dim, dim)
        s[f"{p}.self_attn_layer_norm.weight"] = s[f"{p}.self_attn_layer_norm.bias"] = (dim,)
        linear(f"{p}.fc1", ffn, dim)
        linear(f"{p}.fc2", dim, ffn)
        s[f"{p}.final_layer_norm.weight"] = s[f"{p}.final_layer_norm.bias"] = (dim,)
    s["encoder.layer_norm.weight"] = s["encoder.layer_norm.bias"] = (dim,)
    s["layer_norm.weight"] = s["layer_norm.bias"] = (2 * dim,)
    linear("post_extract_proj", dim, 2 * dim)
    linear("final_proj", final_dim, dim)
    s["label_embs_concat"] = (n_classes, final_dim)
    return s


NOT_IN_PORT = ("feature_extractor_audio.", "mask_emb", "final_proj.", "label_embs_concat")


def port_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("size,dim,layers,ffn", [("base", 768, 12, 3072), ("large", 1024, 24, 4096)])
def test_port_has_the_official_names_and_shapes(size, dim, layers, ffn):
    with torch.device("meta"):  # no memory, no init cost
        model = AVHubertVideoEncoder(AVHubertConfig.preset(size))
    expected = {k: v for k, v in official_shapes(dim, layers, ffn).items() if not k.startswith(NOT_IN_PORT)}
    assert port_shapes(model) == expected
    assert model.out_dim == dim


# ------------------------------------------------------------------ fairseq-style pickles
class FakeChoiceEnum(enum.Enum):
    DEFAULT = "default"
    LAYER_NORM = "layer_norm"


class FakeDictConfig:
    """Pickles like omegaconf's DictConfig: a class from module omegaconf.dictconfig with a __dict__ state."""

    def __init__(self, content):
        self._content = content
        self._metadata = {"ref_type": object, "object_type": dict, "optional": True}


@pytest.fixture
def fairseq_like_modules(monkeypatch):
    """Register the fake classes under the real module names, so the pickle names them as fairseq does."""
    omegaconf = types.ModuleType("omegaconf")
    dictconfig = types.ModuleType("omegaconf.dictconfig")
    FakeDictConfig.__module__, FakeDictConfig.__qualname__ = "omegaconf.dictconfig", "DictConfig"
    dictconfig.DictConfig = FakeDictConfig
    fairseq = types.ModuleType("fairseq")
    constants = types.ModuleType("fairseq.dataclass.constants")
    FakeChoiceEnum.__module__, FakeChoiceEnum.__qualname__ = "fairseq.dataclass.constants", "ChoiceEnum"
    constants.ChoiceEnum = FakeChoiceEnum
    for name, mod in [("omegaconf", omegaconf), ("omegaconf.dictconfig", dictconfig), ("fairseq", fairseq),
                      ("fairseq.dataclass", types.ModuleType("fairseq.dataclass")),
                      ("fairseq.dataclass.constants", constants)]:
        monkeypatch.setitem(sys.modules, name, mod)
    yield


def write_fairseq_checkpoint(path, model_state: dict, finetuned: bool = False, extra: dict | None = None):
    """A checkpoint pickled the way fairseq's trainer saves it: cfg / args objects, optimizer history,
    numpy scalars in extra_state."""
    state = OrderedDict()
    for k, v in model_state.items():
        state[("encoder.w2v_model." + k) if finetuned else k] = v
    if finetuned:  # the seq2seq fine-tuned model also has a decoder the video path does not use
        state["decoder.embed_tokens.weight"] = torch.randn(10, 8)
        state["decoder.layers.0.fc1.weight"] = torch.randn(8, 8)
    state.update(extra or {})
    cfg = FakeDictConfig({"model": {"_name": "av_hubert", "extractor_mode": FakeChoiceEnum.DEFAULT,
                                    "encoder_layers": 12, "layer_norm_first": True}})
    ckpt = {
        "args": argparse.Namespace(arch="av_hubert", encoder_embed_dim=768),
        "cfg": cfg,
        "model": state,
        "criterion": None,
        "optimizer_history": [{"criterion_name": "AVHubertCriterion", "optimizer_name": "FairseqAdam",
                               "lr_scheduler_state": {"best": np.float64(3.5)}, "num_updates": 400000}],
        "task_state": {},
        "extra_state": {"metrics": {}, "previous_training_time": np.float32(12.5), "epoch": 38},
        "last_optimizer_state": None,
    }
    torch.save(ckpt, path)


def random_official_state(dim, layers, ffn, width=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for k, shape in official_shapes(dim, layers, ffn, width).items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(1000)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith("weight_g"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.05
    return out


BASE_2_LAYERS = AVHubertConfig.base(layers=2)  # every name/shape of Base, two transformer layers (fast)


@pytest.mark.parametrize("finetuned", [False, True])
def test_loads_fairseq_checkpoint_without_fairseq(tmp_path, fairseq_like_modules, finetuned):
    state = random_official_state(768, 2, 3072)
    path = tmp_path / "ckpt.pt"
    write_fairseq_checkpoint(path, state, finetuned=finetuned)
    with pytest.raises(Exception):  # the cfg / args objects are not allowed by torch's weights_only loader
        torch.load(path, weights_only=True)

    raw = load_untrusted_checkpoint(path)
    assert isinstance(raw["cfg"], OpaqueObject) and raw["cfg"].qualified_name == "omegaconf.dictconfig.DictConfig"
    assert raw["args"].arch == "av_hubert"  # argparse.Namespace is rebuilt for real

    model = AVHubertVideoEncoder(BASE_2_LAYERS)
    report = load_avhubert_checkpoint(model, path)
    assert report.prefix == ("encoder.w2v_model." if finetuned else "")
    assert report.missing == [] and report.unexpected == []
    assert "feature_extractor_audio.proj.weight" in report.ignored and "mask_emb" in report.ignored
    assert ("decoder.embed_tokens.weight" in report.ignored) == finetuned
    own = model.state_dict()
    for k in report.loaded:
        assert torch.equal(own[k], state[k]), k
    assert "encoder.pos_conv.0.weight_g" in report.loaded and "encoder.pos_conv.0.weight_v" in report.loaded


def test_reports_missing_and_unexpected_keys_by_name(tmp_path, fairseq_like_modules):
    state = random_official_state(768, 2, 3072)
    del state["encoder.layers.1.fc2.bias"]
    state["encoder.layers.0.adapter.weight"] = torch.zeros(3)
    path = tmp_path / "ckpt.pt"
    write_fairseq_checkpoint(path, state)
    model = AVHubertVideoEncoder(BASE_2_LAYERS)
    with pytest.raises(ValueError, match=r"encoder\.layers\.1\.fc2\.bias.*encoder\.layers\.0\.adapter\.weight"):
        load_avhubert_checkpoint(model, path)
    report = load_avhubert_checkpoint(model, path, strict=False)
    assert report.missing == ["encoder.layers.1.fc2.bias"]
    assert report.unexpected == ["encoder.layers.0.adapter.weight"]
    with pytest.raises(ValueError, match="checkpoint is AV-HuBERT base"):  # a Base file into a Large-shaped model
        load_avhubert_checkpoint(AVHubertVideoEncoder(AVHubertConfig.large(layers=1, resnet_width=4)), path)


def test_weight_norm_parametrization_keys_and_truncated_layers(tmp_path):
    """Newer fairseq stores weight norm as torch parametrizations (original0 = g, original1 = v)."""
    state = random_official_state(64, 3, 128, width=4)
    state = {k: v for k, v in state.items() if not k.startswith("encoder.pos_conv")}
    cfg = AVHubertConfig.tiny(layers=2, conv_pos=128, conv_pos_groups=16)
    g, v = torch.rand(1, 1, 128) + 0.5, torch.randn(64, 4, 128)
    state["encoder.pos_conv.0.parametrizations.weight.original0"] = g
    state["encoder.pos_conv.0.parametrizations.weight.original1"] = v
    state["encoder.pos_conv.0.bias"] = torch.randn(64)
    torch.save({"model": state}, tmp_path / "ckpt.pt")  # plain tensors: the weights_only path
    model = AVHubertVideoEncoder(cfg)
    report = load_avhubert_checkpoint(model, tmp_path / "ckpt.pt")
    assert torch.equal(model.encoder.pos_conv[0].weight_g, g) and torch.equal(model.encoder.pos_conv[0].weight_v, v)
    assert "encoder.layers.2.fc1.weight" in report.ignored  # beyond the 2 kept layers


# ------------------------------------------------------------------ malicious pickles
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("payload", ["system", "eval"])
def test_malicious_pickle_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    obj = _Evil(marker) if payload == "system" else _EvalEvil()
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "cfg": obj}, path)
    with pytest.raises(UnsafeCheckpointError, match="system" if payload == "system" else "builtins.eval") as err:
        load_untrusted_checkpoint(path)
    assert "evil.pt" in str(err.value)
    with pytest.raises(UnsafeCheckpointError):
        load_avhubert_checkpoint(AVHubertVideoEncoder(AVHubertConfig.tiny()), path)
    assert not marker.exists()


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_untrusted_checkpoint(tmp_path / "nope.pt")


# ------------------------------------------------------------------ numerics against torch references
@pytest.mark.parametrize("content", [b"<!DOCTYPE html><html>404</html>", b"", "truncated"])
def test_unreadable_checkpoint_names_the_file(tmp_path, content):
    """An HTML page saved as .pt, an empty file and a cut-off torch.save zip: a ValueError naming the file."""
    path = tmp_path / "avhubert.pt"
    if content == "truncated":
        torch.save({"model": {"w": torch.zeros(64, 64)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"avhubert\.pt: not a readable torch checkpoint.*Download it again"):
        load_untrusted_checkpoint(path)


def test_weight_norm_conv_matches_torch_weight_norm():
    torch.manual_seed(0)
    conv = WeightNormConv1d(32, kernel_size=8, groups=4)
    with torch.no_grad():
        conv.weight_g.uniform_(0.5, 1.5)
        conv.bias.normal_()
    ref = nn.Conv1d(32, 32, 8, padding=4, groups=4)
    ref = nn.utils.parametrizations.weight_norm(ref, name="weight", dim=2)
    with torch.no_grad():
        ref.parametrizations.weight.original0.copy_(conv.weight_g)
        ref.parametrizations.weight.original1.copy_(conv.weight_v)
        ref.bias.copy_(conv.bias)
    x = torch.randn(2, 32, 11)
    expected = ref(x)[..., :-1]  # fairseq's SamePad drops the extra frame of an even kernel
    assert torch.allclose(conv(x), expected, atol=1e-5)


@torch.no_grad()
def test_transformer_layer_matches_torch_pre_ln_layer():
    cfg = AVHubertConfig.tiny(dropout=0.0, attention_dropout=0.0)
    model = AVHubertVideoEncoder(cfg).eval()
    ours = model.encoder.layers[0]
    ref = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, activation="gelu", batch_first=True, norm_first=True).eval()
    a = ours.self_attn
    ref.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
    ref.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
    ref.self_attn.out_proj.load_state_dict(a.out_proj.state_dict())
    ref.norm1.load_state_dict(ours.self_attn_layer_norm.state_dict())
    ref.norm2.load_state_dict(ours.final_layer_norm.state_dict())
    ref.linear1.load_state_dict(ours.fc1.state_dict())
    ref.linear2.load_state_dict(ours.fc2.state_dict())
    x = torch.randn(2, 7, 64)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 5:] = True
    expected = ref(x, src_key_padding_mask=mask)
    got = ours(x, mask)
    assert torch.allclose(got[0], expected[0], atol=1e-5)
    assert torch.allclose(got[1, :5], expected[1, :5], atol=1e-5)


@torch.no_grad()
def test_video_only_path_and_padding_invariance():
    torch.manual_seed(0)
    model = AVHubertVideoEncoder(AVHubertConfig.tiny()).eval().double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d | nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    video = torch.randn(2, 6, 88, 88, dtype=torch.float64)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[1, 4:] = True
    video[1, 4:] = 0.0  # padding pixels are zeroed (as AVWhisperForConditionalGeneration.encode_video does)
    out = model(video, mask)
    assert out.shape == (2, 6, 64)
    alone = model(video[1:, :4], None)
    assert (out[1, :4] - alone[0]).abs().max() <= 1e-10
    # the audio half of the concatenation is zeros: rebuild the features by hand
    v = model.feature_extractor_video(video)
    x = model.post_extract_proj(nn.functional.layer_norm(
        torch.cat([torch.zeros_like(v), v], -1), (128,), model.layer_norm.weight, model.layer_norm.bias))
    assert (model.encoder(x, mask) - out).abs().max() <= 1e-10
    assert model(video, mask, num_layers=0).shape == (2, 6, 64)


@torch.no_grad()
def test_avwhisper_with_avhubert_encoder(tmp_path, fairseq_like_modules):
    torch.manual_seed(0)
    state = random_official_state(64, 2, 128, width=4)
    state = {k: v for k, v in state.items() if not k.startswith("encoder.pos_conv")}
    state["encoder.pos_conv.0.weight_g"] = torch.rand(1, 1, 16) + 0.5
    state["encoder.pos_conv.0.weight_v"] = torch.randn(64, 16, 16)
    state["encoder.pos_conv.0.bias"] = torch.zeros(64)
    path = tmp_path / "tiny_avhubert.pt"
    write_fairseq_checkpoint(path, state, finetuned=True)
    cfg = AVWhisperConfig(fusion_location="both", video_encoder="avhubert", avhubert_size="tiny",
                          avhubert_checkpoint=str(path))
    assert cfg.resolved_video_dim == 64
    whisper = tiny_whisper(None, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=64, decoder_ffn_dim=64,
                           vocab_size=50, max_source_positions=50, max_target_positions=20, init_std=0.02)
    model = AVWhisperForConditionalGeneration.from_whisper(whisper, cfg).eval()
    assert model.video_encoder_load_report.prefix == "encoder.w2v_model."
    assert torch.equal(model.video_encoder.encoder.layers[1].fc1.weight, state["encoder.layers.1.fc1.weight"])
    feats, ids = torch.randn(2, 80, 40), torch.randint(3, 50, (2, 4))
    video = torch.randn(2, 5, 88, 88)
    mask = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    for block in model.gated_xattn_blocks:
        block.attn_gate.fill_(0.5)
        block.ff_gate.fill_(0.5)
    out = model(feats, ids, video=video, video_padding_mask=mask).logits
    single = model(feats[1:], ids[1:], video=video[1:, :3]).logits
    assert (out[1] - single[0]).abs().max() <= 1e-4  # padding invariance through AV-HuBERT
    model.save_pretrained(tmp_path / "saved")
    loaded = AVWhisperForConditionalGeneration.from_pretrained(tmp_path / "saved")  # no checkpoint reload needed
    assert torch.equal(loaded(feats, ids, video=video, video_padding_mask=mask).logits, out)
    with pytest.raises(ValueError, match="video_dim"):
        AVWhisperConfig(video_encoder="avhubert", video_dim=512)


@pytest.mark.slow
def test_full_base_checkpoint_round_trip(tmp_path, fairseq_like_modules):
    """The complete Base layout (12 layers, ~103M parameters) written and loaded as fairseq would."""
    state = random_official_state(768, 12, 3072)
    path = tmp_path / "base_vox_iter5.pt"
    write_fairseq_checkpoint(path, state)
    model, report = AVHubertVideoEncoder.from_fairseq_checkpoint(path, "base")
    assert report.missing == [] and report.unexpected == []
    assert len(report.loaded) == len(model.state_dict())
    out = model.eval()(torch.randn(1, 3, 88, 88))
    assert out.shape == (1, 3, 768) and torch.isfinite(out).all()
