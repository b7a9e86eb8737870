"""Lip-video faults (av_fusion_models.video_faults): each condition against frames computed by hand, the parser's
forms and errors, and the training draw's labels and batch application."""

from __future__ import annotations

import math

import pytest
import torch

from av_fusion_models.video_faults import (
    SHIFT_DISAGREE_FRAMES,
    TRAINING_FAULTS,
    TrainingFaults,
    apply_condition,
    apply_training_faults,
    draw_training_faults,
    parse_video_condition,
)


def numbered(t: int, h: int = 4, w: int = 4) -> torch.Tensor:
    """uint8 [T, H, W] whose frame k is filled with the value k: an index fault shows up as the frame numbers."""
    return torch.arange(t, dtype=torch.uint8).view(t, 1, 1).expand(t, h, w).contiguous()


def shown(frames: torch.Tensor) -> list[int]:
    return [int(f[0, 0]) for f in frames]


def run(name: str, frames: torch.Tensor, **kw) -> torch.Tensor:
    return apply_condition(frames, parse_video_condition(name), **kw)


@pytest.mark.parametrize("name, kind, value", [
    ("clean", "clean", 0.0), ("frozen", "frozen", 0.0), ("mismatched", "mismatched", 0.0),
    ("other_speaker", "other_speaker", 0.0),
    ("late-200ms", "offset", 5.0), ("late-400ms", "offset", 10.0), ("early-400ms", "offset", -10.0),
    ("late-80ms", "offset", 2.0), ("late-0ms", "offset", 0.0), (" Late-120MS ", "offset", 3.0),
    ("occluded", "occluded", 50.0), ("occluded-30", "occluded", 30.0),
    ("blur", "blur", 4.0), ("blur-2.5", "blur", 2.5),
    ("fps-5", "fps", 5.0), ("fps-25", "fps", 1.0), ("fps-12.5", "fps", 2.0),
    ("black", "black", 100.0), ("black-50", "black", 50.0),
])
def test_parse_forms(name, kind, value):
    cond = parse_video_condition(name, fps=25.0)
    assert (cond.kind, cond.value) == (kind, value) and cond.name == name.strip().lower()
    assert cond.needs_partner == (kind in ("mismatched", "other_speaker"))


def test_parse_errors_name_the_condition_and_the_accepted_forms():
    with pytest.raises(ValueError) as e:
        parse_video_condition("upside-down")
    msg = str(e.value)
    assert "'upside-down'" in msg
    for form in ("clean", "late-<N>ms", "early-<N>ms", "occluded[-<P>]", "blur[-<S>]", "fps-<N>", "frozen",
                 "black[-<P>]", "mismatched", "other_speaker"):
        assert form in msg
    for bad, why in (("occluded-0", r"'occluded-0'.*\(0, 100\]"), ("black-101", r"'black-101'.*\(0, 100\]"),
                     ("blur-0", r"'blur-0'.*> 0"), ("fps-30", r"'fps-30'.*\(0, 25\]"), ("fps-0", "'fps-0'")):
        with pytest.raises(ValueError, match=why):
            parse_video_condition(bad, fps=25.0)
    with pytest.raises(ValueError, match="late-<N>ms"):  # milliseconds are required
        parse_video_condition("late-200")


def test_offsets_move_frames_and_hold_the_edges():
    f = numbered(10)
    # 80 ms at 25 fps = round(80 * 25 / 1000) = 2 frames; late: frame t shows t - 2, the first frame held
    assert shown(run("late-80ms", f)) == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    assert shown(run("early-80ms", f)) == [2, 3, 4, 5, 6, 7, 8, 9, 9, 9]
    assert shown(run("late-200ms", f)) == [0, 0, 0, 0, 0, 0, 1, 2, 3, 4]  # 5 frames
    assert shown(run("early-400ms", f)) == [9] * 10  # 10 frames: beyond the clip, the last frame held
    assert shown(run("late-0ms", f)) == list(range(10))
    assert shown(apply_condition(f, parse_video_condition("late-200ms", fps=50.0))) == [0] * 10  # 10 frames at 50 fps
    assert shown(apply_condition(f, parse_video_condition("late-100ms", fps=50.0))) == [0] * 6 + [1, 2, 3, 4]


