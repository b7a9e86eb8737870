"""The Gradio page: a "Recognise" tab, and with two models an "Audio only vs audio-visual" tab.

Recognise: a video with sound (upload or camera) and / or an audio file (upload or microphone) -> the word,
the top-5 words as bars (closed vocabulary), the strip of mouth crops the model saw, the route probabilities
of a router model, and the seconds it took. Compare: the same upload through both models, with babble noise
at a chosen SNR (a slider), and the noisy sound to listen to.

A bad upload shows a sentence in the page (a red box and a toast) and the server goes on serving. Elements
the tests read carry ids (``word``, ``message``, ``details``, ``top5``, ``mouths``, ``routes``; ``cmp-word-0``
...); the API names are ``/recognise`` and ``/compare`` (``gradio_client``). Nothing is fetched from outside
the server: the theme uses the fonts Gradio ships and the system's, analytics are off.
"""

from __future__ import annotations

import functools
import html
import sys
import time
import traceback

from av_train.inference.transcribe import LEVEL_NAMES
from av_train.serve.pictures import mouth_strip, route_probabilities, word_probabilities
from av_train.serve.recognizer import CACHE_SECONDS, Recognizer, Request, Result

TITLE = "Audio-visual speech recognition: try a model"
SNR_RANGE = (-10, 30)
DEFAULT_SNR = 0
CSS = """
#message .error-box {border: 2px solid #d33; background: #fff1f1; color: #811; padding: 0.6em 0.9em;
                     border-radius: 6px;}
#word textarea, #word input {font-size: 2em !important; font-weight: 600; text-align: center;}
"""


def error_box(message: str) -> str:
    return f'<div class="error-box"><b>This upload could not be used.</b> {html.escape(message)}</div>'


def sync_text(r: Result) -> str:
    """``--sync auto``: the audio-video offset found and what was done with it ('' when sync is off)."""
    if r.sync_offset_ms is None:
        return ""
    off = r.sync_offset_ms
    where = "in sync" if off == 0 else f"picture {abs(off):.0f} ms {'late' if off > 0 else 'early'}"
    done = "re-timed" if r.sync_corrected else "left as it was"
    return f" · sync: {where} (confidence {r.sync_confidence:.2f}; {done})"


def trust_text(r: Result) -> str:
    """Models with a reliability scorer: how far the lips were trusted ('' for other models / no lips)."""
    if r.video_reliability is None:
        return ""
    v = r.video_reliability
    verdict = "the sound alone" if v < 0.1 else ("lips partly trusted" if v < 0.5 else "lips trusted")
    return f" · lips used **{100 * v:.0f} %** ({verdict})"


def details_line(r: Result, wall: float) -> str:
    if r.error:
        return f"model {r.model} · {wall:.2f} s"
    return (f"model **{r.model}** · heard **{r.used}**{trust_text(r)}{sync_text(r)} · **{r.seconds:.2f} s** "
            f"(reading the media, "
            f"finding the mouth, the model; {wall:.2f} s for the whole request)")


def _safely(fn, fill):
    """Run a page handler; an unexpected exception (a bug, not a bad upload) is logged with its traceback and
    shown as a message, so that the server keeps serving."""
    @functools.wraps(fn)
    def wrapped(*args):
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - the page must survive anything one upload does
            traceback.print_exc(file=sys.stderr)
            return fill(f"internal error ({type(e).__name__}: {e}); the server log has the details")
    return wrapped


def build_app(recognizer: Recognizer):
    """The gr.Blocks of the page (not launched)."""
    import gradio as gr

    models = recognizer.models
    names = [m.name for m in models]
    any_router = any(m.is_router for m in models)
    any_level = any(m.needs_level for m in models)
    any_lips = any(m.processor.uses_video for m in models)

    def show(r: Result, wall: float):
        """One Result as the Recognise tab's outputs: word, message, top5, mouths, routes, details."""
        if r.error:
            gr.Warning(r.error)
        return (r.text or "", error_box(r.error) if r.error else "", word_probabilities(r.top_k),
                mouth_strip(r.mouths), route_probabilities(r.route_probs), details_line(r, wall))

    def on_recognise(video, audio, model_name, sound_alone, level):
        t0 = time.perf_counter()
        r = recognizer.recognise(Request(video, audio, bool(sound_alone), level or None), model_name)
        return show(r, time.perf_counter() - t0)

    def recognise_crashed(message: str):
        return "", error_box(message), None, None, None, ""

    # uploads and pictures older than half an hour are deleted every half hour: a long-running server keeps
    # a bounded temporary folder (removed whole when it stops)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(CACHE_SECONDS, CACHE_SECONDS)) as app:
        gr.Markdown(f"## {TITLE}\n" + " · ".join(m.describe() for m in models))
        with gr.Tab("Recognise"):
            with gr.Row():
                with gr.Column():
                    video = gr.Video(label="Face video with sound (upload, or record with the camera)",
                                     sources=["upload", "webcam"], include_audio=True, elem_id="video")
                    audio = gr.Audio(label="...or an audio file / the microphone", sources=["upload", "microphone"],
                                     type="filepath", elem_id="audio")
                    model_choice = gr.Radio(names, value=names[-1], label="Model", visible=len(models) > 1,
                                            elem_id="model")
                    sound_alone = gr.Checkbox(False, label="sound alone if no face (audio-visual models)",
                                              visible=any_lips, elem_id="sound-alone")
                    level = gr.Dropdown(list(LEVEL_NAMES), value=None, label="Speaker's intelligibility level "
                                        "(this router uses it)", visible=any_level, elem_id="level")
                    go = gr.Button("Recognise", variant="primary", elem_id="recognise")
                with gr.Column():
                    word = gr.Textbox(label="Recognised word", interactive=False, elem_id="word")
                    message = gr.HTML(elem_id="message")
                    top5 = gr.Label(label="Top-5 words (probability)", num_top_classes=5, show_heading=False,
                                    elem_id="top5")
                    mouths = gr.Image(label="Mouth crops the model saw (left to right, then down)", type="numpy",
                                      interactive=False, visible=any_lips, elem_id="mouths")
                    routes = gr.Label(label="Route probabilities (router models)", visible=any_router,
                                      elem_id="routes")
                    details = gr.Markdown(elem_id="details")
            go.click(_safely(on_recognise, recognise_crashed), [video, audio, model_choice, sound_alone, level],
                     [word, message, top5, mouths, routes, details], api_name="recognise")

        if len(models) >= 2:
            _compare_tab(gr, recognizer, any_level)
    return app


