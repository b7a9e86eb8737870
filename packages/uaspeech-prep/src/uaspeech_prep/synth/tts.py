"""Real speech synthesis of UASpeech words with libespeak-ng (PyPI ``espeakng-loader``) through ctypes.

The library is driven in synchronous mode with phoneme events enabled, so every synthesized word
comes with the exact time of each phoneme (used to animate the mouth of the synthetic video).
espeak-ng keeps global state and is not thread-safe: one process-level :class:`Espeak` object
(:func:`get_engine`) owns the library and every call goes through its lock. Because that global state
also leaks from one utterance into the next, the object reloads a private copy of the library for each
utterance (see :class:`Espeak`), so a word's audio depends only on its text and voice settings.

Output: 16 kHz float32 mono (resampled from espeak's 22050 Hz with ``scipy.signal.resample_poly``)
plus a list of :class:`Phoneme` events ``(time_s, name)`` in the same time base.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import firwin, resample_poly

from uaspeech_prep.corpus import SAMPLE_RATE  # everything this module returns is at the corpus's rate

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RAND_SEED = 12345  # base of the libc rand() seed set before every utterance
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h (the C compiler pads ``user_data`` to 8 bytes; ctypes does too)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Phoneme:
    """A phoneme event: start time (s, from the start of the returned audio) and espeak phoneme name
    (stress marks included, e.g. ``"'A:"``; ``"_:"`` / ``"_"`` are pauses)."""

    time: float
    name: str


@dataclass(frozen=True)
class Voice:
    """espeak voice settings. ``name`` is an espeak voice with an optional variant (``"en-us+m3"``);
    rate in words per minute (80..450), pitch and range 0..100."""

    name: str = "en-us"
    rate: int = 165
    pitch: int = 50
    range: int = 50


@dataclass
class Synthesis:
    audio: np.ndarray  # float32, 16 kHz, mono, in [-1, 1]
    phonemes: list[Phoneme]
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


class EspeakError(RuntimeError):
    pass


def _bind(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int


class Espeak:
    """The process's libespeak-ng. Use :func:`get_engine` rather than building several.

    Determinism: espeak-ng keeps internal state from one utterance to the next (the pitch flutter
    phase, the echo buffer), so the same text synthesized twice in a row differs by a few samples
    and in its waveform; and breathy voices (e.g. the f3 variant) draw noise from a generator that
    espeak-ng seeds from the clock. To make every word depend only on its own arguments, this object
    owns a private copy of the shared library, loads it fresh for each utterance (dlopen, initialize,
    synthesize, terminate, dlclose: ~4 ms) and seeds the generator (``espeak_ng_SetRandSeed``, and
    libc ``srand``) before synthesizing. If the copy cannot be made, it falls back to one
    persistent instance (output then depends on synthesis order) and says so in ``deterministic``.
    """

    def __init__(self) -> None:
        import espeakng_loader

        self._data_path = espeakng_loader.get_data_path().encode()
        src = espeakng_loader.get_library_path()
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _CALLBACK(self._on_synth)  # keep a reference: the library holds a raw pointer
        self._persistent: ctypes.CDLL | None = None
        self._private: str | None = None
        try:
            tmpdir = tempfile.mkdtemp(prefix="uaspeech-espeak-")
            atexit.register(shutil.rmtree, tmpdir, True)
            private = os.path.join(tmpdir, "libespeak-ng-private" + os.path.splitext(src)[1])
            shutil.copy2(src, private)
            self._dlclose = ctypes.CDLL(None).dlclose
            self._dlclose.argtypes = [ctypes.c_void_p]
            self._private = private
        except (OSError, AttributeError):
            self._private = None
        try:  # and libc's rand() (used by older espeak-ng builds)
            self._srand = ctypes.CDLL(None).srand
            self._srand.argtypes = [ctypes.c_uint]
        except (OSError, AttributeError):
            self._srand = None
        lib = self._load()
        try:
            self.native_rate = self._rate
        finally:
            self._unload(lib)
        self.deterministic = self._private is not None and (self._set_rand_seed is not None or self._srand is not None)

    def _load(self) -> ctypes.CDLL:
        if self._persistent is not None:
            return self._persistent
        import espeakng_loader

        lib = ctypes.CDLL(self._private or espeakng_loader.get_library_path(), mode=getattr(os, "RTLD_LOCAL", 0))
        _bind(lib)
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data_path, _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}); data path {self._data_path.decode()}")
        self._rate = int(rate)
        lib.espeak_SetSynthCallback(self._callback)
        self._set_rand_seed = getattr(lib, "espeak_ng_SetRandSeed", None)  # espeak-ng >= 1.51 seeds it from time()
        if self._set_rand_seed is not None:
            self._set_rand_seed.argtypes = [ctypes.c_long]
            self._set_rand_seed.restype = None
        if self._private is None:
            self._persistent = lib
        return lib

    def _unload(self, lib: ctypes.CDLL) -> None:
        if lib is self._persistent:
            return
        lib.espeak_Terminate()
        handle = lib._handle
        del lib
        self._dlclose(ctypes.c_void_p(handle))

    def _on_synth(self, wav, numsamples, events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self._events.append((int(ev.audio_position), name))
            i += 1
        return 0  # 0 = continue

    def synthesize(self, text: str, voice: Voice = Voice(), seed: int = 0) -> Synthesis:
        """Synthesize ``text`` with ``voice``; returns 16 kHz audio and the phoneme events. ``seed`` seeds
        espeak's random generator (breath noise of some voices); same arguments, same samples."""
        if not text.strip():
            raise ValueError("nothing to synthesize: empty text")
        with self._lock:
            lib = self._load()
            try:
                if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                    raise EspeakError(f"espeak has no voice {voice.name!r}")
                for key in ("rate", "pitch", "range"):
                    lib.espeak_SetParameter(_PARAM[key], int(getattr(voice, key)), 0)
                self._chunks, self._events = [], []
                if self._srand is not None:
                    self._srand((_RAND_SEED + int(seed)) & 0xFFFFFFFF)
                if self._set_rand_seed is not None:
                    self._set_rand_seed(int(seed) & 0x7FFFFFFF)
                buf = text.encode("utf-8") + b"\0"
                err = lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
                if err != 0:
                    raise EspeakError(f"espeak_Synth failed with code {err} for {text!r}")
                lib.espeak_Synchronize()
            finally:
                chunks, events = self._chunks, self._events
                self._chunks, self._events = [], []
                self._unload(lib)
        native = np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else np.zeros(0, np.float32)
        if self.native_rate == 22050:
            audio = resample_poly(native, 320, 441, window=_resample_filter())  # 22050 -> 16000 (= 441:320)
        else:  # never seen, but stay correct
            audio = resample_poly(native, SAMPLE_RATE, self.native_rate)
        audio = audio.astype(np.float32)
        dur = len(audio) / SAMPLE_RATE
        phonemes = [Phoneme(min(ms / 1000.0, dur), name) for ms, name in events if name]
        return Synthesis(audio=np.clip(audio, -1.0, 1.0), phonemes=phonemes)


@lru_cache(maxsize=1)
def _resample_filter() -> np.ndarray:
    """The low-pass FIR filter ``resample_poly(x, 320, 441)`` designs on every call (Kaiser 5.0, 8821 taps,
    float32 like the audio), designed once: same samples, ~15 ms less per word."""
    return firwin(2 * 10 * 441 + 1, 1.0 / 441, window=("kaiser", 5.0)).astype(np.float32)


_ENGINE: Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def get_engine() -> Espeak:
    """The process-level espeak engine (initialized on first use)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = Espeak()
        return _ENGINE


def synthesize(text: str, voice: Voice = Voice(), seed: int = 0) -> Synthesis:
    """Synthesize with the process-level engine (see :meth:`Espeak.synthesize`)."""
    return get_engine().synthesize(text, voice, seed)
