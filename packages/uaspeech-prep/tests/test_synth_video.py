"""Visemes, the drawn mouth, and the block videos of the synthetic corpus."""

from __future__ import annotations

import cv2
import mediapipe as mp
import numpy as np
import pytest
import soundfile as sf
from uaspeech_prep.synth import video as vid
from uaspeech_prep.synth.face import FRAME_SIZE, MOUTH_CENTER, Face, Look, mouth_box
from uaspeech_prep.synth.profiles import profile_for
from uaspeech_prep.synth.variation import Pose
from uaspeech_prep.synth.visemes import VISEMES, keyframes, trajectory, visemes_of

LIPS = {"left": 61, "right": 291, "upper_outer": 0, "upper_inner": 13, "lower_inner": 14, "lower_outer": 17}


@pytest.fixture(scope="module")
def face() -> Face:
    return Face()


@pytest.mark.parametrize(
    "phoneme, viseme",
    [("p", "bilabial"), ("b", "bilabial"), ("m", "bilabial"), ("f", "labiodental"), ("v", "labiodental"),
     ("'A:", "open"), ("a", "open"), ("'i:", "close_front"), ("I", "close_front"), ("u:", "close_round"),
     ("w", "w"), ("O:", "open_round"), ("_:", "rest"), ("_", "rest"), ("S", "postalveolar"), ("T", "dental")],
)
def test_phoneme_to_viseme(phoneme, viseme):
    assert visemes_of(phoneme)[0] == viseme


def test_diphthongs_glide_and_shapes_are_sensible():
    assert visemes_of("aI") == ("open", "close_front")
    assert visemes_of("oU") == ("open_round", "close_round")
    v = VISEMES
    assert v["bilabial"].open == 0 and v["rest"].open == 0
    assert v["open"].open > v["mid"].open > v["close_front"].open
    assert v["close_round"].round > 0.8 and v["close_round"].width < 0.8
    assert v["close_front"].width > 1.1
    assert v["labiodental"].tuck == 1.0


def test_trajectory_is_smooth_and_hits_targets():
    # "bravo" as espeak times it: b r 'A: v oU _:
    ph = [(0.012, "b"), (0.030, "r"), (0.094, "'A:"), (0.239, "v"), (0.311, "oU"), (0.467, "_:")]
    t = np.arange(0, 0.6, 1 / 30)
    p = trajectory(keyframes(ph, 0.6), t)
    assert p.shape == (len(t), 5)
    openness = p[:, 0]
    assert openness[0] == pytest.approx(0.0, abs=0.02) and openness[-1] == pytest.approx(0.0, abs=0.02)
    peak = t[np.argmax(openness)]
    assert 0.094 <= peak <= 0.239 and openness.max() > 0.6  # wide open on 'A:
    assert p[(t > 0.24) & (t < 0.31), 4].max() > 0.3  # lower lip tucked for v
    assert np.abs(np.diff(openness)).max() < 0.45  # no jumps between frames


def _landmarks(landmarker, rgb: np.ndarray) -> np.ndarray | None:
    res = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
    if not res.face_landmarks:
        return None
    h, w = rgb.shape[:2]
    return np.array([[q.x * w, q.y * h] for q in res.face_landmarks[0]])


@pytest.mark.parametrize("look, pose", [
    (Look(), Pose()),
    (Look(scale=1.04, shift=(2.5, -2.0), brightness=0.92, blur=0.7, noise=1.6), Pose()),
    # a session at the edge of the variation: ~3 std of roll, scale and shift, dim and flat lighting
    (Look(scale=1.04, shift=(2.5, -2.0), brightness=0.92, blur=0.7, noise=1.6),
     Pose(roll_deg=-7.0, scale=0.92, shift=(-6.0, 5.0), brightness=0.8, contrast=0.75, side_light=-0.2)),
])
def test_mediapipe_finds_the_face_and_its_lips_on_the_drawn_mouth(face, face_landmarker, look, pose):
    rng = np.random.default_rng(0)
    gaps = {}
    for name in ("rest", "open", "close_round"):
        p = VISEMES[name].as_array()
        frame = face.render(p, look, rng, pose)
        assert frame.shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3) and frame.dtype == np.uint8
        pts = _landmarks(face_landmarker, frame)
        assert pts is not None, f"no face detected in the {name} frame"
        x0, y0, x1, y1 = mouth_box(p, look, pose)
        for key, idx in LIPS.items():
            x, y = pts[idx]
            assert x0 - 4 <= x <= x1 + 4 and y0 - 4 <= y <= y1 + 4, (name, key, (x, y), (x0, y0, x1, y1))
        gaps[name] = pts[LIPS["lower_inner"], 1] - pts[LIPS["upper_inner"], 1]
        width = pts[LIPS["right"], 0] - pts[LIPS["left"], 0]
        gaps[name + "_width"] = width
    assert gaps["rest"] < 2.0
    assert gaps["open"] > gaps["rest"] + 7.0  # mediapipe sees the mouth open
    assert gaps["close_round_width"] < gaps["rest_width"] - 4.5  # and rounded lips narrower