def test_frame_rate_frozen_and_partner_clips():
    f = numbered(12)
    assert shown(run("fps-5", f)) == [0] * 5 + [5] * 5 + [10] * 2  # each 5th frame held for 5 frames
    assert shown(run("fps-10", f)) == [0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10]  # round(25 / 10) = 2 (halves to even)
    assert shown(run("frozen", f)) == [0] * 12
    assert run("clean", f) is f
    partner = numbered(5) + 100
    # a partner of 5 frames stretched to 9: frame t shows round(t * 4 / 8), halves up
    assert shown(run("mismatched", numbered(9), partner=partner)) == [100, 101, 101, 102, 102, 103, 103, 104, 104]
    assert shown(run("other_speaker", numbered(3), partner=numbered(10))) == [0, 5, 9]  # 4.5 -> 5
    assert shown(run("other_speaker", numbered(4), partner=numbered(1))) == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="'mismatched' needs the partner"):
        run("mismatched", f)


def test_occlusion_rows_and_black_span():
    f = torch.full((6, 8, 8), 100, dtype=torch.uint8)
    occ = run("occluded", f)
    assert (occ[:, :4] == 100).all() and (occ[:, 4:] == 0).all()  # the lower half: rows 4-7
    occ = run("occluded-25", f)
    assert (occ[:, :6] == 100).all() and (occ[:, 6:] == 0).all()  # round(0.25 * 8) = 2 rows
    occ = apply_condition(f.float(), parse_video_condition("occluded-100"), black_value=-1.5)
    assert (occ == -1.5).all()
    g = numbered(10, 2, 2) + 1  # no frame is 0 before the fault
    assert shown(run("black", g)) == [0] * 10
    assert shown(run("black-50", g)) == [1, 2, 0, 0, 0, 0, 0, 8, 9, 10]  # 5 frames, the middle: 2-6
    assert shown(run("black-10", g)) == [1, 2, 3, 4, 0, 6, 7, 8, 9, 10]  # 1 frame: (10 - 1) // 2 = 4
    assert shown(run("black-1", g)) == [1, 2, 3, 4, 0, 6, 7, 8, 9, 10]  # at least one frame
    assert shown(run("black-50", numbered(5) + 1)) == [1, 0, 0, 4, 5]  # round(2.5) = 2 frames from (5 - 2) // 2


def test_blur_keeps_a_constant_image_and_the_mean_and_spreads_a_point_as_the_gaussian():
    const = torch.full((2, 20, 20), 77, dtype=torch.uint8)
    assert torch.equal(run("blur", const), const)
    assert torch.allclose(run("blur-3", const.float() / 7), const.float() / 7, rtol=1e-6)
    img = torch.rand(3, 30, 30, generator=torch.Generator().manual_seed(0)) * 255
    out = run("blur-2", img)
    assert out.dtype == img.dtype and out.shape == img.shape
    assert float(out.mean()) == pytest.approx(float(img.mean()), abs=0.5)
    assert float(out.std()) < 0.5 * float(img.std())
    # a point far from the edges: the separable kernel g(x) g(y), g = exp(-x^2 / (2 sigma^2)) normalised over
    # x in [-6, 6] (radius ceil(3 sigma) = 6)
    point = torch.zeros(1, 21, 21)
    point[0, 10, 10] = 1.0
    spread = run("blur-2", point)[0]
    g = [math.exp(-(x * x) / 8.0) for x in range(-6, 7)]
    g = [v / sum(g) for v in g]
    for dy, dx in ((0, 0), (0, 1), (2, 3), (6, 6), (-4, 1)):
        assert float(spread[10 + dy, 10 + dx]) == pytest.approx(g[dy + 6] * g[dx + 6], rel=1e-5)
    assert float(spread[10, 17]) == 0.0 and float(spread.sum()) == pytest.approx(1.0, abs=1e-6)
    before = img.clone()
    run("blur", img)
    assert torch.equal(img, before)  # the input is untouched


