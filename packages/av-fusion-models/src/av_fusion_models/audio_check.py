"""The audio check: the lips may change the word only where the sound does not clearly object.

The reliability scorer (reliability.py) sees *when* the lips move against the sound, but another word's lips said
in time with the sound pass it (docs/GATING_AND_ROUTING.md 6). The check asks the sound itself: the batch is decoded
with the lips and, from the same encoder states without them, by the audio alone (Whisper exactly, as r = 0); each
clip's two hypotheses are scored by the audio alone, and where the audio's own hypothesis beats the lips' one by
more than ``margin`` nats (summed log-probability), the lips are overruled: the audio's hypothesis is kept and the
clip's reported reliability is 0. Lips that tip an uncertain sound (noise, a weak voice) keep their say; lips that
contradict a clear sound do not.

Cost: a second search, by the audio alone, and two scoring passes without the cache (about twice the decoding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .generation import DecoderStep, ModelStep


@torch.no_grad()
def decode_with_audio_check(
    step: DecoderStep, search: Callable[[DecoderStep], torch.Tensor], prompt_len: int, eos: Sequence[int], pad: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``search(step)`` (greedy or beam search, any constraint), checked against the audio alone.

    The check runs when the step carries ``audio_only`` (a `ModelStep` of the same inputs without video), a margin
    > 0 and a video reliability with at least one clip whose lips were used; otherwise this is ``search(step)``.
    Shapes: ids [B, P + N] (right-padded with ``pad``); reliability [B] (or None). Returns (ids, reliability) with
    the overruled rows replaced by the audio's hypothesis and their reliability set to 0.
    """
    ids = search(step)
    reliability = getattr(step, "video_reliability", None)
    audio: ModelStep | None = getattr(step, "audio_only", None)
    margin = float(getattr(step, "audio_margin", 0.0))
    if audio is None or reliability is None or margin <= 0 or not bool((reliability > 0).any()):
        return ids, reliability
    audio_ids = search(audio)
    gap = audio.score(audio_ids, prompt_len, eos) - audio.score(ids, prompt_len, eos)  # [B] nats
    overrule = (gap > margin).to(reliability.device) & (reliability > 0)
    if not bool(overrule.any()):
        return ids, reliability
    width = max(ids.shape[1], audio_ids.shape[1])
    ids, audio_ids = _pad_to(ids, width, pad), _pad_to(audio_ids, width, pad)
    ids = torch.where(overrule.to(ids.device)[:, None], audio_ids, ids)
    return ids, torch.where(overrule, torch.zeros_like(reliability), reliability)


def _pad_to(ids: torch.Tensor, width: int, pad: int) -> torch.Tensor:
    if ids.shape[1] == width:
        return ids
    return torch.cat([ids, ids.new_full((ids.shape[0], width - ids.shape[1]), pad)], dim=1)
