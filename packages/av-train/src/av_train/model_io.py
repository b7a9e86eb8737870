"""The glue between a collated batch, the model and predictions, written once for training and evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from av_eval import LEVELS, Prediction


def model_inputs(batch: dict, cfg, device: torch.device | None = None) -> dict:
    """The model's keyword inputs for a collated batch (``av_train.data.dataset.Collator``).

    Video only for runs that use it (``cfg.uses_video``): an audio-only member of an ensemble ignores the video
    its batch carries. Severity levels only for routers that take them (``cfg.routing_use_level``).
    ``device``: where to move the tensors (None: where they are; Lightning has moved the batch already).
    """
    kw = {"input_features": batch["input_features"], "input_lengths": batch["feature_lengths"]}
    if cfg.uses_video:
        kw["video"] = batch["video"]
        kw["video_padding_mask"] = batch["video_padding_mask"]
    if device is not None:
        kw = {k: v.to(device) for k, v in kw.items()}
    if cfg.routing_use_level:
        kw["levels"] = torch.tensor([LEVELS.index(m["level"]) for m in batch["meta"]],
                                    device=kw["input_features"].device)
    return kw


def predictions(metas: Sequence[dict], hypotheses: Sequence[str], route_probs=None,
                video_reliability=None) -> list[Prediction]:
    """One `Prediction` per utterance of a batch: its metadata (``batch["meta"]``), the decoded text and, for
    router models, its route probabilities (a [B, 3] tensor or nested list; None for other models), for models
    with a reliability scorer the video's reliability ([B]; None for other models)."""
    if route_probs is None:
        routes = [None] * len(hypotheses)
    else:
        routes = route_probs.float().cpu().tolist() if torch.is_tensor(route_probs) else route_probs
    if video_reliability is None:
        trust = [None] * len(hypotheses)
    else:
        trust = video_reliability.float().cpu().tolist() if torch.is_tensor(video_reliability) else video_reliability
    return [
        Prediction(meta["utt_id"], meta["word"], hyp, meta["speaker"], meta["level"], meta["category"],
                   tuple(float(x) for x in p) if p is not None else None, None if r is None else float(r))
        for meta, hyp, p, r in zip(metas, hypotheses, routes, trust)
    ]
