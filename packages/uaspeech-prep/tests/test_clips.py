"""Frame index parsing, frame-exact clip cutting, frame rate from the container, atomic writes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_prep as fx  # noqa: E402

from uaspeech_prep.clips import ClipJob, FrameIndexError, cut_clips, parse_frame_index  # noqa: E402
from uaspeech_prep.video_io import (  # noqa: E402
    AtomicVideoWriter,
    VideoError,
    find_temps,
    probe,
    remove_stale_temps,
    read_frames,
)


def test_parse_frame_index(tmp_path):
    p = tmp_path / "F02_B1_frame_index.txt"
    p.write_text("# header\n\nF02_B1_D3 10 20\nF02_B1_LA,21,30  # trailing comment\n  F02_B1_CW7\t31 ,40\n")
    rs = parse_frame_index(p)
    assert [(r.utt_id, r.begin, r.end, r.n_frames) for r in rs] == [
        ("F02_B1_D3", 10, 20, 11), ("F02_B1_LA", 21, 30, 10), ("F02_B1_CW7", 31, 40, 10)]


@pytest.mark.parametrize(
    "line, msg",
    [("F02_B1_D3 10", "expected"), ("F02_B1_D3 a 20", "integers"), ("F02_B1_D3 20 10", "BEGIN <= END"),
     ("F02_B1_D3_M5 1 2", "utterance id"), ("F02_B1_D1 1 2", "already listed on line 1")],
)
def test_frame_index_errors_name_file_and_line(tmp_path, line, msg):
    p = tmp_path / "F02_B1_frame_index.txt"
    p.write_text(f"F02_B1_D1 0 5\n{line}\n")
    with pytest.raises(FrameIndexError) as e:
        parse_frame_index(p)
    assert f"{p}:2:" in str(e.value) and msg in str(e.value)


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_fps_is_read_from_the_container(tmp_path, fps):
    v = fx.write_block_video(tmp_path / f"v{int(fps)}.divx", 12, fps)
    info = probe(v)
    assert info.fps == pytest.approx(fps)
    assert (info.width, info.height, info.frame_count) == (fx.FRAME_W, fx.FRAME_H, 12)
    # clips keep the source rate
    out = tmp_path / "clip.mp4"
    _, res = cut_clips(v, [ClipJob("F02_B1_D1", 2, 5, out)])
    assert res["F02_B1_D1"].ok
    assert probe(out).fps == pytest.approx(fps)


def test_cut_is_frame_exact_in_one_pass(tmp_path):
    v = fx.write_block_video(tmp_path / "F02-B1-DV-1.divx", 100, 30.0)
    ranges = {"F02_B1_D0": (0, 9), "F02_B1_D1": (20, 47), "F02_B1_D2": (40, 60), "F02_B1_D3": (61, 61),
              "F02_B1_D4": (70, 99)}
    seen_frames: list[int] = []
    jobs = [ClipJob(u, b, e, tmp_path / "out" / f"{u}.mp4", want_frames=(u == "F02_B1_D2"))
            for u, (b, e) in ranges.items()]
    info, res = cut_clips(v, jobs, on_frame=lambda i, f, ids: seen_frames.append(fx.decode_index(f)))
    assert info.fps == pytest.approx(30.0)
    assert all(r.ok for r in res.values()), res
    for u, (b, e) in ranges.items():
        frames = read_frames(tmp_path / "out" / f"{u}.mp4")
        got = [fx.decode_index(f) for f in frames]
        assert got[0] == b and got[-1] == e, (u, got)
        assert got == list(range(b, e + 1)), u
    assert seen_frames == list(range(40, 61))  # on_frame sees exactly the wanting clip's frames
    assert not find_temps(tmp_path)


def test_range_past_the_end_fails_alone(tmp_path):
    v = fx.write_block_video(tmp_path / "F02-B1-DV-1.divx", 20, 30.0)
    jobs = [ClipJob("F02_B1_D0", 0, 5, tmp_path / "a.mp4"), ClipJob("F02_B1_D1", 15, 25, tmp_path / "b.mp4")]
    _, res = cut_clips(v, jobs)
    assert res["F02_B1_D0"].ok
    assert not res["F02_B1_D1"].ok and "ends after 20 frame(s)" in res["F02_B1_D1"].reason
    assert (tmp_path / "a.mp4").is_file() and not (tmp_path / "b.mp4").exists()
    assert not find_temps(tmp_path)


def test_atomic_writer_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(RuntimeError):
        with AtomicVideoWriter(out, 25.0, (fx.FRAME_W, fx.FRAME_H)) as w:
            w.write(fx.encode_frame(1))
            assert w.tmp.is_file() and not out.exists()
            raise RuntimeError("boom")
    assert not out.exists() and not find_temps(tmp_path)
    with pytest.raises(VideoError):
        probe(tmp_path / "missing.mp4")


def test_stale_temps_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / "a" / ".F02_B1_D3.mp4.tmp-999999999.mp4"  # no such pid (above pid_max)
    dead.parent.mkdir()
    dead.write_bytes(b"half")
    ours = AtomicVideoWriter(tmp_path / "b.mp4", 25.0, (64, 64))
    assert set(find_temps(tmp_path)) == {dead, ours.tmp}
    assert remove_stale_temps(tmp_path) == [dead]
    assert find_temps(tmp_path) == [ours.tmp]
    ours.abort()
    assert find_temps(tmp_path) == []


def test_single_threaded_decoding_gives_the_same_frames(tmp_path):
    """prepare's pool workers decode with one FFmpeg thread (set_decode_threads(1)): same pixels."""
    import cv2
    import numpy as np

    from uaspeech_prep import video_io

    path = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"XVID"), 30.0, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(12):
        w.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    w.release()

    def frames():
        cap = video_io.open_capture(path)
        out = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            out.append(f)
        cap.release()
        return out

    default = frames()
    try:
        video_io.set_decode_threads(1)
        single = frames()
    finally:
        video_io.set_decode_threads(None)
    assert len(default) == len(single) == 12
    assert all(np.array_equal(a, b) for a, b in zip(default, single))
