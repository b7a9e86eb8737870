"""Pure-PyTorch port of AV-HuBERT's video path (no fairseq), loadable from the official checkpoints.

Video-only feature extraction of AV-HuBERT (`AVHubertModel.extract_finetune` with audio absent):

    video [B, T, 88, 88]
      -> feature_extractor_video.resnet     3D stem + ResNet-18 trunk                       [B, T, 8w]  (w = 64)
      -> feature_extractor_video.proj       Linear(8w -> D)                                 [B, T, D]
      -> concat with the audio branch, which is all zeros without audio                      [B, T, 2D]
      -> layer_norm (over 2D) -> post_extract_proj Linear(2D -> D)                          [B, T, D]
      -> encoder: zero padding frames, x + GELU(weight-normed grouped Conv1d(x)) (conv positions),
                  pre-LN transformer layers (key padding masked), final layer_norm          [B, T, D]

Parameter names are those of the fairseq model, so an official state dict loads after stripping
its prefix (`""` for self-supervised checkpoints, `"encoder.w2v_model."` for fine-tuned ones).
Modules that the video path does not use (audio projection, masking embedding, pre-training heads,
the fine-tuned decoder) are reported as ignored, not loaded.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

FINETUNED_PREFIX = "encoder.w2v_model."
# Keys of the official checkpoints that the video path does not need (prefix match, after stripping).
IGNORED_KEY_PREFIXES = (
    "feature_extractor_audio.",  # audio branch: zeros without audio, its projection never runs
    "mask_emb",
    "final_proj.",
    "label_embs_concat",
    "target_glu.",
)


@dataclass
class AVHubertConfig:
    """Sizes of the AV-HuBERT video path. `base()` / `large()` are the published models."""

    embed_dim: int = 768
    layers: int = 12
    attention_heads: int = 12
    ffn_dim: int = 3072
    conv_pos: int = 128  # kernel of the convolutional positional embedding
    conv_pos_groups: int = 16
    resnet_width: int = 64  # official checkpoints: 64 (512-d ResNet output)
    resnet_relu_type: str = "prelu"
    dropout: float = 0.1  # fairseq's transformer dropout (training mode only)
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.embed_dim % self.attention_heads:
            raise ValueError(f"embed_dim={self.embed_dim} is not divisible by attention_heads={self.attention_heads}")
        if self.embed_dim % self.conv_pos_groups:
            raise ValueError(f"embed_dim={self.embed_dim} is not divisible by conv_pos_groups={self.conv_pos_groups}")
        if self.resnet_relu_type not in ("prelu", "relu"):
            raise ValueError(f"resnet_relu_type must be 'prelu' or 'relu', got {self.resnet_relu_type!r}")

    @classmethod
    def base(cls, **overrides) -> AVHubertConfig:
        return cls(**overrides)

    @classmethod
    def large(cls, **overrides) -> AVHubertConfig:
        return cls(**{"embed_dim": 1024, "layers": 24, "attention_heads": 16, "ffn_dim": 4096, **overrides})

    @classmethod
    def tiny(cls, **overrides) -> AVHubertConfig:
        """A small random-init model for tests and CPU demos (no official checkpoint has this size)."""
        base = dict(embed_dim=64, layers=2, attention_heads=4, ffn_dim=128, conv_pos=16, conv_pos_groups=4, resnet_width=4)
        return cls(**{**base, **overrides})

    @classmethod
    def preset(cls, name: str, **overrides) -> AVHubertConfig:
        presets = {"base": cls.base, "large": cls.large, "tiny": cls.tiny}
        if name not in presets:
            raise ValueError(f"unknown AV-HuBERT size {name!r}; one of {sorted(presets)}")
        return presets[name](**overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------- ResNet front-end
def _act(relu_type: str, channels: int) -> nn.Module:
    return nn.PReLU(num_parameters=channels) if relu_type == "prelu" else nn.ReLU()


class _BasicBlock(nn.Module):
    """conv3x3-BN-act-conv3x3-BN + shortcut, act (AV-HuBERT's names relu1 / relu2)."""

    def __init__(self, c_in: int, c_out: int, stride: int, relu_type: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = _act(relu_type, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = _act(relu_type, c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + residual)


class _Trunk(nn.Module):
    def __init__(self, width: int, relu_type: str):
        super().__init__()
        c_in = width
        for i in range(4):
            c_out = width * 2**i
            stride = 1 if i == 0 else 2
            blocks = [_BasicBlock(c_in, c_out, stride, relu_type), _BasicBlock(c_out, c_out, 1, relu_type)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = c_out
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


class _ResEncoder(nn.Module):
    """[B, T, H, W] -> [B, T, 8w]; only the 3D stem (temporal kernel 5) mixes frames."""

    def __init__(self, width: int, relu_type: str):
        super().__init__()
        self.out_dim = 8 * width
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, width, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            _act(relu_type, width),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.trunk = _Trunk(width, relu_type)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        bsz, t = video.shape[:2]
        x = self.frontend3D(video.unsqueeze(1)).transpose(1, 2)  # [B, T, w, h, w']
        x = x.reshape(bsz * t, *x.shape[2:])
        return self.trunk(x).view(bsz, t, -1)


class _VideoFeatureExtractor(nn.Module):
    def __init__(self, cfg: AVHubertConfig):
        super().__init__()
        self.resnet = _ResEncoder(cfg.resnet_width, cfg.resnet_relu_type)
        self.proj = nn.Linear(self.resnet.out_dim, cfg.embed_dim)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.proj(self.resnet(video))


# --------------------------------------------------------------------------------- transformer
class WeightNormConv1d(nn.Module):
    """Grouped Conv1d with weight normalisation over dim 2 (fairseq's `weight_norm(conv, dim=2)`):
    weight = weight_g * weight_v / ||weight_v||, the norm taken over dims 0 and 1 (one per kernel tap).
    Parameters keep fairseq's names weight_g [1, 1, K], weight_v [C, C / groups, K], bias [C]."""

    def __init__(self, channels: int, kernel_size: int, groups: int):
        super().__init__()
        self.kernel_size, self.groups = kernel_size, groups
        std = math.sqrt(4.0 / (kernel_size * channels))
        self.weight_v = nn.Parameter(torch.randn(channels, channels // groups, kernel_size) * std)
        self.weight_g = nn.Parameter(self.weight_v.detach().norm(dim=(0, 1), keepdim=True).clone())
        self.bias = nn.Parameter(torch.zeros(channels))

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T] -> [B, C, T] (SamePad: an even kernel yields T + 1 outputs, the last is dropped)"""
        out = F.conv1d(x, self.weight, self.bias, padding=self.kernel_size // 2, groups=self.groups)
        return out[..., : x.shape[-1]]


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, T, D], padding_mask [B, T] bool (True = padding) -> [B, T, D]"""
        bsz, t, dim = x.shape
        hd = dim // self.heads
        q, k, v = (p(x).view(bsz, t, self.heads, hd).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        mask = None if padding_mask is None else (~padding_mask)[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(bsz, t, dim))


class _EncoderLayer(nn.Module):
    """Pre-LN transformer layer (fairseq `TransformerSentenceEncoderLayer`, layer_norm_first=True)."""

    def __init__(self, cfg: AVHubertConfig):
        super().__init__()
        d = cfg.embed_dim
        self.cfg = cfg
        self.self_attn = _SelfAttention(d, cfg.attention_heads, cfg.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(d, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        drop = self.cfg.dropout if self.training else 0.0
        x = x + F.dropout(self.self_attn(self.self_attn_layer_norm(x), padding_mask), drop)
        h = F.dropout(F.gelu(self.fc1(self.final_layer_norm(x))), self.cfg.activation_dropout if self.training else 0.0)
        return x + F.dropout(self.fc2(h), drop)


class _TransformerEncoder(nn.Module):
    def __init__(self, cfg: AVHubertConfig):
        super().__init__()
        self.cfg = cfg
        self.pos_conv = nn.ModuleList([WeightNormConv1d(cfg.embed_dim, cfg.conv_pos, cfg.conv_pos_groups)])
        self.layers = nn.ModuleList(_EncoderLayer(cfg) for _ in range(cfg.layers))
        self.layer_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None, num_layers: int | None = None) -> torch.Tensor:
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)  # the conv positions must not see padding
        x = x + F.gelu(self.pos_conv[0](x.transpose(1, 2))).transpose(1, 2)
        x = F.dropout(x, self.cfg.dropout if self.training else 0.0)
        for layer in self.layers[:num_layers]:
            x = layer(x, padding_mask)
        return self.layer_norm(x)


# --------------------------------------------------------------------------------- the encoder
@dataclass
class AVHubertLoadReport:
    """What `load_avhubert_checkpoint` did: keys by name (after prefix stripping)."""

    path: str
    prefix: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # parameters of the port not found in the file
    unexpected: list[str] = field(default_factory=list)  # keys in the file the port does not know
    ignored: list[str] = field(default_factory=list)  # known keys the video path does not use

    def __str__(self) -> str:
        return (
            f"AV-HuBERT checkpoint {self.path} (prefix {self.prefix!r}): loaded {len(self.loaded)}, "
            f"missing {self.missing}, unexpected {self.unexpected}, ignored {len(self.ignored)}"
        )


class AVHubertVideoEncoder(nn.Module):
    """AV-HuBERT's video-only encoder (see the module docstring). Output size `out_dim` = embed_dim."""

    def __init__(self, config: AVHubertConfig | None = None):
        super().__init__()
        self.config = config or AVHubertConfig.base()
        cfg = self.config
        self.out_dim = cfg.embed_dim
        self.feature_extractor_video = _VideoFeatureExtractor(cfg)
        self.layer_norm = nn.LayerNorm(2 * cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.post_extract_proj = nn.Linear(2 * cfg.embed_dim, cfg.embed_dim)
        self.encoder = _TransformerEncoder(cfg)

    def forward(
        self, video: torch.Tensor, padding_mask: torch.Tensor | None = None, num_layers: int | None = None
    ) -> torch.Tensor:
        """
        Shapes:
            video        [B, T, H, W] grey frames normalised with mean 0.421, std 0.165 (88 x 88, 25 fps)
            padding_mask [B, T] bool, True = padding frame (zero those frames' pixels beforehand for exact
                         padding invariance: the 3D stem sees neighbouring frames)
            num_layers   run only the first n transformer layers (all when None); the final LayerNorm always runs
        Returns:
            [B, T, embed_dim]
        """
        if video.dim() != 4:
            raise ValueError(f"expected video [B, T, H, W], got shape {tuple(video.shape)}")
        video_feats = self.feature_extractor_video(video)  # [B, T, D]
        # the audio branch is absent: AV-HuBERT fills its half of the concatenation with zeros
        feats = torch.cat([torch.zeros_like(video_feats), video_feats], dim=-1)  # [B, T, 2D]
        x = self.post_extract_proj(self.layer_norm(feats))
        if padding_mask is not None:
            padding_mask = padding_mask.to(device=x.device, dtype=torch.bool)
        return self.encoder(x, padding_mask, num_layers)

    @classmethod
    def from_fairseq_checkpoint(
        cls, path: str | os.PathLike, config: AVHubertConfig | str = "base", strict: bool = True
    ) -> tuple[AVHubertVideoEncoder, AVHubertLoadReport]:
        """Build the encoder (`config`: an AVHubertConfig or "base" / "large") and load an official
        checkpoint into it; see `load_avhubert_checkpoint`."""
        if isinstance(config, str):
            config = AVHubertConfig.preset(config)
        model = cls(config)
        report = load_avhubert_checkpoint(model, path, strict=strict)
        return model, report


def _fairseq_state_dict(checkpoint: Any, path: str) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        state = checkpoint["model"]
    elif isinstance(checkpoint, dict) and all(torch.is_tensor(v) for v in checkpoint.values()):
        state = checkpoint  # a bare state dict
    else:
        raise ValueError(f"{path}: not a fairseq checkpoint (expected a dict with a 'model' state dict)")
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


_PARAMETRIZATION_ALIASES = {  # newer fairseq + torch >= 2.1 store weight norm as parametrizations
    "pos_conv.0.parametrizations.weight.original0": "pos_conv.0.weight_g",
    "pos_conv.0.parametrizations.weight.original1": "pos_conv.0.weight_v",
}


def read_avhubert_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """Read an official AV-HuBERT checkpoint safely (no code executed; see `safe_checkpoint`).

    Returns (state dict with the prefix stripped and weight-norm aliases resolved, the prefix found
    ("" self-supervised, "encoder.w2v_model." fine-tuned), keys outside that prefix (e.g. the decoder)).
    """
    from .safe_checkpoint import load_untrusted_checkpoint

    raw = _fairseq_state_dict(load_untrusted_checkpoint(path), str(path))
    prefix = FINETUNED_PREFIX if any(k.startswith(FINETUNED_PREFIX) for k in raw) else ""
    state, outside = {}, []
    for key, tensor in raw.items():
        if not key.startswith(prefix):
            outside.append(key)
            continue
        name = key[len(prefix) :]
        for old, new in _PARAMETRIZATION_ALIASES.items():
            if name.endswith(old):
                name = name[: -len(old)] + new
        state[name] = tensor
    return state, prefix, outside


def _beyond_layers(name: str, num_layers: int) -> bool:
    """A transformer layer that a truncated port (fewer layers than the checkpoint) leaves out."""
    match = re.match(r"encoder\.layers\.(\d+)\.", name)
    return match is not None and int(match.group(1)) >= num_layers


def load_avhubert_checkpoint(
    model: AVHubertVideoEncoder, path: str | os.PathLike, strict: bool = True
) -> AVHubertLoadReport:
    """Load an official fairseq AV-HuBERT checkpoint (self-supervised or fine-tuned) into `model`.

    Keys are matched by name after stripping the prefix; a shape mismatch is always an error
    (it means another size: pass the right config). With `strict`, missing or unexpected keys
    (listed by name) raise a ValueError; otherwise they are only reported.
    """
    state, prefix, outside = read_avhubert_state_dict(path)
    report = AVHubertLoadReport(path=str(path), prefix=prefix, ignored=sorted(outside))
    own = model.state_dict()
    to_load = {}
    for name, tensor in state.items():
        if name in own:
            if tuple(own[name].shape) != tuple(tensor.shape):
                width = state.get("post_extract_proj.weight")  # [encoder_embed_dim, ...]: 768 base, 1024 large
                size = {768: "base", 1024: "large"}.get(int(width.shape[0]) if width is not None else -1)
                guess = f"this checkpoint is AV-HuBERT {size}" if size else "the checkpoint is of another size"
                raise ValueError(
                    f"{path}: {prefix}{name} has shape {tuple(tensor.shape)}, the model expects "
                    f"{tuple(own[name].shape)}; {guess}. Pass the matching AVHubertConfig (base() / large())."
                )
            to_load[name] = tensor
        elif (
            name.startswith(IGNORED_KEY_PREFIXES)
            or name.endswith("num_batches_tracked")
            or _beyond_layers(name, model.config.layers)
        ):
            report.ignored.append(name)
        else:
            report.unexpected.append(name)
    report.missing = sorted(k for k in own if k not in to_load and not k.endswith("num_batches_tracked"))
    report.loaded = sorted(to_load)
    report.unexpected.sort()
    report.ignored.sort()
    if strict and (report.missing or report.unexpected):
        raise ValueError(
            f"{path}: not an AV-HuBERT checkpoint of this size. Missing keys: {report.missing}; unexpected keys: "
            f"{report.unexpected}. Pass strict=False to load anyway."
        )
    model.load_state_dict(to_load, strict=False)
    return report