def test_speaker_looks_differ_but_levels_blur_only_a_little():
    looks = {s: profile_for(s).look for s in ("M12", "F02", "M05", "F05")}
    assert len({(lk.scale, lk.shift, lk.brightness) for lk in looks.values()}) == 4
    assert looks["F05"].blur == 0 and looks["F05"].noise == 0
    assert 0 < looks["M12"].blur <= 1.0 and looks["M12"].noise <= 2.0


def _read_frames(path, begin, end):
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, begin)
    frames = []
    for _ in range(begin, end + 1):
        ok, fr = cap.read()
        assert ok
        frames.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)


def test_frame_index_matches_video_and_wav_durations(tiny_corpus):
    from uaspeech_prep import corpus

    for vdir in sorted((tiny_corpus / "video").iterdir()):
        spk = vdir.name
        for blk in corpus.BLOCKS:
            video = vdir / f"{spk}-{blk}-DV-1.divx"
            rows = vid.read_frame_index(vdir / f"{spk}_{blk}_frame_index.txt")
            n, fps, size = vid.probe(video)
            assert fps == pytest.approx(30.0) and size == FRAME_SIZE
            assert n == rows[-1][2] + 1 + vid.LEAD_FRAMES
            assert rows[0][1] == vid.LEAD_FRAMES
            for (u, b, e), nxt in zip(rows, rows[1:] + [None], strict=True):
                assert corpus.parse_utt_id(u)[:2] == (spk, blk)
                assert 0 <= b <= e < n
                if nxt is not None:
                    assert nxt[1] == e + 1 + vid.GAP_FRAMES
                for mic in ("M5", "M6"):
                    dur = sf.info(str(tiny_corpus / "audio" / spk / f"{u}_{mic}.wav")).duration
                    assert abs((e - b + 1) / fps - dur) <= 1 / fps, (u, mic, e - b + 1, dur)