def test_training_fault_labels():
    n = 4000
    faulted = torch.rand(n, generator=torch.Generator().manual_seed(1)) < 0.8
    faults = draw_training_faults(faulted, TRAINING_FAULTS, torch.Generator().manual_seed(2))
    kinds = [None if k < 0 else TRAINING_FAULTS[k] for k in faults.kind.tolist()]
    assert all((k is None) == (not f) for k, f in zip(kinds, faulted.tolist()))
    assert set(kinds) == {None, *TRAINING_FAULTS}
    for k, v, a in zip(kinds, faults.value.tolist(), faults.agree.tolist()):
        if k is None:
            assert a == 1.0
        elif k in ("wrong", "frozen"):
            assert a == 0.0
        elif k == "shift":
            assert v == int(v) and 2 <= abs(v) <= 12
            assert (a == 0.0) if abs(v) >= SHIFT_DISAGREE_FRAMES else math.isnan(a)
        elif k == "black":
            assert 0.3 <= v <= 1.0 and ((a == 0.0) if v >= 0.9 else math.isnan(a))
        else:
            assert math.isnan(a)
    shifts = {int(v) for k, v in zip(kinds, faults.value.tolist()) if k == "shift"}
    assert shifts == {*range(-12, -1), *range(2, 13)}  # both ways, every size
    again = draw_training_faults(faulted, TRAINING_FAULTS, torch.Generator().manual_seed(2))
    assert torch.equal(again.kind, faults.kind) and torch.equal(again.value, faults.value)
    only = draw_training_faults(torch.ones(50, dtype=torch.bool), ("frozen",))
    assert (only.kind == TRAINING_FAULTS.index("frozen")).all() and (only.agree == 0).all()
    with pytest.raises(ValueError, match="video_fault_classes"):
        draw_training_faults(faulted, ("shift", "sideways"))


def test_apply_training_faults_leaves_padding_and_unfaulted_samples():
    b, t = 6, 8
    video = torch.arange(t, dtype=torch.float32).view(1, t, 1, 1).repeat(b, 1, 4, 4) + 1.0
    lengths = torch.tensor([8, 6, 5, 8, 6, 4])
    names = [None, "shift", "frozen", "wrong", "black", "low_fps"]
    kind = torch.tensor([-1 if k is None else TRAINING_FAULTS.index(k) for k in names])
    value = torch.tensor([0.0, 2.0, 0.0, 0.0, 0.5, 3.0])
    before = video.clone()
    out = apply_training_faults(video, lengths, TrainingFaults(kind, value, torch.ones(b)), black_value=-2.0)
    assert torch.equal(video, before)
    frames = [[float(out[i, k, 0, 0]) for k in range(t)] for i in range(b)]
    assert frames[0] == [1, 2, 3, 4, 5, 6, 7, 8]  # unfaulted
    assert frames[1] == [1, 1, 1, 2, 3, 4, 7, 8]  # shift 2 over its 6 frames; padding 6-7 as it was
    assert frames[2] == [1, 1, 1, 1, 1, 6, 7, 8]
    assert frames[3] == [1, 2, 3, 4, 5, 6, 7, 8]  # wrong lips are swapped later, inside the model
    assert frames[4] == [1, -2, -2, -2, 5, 6, 7, 8]  # the middle half of its 6 frames: 3 frames from 1
    assert frames[5] == [1, 1, 1, 4, 5, 6, 7, 8]  # each 3rd of its 4 frames held
    occ = TrainingFaults(torch.tensor([TRAINING_FAULTS.index("occlusion")]), torch.tensor([0.5]), torch.ones(1))
    o = apply_training_faults(video[:1], torch.tensor([5]), occ, black_value=-2.0)
    assert (o[0, :5, 2:] == -2.0).all() and torch.equal(o[0, :5, :2], video[0, :5, :2])
    assert torch.equal(o[0, 5:], video[0, 5:])
    none = TrainingFaults(torch.full((b,), -1), torch.zeros(b), torch.ones(b))
    assert torch.equal(apply_training_faults(video, lengths, none, -2.0), video)
