"""ResNetVideoEncoder: shapes, parameter counts, temporal receptive field."""

import torch

from av_fusion_models import ResNetVideoEncoder


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def hand_count_trunk(w: int, prelu: bool) -> int:
    """ResNet-18 body (BasicBlock x [2, 2, 2, 2]) without stem conv and classifier."""
    total, c_in = 0, w
    for stage in range(4):
        c = w * 2**stage
        for block in range(2):
            stride = 2 if (stage > 0 and block == 0) else 1
            total += 9 * c_in * c + 2 * c  # conv1 + bn1
            total += 9 * c * c + 2 * c  # conv2 + bn2
            if prelu:
                total += 2 * c  # two PReLU with one slope per channel
            if stride != 1 or c_in != c:
                total += c_in * c + 2 * c  # 1x1 downsample conv + bn
            c_in = c
    return total


def test_output_shape_and_time_preserved():
    enc = ResNetVideoEncoder(width=4).eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 7, 88, 88))
    assert out.shape == (2, 7, 32) and enc.out_dim == 32
    with torch.no_grad():
        assert enc(torch.randn(1, 1, 88, 88)).shape == (1, 1, 32)


def test_parameter_count_width_64():
    enc = ResNetVideoEncoder(width=64)
    trunk = n_params(enc.trunk)
    assert trunk == hand_count_trunk(64, prelu=True) == 11_170_816
    # published figure: torchvision resnet18 has 11,689,512 parameters, of which conv1 (9,408), bn1 (128)
    # and fc (513,000) are not in the trunk: 11,166,976 with ReLU (+ 3,840 PReLU slopes)
    assert n_params(ResNetVideoEncoder(width=64, relu_type="relu").trunk) == 11_689_512 - 9_408 - 128 - 513_000
    stem = n_params(enc.frontend3d)
    assert stem == 64 * 5 * 7 * 7 + 2 * 64 + 64  # conv3d (no bias) + BN3d + PReLU
    assert enc.out_dim == 512
    assert n_params(ResNetVideoEncoder(width=16).trunk) == hand_count_trunk(16, prelu=True)


def test_temporal_receptive_field_is_five_frames():
    torch.manual_seed(0)
    enc = ResNetVideoEncoder(width=4).eval()
    x = torch.randn(1, 12, 88, 88)
    with torch.no_grad():
        base = enc(x)
        x2 = x.clone()
        x2[0, 6] += 3.0
        changed = (enc(x2) - base).abs().amax(-1)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == [4, 5, 6, 7, 8]  # t - 2 .. t + 2, both directions
    assert ResNetVideoEncoder.temporal_receptive_field == 5


def test_zero_frames_equal_conv_padding():
    """Appending all-zero frames leaves the real frames' features unchanged (eval mode)."""
    torch.manual_seed(0)
    enc = ResNetVideoEncoder(width=4).eval()
    x = torch.randn(1, 5, 88, 88)
    with torch.no_grad():
        a = enc(x)
        b = enc(torch.cat([x, torch.zeros(1, 3, 88, 88)], dim=1))[:, :5]
    assert (a - b).abs().max() <= 1e-5


def test_stem_as_conv2d_equals_the_conv3d_values_and_gradients():
    """The training path of the stem (a Conv2d over stacked frames) is the Conv3d's maths, gradients included."""
    import pytest

    from av_fusion_models.video_resnet import stem_conv

    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, 6, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=True)
    video = torch.randn(2, 9, 20, 20, requires_grad=True)
    ref = conv(video.unsqueeze(1))
    got = stem_conv(conv, video)
    assert got.shape == ref.shape == (2, 6, 9, 10, 10)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad((ref * g).sum(), [conv.weight, conv.bias, video])
    got_grads = torch.autograd.grad((stem_conv(conv, video) * g).sum(), [conv.weight, conv.bias, video])
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="one input channel"):
        stem_conv(torch.nn.Conv3d(2, 4, 3), video)


def test_training_and_inference_paths_of_the_encoder_agree():
    """Gradient on (stem as Conv2d) and off (plain Conv3d): the same features."""
    torch.manual_seed(1)
    enc = ResNetVideoEncoder(width=4).eval()
    video = torch.randn(2, 7, 88, 88)
    with torch.no_grad():
        plain = enc(video)
    fast = enc(video)
    assert fast.requires_grad
    torch.testing.assert_close(fast.detach(), plain, atol=1e-4, rtol=1e-4)
    fast.sum().backward()
    assert enc.frontend3d[0].weight.grad.abs().sum() > 0
