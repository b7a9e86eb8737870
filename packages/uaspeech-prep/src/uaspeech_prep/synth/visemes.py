"""espeak phonemes -> visemes -> mouth parameters over time.

A mouth shape is five numbers (:class:`MouthShape`): ``open`` (lip separation, 0 closed .. 1 wide
open, also drives the jaw), ``width`` (mouth width relative to rest, <1 narrow/rounded, >1 spread),
``round`` (lip rounding and protrusion, 0..1), ``teeth`` (how much of the teeth shows inside the
opening, 0..1) and ``tuck`` (lower lip raised under the upper teeth, the f/v labiodental gesture).

Each espeak phoneme name (stress marks ``'`` and ``,`` removed) maps to a viseme class with a
target shape; diphthongs get two targets (start and glide). Targets are placed inside each phoneme's
interval, and the trajectory between them is a smooth (cosine) interpolation, lightly low-passed
(coarticulation); the mouth leaves the rest shape 80 ms before the first phoneme; silences (``_``,
``_:``, and time outside the word) are the closed rest shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import gaussian_filter1d


@dataclass(frozen=True)
class MouthShape:
    open: float = 0.0
    width: float = 1.0
    round: float = 0.0
    teeth: float = 0.0
    tuck: float = 0.0

    def as_array(self) -> np.ndarray:
        return np.array([self.open, self.width, self.round, self.teeth, self.tuck], dtype=np.float64)


PARAM_NAMES = ("open", "width", "round", "teeth", "tuck")

VISEMES: dict[str, MouthShape] = {
    "rest": MouthShape(0.0, 1.0, 0.0, 0.0, 0.0),
    "bilabial": MouthShape(0.0, 0.97, 0.1, 0.0, 0.0),  # p b m: lips pressed
    "labiodental": MouthShape(0.12, 1.0, 0.0, 0.9, 1.0),  # f v: lower lip under upper teeth
    "dental": MouthShape(0.28, 1.02, 0.0, 0.9, 0.0),  # T D
    "alveolar": MouthShape(0.22, 1.05, 0.0, 0.8, 0.0),  # t d n l
    "sibilant": MouthShape(0.12, 1.08, 0.0, 1.0, 0.0),  # s z: teeth together
    "postalveolar": MouthShape(0.22, 0.82, 0.65, 0.8, 0.0),  # S Z tS dZ: rounded, protruded
    "velar": MouthShape(0.35, 1.0, 0.0, 0.4, 0.0),  # k g N h
    "r": MouthShape(0.25, 0.85, 0.5, 0.3, 0.0),
    "w": MouthShape(0.15, 0.68, 1.0, 0.0, 0.0),
    "j": MouthShape(0.2, 1.12, 0.0, 0.6, 0.0),
    "open": MouthShape(1.0, 1.05, 0.0, 0.45, 0.0),  # a A: V aI- aU-
    "mid": MouthShape(0.6, 1.12, 0.0, 0.55, 0.0),  # E e@ eI- @ 3
    "close_front": MouthShape(0.3, 1.22, 0.0, 0.75, 0.0),  # i i: I
    "open_round": MouthShape(0.72, 0.8, 0.75, 0.2, 0.0),  # O: 0 oU- OI-
    "close_round": MouthShape(0.3, 0.7, 1.0, 0.1, 0.0),  # u: U
}

_CONSONANTS = {
    "p": "bilabial", "b": "bilabial", "m": "bilabial",
    "f": "labiodental", "v": "labiodental",
    "T": "dental", "D": "dental",
    "t": "alveolar", "d": "alveolar", "n": "alveolar", "l": "alveolar", "t#": "alveolar", "d#": "alveolar",
    "s": "sibilant", "z": "sibilant",
    "S": "postalveolar", "Z": "postalveolar", "tS": "postalveolar", "dZ": "postalveolar",
    "k": "velar", "g": "velar", "N": "velar", "h": "velar", "x": "velar", "?": "velar",
    "r": "r", "r-": "r", "R": "r",
    "w": "w", "W": "w",
    "j": "j", "C": "j",
}
_DIPHTHONGS = {
    "aI": ("open", "close_front"), "aI@": ("open", "close_front"), "aU": ("open", "close_round"),
    "eI": ("mid", "close_front"), "OI": ("open_round", "close_front"), "oU": ("open_round", "close_round"),
    "i@": ("close_front", "mid"), "e@": ("mid", "mid"), "U@": ("close_round", "mid"), "A@": ("open", "r"),
    "O@": ("open_round", "r"), "aI3": ("open", "mid"), "aU@": ("open", "mid"), "i@3": ("close_front", "mid"),
}
_VOWEL_PREFIX = [  # longest first
    ("A:", "open"), ("a#", "open"), ("a", "open"), ("A", "open"), ("V", "open"),
    ("3:", "mid"), ("3", "mid"), ("@", "mid"), ("E", "mid"), ("e", "mid"),
    ("i:", "close_front"), ("I", "close_front"), ("i", "close_front"), ("y", "close_front"),
    ("O:", "open_round"), ("O", "open_round"), ("0", "open_round"), ("o", "open_round"),
    ("u:", "close_round"), ("U", "close_round"), ("u", "close_round"),
]
SILENCES = {"_", "_:", "_!", "_|", "||", "|", ""}
IGNORED = {";"}
ANTICIPATION_S = 0.08  # the mouth leaves the rest shape this long before the first phoneme
"""Marks espeak emits as phoneme events that have no articulation of their own (no keyframe)."""


def _strip(name: str) -> str:
    return name.lstrip("',%=").strip()


def visemes_of(phoneme: str) -> tuple[str, ...]:
    """Viseme class(es) of one espeak phoneme name: one for most, two for diphthongs, ('rest',) for silence."""
    p = _strip(phoneme)
    if p in SILENCES or p.startswith("_"):
        return ("rest",)
    if p in _DIPHTHONGS:
        return _DIPHTHONGS[p]
    if p in _CONSONANTS:
        return (_CONSONANTS[p],)
    for prefix, vis in _VOWEL_PREFIX:
        if p.startswith(prefix):
            return (vis,)
    if p[:1] in _CONSONANTS:
        return (_CONSONANTS[p[:1]],)
    return ("mid",)  # unknown phoneme: neutral half-open


def keyframes(phonemes: Sequence[tuple[float, str]], end_time: float,
              open_factors: Sequence[float] | None = None,
              shapes: Mapping[str, MouthShape] | None = None) -> list[tuple[float, MouthShape]]:
    """Target shapes with their times for a word: ``phonemes`` are (start_s, name) in time order,
    ``end_time`` the end of the audio. Rest shape at time 0 and at the end. ``open_factors`` (one per
    phoneme) scale the opening of each phoneme's target(s): how far this repetition's articulation goes.
    ``shapes``: the viseme table to take the targets from (default :data:`VISEMES`; weaker lips:
    :func:`uaspeech_prep.synth.lips.confused_shapes`)."""
    table = VISEMES if shapes is None else shapes
    keys: list[tuple[float, MouthShape]] = [(0.0, VISEMES["rest"])]
    times = [t for t, _ in phonemes] + [end_time]
    if phonemes:  # hold the rest shape until just before the first phoneme (anticipation)
        keys.append((max(0.0, phonemes[0][0] - ANTICIPATION_S), VISEMES["rest"]))
    for i, (t, name) in enumerate(phonemes):
        if _strip(name) in IGNORED:
            continue
        t1 = max(times[i + 1], t)
        dur = t1 - t
        vis = visemes_of(name)
        f = 1.0 if open_factors is None else float(open_factors[i])

        def target(v: str) -> MouthShape:
            sh = table[v]
            return sh if f == 1.0 else replace(sh, open=sh.open * f)

        if vis == ("rest",):
            keys.append((t + 0.5 * dur, VISEMES["rest"]))
        elif len(vis) == 1:
            keys.append((t + 0.45 * dur, target(vis[0])))
        else:
            keys.append((t + 0.3 * dur, target(vis[0])))
            keys.append((t + 0.85 * dur, target(vis[1])))
    keys.append((max(end_time, keys[-1][0]), VISEMES["rest"]))
    return keys


def trajectory(keys: Iterable[tuple[float, MouthShape]], times: np.ndarray, smooth_s: float = 0.025) -> np.ndarray:
    """Mouth parameters at ``times`` (s): array (len(times), 5), cosine-interpolated between keyframes,
    then Gaussian-smoothed with std ``smooth_s`` (evaluated on a 1 ms grid)."""
    keys = sorted(keys, key=lambda k: k[0])
    kt = np.array([k[0] for k in keys], dtype=np.float64)
    kv = np.stack([k[1].as_array() for k in keys])
    rest = VISEMES["rest"].as_array()
    times = np.asarray(times, dtype=np.float64)
    lo = min(float(times.min(initial=0.0)), float(kt[0])) - 0.1
    hi = max(float(times.max(initial=0.0)), float(kt[-1])) + 0.1
    grid = np.arange(lo, hi + 0.001, 0.001)
    idx = np.clip(np.searchsorted(kt, grid, side="right") - 1, 0, len(kt) - 1)
    nxt = np.minimum(idx + 1, len(kt) - 1)
    span = kt[nxt] - kt[idx]
    frac = np.where(span > 0, (grid - kt[idx]) / np.where(span > 0, span, 1.0), 0.0)
    frac = np.clip(frac, 0.0, 1.0)
    w = (0.5 - 0.5 * np.cos(np.pi * frac))[:, None]
    vals = kv[idx] * (1 - w) + kv[nxt] * w
    vals[grid < kt[0]] = rest
    vals[grid > kt[-1]] = rest
    if smooth_s > 0:
        vals = gaussian_filter1d(vals, sigma=smooth_s / 0.001, axis=0, mode="nearest")
    return np.stack([np.interp(times, grid, vals[:, j]) for j in range(vals.shape[1])], axis=1)
