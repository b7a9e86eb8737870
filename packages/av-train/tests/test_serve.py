"""av-cli serve: the page gives transcribe's word (gradio_client and a real headless Chromium), bad uploads are
sentences in the page, babble at an SNR, browser recordings re-timed, SIGINT / SIGTERM leave nothing behind."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from av_train.export import export_hf
from av_train.inference.media import MediaError, face_video_with_sound, read_audio, read_frames
from av_train.inference.transcribe_command import main as transcribe_main
from av_train.serve import pictures
from av_train.serve.babble import BabbleSource
from av_train.serve.uploads import check_upload, constant_rate_copy
from uaspeech_prep.synth.face import Face
from uaspeech_prep.synth.visemes import VISEMES
from uaspeech_prep.video_io import write_video

WORDS = ["zero", "one", "two", "three"]
READY = re.compile(r"serving on (http://\S+)\s+\(uploads in (\S+),")


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def clips(prepared_tree, tmp_path_factory):
    """A face video with sound (a rendered talking face + the tree's recording of "two", through
    media.face_video_with_sound, as the demo makes its B2 recordings), a face-less video, a 31 s wav, junk."""
    d = tmp_path_factory.mktemp("clips")
    face, rng = Face(), np.random.default_rng(0)
    shapes = [VISEMES[n].as_array() for n in ("rest", "open", "open", "close_round", "rest")]
    frames = [face.render(shapes[(i // 5) % len(shapes)], rng=rng)[..., ::-1] for i in range(25)]  # BGR
    write_video(d / "face_silent.mp4", frames, 25.0)
    wav = prepared_tree / "audio" / "F05" / "F05_B2_D2_M5.wav"
    face_video_with_sound(d / "face_silent.mp4", wav, d / "face.mp4")
    blank = [np.full((200, 200, 3), 90, np.uint8) for _ in range(25)]
    write_video(d / "noface_silent.mp4", blank, 25.0)
    face_video_with_sound(d / "noface_silent.mp4", wav, d / "noface.mp4")
    sf.write(d / "long.wav", np.zeros(31 * 16000, np.float32), 16000)
    (d / "junk.mp4").write_bytes(b"this is not a video")
    return d


@pytest.fixture(scope="module")
def models(make_run, prepared_tree, tiny_whisper_dir, tmp_path_factory):
    """An audio-only and an audio-visual router model, exported with a closed vocabulary of four words."""
    out = tmp_path_factory.mktemp("serve_models")
    (out / "words.txt").write_text("\n".join(WORDS) + "\n")
    common = dict(resnet_width=4, decode_vocabulary=str(out / "words.txt"))
    audio = make_run(prepared_tree, tiny_whisper_dir, out, seed=3, train_id="audio", modality="audio", **common)
    av = make_run(prepared_tree, tiny_whisper_dir, out, seed=4, train_id="av", modality="audio_visual", gate_init=0.5,
                  soft_fusion_routing=True, routing_hidden_dim=16, **common)
    return {"audio": export_hf(audio.checkpoint_dir, out / "audio_model").path,
            "av": export_hf(av.checkpoint_dir, out / "av_model").path}


def transcribed(model, clip, capsys) -> dict:
    assert transcribe_main([str(model), str(clip), "--no-progress"]) in (0, 1)
    [row] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    return row


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``av-cli serve`` in a subprocess with its own TMPDIR; ``url`` and ``workspace`` once it serves."""

    def __init__(self, models: list, tmp: Path, timeout: float = 240.0):
        self.tmpdir = tmp / "tmp"
        self.tmpdir.mkdir(parents=True)
        self.log = tmp / "serve.log"
        env = {**os.environ, "TMPDIR": str(self.tmpdir), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "av_cli.main", "serve", *map(str, models), "--port", str(free_port()),
               "--device", "cpu"]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=tmp)
        deadline = time.monotonic() + timeout
        while not (m := READY.search(self.log.read_text())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"the server did not start:\n{self.log.read_text()}")
            time.sleep(0.5)
        self.url, self.workspace = m.group(1), Path(m.group(2))

    def stop(self, sig: int, timeout: float = 60.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the server did not stop on {signal.Signals(sig).name}:\n{self.log.read_text()}")


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    s = Server([models["audio"], models["av"]], tmp_path_factory.mktemp("server"))
    yield s
    if s.proc.poll() is None:
        s.proc.kill()


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(Path(os.environ.get("TMPDIR", "/tmp"))))


def recognise(c, video=None, audio=None, model="av_model", sound_alone=False):
    from gradio_client import handle_file

    word, message, *rest = c.predict(handle_file(str(video)) if video else None,
                                     handle_file(str(audio)) if audio else None, model, sound_alone, None,
                                     api_name="/recognise")
    return (word, html.unescape(message), *rest)