def test_mouth_moves_during_a_word_while_the_face_stays_still(tiny_corpus):
    """F05 (high: no video noise) saying 'One' (w, open V, n). The head drifts (the session's pose plus a slow
    motion); undoing each frame's pose (known from the seed) leaves a still face whose mouth region changes
    across the word's frames while the eyes and forehead do not (beyond compression and interpolation)."""
    from uaspeech_prep.synth.face import _look_matrix
    from uaspeech_prep.synth.utterance import rng_for, session_for
    from uaspeech_prep.synth.variation import block_poses

    rows = vid.read_frame_index(tiny_corpus / "video/F05/F05_B1_frame_index.txt")
    b, e = dict((u, (s, t)) for u, s, t in rows)["F05_B1_D1"]
    n_total = vid.probe(tiny_corpus / "video/F05/F05-B1-DV-1.divx")[0]
    poses = block_poses(session_for("F05", "B1", 0), n_total, rng_for(0, "F05", "B1", "drift"), vid.FPS)
    look = profile_for("F05").look
    raw = _read_frames(tiny_corpus / "video/F05/F05-B1-DV-1.divx", b, e)
    frames = np.stack([
        cv2.warpAffine(fr, cv2.invertAffineTransform(_look_matrix(look, poses[b + i])), FRAME_SIZE,
                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for i, fr in enumerate(raw)
    ]).astype(np.float32).mean(-1)
    x0, y0, x1, y1 = (int(round(v)) for v in mouth_box(VISEMES["open"].as_array()))
    mouth = frames[:, y0:y1, x0:x1]
    cx, cy = MOUTH_CENTER
    upper = frames[:, int(cy) - 75 : int(cy) - 30, int(cx) - 40 : int(cx) + 40]  # eyes and forehead
    mouth_change = np.abs(mouth - mouth[0]).mean(axis=(1, 2)).max()
    upper_change = np.abs(upper - upper[0]).mean(axis=(1, 2)).max()
    raw_upper = raw.astype(np.float32).mean(-1)[:, int(cy) - 75 : int(cy) - 30, int(cx) - 40 : int(cx) + 40]
    raw_change = np.abs(raw_upper - raw_upper[0]).mean(axis=(1, 2)).max()
    assert mouth_change > 12.0, mouth_change
    assert upper_change < 4.0, upper_change
    assert raw_change > 2 * upper_change  # the head did move (measured: 12.3 raw, 3.1 with the pose undone)
    # the dark interior appears: the darkest mouth pixel gets much darker than at rest
    assert mouth.reshape(len(mouth), -1).min(1).min() < mouth[0].min() - 40


def test_decoded_video_frame_has_a_detectable_face(tiny_corpus, face_landmarker):
    rows = vid.read_frame_index(tiny_corpus / "video/M12/M12_B2_frame_index.txt")
    b, e = rows[1][1], rows[1][2]
    frames = _read_frames(tiny_corpus / "video/M12/M12-B2-DV-1.divx", b, e)
    found = [_landmarks(face_landmarker, f) is not None for f in frames[:: max(1, len(frames) // 5)]]
    assert all(found)


# --- repetitions: head pose, lighting and articulation ---------------------------------------------


def test_pose_rotates_about_the_mouth_and_lighting_changes_the_frame(face):
    p = VISEMES["open"].as_array()
    box0 = mouth_box(p)
    rolled = mouth_box(p, pose=Pose(roll_deg=6.0))
    assert rolled[1] < box0[1] and rolled[3] > box0[3]  # a tilted mouth spans more height
    moved = mouth_box(p, pose=Pose(shift=(3.0, -2.0), scale=1.05))
    assert moved[0] == pytest.approx(MOUTH_CENTER[0] + 1.05 * (box0[0] - MOUTH_CENTER[0]) + 3.0)
    base = face.render(p).astype(np.float32)
    lit = face.render(p, pose=Pose(brightness=1.1, contrast=1.2, side_light=0.1)).astype(np.float32)
    assert lit.std() > 1.1 * base.std()
    w = base.shape[1]
    assert (lit[:, w // 2 + 20:] - base[:, w // 2 + 20:]).mean() > (lit[:, : w // 2 - 20] - base[:, : w // 2 - 20]).mean()


def test_block_poses_drift_smoothly_around_the_session():
    from uaspeech_prep.synth.utterance import rng_for, session_for
    from uaspeech_prep.synth.variation import DRIFT_ROLL_DEG_STD, block_poses

    ses = session_for("F05", "B2", 0)
    poses = block_poses(ses, 900, rng_for(0, "F05", "B2", "drift"), vid.FPS)
    roll = np.array([p.roll_deg for p in poses]) - ses.roll_deg
    assert roll.std() == pytest.approx(DRIFT_ROLL_DEG_STD, rel=0.05)
    assert np.abs(np.diff(roll)).max() < 0.1  # smooth: well under a tenth of a degree per frame
    assert all(p.brightness == ses.brightness and p.contrast == ses.contrast for p in poses)
    again = block_poses(ses, 900, rng_for(0, "F05", "B2", "drift"), vid.FPS)
    assert again == poses


def _resampled(frames: np.ndarray, n: int = 16) -> np.ndarray:
    return frames[np.round(np.linspace(0, len(frames) - 1, n)).astype(int)]


def test_repetitions_differ_in_the_video_but_keep_the_word(tiny_corpus):
    """F05 (high) says D0-D3 in B1, B2, B3. Around the mouth, the frames of two repetitions of a word differ by
    more than 10 grey levels on average (pose, lighting, timing, opening; measured 23-31, where the former
    corpus's repetitions differed by ~3), and the mouth opening trajectories differ (> 0.03 mean |d open|,
    measured 0.064) yet stay closer to the same word's than to other words' (0.135)."""
    from uaspeech_prep import corpus
    from uaspeech_prep.synth.utterance import synth_utterance

    prof = profile_for("F05")
    idx = {b: {u: (s, e) for u, s, e in vid.read_frame_index(tiny_corpus / f"video/F05/F05_{b}_frame_index.txt")}
           for b in corpus.BLOCKS}
    cx, cy = MOUTH_CENTER
    diffs = []
    for w in ("D0", "D1", "D2", "D3"):
        clips = []
        for b in ("B1", "B2"):
            s, e = idx[b][f"F05_{b}_{w}"]
            fr = _read_frames(tiny_corpus / f"video/F05/F05-{b}-DV-1.divx", s, e).astype(np.float32).mean(-1)
            clips.append(_resampled(fr[:, int(cy) - 30: int(cy) + 35, int(cx) - 40: int(cx) + 40]))
        diffs.append(np.abs(clips[0] - clips[1]).mean())
    assert np.mean(diffs) > 10.0, diffs
    traj = {}
    for b in corpus.BLOCKS:
        for w in ("D0", "D1", "D2", "D3"):
            u = synth_utterance(prof, b, w, seed=0)
            tr = vid.WordTrack(u.utt_id, u.duration, u.phonemes, u.mouth_scale, u.open_factors, u.av_lag_s)
            traj[(b, w)] = _resampled(vid.mouth_params(tr))[:, 0]
    same = [np.abs(traj[("B1", w)] - traj[(b, w)]).mean() for w in ("D0", "D1", "D2", "D3") for b in ("B2", "B3")]
    other = [np.abs(traj[("B1", w)] - traj[("B2", v)]).mean() for w in ("D0", "D1", "D2", "D3")
             for v in ("D0", "D1", "D2", "D3") if v != w]
    assert np.mean(same) > 0.03, same
    assert np.mean(same) < 0.8 * np.mean(other), (np.mean(same), np.mean(other))
    peaks = [traj[(b, "D0")].max() for b in corpus.BLOCKS]
    assert np.ptp(peaks) > 0.05, peaks  # how wide the mouth opens changes between sessions