def _compare_tab(gr, recognizer: Recognizer, any_level: bool) -> None:
    """The same upload through every model, with babble at a chosen SNR."""
    models = recognizer.models
    with gr.Tab("Audio only vs audio-visual"):
        gr.Markdown("The same upload through each model. Add babble noise (other talkers) and lower the SNR: "
                    "the audio-only model loses the word first; the lips keep the audio-visual one on it. "
                    f"Babble: {recognizer.babble.describe()}.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Face video with sound", sources=["upload", "webcam"], include_audio=True,
                                 elem_id="cmp-video")
                audio = gr.Audio(label="...or an audio file (audio-visual models then need the video too)",
                                 sources=["upload", "microphone"], type="filepath", elem_id="cmp-audio")
                noisy = gr.Checkbox(True, label="add babble noise", elem_id="cmp-noisy")
                snr = gr.Slider(*SNR_RANGE, value=DEFAULT_SNR, step=1, label="SNR of speech to babble (dB)",
                                elem_id="cmp-snr")
                sound_alone = gr.Checkbox(False, label="sound alone if no face", elem_id="cmp-sound-alone")
                level = gr.Dropdown(list(LEVEL_NAMES), value=None, label="Speaker's intelligibility level",
                                    visible=any_level, elem_id="cmp-level")
                go = gr.Button("Compare", variant="primary", elem_id="compare")
            with gr.Column():
                heard = gr.Audio(label="What the models heard", type="filepath", interactive=False,
                                 elem_id="cmp-heard")
                outputs = [heard]
                for i, m in enumerate(models):
                    with gr.Group():
                        gr.Markdown(m.describe())
                        outputs += [gr.Textbox(label="Recognised word", interactive=False, elem_id=f"cmp-word-{i}"),
                                    gr.HTML(elem_id=f"cmp-message-{i}"),
                                    gr.Label(label="Top-5 words", num_top_classes=5, show_heading=False,
                                             elem_id=f"cmp-top5-{i}")]
                        if m.processor.uses_video:
                            outputs.append(gr.Image(label="Mouth crops", type="numpy", interactive=False,
                                                    elem_id=f"cmp-mouths-{i}"))
                        if m.is_router:
                            outputs.append(gr.Label(label="Route probabilities", elem_id=f"cmp-routes-{i}"))
                details = gr.Markdown(elem_id="cmp-details")
                outputs.append(details)

    def fill(results: list[Result], heard_path, wall: float, crash: str | None = None):
        values = [heard_path]
        for m, r in zip(models, results):
            values += [r.text or "", error_box(r.error) if r.error else "", word_probabilities(r.top_k)]
            if m.processor.uses_video:
                values.append(mouth_strip(r.mouths))
            if m.is_router:
                values.append(route_probabilities(r.route_probs))
        ok = [r for r in results if not r.error]
        values.append(crash or " · ".join(f"{r.model}: {r.seconds:.2f} s" for r in ok) + f" · {wall:.2f} s in all")
        return tuple(values)

    def on_compare(video, audio, add_noise, snr_db, sound_alone, level):
        t0 = time.perf_counter()
        snr_db = float(snr_db) if add_noise else None
        results, heard_path = recognizer.compare(Request(video, audio, bool(sound_alone), level or None), snr_db)
        errors = {r.error for r in results if r.error}
        for e in errors:
            gr.Warning(e)
        return fill(results, str(heard_path) if heard_path else None, time.perf_counter() - t0)

    def compare_crashed(message: str):
        return fill([Result(m.name, error=message) for m in models], None, 0.0, crash=message)

    go.click(_safely(on_compare, compare_crashed), [video, audio, noisy, snr, sound_alone, level],
             outputs, api_name="compare")
