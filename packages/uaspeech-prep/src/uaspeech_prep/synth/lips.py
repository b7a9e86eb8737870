"""Lip visibility: how much of the word the synthetic mouth shows (``uaspeech-prep synth --lip-visibility V``).

At ``V = 1`` (the default) the mouth follows :mod:`.visemes` exactly, and the corpus is byte for byte the one
written before this option existed. Those lips are far easier to read than real ones: a linear probe reads 93 %
of B2 and the demo's lip reader 95 %, where real lip reading of isolated (dysarthric) words is far worse. A
recipe that trusts such lips is flattered. ``0 < V < 1`` weakens what the mouth shows in three ways that real
lips have, each growing as ``V`` falls (docs/LIP_READING.md "weak lips" has the calibration):

1. **Viseme confusions** (:func:`confused_shapes`). Many phonemes look alike on the lips because the tongue and
   the voicing that tell them apart are hidden. Each viseme's target moves towards the mean shape of its
   confusion group (:data:`CONFUSION_GROUPS`) by ``merge(V) = min(1, (1 - V) / (1 - MERGE_FULL_AT))``; from
   ``V <= MERGE_FULL_AT`` the members of a group are one shape. The groups are the classes lip readers confuse
   (Jeffers & Barley's visemes, coarsened for poor viewing): p b m; f v; the tongue consonants t d n l s z k g
   ng h th dh y; w and r (rounded, protruded); sh zh ch jh; and the vowels by rounding and openness only
   (unrounded open, unrounded close, rounded open, rounded close).
2. **Reduced articulation** (:func:`towards_rest`). Dysarthric speakers move the lips and jaw less, and the
   less intelligible, the less: every mouth parameter moves towards the rest shape, ``p = rest + a (p - rest)``,
   with ``a = V ** AMPLITUDE_EXPONENT[level]`` (very_low speakers articulate least; controls like high).
3. **Jitter** (:func:`jitter`). No two repetitions of a word move the mouth alike: each utterance's targets are
   perturbed (over- and undershoot) and a slow random movement that has nothing to do with the word
   (involuntary movements, a lip licked, a swallow) is added, both in absolute parameter units (so they weigh
   more on a reduced articulation), scaled by ``1 - V``. The draws come from their own stream
   (``rng_for(seed, utt_id, "lips")``), so the audio, the frame index, the head pose and the pixel noise are
   those of ``V = 1``: only the mouth changes.

Calibrated on the demo corpus (seed 1, B2): at ``V = 0.3`` the linear probe misses 52.5 % of the words and the
demo's lip reader 67.1 % (at 1: 7.1 and 4-5 %); ``experiments/weak_lips.py`` remeasures the probe.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from uaspeech_prep.synth.visemes import PARAM_NAMES, VISEMES, MouthShape

CONFUSION_GROUPS: dict[str, tuple[str, ...]] = {
    "bilabial": ("bilabial",),  # p b m (one viseme already)
    "labiodental": ("labiodental",),  # f v (one viseme already)
    "tongue": ("dental", "alveolar", "sibilant", "velar", "j"),  # th dh t d n l s z k g ng h y
    "protruded": ("w", "r"),  # w r
    "postalveolar": ("postalveolar",),  # sh zh ch jh
    "unrounded_open": ("open", "mid"),
    "unrounded_close": ("close_front",),
    "rounded_open": ("open_round",),
    "rounded_close": ("close_round",),
    "rest": ("rest",),
}
"""Confusion group -> the viseme classes of :data:`uaspeech_prep.synth.visemes.VISEMES` it merges."""

MERGE_FULL_AT = 0.5
"""At and below this visibility the members of a confusion group share one shape."""

AMPLITUDE_EXPONENT: dict[str, float] = {"control": 0.5, "high": 0.5, "mid": 0.75, "low": 1.0, "very_low": 1.25}
"""level -> e in the articulation amplitude ``a = V ** e``: the worse the level, the smaller the movements."""

TARGET_JITTER = {"open": 0.25, "width": 0.08, "round": 0.2, "teeth": 0.2, "tuck": 0.1}
"""Std (parameter units) of the per-target perturbation at ``V = 0``; ``(1 - V)`` times this at ``V``."""

DRIFT_JITTER = {"open": 0.15, "width": 0.05, "round": 0.12, "teeth": 0.12, "tuck": 0.0}
"""Std (parameter units) of the slow random mouth movement at ``V = 0``; ``(1 - V)`` times this at ``V``."""

DRIFT_HZ = 3.0
"""Cut-off of the slow random mouth movement (about the syllable rate, so it looks like articulation)."""

PARAM_RANGE = {"open": (0.0, None), "width": (0.6, 1.3), "round": (0.0, 1.0), "teeth": (0.0, 1.0), "tuck": (0.0, 1.0)}
"""Limits a weakened mouth parameter is clipped to (``open``'s upper limit is the video's)."""


def check_visibility(visibility: float) -> float:
    v = float(visibility)
    if not 0.0 < v <= 1.0:
        raise ValueError(f"lip visibility must be within (0, 1], got {visibility}")
    return v


def merge_weight(visibility: float) -> float:
    """How far each viseme moves towards its confusion group's shape: 0 at V = 1, 1 at V <= MERGE_FULL_AT."""
    return float(min(1.0, (1.0 - check_visibility(visibility)) / (1.0 - MERGE_FULL_AT)))


