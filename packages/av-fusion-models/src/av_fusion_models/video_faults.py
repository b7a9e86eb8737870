"""Lip-video faults: what real recordings do to a mouth crop, as exact, deterministic functions.

A phone's picture lags its sound, a hand covers the mouth, a webcam drops frames, the crop locks on the wrong
face. An audio-visual model must notice these and fall back on the sound (docs/GATING_AND_ROUTING.md 6). The
same definitions serve two places:

* evaluation (`av-cli noise-eval --video CONDITION`): one named, deterministic condition per run, applied to
  each clip's uint8 frames [T, H, W] before normalisation (`VideoCondition`, `parse_video_condition`);
* training (`AVWhisperConfig.video_fault_prob`): a random fault per sample, applied to the normalised batch
  [B, T, H, W] inside the model (`draw_training_faults`, `apply_training_faults`), with an agreement label for
  the reliability scorer (1: the lips belong to the sound, 0: they do not, NaN: the fault leaves it open).

Conditions (frames at ``fps``; a clip of T frames; "black" is pixel value 0, i.e. `black_value` once normalised):

    clean            the frames as recorded
    late-<N>ms       the picture lags the sound by N ms: frame t shows frame t - round(N fps / 1000)
                     (the first frame is held where there is none)
    early-<N>ms      the picture leads: frame t shows frame t + k (the last frame held at the end)
    occluded[-<P>]   the lower P % of every frame (default 50) black: a hand or a spoon over the mouth
    blur[-<S>]       Gaussian blur of standard deviation S pixels (default 4; kernel 2 ceil(3 S) + 1, edges reflected)
    fps-<N>          N frames per second: each frame is held for round(fps / N) frames (a dropped-frame webcam)
    frozen           the first frame held over the whole clip (a stalled camera, a photo)
    black[-<P>]      the middle P % of the frames black (default 100: the whole clip; frames lost)
    mismatched       the lips of another word of the same speaker, stretched to the clip's length (the caller
                     picks the partner: av_train.evaluation.noise)
    other_speaker    the lips of another speaker saying another word, stretched likewise

Index faults (offsets, frame holds, frozen) move frames in time only; pixel faults (occlusion, blur, black)
change pixels only. Each function returns a new tensor and leaves its input untouched.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch.nn import functional as F

# the conditions whose partner clip the caller supplies
PARTNER_CONDITIONS = ("mismatched", "other_speaker")
# plain names and the prefixes of the parametrised ones, for error messages and docs
CONDITION_NAMES = ("clean", "late-<N>ms", "early-<N>ms", "occluded[-<P>]", "blur[-<S>]", "fps-<N>", "frozen",
                   "black[-<P>]", "mismatched", "other_speaker")
# the classes a training draw picks from (AVWhisperConfig.video_fault_classes)
TRAINING_FAULTS = ("wrong", "frozen", "shift", "occlusion", "blur", "low_fps", "black")
# shifts of at least this many frames (320 ms at 25 fps) carry another moment of the word: labelled "disagree";
# smaller ones are left to the recognition loss (a 200 ms offset still helps under noise, issue 29's table)
SHIFT_DISAGREE_FRAMES = 8


@dataclass(frozen=True)
class VideoCondition:
    """One named evaluation condition: ``kind`` and its parameter (frames, percent or pixels; see the module)."""

    name: str
    kind: str
    value: float = 0.0

    @property
    def needs_partner(self) -> bool:
        return self.kind in PARTNER_CONDITIONS


_PATTERNS = (
    (re.compile(r"^(late|early)-(\d+(?:\.\d+)?)ms$"), "offset"),
    (re.compile(r"^occluded(?:-(\d+(?:\.\d+)?))?$"), "occluded"),
    (re.compile(r"^blur(?:-(\d+(?:\.\d+)?))?$"), "blur"),
    (re.compile(r"^fps-(\d+(?:\.\d+)?)$"), "fps"),
    (re.compile(r"^black(?:-(\d+(?:\.\d+)?))?$"), "black"),
)


def parse_video_condition(name: str, fps: float = 25.0) -> VideoCondition:
    """``"late-200ms"`` -> VideoCondition("late-200ms", "offset", 5.0) (frames; + = the picture lags), etc."""
    text = str(name).strip().lower()
    if text in ("clean", "frozen", *PARTNER_CONDITIONS):
        return VideoCondition(text, text)
    for pattern, kind in _PATTERNS:
        m = pattern.match(text)
        if not m:
            continue
        if kind == "offset":
            frames = round(float(m.group(2)) * fps / 1000.0)
            return VideoCondition(text, "offset", float(frames if m.group(1) == "late" else -frames))
        value = m.group(1)
        if kind == "occluded":
            pct = 50.0 if value is None else float(value)
            _check(0 < pct <= 100, name, "the occluded share is a percentage in (0, 100]")
            return VideoCondition(text, kind, pct)
        if kind == "blur":
            sigma = 4.0 if value is None else float(value)
            _check(sigma > 0, name, "the blur's standard deviation must be > 0 pixels")
            return VideoCondition(text, kind, sigma)
        if kind == "fps":
            rate = float(value)
            _check(0 < rate <= fps, name, f"the frame rate must be in (0, {fps:g}]")
            return VideoCondition(text, kind, float(max(1, round(fps / rate))))
        pct = 100.0 if value is None else float(value)
        _check(0 < pct <= 100, name, "the black share is a percentage in (0, 100]")
        return VideoCondition(text, kind, pct)
    raise ValueError(f"unknown video condition {name!r}; use one of: {', '.join(CONDITION_NAMES)} "
                     "(e.g. late-400ms, occluded-50, blur-4, fps-5, black-50)")


def _check(ok: bool, name: str, why: str) -> None:
    if not ok:
        raise ValueError(f"video condition {name!r}: {why}")


# ---------------------------------------------------------------------------------------------- index faults
def offset_index(num_frames: int, offset: int) -> torch.Tensor:
    """[T] long: frame t shows frame t - offset (offset > 0: the picture lags), clamped to the clip."""
    return (torch.arange(num_frames) - int(offset)).clamp(0, max(num_frames - 1, 0))


def hold_index(num_frames: int, every: int) -> torch.Tensor:
    """[T] long: each ``every``-th frame held until the next (``every`` = 5: 5 fps out of 25)."""
    return (torch.arange(num_frames) // max(int(every), 1)) * max(int(every), 1)


def stretch_index(source_frames: int, num_frames: int) -> torch.Tensor:
    """[T] long: nearest frames of a clip of ``source_frames`` stretched to ``num_frames`` (partner clips): frame t
    shows frame round(t (T' - 1) / (T - 1)), halves rounded up, in exact integer arithmetic (a float linspace puts
    the halves on either side depending on its precision)."""
    if source_frames < 1:
        raise ValueError("a partner clip without frames cannot be stretched")
    span = max(int(num_frames) - 1, 1)
    return (2 * torch.arange(num_frames) * (int(source_frames) - 1) + span) // (2 * span)


# ---------------------------------------------------------------------------------------------- pixel faults
def occlude(frames: torch.Tensor, fraction: float, value: float = 0.0) -> torch.Tensor:
    """frames [..., H, W]: the lower ``fraction`` of the rows set to ``value`` (round(fraction H) rows)."""
    rows = int(round(float(fraction) * frames.shape[-2]))
    out = frames.clone()
    if rows > 0:
        out[..., frames.shape[-2] - rows :, :] = value
    return out


def gaussian_blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """frames [..., H, W] (any dtype; integers are rounded back) blurred by a separable Gaussian of ``sigma`` px."""
    radius = max(1, int(math.ceil(3 * float(sigma))))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    kernel = kernel / kernel.sum()
    shape = frames.shape
    img = frames.reshape(-1, 1, *shape[-2:]).to(torch.float32)
    # reflect padding needs the pad smaller than the side; replicate beyond that
    mode = "reflect" if radius < min(shape[-2:]) else "replicate"
    img = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    img = F.conv2d(F.pad(img, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1))
    img = img.reshape(shape)
    if not frames.dtype.is_floating_point:
        info = torch.iinfo(frames.dtype)
        return img.round().clamp(info.min, info.max).to(frames.dtype)
    return img.to(frames.dtype)


def black_span(num_frames: int, fraction: float) -> tuple[int, int]:
    """[start, stop) of the middle ``fraction`` of a clip's frames (round(fraction T) frames, at least one)."""
    n = min(num_frames, max(1, int(round(float(fraction) * num_frames))))
    start = (num_frames - n) // 2
    return start, start + n


def apply_condition(frames: torch.Tensor, condition: VideoCondition, partner: torch.Tensor | None = None,
                    black_value: float = 0.0) -> torch.Tensor:
    """One clip's frames [T, H, W] under ``condition`` -> [T, H, W] (``partner``: the other clip's frames
    [T', H, W] for the partner conditions)."""
    t = frames.shape[0]
    kind, value = condition.kind, condition.value
    if kind == "clean":
        return frames
    if kind in PARTNER_CONDITIONS:
        if partner is None:
            raise ValueError(f"video condition {condition.name!r} needs the partner clip's frames")
        return partner[stretch_index(partner.shape[0], t)].contiguous()
    if kind == "frozen":
        return frames[:1].expand_as(frames).contiguous()
    if kind == "offset":
        return frames[offset_index(t, int(value))].contiguous()
    if kind == "fps":
        return frames[hold_index(t, int(value))].contiguous()
    if kind == "occluded":
        return occlude(frames, value / 100.0, black_value)
    if kind == "blur":
        return gaussian_blur(frames, value)
    if kind == "black":
        start, stop = black_span(t, value / 100.0)
        out = frames.clone()
        out[start:stop] = black_value
        return out
    raise ValueError(f"unknown video condition kind {kind!r}")


# ------------------------------------------------------------------------------------------------- training
@dataclass
class TrainingFaults:
    """Per-sample training faults (each [B]): ``kind`` an index into `TRAINING_FAULTS` or -1 (none), its
    parameter (frames of shift, hold period, occluded or black share, blur sigma), and the agreement label
    (1 the lips belong to the sound, 0 they do not, NaN open)."""

    kind: torch.Tensor
    value: torch.Tensor
    agree: torch.Tensor


def draw_training_faults(faulted: torch.Tensor, classes: tuple[str, ...], generator: torch.Generator | None = None,
                         ) -> TrainingFaults:
    """For each ``faulted`` [B] sample, one class of ``classes`` (uniform) and its parameter:

        shift      +-2..+-12 frames (80-480 ms at 25 fps), either way
        occlusion  the lower 30-80 % of the frame
        blur       sigma 1-5 px
        low_fps    each frame held 3-8 frames (8.3-3.1 fps)
        black      the middle 30-100 % of the frames
        frozen, wrong  no parameter

    Agreement labels: wrong, frozen, black over >= 90 % of the clip and shifts of >= `SHIFT_DISAGREE_FRAMES`
    are 0 (the video says nothing of this sound, or another moment of it); occlusion, blur, low frame rates,
    shorter black spans and smaller shifts are NaN: how much they still carry is for the recognition loss to say.
    Unfaulted samples are 1."""
    bsz = faulted.shape[0]
    unknown = [c for c in classes if c not in TRAINING_FAULTS]
    if unknown or not classes:
        raise ValueError(f"video_fault_classes must be a non-empty subset of {TRAINING_FAULTS}, got {list(classes)}")
    ids = torch.tensor([TRAINING_FAULTS.index(c) for c in classes])
    pick = ids[torch.randint(len(classes), (bsz,), generator=generator)]
    kind = torch.where(faulted.cpu(), pick, torch.full_like(pick, -1))
    u = torch.rand(bsz, generator=generator)
    sign = torch.where(torch.rand(bsz, generator=generator) < 0.5, -1.0, 1.0)
    value = torch.zeros(bsz)
    agree = torch.ones(bsz)
    for name, lo, hi in (("shift", 2, 12), ("occlusion", 0.3, 0.8), ("blur", 1.0, 5.0), ("low_fps", 3, 8),
                         ("black", 0.3, 1.0)):
        sel = kind == TRAINING_FAULTS.index(name)
        if name in ("shift", "low_fps"):
            v = torch.floor(lo + u * (hi - lo + 1)).clamp(max=hi)
            v = v * sign if name == "shift" else v
        else:
            v = lo + u * (hi - lo)
        value = torch.where(sel, v, value)
    for name in TRAINING_FAULTS:
        sel = kind == TRAINING_FAULTS.index(name)
        if name in ("wrong", "frozen"):
            label = torch.zeros(bsz)
        elif name == "shift":
            label = torch.where(value.abs() >= SHIFT_DISAGREE_FRAMES, 0.0, float("nan"))
        elif name == "black":
            label = torch.where(value >= 0.9, 0.0, float("nan"))
        else:
            label = torch.full((bsz,), float("nan"))
        agree = torch.where(sel, label, agree)
    return TrainingFaults(kind, value, agree)


def apply_training_faults(video: torch.Tensor, lengths: torch.Tensor, faults: TrainingFaults,
                          black_value: float) -> torch.Tensor:
    """Normalised video [B, T, H, W] and valid frames [B] -> the faulted batch (pixel and index faults; the
    wrong lips are swapped later, on the projected states: modality_dropout.swap_video). Padding frames stay."""
    kinds = faults.kind.tolist()
    if all(k < 0 or TRAINING_FAULTS[k] == "wrong" for k in kinds):
        return video
    out = video.clone()
    for b, k in enumerate(kinds):
        if k < 0 or TRAINING_FAULTS[k] == "wrong":
            continue
        name, value, n = TRAINING_FAULTS[k], float(faults.value[b]), int(lengths[b])
        if n < 1:
            continue
        clip = video[b, :n]
        if name == "frozen":
            clip = clip[:1].expand_as(clip)
        elif name == "shift":
            clip = clip[offset_index(n, int(value)).to(clip.device)]
        elif name == "low_fps":
            clip = clip[hold_index(n, int(value)).to(clip.device)]
        elif name == "occlusion":
            clip = occlude(clip, value, black_value)
        elif name == "blur":
            clip = gaussian_blur(clip, value)
        elif name == "black":
            start, stop = black_span(n, value)
            clip = clip.clone()
            clip[start:stop] = black_value
        out[b, :n] = clip
    return out
