"""What the page draws: the mouth crops the model saw, and probabilities for Gradio's bar charts.

The strip lets a user see at a glance whether the face was found (lips in every tile) or not (cheek, chin,
nothing). Probabilities go to ``gr.Label``, which draws one bar per entry, best first.
"""

from __future__ import annotations

import math

import numpy as np

from av_fusion_models.router import ROUTES

# the router's route names, shortened for the bars ("encoder_only" -> "encoder")
ROUTE_LABELS = {route: route.removesuffix("_only") for route in ROUTES}
GAP = 4  # pixels between tiles


def mouth_strip(crops: np.ndarray | None, tiles: int = 12, per_row: int = 6) -> np.ndarray | None:
    """[T, H, W] grey (or [T, H, W, 3]) crops -> one RGB image of ``tiles`` frames evenly spread over the clip,
    ``per_row`` to a row, in time order (left to right, then down); None when there are no crops."""
    if crops is None or len(crops) == 0:
        return None
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = np.repeat(crops[..., None], 3, axis=-1)
    n = min(tiles, len(crops))
    picked = crops[np.linspace(0, len(crops) - 1, n).round().astype(int)]
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    h, w = picked.shape[1:3]
    out = np.full((rows * h + (rows - 1) * GAP, cols * w + (cols - 1) * GAP, 3), 255, np.uint8)
    for i, tile in enumerate(picked):
        r, c = divmod(i, cols)
        out[r * (h + GAP): r * (h + GAP) + h, c * (w + GAP): c * (w + GAP) + w] = tile
    return out


def word_probabilities(top_k: list[tuple[str, float]]) -> dict[str, float] | None:
    """(word, log p) best first -> {word: p}; None for open decoding (no candidate list).

    p is the model's own probability of the word given the input (exact, over Whisper's whole token
    vocabulary), not renormalised over the five: bars that add up to much less than 1 mean the model
    is unsure."""
    if not top_k:
        return None
    return {w: float(math.exp(lp)) for w, lp in top_k}


def route_probabilities(route_probs: dict[str, float] | None) -> dict[str, float] | None:
    """The router's P(encoder only), P(decoder only), P(both) under short names; None for other models."""
    if not route_probs:
        return None
    return {ROUTE_LABELS.get(k, k): float(v) for k, v in route_probs.items()}
