"""``prepare`` refuses or reports what it used to accept silently, loses nothing, and its workers die with it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_prep as fx  # noqa: E402

from uaspeech_prep.cli import main as cli_main  # noqa: E402
from uaspeech_prep.prepare import run  # noqa: E402
from uaspeech_prep.validate import validate_tree  # noqa: E402
from uaspeech_prep.video_io import AtomicVideoWriter, VideoError, find_temps  # noqa: E402


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> fx.Tree:
    return fx.make_tree(tmp_path_factory.mktemp("release") / "UASpeech")


def _copy(source: fx.Tree, tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(source.root, src)
    return src


def test_partial_run_refuses_an_unparsable_manifest_line_and_keeps_the_file(source, tmp_path, capsys):
    dst = tmp_path / "out"
    assert run(source.root, dst, skip_roi=True, progress=False, log=lambda *a: None).exit_code == 0
    manifest = dst / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    lines.insert(2, '{"utt_id": "M05_B1_D0", "speaker": "M05", truncated')
    manifest.write_text("\n".join(lines) + "\n")
    before = manifest.read_bytes()
    rc = cli_main(["prepare", "--source", str(source.root), "--output", str(dst), "--speakers", "F02", "--skip-roi",
                   "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "manifest.jsonl:3" in err[0] and "fix or delete the line" in err[0]
    assert manifest.read_bytes() == before  # the other speaker's (damaged) record is not dropped


def test_speakers_absent_from_the_source_are_refused(source, tmp_path, capsys):
    dst = tmp_path / "out"
    rc = cli_main(["prepare", "--source", str(source.root), "--output", str(dst), "--speakers", "M05", "--skip-roi",
                   "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--speakers M05" in err and "F02" in err  # says which speakers the source has
    assert not dst.exists()


def test_wav_that_is_not_16k_mono_or_empty_is_named(source, tmp_path):
    src = _copy(source, tmp_path)
    sf.write(src / "audio/F02/F02_B1_D0_M5.wav", np.zeros((8000, 2), np.float32), 16000)  # stereo
    sf.write(src / "audio/F02/F02_B1_D1_M5.wav", np.zeros(44100, np.float32), 44100)  # 44.1 kHz
    (src / "audio/F02/F02_B1_D2_M5.wav").write_bytes(b"")  # 0 bytes
    res = run(src, tmp_path / "out", skip_roi=True, progress=False, log=lambda *a: None)
    probs = {(p["kind"], Path(p["path"]).name): p["message"] for p in res.report["problems"]}
    assert "2 channel(s)" in probs[("not_16k_mono", "F02_B1_D0_M5.wav")]
    assert "44100 Hz" in probs[("not_16k_mono", "F02_B1_D1_M5.wav")]
    assert ("empty_wav", "F02_B1_D2_M5.wav") in probs  # docs/UASpeech.md's name, not unreadable_wav
    assert res.exit_code == 1
    copied = {p.name for p in (tmp_path / "out" / "audio" / "F02").glob("*.wav")}
    assert not copied & {"F02_B1_D0_M5.wav", "F02_B1_D1_M5.wav", "F02_B1_D2_M5.wav"}


def test_validate_flags_audio_that_is_not_16k_mono(source, tmp_path):
    dst = tmp_path / "out"
    run(source.root, dst, skip_roi=True, progress=False, log=lambda *a: None)
    sf.write(dst / "audio/F02/F02_B2_D0_M5.wav", np.zeros(48000, np.float32), 48000)
    kinds = {(f.utt_id, f.kind) for f in validate_tree(dst).findings}
    assert ("F02_B2_D0", "not_16k_mono") in kinds


def test_validate_only_with_source_reads_the_microphone_choice_from_the_report(source, tmp_path):
    dst = tmp_path / "out"
    assert run(source.root, dst, mics=["M5"], skip_roi=True, progress=False, log=lambda *a: None).exit_code == 0
    # the source also has M6 for every utterance, and M6-only utterances would be "missing" without --mics
    src = _copy(source, tmp_path)
    fx.write_wav(src / "audio/F02/F02_B1_LB_M6.wav", 0.5)
    rep = validate_tree(dst, source=src)
    assert rep.ok, [str(f) for f in rep.findings]
    assert not validate_tree(dst, source=src, mics=["M6"]).ok  # an explicit choice still wins


def test_missing_word_list_is_said(source, tmp_path):
    said = []
    run(source.root, tmp_path / "out", skip_roi=True, progress=False, log=said.append)
    assert any("built-in UASpeech word list" in s for s in said)


def test_truncated_video_never_gets_its_final_name(tmp_path):
    """OpenCV does not report a full disk; what landed is read back before the rename."""
    path = tmp_path / "clip.mp4"
    w = AtomicVideoWriter(path, 25.0, (96, 96))
    for i in range(20):
        w.write(np.full((96, 96, 3), i * 10, np.uint8))
    w._writer.release()
    data = w.tmp.read_bytes()
    w.tmp.write_bytes(data[: len(data) // 2])  # what a full disk leaves
    with pytest.raises(VideoError, match="disk full"):
        w.commit()
    assert not path.exists() and not find_temps(tmp_path)


def test_prepare_checks_the_output_is_writable_first(source, tmp_path, monkeypatch, capsys):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    rc = cli_main(["prepare", "--source", str(source.root), "--output", str(tmp_path / "out"), "--skip-roi",
                   "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "No space left" in err[0] and str(tmp_path / "out") in err[0]
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_workers_die_with_the_parent(tiny_corpus, tmp_path, sig):
    """kill -9 / SIGTERM / Ctrl-C of ``prepare --workers 2``: no worker survives it; Ctrl-C is one line, exit 130."""
    dst = tmp_path / "out"
    # The job starts with Ctrl-C as a terminal gives it: default and unblocked. Signal dispositions are inherited,
    # and a pytest started in the background (`pytest &` in a script) ignores SIGINT: a job started from it kept
    # ignoring it, finished and exited 0 (the failure once seen only in full-suite runs started that way).
    terminal = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
                "from uaspeech_prep.cli import main; sys.exit(main(sys.argv[1:]))")
    cmd = [sys.executable, "-c", terminal, "prepare", "--source", str(tiny_corpus), "--output", str(dst),
           "--quiet", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 180
    workers: set[int] = set()
    # both pool workers started (the resource tracker, also a child, does not count): the job then has ~10 s
    # of blocks left, so the signal lands mid-block and not after the job has finished
    while time.time() < deadline and proc.poll() is None and len(workers) < 2:
        workers = _children(proc.pid, "multiprocessing.spawn")
        time.sleep(0.2)
    assert len(workers) >= 2, "the pool did not start"
    children = _children(proc.pid)  # the workers and the resource tracker: none may outlive the parent
    time.sleep(1.0)  # workers busy inside a block
    # checked right before the signal (no `ps` call in between): a job that ended first exits 0 whatever it is sent
    assert proc.poll() is None, "prepare finished before the signal: the test needs a longer job"
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # a terminal's Ctrl-C reaches the whole process group
    else:
        os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(c) for c in children):
        time.sleep(0.2)
    assert not [c for c in children if _alive(c)], "a worker outlived its parent"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err, (proc.returncode, err)


def _children(pid: int, command_contains: str = "") -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    rows = [line.strip().split(maxsplit=1) for line in out.splitlines() if line.strip()]
    return {int(r[0]) for r in rows if command_contains in (r[1] if len(r) > 1 else "")}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_one_bad_frame_index_line_costs_only_its_utterance(tmp_path):
    from uaspeech_prep.clips import FrameIndexError, parse_frame_index, read_frame_index

    p = tmp_path / "F02_B1_frame_index.txt"
    p.write_text("F02_B1_D0 4 27\nF02_B1_D1 30\nF02_B1_D2 58 84\nF02_B1_D2 60 90\nF02_B1_LA 95 120\n")
    good, bad = read_frame_index(p)
    assert [(r.utt_id, r.begin, r.end) for r in good] == [("F02_B1_D0", 4, 27), ("F02_B1_LA", 95, 120)]
    assert [(b.line, b.utt_id) for b in bad] == [(2, "F02_B1_D1"), (4, "F02_B1_D2")]
    assert f"{p}:2:" in bad[0].message and "listed on line 3" in bad[1].message
    with pytest.raises(FrameIndexError, match=":2:"):
        parse_frame_index(p)
    json.dumps([b.message for b in bad])  # plain strings, for the report