# ------------------------------------------------------------------------------------------ fast
def test_babble_at_the_snr_the_same_for_both_models(tmp_path, prepared_tree):
    wav = prepared_tree / "audio" / "F05" / "F05_B2_D2_M5.wav"  # 16 kHz: mixed as it is
    speech = read_audio(wav).samples
    for source in (BabbleSource(), BabbleSource(prepared_tree / "audio", talkers=4)):  # itself backwards; talkers
        a = sf.read(source.mix(wav, 5.0, tmp_path / "a.wav"))[0]
        b = sf.read(source.mix(wav, 5.0, tmp_path / "b.wav"))[0]
        assert np.array_equal(a, b) and a.size == speech.size  # both models hear the same
        assert np.abs(a).max() <= 1.0
        noise = a - speech
        assert 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise ** 2)) == pytest.approx(5.0, abs=0.05)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        BabbleSource(tmp_path / "nowhere")


def test_upload_checks_and_browser_recordings(clips, tmp_path):
    assert 0.9 < check_upload(clips / "face.mp4") < 1.2
    with pytest.raises(MediaError, match="not a readable media file"):
        check_upload(clips / "junk.mp4")
    with pytest.raises(MediaError, match="at most 30 s"):
        check_upload(clips / "long.wav")
    # a MediaRecorder-like WebM: millisecond time base, uneven frame times, Opus sound
    import fractions

    import av

    rec = tmp_path / "rec.webm"
    with av.open(str(rec), "w") as out:
        vs = out.add_stream("libvpx", rate=1000)
        vs.width, vs.height, vs.pix_fmt, vs.time_base = 160, 120, "yuv420p", fractions.Fraction(1, 1000)
        aus = out.add_stream("libopus", rate=48000)
        aus.layout = "mono"
        t = 0
        for i in range(30):  # 30 frames over ~1.1 s
            f = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 8 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = t, fractions.Fraction(1, 1000)
            t += 33 if i % 3 else 45
            for pk in vs.encode(f):
                out.mux(pk)
        for pk in vs.encode(None):
            out.mux(pk)
        tone = (0.2 * np.sin(np.arange(48000) / 8)).astype(np.float32).reshape(1, -1)
        for s in range(0, tone.shape[1], 960):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, s:s + 960]), format="flt", layout="mono")
            af.sample_rate, af.pts = 48000, s
            for pk in aus.encode(af):
                out.mux(pk)
        for pk in aus.encode(None):
            out.mux(pk)
    assert read_frames(rec)[1] == 1000.0  # what OpenCV makes of it
    fixed = constant_rate_copy(rec, tmp_path / "rec.mp4")
    frames, fps = read_frames(fixed)
    assert fps == 30.0 and 30 <= len(frames) <= 36
    assert abs(read_audio(fixed).seconds - 1.0) < 0.1


def test_pictures():
    crops = np.arange(20 * 96 * 96, dtype=np.uint8).reshape(20, 96, 96)
    strip = pictures.mouth_strip(crops, tiles=12, per_row=6)
    assert strip.shape == (2 * 96 + pictures.GAP, 6 * 96 + 5 * pictures.GAP, 3) and strip.dtype == np.uint8
    assert np.array_equal(strip[:96, :96, 0], crops[0]) and pictures.mouth_strip(None) is None
    assert pictures.word_probabilities([("two", -0.5), ("one", -2.0)]) == pytest.approx({"two": np.exp(-0.5),
                                                                                          "one": np.exp(-2.0)})
    assert pictures.word_probabilities([]) is None
    assert pictures.route_probabilities({"encoder_only": 0.2, "decoder_only": 0.3, "both": 0.5}) == {
        "encoder": 0.2, "decoder": 0.3, "both": 0.5}


def test_sync_is_shown_next_to_the_word():
    from av_train.serve.app import details_line
    from av_train.serve.cli import build_parser
    from av_train.serve.recognizer import Result

    r = Result("demo_av", "two", used="audio+video", seconds=0.5, sync_offset_ms=120.0, sync_confidence=0.83,
               sync_corrected=True)
    assert "sync: picture 120 ms late (confidence 0.83; re-timed)" in details_line(r, 1.0)
    r.sync_offset_ms, r.sync_corrected = -40.0, False
    assert "picture 40 ms early (confidence 0.83; left as it was)" in details_line(r, 1.0)
    assert "sync" not in details_line(Result("demo_av", "two", used="audio+video"), 1.0)  # --sync off
    assert build_parser().parse_args(["m", "--sync", "auto"]).sync == "auto"
    assert build_parser().parse_args(["m"]).sync == "off"


# ------------------------------------------------------------------------------------------ server
@pytest.mark.slow
def test_page_gives_transcribes_word(server, models, clips, capsys):
    expected = transcribed(models["av"], clips / "face.mp4", capsys)
    assert expected["error"] is None and expected["text"] in WORDS
    c = client(server.url)
    word, message, top5, mouths, routes, details = recognise(c, clips / "face.mp4")
    assert message == "" and word == expected["text"]
    assert [x["label"] for x in top5["confidences"]] == [w for w, _ in expected["top_k"]]
    assert top5["confidences"][0]["confidence"] == pytest.approx(np.exp(expected["top_k"][0][1]), rel=1e-3)
    assert set(x["label"] for x in routes["confidences"]) == {"encoder", "decoder", "both"}
    strip = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(mouths))
    assert strip.shape[0] == 2 * 96 + pictures.GAP  # 25 crops -> 12 tiles in two rows
    assert "audio+video" in details
    # the audio-only model of the pair, on the same clip
    expected_audio = transcribed(models["audio"], clips / "face.mp4", capsys)
    word, message, top5, mouths, routes, _ = recognise(c, clips / "face.mp4", model="audio_model")
    assert word == expected_audio["text"] and message == "" and mouths is None and not routes


