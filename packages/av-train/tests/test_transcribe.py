"""av-cli transcribe: a face video with sound, audio files, mouth crops and lists; per-file failures by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from av_fusion_models import recognize
from av_train.export import export_hf
from av_train.inference.media import read_audio, read_frames, write_video_with_audio
from av_train.inference.transcribe import load_model
from av_train.inference.transcribe_command import main as transcribe_main
from uaspeech_prep.synth.face import Face
from uaspeech_prep.synth.visemes import VISEMES
from uaspeech_prep.video_io import write_video


WORDS = ["zero", "one", "two", "three"]


def tone(seconds: float, hz: float = 300.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A talking face with sound, a video without a face, a silent face video, a wav, a long wav, junk."""
    d = tmp_path_factory.mktemp("media")
    face = Face()
    rng = np.random.default_rng(0)
    shapes = [VISEMES[n].as_array() for n in ("rest", "open", "open", "close_round", "rest")]
    frames = [face.render(shapes[(i // 6) % len(shapes)], rng=rng) for i in range(30)]  # 1 s at 30 fps, RGB
    write_video_with_audio(d / "face.mp4", frames, 30.0, tone(1.0), 16000)
    blank = [np.full((200, 200, 3), 90, np.uint8) for _ in range(30)]
    write_video_with_audio(d / "noface.mp4", blank, 30.0, tone(1.0, 400), 16000)
    write_video(d / "silent_face.mp4", [f[..., ::-1] for f in frames], 30.0)  # (BGR for OpenCV)
    sf.write(d / "word.wav", np.stack([tone(0.8, 250), tone(0.8, 250)], axis=1), 22050)  # stereo, 22.05 kHz
    sf.write(d / "long.wav", tone(31.0), 16000)
    (d / "junk.mp4").write_bytes(b"this is not a video")
    return d


@pytest.fixture(scope="module")
def models(make_run, prepared_tree, tiny_whisper_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    words = out / "words.txt"
    words.write_text("\n".join(WORDS) + "\n")
    made = {}
    for modality in ("audio", "audio_visual", "video"):
        cfg = make_run(prepared_tree, tiny_whisper_dir, out, seed=3, train_id=modality, modality=modality,
                       resnet_width=4, decode_vocabulary=str(words), **({} if modality == "audio" else {"gate_init": 0.5}))
        made[modality] = export_hf(cfg.checkpoint_dir, out / f"export_{modality}").path
        made[modality + "_run"] = cfg.checkpoint_dir
    return made


def run_cli(args, capsys):
    rc = transcribe_main([*map(str, args), "--no-progress"])
    cap = capsys.readouterr()
    lines = [json.loads(x) for x in cap.out.splitlines() if x.strip()]
    return rc, lines, cap.err


def test_face_video_with_sound_equals_the_library_call(models, media, capsys):
    rc, [row], err = run_cli([models["audio_visual"], media / "face.mp4", "--top-k", "3"], capsys)
    assert rc == 0, err
    assert row["error"] is None and row["used"] == "audio+video" and row["text"] in WORDS
    assert len(row["top_k"]) == 3 and row["top_k"][0][1] >= row["top_k"][2][1]
    # the same through the library: PyAV audio track + uaspeech-prep's ROI of the face
    from uaspeech_prep.roi import RoiParams, extract_roi, shared_tracker

    model, proc = load_model(models["audio_visual"], "cpu")
    frames, fps = read_frames(media / "face.mp4")
    roi = extract_roi(frames, fps, shared_tracker(), RoiParams(out_fps=25.0))
    assert len(roi.frames) == 25
    audio = read_audio(media / "face.mp4")
    [r] = recognize(model, proc, audio=audio.samples, video=np.stack(roi.frames), sampling_rate=audio.rate, top_k=3)
    assert r.text == row["text"]
    assert [w for w, _ in r.top_k] == [w for w, _ in row["top_k"]]


def test_every_modality_and_input_kind(models, media, tmp_path, capsys):
    # audio-only model: the audio track of a video, and a stereo 22.05 kHz wav
    rc, rows, _ = run_cli([models["audio"], media / "face.mp4", media / "word.wav"], capsys)
    assert rc == 0 and [r["used"] for r in rows] == ["audio", "audio"] and all(r["text"] in WORDS for r in rows)
    # lip reader: a video without sound is enough; the run folder works as MODEL too
    rc, rows, _ = run_cli([models["video_run"], media / "silent_face.mp4"], capsys)
    assert rc == 0 and rows[0]["used"] == "video" and rows[0]["text"] in WORDS
    # a pair list: audio + mouth crops already cut (--roi-input)
    from uaspeech_prep.roi import RoiParams, extract_roi, shared_tracker

    frames, fps = read_frames(media / "face.mp4")
    roi = extract_roi(frames, fps, shared_tracker(), RoiParams(out_fps=25.0))
    write_video(tmp_path / "mouth.mp4", roi.frames, 25.0)
    (tmp_path / "pairs.tsv").write_text(f"id\taudio\tvideo\npair1\t{media / 'word.wav'}\tmouth.mp4\n")
    rc, [row], _ = run_cli([models["audio_visual"], tmp_path / "pairs.tsv", "--roi-input"], capsys)
    assert rc == 0 and row["input"] == "pair1" and row["used"] == "audio+video"
    assert row["video"] == str(tmp_path / "mouth.mp4")
    # --roi-input on a whole face is refused (it used to be squeezed to 96 x 96 and change the word) ...
    rc, [row], _ = run_cli([models["audio_visual"], media / "face.mp4", "--roi-input"], capsys)
    assert rc == 1 and "--roi-input expects mouth crops" in row["error"] and "drop --roi-input" in row["error"]
    # ... and mouth crops without it get the flag suggested
    (tmp_path / "crops.tsv").write_text(f"id\taudio\tvideo\ncrops\t{media / 'word.wav'}\tmouth.mp4\n")
    rc, [row], _ = run_cli([models["audio_visual"], tmp_path / "crops.tsv"], capsys)
    assert rc == 1 and "look like mouth crops already" in row["error"] and "--roi-input" in row["error"]


def test_failures_are_named_and_the_rest_goes_on(models, media, tmp_path, capsys):
    out = tmp_path / "results.csv"
    files = [media / "noface.mp4", media / "junk.mp4", media / "word.wav", tmp_path / "missing.mp4",
             media / "face.mp4"]
    rc = transcribe_main([str(models["audio_visual"]), *map(str, files), "--output", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    lines = [x for x in err.splitlines() if x.startswith("av-cli transcribe:")]
    assert len(lines) == 4  # one line per failed file, each naming it
    assert "noface.mp4: no face found" in err and "--allow-audio-only" in err
    assert "junk.mp4: not a readable media file" in err and "missing.mp4: no such file" in err
    assert "word.wav: this model reads the lips, but the input has no video" in err
    import csv

    rows = list(csv.DictReader(out.open()))
    assert [r["error"] == "" for r in rows] == [False, False, False, False, True]
    assert rows[-1]["text"] in WORDS and rows[-1]["used"] == "audio+video"
    assert not list(tmp_path.glob(".results*"))  # written atomically
    # --allow-audio-only: the face-less video is recognised from its sound
    rc, [row], _ = run_cli([models["audio_visual"], media / "noface.mp4", "--allow-audio-only"], capsys)
    assert rc == 0 and row["used"] == "audio" and row["text"] in WORDS
    # too long for Whisper
    rc, [row], _ = run_cli([models["audio"], media / "long.wav"], capsys)
    assert rc == 1 and "long.wav" in row["error"] and "at most 30 s" in row["error"]
    # a lip reader cannot fall back
    rc, [row], _ = run_cli([models["video"], media / "word.wav"], capsys)
    assert rc == 1 and "has no video" in row["error"]
    # samples that are not numbers: refused per file, and the JSON line stays JSON (no NaN scores, no word)
    bad = np.zeros(8000, np.float32)
    bad[100:110] = np.nan
    bad[200] = np.inf
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    rc, [row], _ = run_cli([models["audio"], tmp_path / "nan.wav"], capsys)
    assert rc == 1 and "11 of 8000 audio samples are NaN or infinite" in row["error"] and not row["text"]
    # a folder where a file belongs says so
    rc, [row], _ = run_cli([models["audio"], tmp_path], capsys)
    assert rc == 1 and "is a folder, not a media file" in row["error"]


def test_command_errors_are_one_line(models, media, tmp_path, capsys):
    rc, _, err = run_cli([tmp_path / "no_model", media / "word.wav"], capsys)
    assert rc == 2 and "no such model" in err and err.count("\n") == 1
    rc, _, err = run_cli([models["audio"], media / "word.wav", "--output", tmp_path / "x.txt"], capsys)
    assert rc == 2 and ".jsonl or .csv" in err
    rc, _, err = run_cli([models["audio"], media / "word.wav", "--vocabulary", tmp_path / "nope.txt"], capsys)
    assert rc == 2 and "no such file" in err
    (tmp_path / "bad.csv").write_text("path\nword.wav\n")
    rc, _, err = run_cli([models["audio"], tmp_path / "bad.csv"], capsys)
    assert rc == 2 and "'audio' and/or a 'video' column" in err
    rc, [row], _ = run_cli([models["audio"], media / "word.wav", "--vocabulary", "open"], capsys)
    assert rc == 0 and row["top_k"] == []  # open decoding: no closed-vocabulary ranking


def _talking_mouth(frames: int = 50, rate: int = 16000, seed: int = 7):
    """(sound, mouth crops [T, 96, 96] at 25 fps): noise whose loudness follows a few syllable-like bumps, and a
    dark mouth opening as tall as that loudness (the pair uaspeech-prep's own sync tests use)."""
    import cv2

    rng = np.random.default_rng(seed)
    t = np.arange(frames, dtype=float)
    env = np.zeros(frames)
    for c in np.sort(rng.uniform(6, frames - 6, size=4)):
        env += rng.uniform(0.4, 1.0) * np.exp(-0.5 * ((t - c) / rng.uniform(1.2, 2.5)) ** 2)
    env = np.clip(env, 0, 1)
    n = int(round(frames / 25.0 * rate))
    amp = np.interp(np.arange(n) / rate * 25.0, t, env)
    sound = ((0.01 + 0.5 * amp) * np.random.default_rng(1000).standard_normal(n)).astype(np.float32)
    crops = np.full((frames, 96, 96), 190, np.uint8)
    for f, e in zip(crops, env):
        cv2.ellipse(f, (48, 62), (24, 9 + int(round(10 * e))), 0, 0, 360, 120, -1)
        cv2.ellipse(f, (48, 62), (18, 1 + int(round(10 * e))), 0, 0, 360, 30, -1)
    return sound, crops


def test_sync_auto_finds_and_undoes_a_late_picture(models, tmp_path, capsys):
    """--sync auto: a picture 200 ms late (video_faults' late-200ms) is found, re-timed before recognition, and
    reported; off (the default) and audio-only models report null; the CSV has the columns too."""
    from av_fusion_models.video_faults import offset_index, parse_video_condition
    from av_train.inference.transcribe import Item, MouthFinder, transcribe
    from uaspeech_prep.av_sync import estimate_offset, shift_frames

    sound, crops = _talking_mouth()
    late = crops[offset_index(len(crops), int(parse_video_condition("late-200ms").value)).numpy()]
    sf.write(tmp_path / "word.wav", sound, 16000)
    write_video(tmp_path / "mouth.mp4", list(late), 25.0)
    (tmp_path / "pair.csv").write_text("id,audio,video\nlate,word.wav,mouth.mp4\n")

    rc, [row], err = run_cli([models["audio_visual"], tmp_path / "pair.csv", "--roi-input", "--sync", "auto"], capsys)
    assert rc == 0, err
    assert row["sync_offset_ms"] == 200.0 and row["sync_corrected"] is True and row["sync_confidence"] > 0.7
    assert row["used"] == "audio+video" and row["text"] in WORDS
    rc, [row], _ = run_cli([models["audio_visual"], tmp_path / "pair.csv", "--roi-input"], capsys)
    assert rc == 0 and row["sync_offset_ms"] is None and row["sync_confidence"] is None
    assert row["sync_corrected"] is None
    rc, [row], _ = run_cli([models["audio"], tmp_path / "word.wav", "--sync", "auto"], capsys)
    assert rc == 0 and row["sync_offset_ms"] is None  # nothing to sync without lips

    # the model saw the re-timed crops: what the finder read, shifted back by the 5 frames found
    model, proc = load_model(models["audio_visual"], "cpu")
    finder = MouthFinder(roi_input=True)
    read = finder(tmp_path / "mouth.mp4", proc.video_fps)
    [out] = transcribe(model, proc, [Item("late", tmp_path / "word.wav", tmp_path / "mouth.mp4")], progress=False,
                       mouths=finder, sync="auto")
    assert np.array_equal(finder.last, shift_frames(read, 5)) and out.sync_corrected
    assert estimate_offset(sound, 16000, finder.last).offset_frames == 0

    csv_out = tmp_path / "out.csv"
    rc = transcribe_main([str(models["audio_visual"]), str(tmp_path / "pair.csv"), "--roi-input", "--sync", "auto",
                          "--output", str(csv_out), "--no-progress"])
    import csv

    [crow] = list(csv.DictReader(csv_out.open()))
    assert rc == 0 and crow["sync_offset_ms"] == "200.0" and crow["sync_corrected"] == "True"
    assert list(crow)[:11] == ["input", "audio", "video", "text", "top_k", "route_probs", "used", "seconds", "error",
                               "sync_offset_ms", "sync_confidence"]  # the older columns first, unchanged


def test_video_reliability_is_reported_for_models_that_score_it(make_run, prepared_tree, tiny_whisper_dir, models,
                                                                 media, tmp_path, capsys):
    """A model with a reliability scorer reports how far it trusted the lips, equal to the library's value; other
    models and inputs without lips report null."""
    cfg = make_run(prepared_tree, tiny_whisper_dir, tmp_path, seed=3, train_id="trust", modality="audio_visual",
                   resnet_width=4, gate_init=0.5, video_reliability=True)
    folder = export_hf(cfg.checkpoint_dir, tmp_path / "export_trust").path
    capsys.readouterr()  # the export's own log lines
    rc, [row], err = run_cli([folder, media / "face.mp4"], capsys)
    assert rc == 0, err
    assert 0.0 <= row["video_reliability"] <= 1.0
    from uaspeech_prep.roi import RoiParams, extract_roi, shared_tracker

    model, proc = load_model(folder, "cpu")
    frames, fps = read_frames(media / "face.mp4")
    roi = extract_roi(frames, fps, shared_tracker(), RoiParams(out_fps=25.0))
    audio = read_audio(media / "face.mp4")
    [r] = recognize(model, proc, audio=audio.samples, video=np.stack(roi.frames), sampling_rate=audio.rate)
    assert r.video_reliability == pytest.approx(row["video_reliability"], abs=1e-4)
    rc, rows, _ = run_cli([models["audio_visual"], media / "face.mp4"], capsys)
    assert rows[0]["video_reliability"] is None  # no scorer
    rc, rows, _ = run_cli([folder, media / "word.wav", "--allow-audio-only"], capsys)
    assert rows[0]["used"] == "audio" and rows[0]["video_reliability"] is None  # no lips to trust


def test_output_is_always_json_numbers_that_are_not_become_null():
    from av_train.inference.transcribe import _json_safe

    row = {"text": "one", "top_k": [["one", float("nan")], ["two", -1.5]], "seconds": float("inf"),
           "video_reliability": 0.5}
    safe = _json_safe(row)
    assert safe == {"text": "one", "top_k": [["one", None], ["two", -1.5]], "seconds": None, "video_reliability": 0.5}
    json.dumps(safe, allow_nan=False)  # would raise on a NaN left behind


def test_an_empty_row_of_a_list_is_its_own_error_with_the_files_line_number(models, media, tmp_path, capsys):
    """(issue: hardening round two, class 6) blank lines count in the line numbers; an empty row does not stop the
    rows after it"""
    (tmp_path / "l.csv").write_text(f"id,audio,video\n\nfirst,{media / 'word.wav'},\nempty,,\n"
                                    f"last,{media / 'word.wav'},\n")
    rc, rows, err = run_cli([models["audio"], tmp_path / "l.csv"], capsys)
    assert rc == 1 and [r["input"] for r in rows] == ["first", "empty", "last"]
    assert rows[0]["text"] in WORDS and rows[2]["text"] in WORDS
    assert f"{tmp_path / 'l.csv'}:4: both audio and video are empty" in rows[1]["error"]


def test_ctrl_c_keeps_the_rows_that_finished(models, media, tmp_path, capsys, monkeypatch):
    """(issue: hardening round two, class 6) the message said finished outputs are kept; now they are"""
    import av_train.inference.transcribe as tr

    real, calls = tr.load_inputs, []

    def interrupted_at_the_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tr, "load_inputs", interrupted_at_the_third)
    out = tmp_path / "r.jsonl"
    rc = transcribe_main([str(models["audio"]), str(media / "word.wav"), str(tmp_path / "missing.wav"),
                          str(media / "word.wav"), "--output", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 130 and not out.exists()
    partial = tmp_path / "r.partial.jsonl"
    rows = [json.loads(x) for x in partial.read_text().splitlines()]
    assert [r["text"] in WORDS for r in rows] == [True, False] and "missing.wav" in rows[1]["error"]
    assert f"the 2 of 3 inputs that finished are in {partial}" in err
