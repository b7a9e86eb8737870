"""``uaspeech-prep prepare`` end to end on small release trees: outputs, manifest, resume, bad trees,
``--validate-only``, the command line and the process pool."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_prep as fx  # noqa: E402

from uaspeech_prep.prepare import PrepareOptions, prepare, run  # noqa: E402
from uaspeech_prep.prepare_command import register  # noqa: E402
from uaspeech_prep.validate import run_validate, validate_tree  # noqa: E402
from uaspeech_prep.video_io import find_temps, probe, read_frames  # noqa: E402

KEYS = ["utt_id", "speaker", "level", "block", "split", "word_id", "word", "category", "audio", "clip", "roi",
        "roi_fps", "roi_frames", "audio_offset_s", "duration_s"]  # docs/LAYOUT.md: the contract, in this order
ADDED_KEYS = ["seen_in_train", "audio_vad", "vad_start_s", "vad_end_s", "vad_roi_frames"]  # added after it


def _cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="uaspeech-prep")
    register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return int(args.func(args) or 0)


def _digest(root: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.md5(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def _mtimes(root: Path, sub: str) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted((root / sub).rglob("*")) if p.is_file()}


def _manifest(dst: Path) -> list[dict]:
    return [json.loads(x) for x in (dst / "manifest.jsonl").read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> fx.Tree:
    return fx.make_tree(tmp_path_factory.mktemp("release") / "UASpeech")


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    before = _digest(source.root)
    dst = tmp_path_factory.mktemp("prepared") / "out"
    res = run(source.root, dst, progress=False)
    assert _digest(source.root) == before, "the source tree must not change"
    return dst, res


def test_prepare_writes_the_layout(source, prepared):
    dst, res = prepared
    assert res.exit_code == 0, res.report["failures"]
    recs = _manifest(dst)
    assert len(recs) == len(source.ranges) == 8
    for rec in recs:
        assert list(rec) == KEYS + ADDED_KEYS
        assert rec["seen_in_train"] is True  # D0, D1, D2, LA: common words
        assert rec["audio_vad"] is None and rec["vad_roi_frames"] is None  # no --vad
        b, e = source.ranges[rec["utt_id"]]
        n_src = e - b + 1
        assert rec["speaker"] == "F02" and rec["level"] == "low"
        assert rec["split"] == ("test" if rec["block"] == "B2" else "train")
        assert rec["audio"] == {m: f"audio/F02/{rec['utt_id']}_{m}.wav" for m in ("M5", "M6")}
        assert rec["clip"] == f"video/F02/outputfiles30/{rec['utt_id']}.mp4"
        assert rec["roi"] == f"video/roi/F02/{rec['utt_id']}.mp4"
        assert rec["roi_fps"] == 25.0 and rec["audio_offset_s"] == 0.0
        assert rec["duration_s"] == pytest.approx(n_src / 30.0, abs=1e-4)
        assert rec["roi_frames"] == int(np.floor(n_src * 25 / 30 + 1e-6))
        # frame-exact clip at the source rate
        frames = read_frames(dst / rec["clip"])
        assert len(frames) == n_src
        assert fx.decode_index(frames[0]) == b and fx.decode_index(frames[-1]) == e
        assert probe(dst / rec["clip"]).fps == pytest.approx(30.0)
        roi = probe(dst / rec["roi"])
        assert (roi.width, roi.height, roi.fps, roi.frame_count) == (96, 96, 25.0, rec["roi_frames"])
        for rel in rec["audio"].values():
            assert (dst / rel).read_bytes() == (source.root / rel).read_bytes()
            assert not (dst / rel).samefile(source.root / rel)
    words = {r["utt_id"]: r["word"] for r in recs}
    assert words["F02_B1_D0"] == "Zero" and words["F02_B2_LA"] == "Alpha"
    rep = json.loads((dst / "prepare_report.json").read_text())
    assert rep["ok"] and rep["version"] and rep["parameters"]["source"] == str(source.root.resolve())
    assert rep["summary"]["clips"]["cut"] == 8 and rep["summary"]["rois"]["written"] == 8
    assert set(rep["clips"]) == set(source.ranges)
    assert not find_temps(dst)


def test_validate_only_passes_then_flags_a_removed_roi(source, prepared, tmp_path, capsys):
    dst, _ = prepared
    assert _cli(["prepare", "--output", str(dst), "--validate-only"]) == 0
    assert "OK" in capsys.readouterr().out
    copy = tmp_path / "copy"
    shutil.copytree(dst, copy)
    (copy / "video/roi/F02/F02_B1_D2.mp4").unlink()
    (copy / "audio/F02/F02_B2_D0_M6.wav").write_bytes(b"")
    recs = _manifest(copy)
    recs[-1]["duration_s"] = 3.0  # ROI length no longer matches the audio
    (copy / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    rep = validate_tree(copy)
    kinds = {(f.utt_id, f.kind) for f in rep.findings}
    assert kinds == {("F02_B1_D2", "missing_roi"), ("F02_B2_D0", "unreadable_audio"),
                     (recs[-1]["utt_id"], "roi_duration"), (recs[-1]["utt_id"], "clip_duration")}
    assert run_validate(copy, log=lambda *a: None) == 1
    assert _cli(["prepare", "--output", str(copy), "--validate-only"]) == 1
    out = capsys.readouterr().out
    assert "F02_B1_D2: missing_roi" in out and "4 problem(s)" in out
    # against the source index: a dropped record and a record that lost its clip
    recs = _manifest(dst)
    del recs[0]
    recs[1]["clip"] = None
    (copy / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    rep = validate_tree(copy, source=source.root)
    got = {(f.utt_id, f.kind) for f in rep.findings}
    assert {("F02_B1_D0", "missing_record"), (recs[1]["utt_id"], "missing_clip")} <= got
    assert rep.speakers["F02"].missing == 1
    assert _cli(["prepare", "--source", str(source.root), "--output", str(copy), "--validate-only"]) == 1
    out = capsys.readouterr().out
    assert "missing" in out.splitlines()[1] and "F02_B1_D0: missing_record" in out
    assert _cli(["prepare", "--source", str(source.root), "--output", str(dst), "--validate-only"]) == 0


def test_resume_redoes_only_what_is_missing(source, tmp_path):
    dst = tmp_path / "out"
    assert run(source.root, dst, progress=False).exit_code == 0
    before = _mtimes(dst, ".")
    res = run(source.root, dst, progress=False)  # nothing to do
    assert res.exit_code == 0
    assert res.report["summary"]["clips"]["exists"] == 8 and res.report["summary"]["rois"]["exists"] == 8
    assert _mtimes(dst, "video") == {k: v for k, v in before.items() if k.startswith("video")}
    assert _mtimes(dst, "audio") == {k: v for k, v in before.items() if k.startswith("audio")}
    assert _manifest(dst) == [json.loads(x) for x in (dst / "manifest.jsonl").read_text().splitlines()]

    roi = "video/roi/F02/F02_B2_D1.mp4"
    clip = "video/F02/outputfiles30/F02_B1_LA.mp4"
    (dst / roi).unlink()
    (dst / clip).unlink()
    res = run(source.root, dst, progress=False)
    assert res.exit_code == 0
    after = _mtimes(dst, ".")
    changed = {k for k in before if k.startswith(("video", "audio")) and after.get(k) != before[k]}
    assert changed == {roi, clip}
    assert res.report["clips"]["F02_B2_D1"]["roi"] == "written"
    assert res.report["clips"]["F02_B1_LA"]["clip"] == "cut" and res.report["clips"]["F02_B1_LA"]["roi"] == "exists"
    frames = read_frames(dst / clip)
    assert [fx.decode_index(frames[0]), fx.decode_index(frames[-1])] == list(source.ranges["F02_B1_LA"])
    assert run_validate(dst, log=lambda *a: None) == 0
    # --overwrite redoes everything
    res = run(source.root, dst, progress=False, overwrite=True, skip_roi=True)
    assert res.report["summary"]["clips"]["cut"] == 8


def test_sync_report_and_correction_after_the_rois(source, prepared, tmp_path, capsys):
    """--sync-correct: a pass over the finished ROIs writes sync.csv (the rerun resumes, so only the pass works),
    re-times exactly the clips its rule passes, and records it in the report."""
    from uaspeech_prep.sync_report import read_sync_csv

    dst = tmp_path / "out"
    shutil.copytree(prepared[0], dst)
    assert _cli(["prepare", "--source", str(source.root), "--output", str(dst), "--sync-correct", "--quiet"]) == 0
    out = capsys.readouterr().out
    rows = read_sync_csv(dst / "sync.csv")
    assert set(rows) == set(source.ranges)
    for r in rows.values():  # the fixture's face is a still photo: whatever was measured, the rule decides
        measured = r["offset_frames"] != ""
        rule = measured and float(r["confidence"]) >= 0.7 and abs(int(r["offset_frames"])) >= 2
        assert (r["corrected"] == "true") == rule
    rep = json.loads((dst / "prepare_report.json").read_text())
    assert rep["parameters"]["sync_correct"] == 0.7 and rep["parameters"]["sync_report"] is False
    assert rep["sync"]["clips"] == 8 and rep["summary"]["rois"]["exists"] == 8
    assert "sync:" in out and not find_temps(dst)


def test_bad_tree_is_reported(source, tmp_path, capsys):
    src = tmp_path / "bad"
    shutil.copytree(source.root, src)
    fx.write_wav(src / "audio/F02/F02_B1_Q7_M5.wav", 0.5)  # does not parse
    sf.write(str(src / "audio/F02/F02_B1_D1_M6.wav"), np.zeros(0, np.float32), 16000)  # empty
    (src / "video/F02/F02_B2_frame_index.txt").unlink()  # block B2: video without frame index
    dst = tmp_path / "out"
    argv = ["prepare", "--source", str(src), "--output", str(dst), "--skip-roi", "--quiet"]
    assert _cli(argv) == 1
    out = capsys.readouterr().out
    for name in ("F02_B1_Q7_M5.wav", "F02_B1_D1_M6.wav", "F02-B2-DV-1.divx"):
        assert name in out
    rep = json.loads((dst / "prepare_report.json").read_text())
    probs = {(p["kind"], Path(p["path"]).name) for p in rep["problems"]}
    assert {("bad_name", "F02_B1_Q7_M5.wav"), ("empty_wav", "F02_B1_D1_M6.wav"),
            ("missing_frame_index", "F02-B2-DV-1.divx")} <= probs
    assert not rep["ok"]
    failed = {f["utt_id"] for f in rep["failures"]}
    assert failed == {f"F02_B2_{w}" for w in fx.RANGES}
    recs = {r["utt_id"]: r for r in _manifest(dst)}
    assert recs["F02_B1_D1"]["audio"] == {"M5": "audio/F02/F02_B1_D1_M5.wav"}  # the empty M6 is left out
    assert recs["F02_B2_D0"]["clip"] is None and recs["F02_B2_D0"]["roi"] is None
    assert recs["F02_B1_D0"]["clip"] and recs["F02_B1_D0"]["roi"] is None  # --skip-roi
    assert _cli(argv + ["--keep-going"]) == 0
    assert "--keep-going" in capsys.readouterr().out


def test_speakers_mics_precut_clips_and_workers(source, tmp_path):
    """Two speakers, one with already-cut clips only; --speakers keeps the other's manifest records;
    --mics; a process pool of 2 gives the same outputs."""
    src = tmp_path / "src"
    shutil.copytree(source.root, src)
    m09 = {"M09_B1_D3": (10, 40)}
    fx.write_wav(src / "audio/M09/M09_B1_D3_M5.wav", 31 / 30)
    fx.write_wav(src / "audio/M09/M09_B1_D3_M7.wav", 31 / 30)
    xls = fx.write_wordlist_xls(src / "doc" / "speaker_wordlist.xls")
    block = fx.write_block_video(tmp_path / "m09.avi", 45, 30.0)
    from uaspeech_prep.clips import ClipJob, cut_clips

    cut_clips(block, [ClipJob("M09_B1_D3", *m09["M09_B1_D3"], src / "video/M09/outputfiles30/M09_B1_D3.mp4")])
    dst = tmp_path / "out"
    res = prepare(PrepareOptions(src, dst, speakers=["M09"], mics=["M5"], skip_roi=True, progress=False),
                  log=lambda *a: None)
    assert not [p for p in res.report["problems"] if p["kind"] == "bad_wordlist"], res.report["problems"]
    assert res.exit_code == 0, res.report["failures"]
    assert (dst / "speaker_wordlist.xls").read_bytes() == xls.read_bytes()
    (rec,) = _manifest(dst)
    assert rec["word"] == "Three"
    assert rec["utt_id"] == "M09_B1_D3" and rec["level"] == "high"
    assert rec["audio"] == {"M5": "audio/M09/M09_B1_D3_M5.wav"}
    assert res.report["clips"]["M09_B1_D3"]["clip"] == "copied"
    assert fx.decode_index(read_frames(dst / rec["clip"])[-1]) == 40
    res = prepare(PrepareOptions(src, dst, speakers=["F02"], workers=2, skip_roi=True, progress=False),
                  log=lambda *a: None)
    assert res.exit_code == 0, res.report["failures"]
    recs = {r["utt_id"]: r for r in _manifest(dst)}
    assert set(recs) == set(source.ranges) | set(m09)
    for u, (b, e) in source.ranges.items():
        frames = read_frames(dst / recs[u]["clip"])
        assert (fx.decode_index(frames[0]), fx.decode_index(frames[-1]), len(frames)) == (b, e, e - b + 1)


def _tone_word(path: Path, total_s: float, pre_s: float, speech_s: float) -> None:
    n = int(round(total_s * fx.SR))
    x = 0.002 * np.random.default_rng(0).standard_normal(n)
    a = int(round(pre_s * fx.SR))
    t = np.arange(int(round(speech_s * fx.SR))) / fx.SR
    x[a:a + len(t)] += 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(str(path), x, fx.SR, subtype="PCM_16")


def test_vad_audio_is_trimmed_and_the_trim_recorded(source, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(source.root, src)
    b, e = source.ranges["F02_B1_D0"]
    total = (e - b + 1) / 30.0  # 0.8 s: 0.2 s of silence, 0.3 s of tone, 0.3 s of silence
    for m in ("M5", "M6"):
        _tone_word(src / "audio/F02" / f"F02_B1_D0_{m}.wav", total, 0.2, 0.3)
    dst = tmp_path / "out"
    res = run(src, dst, progress=False, vad=True)
    assert res.exit_code == 0, res.report["failures"]
    assert res.report["summary"]["vad"]["written"] == 8
    recs = {r["utt_id"]: r for r in _manifest(dst)}
    r = recs["F02_B1_D0"]
    assert r["vad_start_s"] == pytest.approx(0.2 - 0.15, abs=0.03)
    assert r["vad_end_s"] == pytest.approx(0.5 + 0.15, abs=0.03)
    assert r["audio_vad"] == {m: f"audio/vad/F02/F02_B1_D0_{m}.wav" for m in ("M5", "M6")}
    first = int(round(r["vad_start_s"] * 25))
    stop = int(np.ceil(r["vad_end_s"] * 25 - 1e-9))
    assert r["vad_roi_frames"] == [first, stop] and 0 < first < stop < r["roi_frames"]
    for m, rel in r["audio_vad"].items():
        got, _ = sf.read(str(dst / rel), dtype="int16")
        full, _ = sf.read(str(src / "audio/F02" / f"F02_B1_D0_{m}.wav"), dtype="int16")
        a = int(round(r["vad_start_s"] * fx.SR))
        np.testing.assert_array_equal(got, full[a:a + len(got)])
        assert len(got) == int(round((r["vad_end_s"] - r["vad_start_s"]) * fx.SR))
    # stationary noise everywhere else: nothing to trim, the whole wav is kept
    r = recs["F02_B2_LA"]
    assert (r["vad_start_s"], r["vad_end_s"]) == (0.0, pytest.approx(r["duration_s"], abs=1e-6))
    assert r["vad_roi_frames"] == [0, r["roi_frames"]]
    assert res.report["clips"]["F02_B2_LA"]["vad_speech_found"] is False
    assert run_validate(dst, log=lambda *a: None) == 0
    res = run(src, dst, progress=False, vad=True)  # resumed: nothing rewritten
    assert res.report["summary"]["vad"]["exists"] == 8


def test_corrupted_tree_fails_clearly_and_keeps_the_rest(source, tmp_path, capsys):
    """Truncated block video, truncated already-cut mp4, empty wav, bad name, missing frame index."""
    src = tmp_path / "bad"
    shutil.copytree(source.root, src)
    block = src / "video/F02/F02-B2-DV-1.divx"
    data = block.read_bytes()
    block.write_bytes(data[: len(data) * 45 // 100])  # cut inside the stream: later ranges cannot be read
    fx.write_wav(src / "audio/M09/M09_B1_D3_M5.wav", 31 / 30)
    fx.write_wav(src / "audio/M09/M09_B1_D4_M5.wav", 31 / 30)
    from uaspeech_prep.clips import ClipJob, cut_clips

    blk = fx.write_block_video(tmp_path / "m09.avi", 45, 30.0)
    out = src / "video/M09/outputfiles30"
    cut_clips(blk, [ClipJob("M09_B1_D3", 10, 40, out / "M09_B1_D3.mp4"), ClipJob("M09_B1_D4", 5, 35, out / "M09_B1_D4.mp4")])
    clip = out / "M09_B1_D4.mp4"
    clip.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # truncated mp4: no index atom
    sf.write(str(src / "audio/F02/F02_B1_LA_M6.wav"), np.zeros(0, np.float32), 16000)  # empty wav
    fx.write_wav(src / "audio/F02/F02_B1_LA_M9.wav", 0.3)  # bad name (no microphone M9)
    (src / "video/F02/F02_B1_frame_index.txt").write_text("F02_B1_D0 4 27\nF02_B1_D1 30\n")  # malformed line
    before = _digest(src)
    dst = tmp_path / "out"
    argv = ["prepare", "--source", str(src), "--output", str(dst), "--quiet", "--skip-roi"]
    assert _cli(argv) == 1
    printed = capsys.readouterr().out
    assert _digest(src) == before, "the source tree must not change"
    rep = json.loads((dst / "prepare_report.json").read_text())
    probs = {(p["kind"], Path(p["path"].split(":")[0]).name) for p in rep["problems"]}
    assert {("empty_wav", "F02_B1_LA_M6.wav"), ("bad_name", "F02_B1_LA_M9.wav"),
            ("bad_frame_index", "F02_B1_frame_index.txt")} <= probs
    bad_index = next(p for p in rep["problems"] if p["kind"] == "bad_frame_index")
    assert "F02_B1_frame_index.txt:2" in bad_index["message"]
    fails = {f["utt_id"]: " ".join(f["reasons"]) for f in rep["failures"]}
    assert "M09_B1_D4.mp4" in fails["M09_B1_D4"]  # the truncated clip, named
    assert rep["clips"]["M09_B1_D3"]["clip"] == "copied"
    # one bad frame-index line costs its own utterance, not the speaker-block
    assert "frame index line unusable" in fails["F02_B1_D1"] and "F02_B1_frame_index.txt:2" in fails["F02_B1_D1"]
    assert rep["clips"]["F02_B1_D0"]["clip"] == "cut" and "F02_B1_D0" not in fails
    d0 = read_frames(dst / "video/F02/outputfiles30/F02_B1_D0.mp4")
    assert (fx.decode_index(d0[0]), fx.decode_index(d0[-1])) == (4, 27)
    b2_fail = {u for u in fails if u.startswith("F02_B2")}
    assert b2_fail and "F02-B2-DV-1.divx" in fails[sorted(b2_fail)[-1]]
    b2_ok = {u for u in source.ranges if u.startswith("F02_B2")} - b2_fail
    assert b2_ok, "ranges before the truncation point must still be cut"
    recs = {r["utt_id"]: r for r in _manifest(dst)}
    for u in b2_ok:  # ranges before the cut are still frame-exact
        frames = read_frames(dst / recs[u]["clip"])
        assert (fx.decode_index(frames[0]), fx.decode_index(frames[-1])) == source.ranges[u]
    assert not find_temps(dst)
    for v in dst.rglob("*.mp4"):
        assert probe(v).frame_count > 0  # no half-written file under a final name
    assert "M09_B1_D4" in printed and "F02_B1_LA_M6.wav" in printed
    assert _cli(argv + ["--keep-going"]) == 0


@pytest.mark.slow
def test_killed_run_resumes_on_the_synthetic_corpus(tiny_corpus, tmp_path):
    """SIGKILL a real ``uaspeech-prep prepare`` process mid-run, rerun the same command: it finishes the
    rest without redoing finished outputs, and no half-written file ever has a final name."""
    import os
    import signal
    import subprocess
    import time

    from uaspeech_prep.video_io import is_temp_name

    dst = tmp_path / "out"
    cmd = [sys.executable, "-m", "uaspeech_prep.cli", "prepare", "--source", str(tiny_corpus), "--output", str(dst),
           "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    roi_dir = dst / "video" / "roi"
    while time.time() < deadline and proc.poll() is None:
        if roi_dir.is_dir() and sum(not is_temp_name(p.name) for p in roi_dir.rglob("*.mp4")) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (dst / "prepare_report.json").exists()

    for v in list(dst.rglob("*.mp4")):  # the kill leaves temporary files, but every final name is complete
        if not is_temp_name(v.name):
            assert probe(v).frame_count > 0, v
    # Only complete outputs count as done; temporary files of the killed run are not.
    done_before = {str(p.relative_to(dst)): p.stat().st_mtime_ns for p in roi_dir.rglob("*.mp4")
                   if not is_temp_name(p.name)}
    assert done_before

    res = prepare(PrepareOptions(tiny_corpus, dst, progress=False), log=lambda *a: None)
    assert res.exit_code == 0, res.report["failures"]
    s = res.report["summary"]
    assert s["rois"]["exists"] >= len(done_before) and s["rois"]["written"] >= 1
    assert s["rois"]["exists"] + s["rois"]["written"] == s["utterances"] == 36
    after = {str(p.relative_to(dst)): p.stat().st_mtime_ns for p in roi_dir.rglob("*.mp4")
             if not is_temp_name(p.name)}
    assert {k: after[k] for k in done_before} == done_before  # finished ROIs were not redone
    assert not find_temps(dst)
    assert run_validate(dst, log=lambda *a: None, source=tiny_corpus) == 0