@pytest.mark.slow
def test_bad_uploads_are_sentences_in_the_page(server, clips, capsys):
    c = client(server.url)
    for kwargs, says in [({"video": clips / "junk.mp4"}, "not a readable media file"),
                         ({"video": clips / "noface.mp4"}, "no face found"),
                         ({"audio": clips / "long.wav"}, "at most 30 s"),
                         ({"audio": clips / "long.wav", "model": "audio_model"}, "at most 30 s"),
                         ({}, "nothing uploaded")]:
        word, message, *_ = recognise(c, **kwargs)
        assert word == "" and says in message and "could not be used" in message, (kwargs, message)
        assert str(server.workspace) not in message  # the file's name, not the server's folder
    word, message, *_ = recognise(c, video=clips / "noface.mp4")
    assert "tick 'sound alone if no face'" in message  # the page's words, not the command line's
    word, message, *_ = recognise(c, video=clips / "face.mp4")  # and the server goes on serving
    assert word in WORDS and message == ""


@pytest.mark.slow
def test_sound_alone_when_no_face_router(server, clips):
    c = client(server.url)
    alone = recognise(c, video=clips / "noface.mp4", sound_alone=True)
    word, message, *_ = recognise(c, video=clips / "face.mp4")
    assert word in WORDS and message == ""  # the server went on serving
    assert alone[0] in WORDS and alone[1] == "", alone[1]


@pytest.mark.slow
def test_compare_tab_with_babble(server, clips, capsys):
    from gradio_client import handle_file

    c = client(server.url)
    clean = c.predict(handle_file(str(clips / "face.mp4")), None, False, 0, False, None,
                      api_name="/compare")
    heard, a_word, a_msg, a_top, av_word, av_msg, av_top, av_mouths, av_routes, details = clean
    assert heard is None and a_msg == av_msg == "" and a_word in WORDS and av_word in WORDS
    assert av_word == recognise(c, clips / "face.mp4")[0]
    noisy = c.predict(handle_file(str(clips / "face.mp4")), None, True, -5, False, None,
                      api_name="/compare")
    samples, rate = sf.read(noisy[0])
    assert rate == 16000 and abs(samples.size / rate - read_audio(clips / "face.mp4").seconds) < 0.05
    assert noisy[1] in WORDS and noisy[4] in WORDS and "s in all" in noisy[-1]


@pytest.mark.slow
def test_sigterm_closes_the_server_and_removes_the_uploads(server, clips):
    recognise(client(server.url), clips / "face.mp4")
    assert any(server.workspace.rglob("*.mp4"))  # the upload is in the server's folder while it serves
    assert server.stop(signal.SIGTERM) == 143
    assert not server.workspace.exists() and not list(server.tmpdir.glob("av-serve-*"))
    assert "SIGTERM: closing the server" in server.log.read_text()


@pytest.mark.slow
def test_sigint_one_model_no_compare_tab(models, clips, tmp_path):
    s = Server([models["av"]], tmp_path)
    try:
        c = client(s.url)
        assert {"/recognise"} <= set(c.view_api(print_info=False, return_format="dict")["named_endpoints"])
        assert "/compare" not in c.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert recognise(c, clips / "face.mp4")[0] in WORDS
    finally:
        rc = s.stop(signal.SIGINT)
    assert rc == 0 and not s.workspace.exists() and not list(s.tmpdir.glob("av-serve-*"))
    assert not list(tmp_path.glob(".gradio*")) and not list(tmp_path.glob("flagged"))  # nothing left in its cwd


@pytest.mark.slow
def test_headless_chromium_reads_the_word(models, clips, tmp_path, capsys):
    """A real browser: load the page, upload the clip, press Recognise, read the word; nothing from outside."""
    from av_train.serve.browser import browser_available, recognise_in_page

    if not browser_available():
        if os.environ.get("CI"):
            pytest.fail("chromium / chromium-driver missing in CI: .ci/run installs them (apt-get)")
        pytest.skip("apt-get install chromium chromium-driver to run the browser test")
    expected = transcribed(models["av"], clips / "face.mp4", capsys)["text"]
    s = Server([models["audio"], models["av"]], tmp_path)
    try:
        run = recognise_in_page(s.url, clips / "face.mp4", tmp_path / "serve.png")
    finally:
        s.stop(signal.SIGTERM)
    assert run.message == "" and run.word == expected
    assert run.external == [], f"the page fetched from outside the server: {run.external}"
    from PIL import Image

    with Image.open(run.screenshot) as img:
        assert img.size[0] >= 1000 and np.unique(np.asarray(img.convert("L"))).size > 20  # a drawn page, not blank
