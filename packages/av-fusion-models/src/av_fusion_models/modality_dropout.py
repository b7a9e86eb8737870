"""Per-sample modality dropout and lip-video faults, drawn in training mode only.

One uniform draw u per sample picks at most one of four mutually exclusive outcomes, in this order of
intervals of [0, 1):

    drop_video   u in [0, vd)                the video is masked out (the model hears the audio only)
    drop_audio   ... next ad                 the audio becomes silence (the model reads the lips only)
    frozen_video ... next video_frozen_prob  the clip's first frame is held: a face that does not move
    wrong_video  ... next video_mismatch_prob  another sample's lips (the next one of the batch)
    fault        ... next video_fault_prob   one fault of `video_fault_classes` (video_faults.py: offsets,
                                             occlusion, blur, held frames, black, still face, wrong lips)

so a sample never loses its audio and its video together, and a model trained with the two faults sees clean
audio beside lips that carry no word or the wrong one: it must learn to fall back on the audio there, instead of
following the lips blindly (`av-cli noise-eval --video frozen|mismatched` measures it). The faults mirror the
evaluation's (av_train.evaluation.noise), except that the wrong lips keep their own length here.

Each outcome also gives the sample an agreement label for the video reliability scorer (reliability.py): 1 for
a clean clip, 0 for lips that say nothing of this sound (still face, wrong lips, and the faults video_faults.py
labels 0), NaN (no label) for dropped modalities and the faults whose effect is for the recognition loss to judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

import torch

from .video_faults import TRAINING_FAULTS, TrainingFaults, draw_training_faults, stretch_index


@dataclass
class ModalityDraw:
    """Per-sample outcomes, each bool [B] (mutually exclusive)."""

    drop_video: torch.Tensor
    drop_audio: torch.Tensor
    frozen_video: torch.Tensor
    wrong_video: torch.Tensor
    faults: TrainingFaults | None = None  # the video_fault_prob outcome's fault per sample (kind -1: none)

    @property
    def agree(self) -> torch.Tensor:
        """[B] float agreement labels of the lips with the sound: 1, 0 or NaN (no label; module docstring)."""
        agree = torch.ones(self.drop_video.shape[0])
        if self.faults is not None:
            agree = self.faults.agree.clone()
        agree[(self.frozen_video | self.wrong_video).cpu()] = 0.0
        agree[(self.drop_video | self.drop_audio).cpu()] = float("nan")
        return agree

    @property
    def all_wrong(self) -> torch.Tensor:
        """[B] bool: the sample's projected video is another sample's (video_mismatch_prob or a "wrong" fault)."""
        return self.wrong_video | self.wrong_fault

    @property
    def wrong_fault(self) -> torch.Tensor:
        """[B] bool: the "wrong" class of the faults (another sample's lips stretched to this clip's length)."""
        if self.faults is None:
            return torch.zeros_like(self.wrong_video)
        return (self.faults.kind == TRAINING_FAULTS.index("wrong")).to(self.wrong_video.device)


def draw_modalities(config, bsz: int, device) -> ModalityDraw | None:
    """One draw per sample from the probabilities of an `AVWhisperConfig`; None when they are all zero."""
    probs = config.modality_probs
    if not any(p > 0 for p in probs):
        return None
    u = torch.rand(bsz, device=device)
    edges = list(accumulate(probs))  # interval k is [edges[k-1], edges[k])
    masks = [(u >= lo) & (u < hi) for lo, hi in zip([0.0, *edges[:-1]], edges)]
    faults = None
    if config.video_fault_prob > 0:
        faults = draw_training_faults(masks[4], tuple(config.video_fault_classes or TRAINING_FAULTS))
    return ModalityDraw(*masks[:4], faults=faults)


def freeze_frames(video: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
    """video [B, T_v, ...] -> the same, with each ``frozen`` [B] sample's first frame held over the whole clip."""
    if not bool(frozen.any()):
        return video
    held = video[:, :1].expand_as(video)
    return torch.where(frozen.view(-1, *[1] * (video.dim() - 1)).to(video.device), held, video)


def swap_video_stretched(states: torch.Tensor, mask: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """Projected video states [B, T_v, D], padding mask [B, T_v]: each ``wrong`` [B] sample takes the next sample's
    states (cyclically) stretched (nearest frame) to its own valid length, as evaluation's mismatched lips are, so
    that their timing does not give them away; its mask stays its own."""
    if not bool(wrong.any()) or states.shape[0] < 2:
        return states
    lengths = (~mask).sum(dim=1).tolist()
    out = states.clone()
    for b in torch.nonzero(wrong).flatten().tolist():
        p = (b + 1) % states.shape[0]
        if lengths[b] and lengths[p]:
            out[b, : lengths[b]] = states[p, stretch_index(lengths[p], lengths[b]).to(states.device)]
    return out


def swap_video(states: torch.Tensor, mask: torch.Tensor, wrong: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected video states [B, T_v, D] and padding mask [B, T_v]: each ``wrong`` [B] sample takes those of the
    next sample of the batch (cyclically; a batch of one keeps its own)."""
    if not bool(wrong.any()):
        return states, mask
    wrong = wrong.to(states.device)
    states = torch.where(wrong[:, None, None], states.roll(-1, dims=0), states)
    mask = torch.where(wrong[:, None], mask.roll(-1, dims=0), mask)
    return states, mask