def amplitude(visibility: float, level: str | None) -> float:
    """Articulation amplitude ``a`` of a speaker at ``level`` (None: a control speaker)."""
    return float(check_visibility(visibility) ** AMPLITUDE_EXPONENT["control" if level is None else level])


def group_of(viseme: str) -> str:
    for name, members in CONFUSION_GROUPS.items():
        if viseme in members:
            return name
    raise KeyError(f"viseme {viseme!r} is in no confusion group")


def confused_shapes(merge: float) -> dict[str, MouthShape]:
    """The viseme table with every shape moved towards its group's mean shape by ``merge`` (0: VISEMES)."""
    if merge == 0.0:
        return dict(VISEMES)
    out = {}
    for members in CONFUSION_GROUPS.values():
        mean = np.mean([VISEMES[m].as_array() for m in members], axis=0)
        for m in members:
            mixed = (1.0 - merge) * VISEMES[m].as_array() + merge * mean
            out[m] = MouthShape(*(float(x) for x in mixed))
    missing = set(VISEMES) - set(out)
    if missing:
        raise KeyError(f"visemes in no confusion group: {sorted(missing)}")
    return out


def towards_rest(p: np.ndarray, a: float) -> np.ndarray:
    """Mouth parameters (..., 5) moved towards the rest shape: ``rest + a (p - rest)``."""
    rest = VISEMES["rest"].as_array()
    return rest + a * (np.asarray(p, dtype=np.float64) - rest)


def jitter_shape(shape: MouthShape, scale: float, rng: np.random.Generator) -> MouthShape:
    """One target perturbed: each parameter + N(0, scale * TARGET_JITTER[name])."""
    n = rng.standard_normal(len(PARAM_NAMES))
    return replace(shape, **{k: getattr(shape, k) + scale * TARGET_JITTER[k] * n[i] for i, k in enumerate(PARAM_NAMES)})


def jitter(n_frames: int, fps: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """(n_frames, 5) slow random mouth movement: per parameter a unit-std signal low-passed at DRIFT_HZ, times
    ``scale * DRIFT_JITTER[name]``."""
    from uaspeech_prep.synth.variation import smooth_noise

    cols = [scale * DRIFT_JITTER[k] * smooth_noise(rng, n_frames, fps, DRIFT_HZ) for k in PARAM_NAMES]
    return np.stack(cols, axis=1) if n_frames else np.zeros((0, len(PARAM_NAMES)))


def clip_params(p: np.ndarray, max_open: float) -> np.ndarray:
    out = np.array(p, dtype=np.float64, copy=True)
    for j, k in enumerate(PARAM_NAMES):
        lo, hi = PARAM_RANGE[k]
        out[:, j] = np.clip(out[:, j], lo, max_open if hi is None else hi)
    return out


@dataclass(frozen=True)
class WeakLips:
    """How one utterance's mouth is weakened (:func:`weak_lips`): the confusion ``merge`` (0..1), the articulation
    ``amplitude`` (0..1), the ``jitter`` scale (``1 - V``) and the seed of the jitter draws."""

    merge: float
    amplitude: float
    jitter: float
    seed: int

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


def weak_lips(visibility: float, level: str | None, seed: int) -> WeakLips | None:
    """The weakening of an utterance of a speaker at ``level``; None at visibility 1 (the mouth as it was)."""
    v = check_visibility(visibility)
    if v == 1.0:
        return None
    return WeakLips(merge=merge_weight(v), amplitude=amplitude(v, level), jitter=1.0 - v, seed=int(seed))


def parameters(visibility: float) -> dict:
    """What ``synth_info.json`` records about a weakened corpus."""
    v = check_visibility(visibility)
    return {
        "visibility": v,
        "merge": merge_weight(v),
        "merge_full_at": MERGE_FULL_AT,
        "confusion_groups": {k: list(m) for k, m in CONFUSION_GROUPS.items()},
        "amplitude_by_level": {lv: amplitude(v, None if lv == "control" else lv) for lv in AMPLITUDE_EXPONENT},
        "jitter_scale": 1.0 - v,
        "target_jitter_std": TARGET_JITTER,
        "drift_jitter_std": DRIFT_JITTER,
        "drift_hz": DRIFT_HZ,
    }
