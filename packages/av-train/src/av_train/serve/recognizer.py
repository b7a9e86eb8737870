"""One upload -> what each served model made of it, through ``av-cli transcribe``'s own functions.

``Recognizer.recognise`` checks the upload (``uploads.check_upload``), re-times browser recordings, optionally
mixes babble into the sound, and calls ``transcribe.transcribe`` with one ``Item``: the same reading of the
audio track, the same mouth crops (uaspeech-prep's ROI code) and the same ``recognize`` as the command line.
It never raises for a bad upload: the reason is in ``Result.error`` as a sentence for the page.

Models run one request at a time (a lock): the face tracker (mediapipe) and the model are shared, and two
CPU-bound requests at once would only be slower each.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from av_fusion_models import AVWhisperProcessor, InputError
from av_train.inference.media import MediaError, is_video
from av_train.inference.transcribe import LEVEL_NAMES, Item, MouthFinder, transcribe
from av_train.serve.babble import BabbleSource
from av_train.serve.uploads import Workspace, check_upload, constant_rate_copy, needs_retiming

log = logging.getLogger(__name__)

TOP_K = 5
CACHE_SECONDS = 1800  # request folders older than this are removed (the page's cache keeps the same age)
MODALITY_NAMES = {"audio": "audio only", "audio_visual": "audio-visual", "video": "lip reading"}


@dataclass
class ServedModel:
    """A loaded model with its processor, named for the page."""

    name: str
    source: str
    model: object
    processor: AVWhisperProcessor

    @property
    def kind(self) -> str:
        return MODALITY_NAMES.get(self.processor.modality, self.processor.modality)

    @property
    def is_router(self) -> bool:
        return getattr(self.model, "router", None) is not None

    @property
    def needs_level(self) -> bool:
        return bool(getattr(self.model.config, "routing_use_level", False))

    def describe(self) -> str:
        vocab = self.processor.vocabulary
        words = f"closed vocabulary of {len(vocab)} words" if vocab else "open vocabulary"
        return f"**{self.name}** ({self.kind}, {words}{', router' if self.is_router else ''})"


@dataclass
class Result:
    """What one model made of one upload; ``error`` is set instead of ``text`` when it could not be used."""

    model: str
    text: str | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    mouths: np.ndarray | None = None  # [T, 96, 96] uint8 crops the model saw; None without video
    route_probs: dict[str, float] | None = None
    used: str | None = None  # audio, video or audio+video
    seconds: float = 0.0  # reading the media + finding the mouth + the model (transcribe's own measure)
    error: str | None = None
    sync_offset_ms: float | None = None  # --sync auto: transcribe's audio-video offset (> 0: the picture lags)
    sync_confidence: float | None = None
    sync_corrected: bool | None = None  # the mouth crops were re-timed by it
    video_reliability: float | None = None  # models with a reliability scorer: how far the lips were trusted


@dataclass
class Request:
    """An upload as the page hands it over: a video (with or without sound) and / or an audio file."""

    video: str | None = None
    audio: str | None = None
    allow_audio_only: bool = False
    level: str | None = None


# transcribe's advice names its command-line flag; the page has a checkbox instead
_PAGE_WORDING = (("pass --allow-audio-only to recognise from the sound alone", "tick 'sound alone if no face'"),
                 ("pass --allow-audio-only to use the sound alone", "tick 'sound alone if no face'"),
                 ("or pass --allow-audio-only", "or tick 'sound alone if no face'"))


def page_wording(message: str, *paths: str | Path | None) -> str:
    """A message for the page: the page's words for transcribe's advice, and each of ``paths`` (uploads in the
    server's temporary folder) by its file name alone."""
    for cli, page in _PAGE_WORDING:
        message = message.replace(cli, page)
    for p in paths:
        if p:
            message = message.replace(str(p), Path(p).name)
    return message


class Recognizer:
    def __init__(self, models: list[ServedModel], workspace: Workspace, babble: BabbleSource | None = None,
                 sync: str = "off"):
        if not models:
            raise ValueError("serve needs at least one model")
        self.models = models
        self.workspace = workspace
        self.babble = babble or BabbleSource()
        self.mouths = MouthFinder(roi_input=False)  # one face tracker for the server's life
        self.sync = sync  # transcribe's sync: "auto" re-times the mouth crops by their offset against the sound
        self._lock = threading.Lock()

    def model(self, name: str | None) -> ServedModel:
        for m in self.models:
            if m.name == name:
                return m
        return self.models[-1]

    # ------------------------------------------------------------------------------------------------
    def prepare(self, request: Request, snr_db: float | None = None) -> tuple[Item, Path | None]:
        """The checked upload as a transcribe ``Item`` (and the noisy sound, when ``snr_db`` is given)."""
        video = Path(request.video) if request.video else None
        audio = Path(request.audio) if request.audio else None
        if video is None and audio is None:
            raise MediaError("nothing uploaded: upload or record a video with sound, or an audio file")
        for p in (video, audio):
            if p is not None:
                check_upload(p)
        scratch = None
        if video is not None and needs_retiming(video):
            scratch = self.workspace.scratch()
            video = constant_rate_copy(video, scratch / f"{video.stem}.mp4")
        if video is not None and audio is None and not is_video(video):
            video, audio = None, video  # a sound file dropped on the video box
        heard = None
        if snr_db is not None:
            scratch = scratch or self.workspace.scratch()
            heard = self.babble.mix(audio or video, snr_db, scratch / f"babble_{snr_db:g}dB.wav")
            audio = heard
        name = (Path(request.video).name if request.video else Path(request.audio).name)
        return Item(name, audio, video), heard

    def run(self, served: ServedModel, item: Item, request: Request) -> Result:
        """``transcribe`` on one item with one model; the caller holds the lock."""
        if served.needs_level and request.level not in LEVEL_NAMES:
            return Result(served.name, error=f"{served.name} routes with the speaker's intelligibility level: "
                                             "choose it (very_low, low, mid or high)")
        self.mouths.last = None
        [out] = transcribe(served.model, served.processor, [item], top_k=TOP_K,
                           allow_audio_only=request.allow_audio_only,
                           level=request.level if served.needs_level else None, progress=False, mouths=self.mouths,
                           sync=self.sync)
        mouths = self.mouths.last if out.used and "video" in out.used else None
        if out.error:
            return Result(served.name, error=page_wording(out.error, item.video, item.audio), mouths=mouths)
        return Result(served.name, out.text, list(out.top_k), mouths, out.route_probs, out.used, out.seconds,
                      sync_offset_ms=out.sync_offset_ms, sync_confidence=out.sync_confidence,
                      sync_corrected=out.sync_corrected, video_reliability=out.video_reliability)

    def recognise(self, request: Request, model: str | None = None) -> Result:
        """One model (by name; default the last given, the audio-visual one of a pair) on one upload."""
        served = self.model(model)
        self.workspace.prune(CACHE_SECONDS)
        with self._lock:
            try:
                item, _ = self.prepare(request)
            except (MediaError, InputError) as e:
                return Result(served.name, error=page_wording(str(e), request.video, request.audio))
            return self.run(served, item, request)

    def compare(self, request: Request, snr_db: float | None) -> tuple[list[Result], Path | None]:
        """Every model on the same upload, with babble at ``snr_db`` (None: clean); and the noisy sound."""
        self.workspace.prune(CACHE_SECONDS)
        with self._lock:
            try:
                item, heard = self.prepare(request, snr_db)
            except (MediaError, InputError) as e:
                message = page_wording(str(e), request.video, request.audio)
                return [Result(m.name, error=message) for m in self.models], None
            return [self.run(m, item, request) for m in self.models], heard


def load_served(sources: list[str], device: str, vocabulary: str | None = None) -> list[ServedModel]:
    """Each MODEL argument (exported folder, run folder or .ckpt) loaded with transcribe's ``load_model``;
    ``vocabulary`` (open | uaspeech | FILE) replaces every model's own closed vocabulary, as in transcribe."""
    from av_train.inference.transcribe import load_model
    from av_train.vocabulary import decode_words

    served, names = [], set()
    for src in sources:
        t0 = time.perf_counter()
        model, processor = load_model(src, device)
        if vocabulary is not None:
            processor = processor.with_vocabulary(decode_words(vocabulary))
        model.eval()
        p = Path(src)
        name = p.stem if p.suffix == ".ckpt" else p.name
        if name in names:  # two runs both called best / demo_av: tell them apart by their folder
            name = f"{p.parent.name}/{name}"
        names.add(name)
        served.append(ServedModel(name, str(src), model, processor))
        log.info("loaded %s (%s) from %s in %.1f s", name, served[-1].kind, src, time.perf_counter() - t0)
    return served

