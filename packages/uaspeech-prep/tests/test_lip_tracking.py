"""Key-frame landmarks + optical-flow tracking (track='flow', the default) on the real astronaut face:
accuracy against the landmarker on every frame and against the known motion, lips that open and close
between key frames, re-detection on a cut, key frames at clip starts, and the kept gray windows."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_prep as fx  # noqa: E402

from uaspeech_prep.roi import (  # noqa: E402
    _ROI_POINTS,
    LandmarkStream,
    LipTracker,
    RoiCollector,
    RoiError,
    RoiParams,
    compute_roi,
    extract_roi,
    interpolate_missing,
)

FPS = 30.0


@pytest.fixture(scope="module")
def tracker():
    with LipTracker() as tr:  # the default parameters: IMAGE mode, as track='flow' uses it
        yield tr


@pytest.fixture(scope="module")
def moving_head():
    """2 s at 30 fps of the astronaut swaying +-14 px, nodding, rolling +-8 degrees and zooming +-6 %."""
    return fx.animate_head(60, FPS)


@pytest.fixture(scope="module")
def every_frame(tracker, moving_head) -> np.ndarray:
    """(60, 478, 2): the landmarker on every frame of the moving head."""
    lms = [tracker.process(f) for f in moving_head[0]]
    assert all(lm is not None for lm in lms)
    return np.stack(lms)


def _motion_truth(landmarks: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """Landmarks that move exactly with the head: every frame's landmarks mapped back to the head photo
    (the known animation matrices), averaged, and mapped forward again."""
    back = [fx.apply_affine(cv2.invertAffineTransform(m), lm) for m, lm in zip(mats, landmarks)]
    ref = np.mean(back, axis=0)
    return np.stack([fx.apply_affine(m, ref) for m in mats])


def test_tracked_points_match_the_landmarker_on_a_moving_head(tracker, moving_head, every_frame):
    frames, mats = moving_head
    res = extract_roi(frames, FPS, tracker)
    keys = np.flatnonzero(res.attempted).tolist()
    assert keys[:1] == [0] and 30 in keys and len(keys) <= 4, keys  # first frame, at least once a second
    assert res.tracked.sum() == 60 - len(keys) and res.detect_ratio == 1.0
    flow = np.stack(res.landmarks)[:, _ROI_POINTS]
    err = np.linalg.norm(flow - every_frame[:, _ROI_POINTS], axis=2)  # (60, 25) px
    assert err.mean() < 1.5 and err.max() < 4.0, (err.mean(), err.max())  # measured 0.38 / 1.6 px
    # against the true motion the tracked points do as well as the landmarker on every frame
    truth = _motion_truth(every_frame, mats)[:, _ROI_POINTS]
    e_flow = np.linalg.norm(flow - truth, axis=2).mean()
    e_every = np.linalg.norm(every_frame[:, _ROI_POINTS] - truth, axis=2).mean()
    assert e_flow < 1.0 and e_flow < e_every + 0.5, (e_flow, e_every)  # measured 0.35 vs 0.17 px


def _talking_mouth(tracker, n: int, period: int, amplitude: float):
    """The still astronaut whose lower lip and jaw move down by d(t) = amplitude * (1 - cos(2 pi t / period)) / 2
    (a smooth remap below the lip line, the mouth opening in between): closed on frames 0, period, 2 period."""
    canvas = np.full((320, 320, 3), 128, np.uint8)
    canvas[40:280, 40:280] = fx.head_bgr()
    lm = tracker.process(canvas)
    y_line = (lm[13, 1] + lm[14, 1]) / 2  # where the inner lips meet
    y_low, cx = lm[17, 1], (lm[61, 0] + lm[291, 0]) / 2  # lower lip's outer edge; mouth centre
    half = (lm[291, 0] - lm[61, 0]) / 2
    yy, xx = np.mgrid[0:320, 0:320].astype(np.float32)
    gy = np.clip((yy - (y_line - 1)) / 4, 0, 1) * np.clip(1 - (yy - (y_low + 5)) / 35, 0, 1)
    ax = np.abs(xx - cx)
    gx = np.where(ax < half + 5, 1.0, np.clip(1 - (ax - half - 5) / 15, 0, 1))
    weight = (gx * gy).astype(np.float32)
    d = amplitude * (1 - np.cos(2 * np.pi * np.arange(n) / period)) / 2
    frames = [cv2.remap(canvas, xx, (yy - di * weight).astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE) for di in d]
    return frames, d


def _opening(landmarks) -> np.ndarray:
    """Outer-lip opening (lower lip 17 below upper lip 0), relative to frame 0, px."""
    op = np.array([lm[17, 1] - lm[0, 1] for lm in landmarks])
    return op - op[0]


def test_flow_follows_the_lips_between_key_frames(tracker):
    # the mouth opens by 8 px and closes twice a second (period 15 frames): closed on frames 0, 15 and 30
    frames, d = _talking_mouth(tracker, 30, 15, 8.0)
    every = _opening([tracker.process(f) for f in frames])
    assert np.abs(every - d).mean() < 1.0  # the landmarker itself sees the synthetic mouth open (0.51 px)
    res = extract_roi(frames, FPS, tracker)
    assert np.flatnonzero(res.attempted).tolist() == [0]  # one landmarker call for the whole second
    flow = _opening(res.landmarks)
    # landmarks every 15th frame, interpolated, are blind to it: closed at both ends, closed in between
    interp = extract_roi(frames, FPS, tracker, RoiParams(track="none", detect_every=15))
    lin = _opening(interpolate_missing(interp.landmarks))
    e_flow, e_lin = np.abs(flow - d).mean(), np.abs(lin - d).mean()
    assert e_flow < 0.6, e_flow  # measured 0.14 px
    assert e_lin > 3.0 and e_flow < 0.25 * e_lin, (e_flow, e_lin)  # measured 3.9 px
    assert np.corrcoef(flow, d)[0, 1] > 0.98
    assert flow.max() > 6.0  # the tracked lower lip goes down by most of the 8 px


def test_a_cut_to_another_shot_makes_a_key_frame(tracker, moving_head):
    frames = moving_head[0][:12]
    # a cut at frame 12: the same face 40 px right and 25 px lower, beyond what flow follows in a frame
    shifted = [np.roll(f, (25, 40), axis=(0, 1)) for f in moving_head[0][12:30]]
    res = extract_roi(frames + shifted, FPS, tracker)
    assert np.flatnonzero(res.attempted).tolist() == [0, 12]
    assert res.detect_ratio == 1.0 and not res.tracked[12]
    after = np.stack(res.landmarks[12:])[:, _ROI_POINTS]
    every = np.stack([tracker.process(f) for f in shifted])[:, _ROI_POINTS]
    assert np.abs(after[0] - every[0]).max() < 1e-6  # frame 12's landmarks are the landmarker's
    assert np.linalg.norm(after - every, axis=2).mean() < 1.5
    # a cut to an image with no face: the landmarker runs on the cut, finds nothing and retries every 3rd
    # frame; too few faces -> no ROI
    from skimage import data

    coffee = cv2.resize(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR), (320, 320))
    stream = LandmarkStream(tracker, RoiParams(), FPS)
    stream.new_sequence()
    out = [stream.step(i, f, [(0, 29)]) for i, f in enumerate(frames + [coffee] * 18)]
    assert [i for i, o in enumerate(out) if o.attempted] == [0, 12, 15, 18, 21, 24, 27]
    assert all(o.landmarks is None for o in out[12:]) and all(o.tracked for o in out[1:12])
    with pytest.raises(RoiError, match="face found on 1/7 frames"):
        extract_roi(frames + [coffee] * 18, FPS, tracker)


def test_clip_starts_and_gaps_are_key_frames_and_a_clip_does_not_depend_on_the_others(tracker, moving_head):
    frames = moving_head[0][:40]
    clips = {"A": (0, 24), "B": (15, 39)}  # overlapping, as frame indexes can be
    params = RoiParams()
    stream = LandmarkStream(tracker, params, FPS)
    stream.new_sequence()
    cols = {u: RoiCollector(FPS) for u in clips}
    looked = []
    for i, f in enumerate(frames):
        wanting = [u for u, (b, e) in clips.items() if b <= i <= e]
        fl = stream.step(i, f, [clips[u] for u in wanting])
        looked.append(fl.attempted)
        for u in wanting:
            cols[u].add_frame(fl)
    assert np.flatnonzero(looked).tolist() == [0, 15]  # each clip starts on a key frame
    # B's ROI is the one B alone gives (same key frame, same tracking): clips are reproducible one by one
    alone = extract_roi(frames[15:40], FPS, tracker, params)
    b = cols["B"].result(params)
    assert b.n_frames == alone.n_frames == 20
    assert all(np.array_equal(x, y) for x, y in zip(b.frames, alone.frames))
    # a gap in the stream (frames 10-19 not decoded) also makes a key frame
    stream.new_sequence()
    gap = [stream.step(i, frames[i], [(0, 39)]).attempted for i in list(range(10)) + list(range(20, 30))]
    assert np.flatnonzero(gap).tolist() == [0, 10]


def test_kept_gray_windows_crop_like_the_whole_frame(tracker, moving_head):
    frames = moving_head[0][:30]
    res = extract_roi(frames, FPS, tracker)
    stream = LandmarkStream(tracker, RoiParams(), FPS)
    stream.new_sequence()
    out = [stream.step(i, f, [(0, 29)]) for i, f in enumerate(frames)]
    assert all(o.gray.size < 0.6 * f.shape[0] * f.shape[1] for o, f in zip(out, frames))  # windows, not frames
    for o, f in zip(out, frames):  # each window is that part of the frame
        x, y = o.offset
        h, w = o.gray.shape
        assert np.array_equal(o.gray, cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[y:y + h, x:x + w])
    whole = compute_roi([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames], res.landmarks, FPS, RoiParams(),
                        res.attempted)
    diff = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(res.frames, whole.frames))
    assert diff <= 1, diff  # same crops (up to rounding in the interpolation)


def test_prepare_flags_reach_the_parameters(monkeypatch, tmp_path):
    import uaspeech_prep.prepare as prep
    from uaspeech_prep.cli import main

    seen = []

    class Done:
        exit_code = 0

    monkeypatch.setattr(prep, "prepare", lambda opts: seen.append(opts) or Done())
    base = ["prepare", "--source", str(tmp_path), "--output", str(tmp_path / "out")]
    assert main(base) == 0
    assert seen[-1].roi_params().track == "flow" and seen[-1].roi_params().to_dict()["track"] == "flow"
    assert main(base + ["--roi-track", "none", "--detect-every", "5"]) == 0
    p = seen[-1].roi_params()
    assert (p.track, p.detect_every, p.every(30.0)) == ("none", 5, 5)
    assert {"track", "detect_every", "flow_max_fb_px"} <= set(p.to_dict())
