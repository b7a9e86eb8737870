"""Visual front-end with the shape of AV-HuBERT's / the lip-reading ResNet encoder.

    frames [B, T, 88, 88]
      -> Conv3d(1 -> w, kernel (5, 7, 7), stride (1, 2, 2), pad (2, 3, 3)) + BN3d + PReLU   [B, w, T, 44, 44]
      -> MaxPool3d((1, 3, 3), stride (1, 2, 2), pad (0, 1, 1))                               [B, w, T, 22, 22]
      -> per frame: ResNet-18 trunk, BasicBlock x [2, 2, 2, 2], widths w, 2w, 4w, 8w          [B*T, 8w, 3, 3]
      -> global average pool                                                                  [B, T, 8w]

Only the 3D stem mixes time (temporal kernel 5: each output frame sees input frames t-2..t+2,
zero padding at the ends); the trunk is applied to every frame independently, so the time
length is preserved. With w = 64 the trunk has ~11.2M parameters (ResNet-18 without its
first conv and classifier), the stem 15.7k.

Training the stem on a CPU: PyTorch's Conv3d weight gradient for one input channel is several times slower
there (3.5x on an idle 2-core machine, benchmarks/lip_step_bench.py) than the same maths as a Conv2d over the 5 stacked neighbour frames (`stem_conv`), which then dominates a
lip-reading step; with a gradient to compute the stem runs as that Conv2d. The weights and the state dict
are the Conv3d's either way.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def stem_conv(conv: nn.Conv3d, video: torch.Tensor) -> torch.Tensor:
    """``conv`` (1 input channel, temporal stride 1) on video [B, T, H, W] -> [B, w, T, H', W'], as a Conv2d.

    Output frame t of a Conv3d with temporal kernel k and padding p sees input frames t - p .. t - p + k - 1
    (zeros outside the clip): stacking those k frames as the channels of one image makes it a Conv2d whose
    weight [w, k, kh, kw] is the Conv3d's [w, 1, k, kh, kw]. Same numbers (to float rounding), same gradients.
    """
    if conv.in_channels != 1 or conv.stride[0] != 1 or conv.dilation != (1, 1, 1) or conv.groups != 1:
        raise ValueError("stem_conv needs a Conv3d with one input channel, temporal stride 1, no dilation or groups")
    bsz, t, h, w = video.shape
    k, p = conv.kernel_size[0], conv.padding[0]
    padded = F.pad(video, (0, 0, 0, 0, p, p))  # [B, T + 2p, H, W]
    stacked = padded.unfold(1, k, 1)[:, :t]  # [B, T', H, W, k]: the k frames seen by each output frame
    stacked = stacked.permute(0, 1, 4, 2, 3).reshape(bsz * t, k, h, w)  # [B*T, k, H, W]
    out = F.conv2d(stacked, conv.weight.squeeze(1), conv.bias, conv.stride[1:], conv.padding[1:])  # [B*T, w, H', W']
    return out.view(bsz, t, *out.shape[1:]).transpose(1, 2)  # [B, w, T, H', W']


def _activation(relu_type: str, channels: int) -> nn.Module:
    if relu_type == "prelu":
        return nn.PReLU(num_parameters=channels)
    if relu_type == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"relu_type must be 'prelu' or 'relu', got {relu_type!r}")


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-act-conv3x3-BN + shortcut, act. [N, C_in, H, W] -> [N, C_out, H/s, W/s]"""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, relu_type: str = "prelu"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = _activation(relu_type, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = _activation(relu_type, out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + residual)


class ResNetTrunk(nn.Module):
    """ResNet-18 body without stem and classifier. [N, w, H, W] -> [N, 8w]"""

    def __init__(self, width: int = 64, layers: tuple[int, ...] = (2, 2, 2, 2), relu_type: str = "prelu"):
        super().__init__()
        self.out_dim = width * 2 ** (len(layers) - 1)
        stages = []
        in_ch = width
        for i, n_blocks in enumerate(layers):
            out_ch = width * 2**i
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(in_ch, out_ch, stride=stride, relu_type=relu_type))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


class ResNetVideoEncoder(nn.Module):
    """3D-conv stem + per-frame ResNet-18 trunk (AV-HuBERT's visual front-end shape).

    Args:
        width: base channel width w (64 = standard, output 512-d).
        relu_type: "prelu" (AV-HuBERT) or "relu".
    """

    temporal_receptive_field = 5

    def __init__(self, width: int = 64, relu_type: str = "prelu"):
        super().__init__()
        self.width = width
        self.frontend3d = nn.Sequential(
            nn.Conv3d(1, width, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            _activation(relu_type, width),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.trunk = ResNetTrunk(width, relu_type=relu_type)
        self.out_dim = self.trunk.out_dim
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """
        Shapes:
            video  [B, T, H, W] float, normalised grey frames (88 x 88 for lip ROIs)
        Returns:
            [B, T, 8 * width]
        """
        if video.dim() != 4:
            raise ValueError(f"expected video [B, T, H, W], got shape {tuple(video.shape)}")
        bsz, t = video.shape[:2]
        conv, rest = self.frontend3d[0], self.frontend3d[1:]
        if torch.is_grad_enabled() and conv.weight.requires_grad:
            x = rest(stem_conv(conv, video))  # [B, w, T, H/4, W/4]; the fast weight gradient (module docstring)
        else:
            x = self.frontend3d(video.unsqueeze(1))  # [B, w, T, H/4, W/4]
        x = x.transpose(1, 2).reshape(bsz * t, x.shape[1], x.shape[3], x.shape[4])  # [B*T, w, h, w']
        x = self.trunk(x)  # [B*T, 8w]
        return x.view(bsz, t, -1)
