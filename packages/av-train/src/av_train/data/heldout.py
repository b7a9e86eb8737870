"""Held-out training utterances for choosing the checkpoint (``model_selection: heldout``).

Without it, validation = test = block B2: the best checkpoint and early stopping see the words the scores are
reported on. With it, a share of each speaker's B1 + B3 utterances leaves training and is validated on instead.

The unit is the utterance: one utterance is several samples (one per microphone channel) and all of them leave
training together, so the model never trained on another recording of a word it is validated on. The choice is
per speaker (every speaker, and so every intelligibility level, is validated on) and a function of
(seed, speaker, that speaker's candidate utterances) alone: the same seed holds out the same utterances whatever
other speakers the run uses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from av_train.data.manifest import Sample


@dataclass(frozen=True)
class HeldOutSplit:
    train: list[Sample]
    """Every sample (each microphone) of the utterances left in training."""
    validation: list[Sample]
    """The held-out utterances on the validation microphone, one sample each."""
    utterances: frozenset[str]
    """utt_id of every held-out utterance."""
    candidates: int
    """Training utterances that could be held out (those recorded on the validation microphone)."""
    speakers_without: tuple[str, ...]
    """Speakers with a single candidate utterance: kept in training, not validated on."""


def heldout_count(n: int, fraction: float) -> int:
    """Utterances held out of a speaker's ``n``: round(fraction x n), at least 1, and at least one left to train on."""
    return min(n - 1, max(1, round(fraction * n)))


def hold_out(samples: list[Sample], fraction: float, seed: int, mic: str) -> HeldOutSplit:
    """Split a run's training samples (every microphone) into training and held-out validation.

    Candidates are the utterances that have a ``mic`` sample (validation uses that channel); of each speaker's
    ``n`` candidates, ``heldout_count(n, fraction)`` are drawn without replacement from a generator seeded by
    ``(seed, speaker)``. Every sample of a drawn utterance, on any channel, is removed from training.
    """
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"heldout fraction must be in (0, 0.5], got {fraction}")
    by_speaker: dict[str, set[str]] = {}
    for s in samples:
        if s.mic == mic:
            by_speaker.setdefault(s.speaker, set()).add(s.utt_id)
    held: set[str] = set()
    without = []
    for speaker in sorted(by_speaker):
        utts = sorted(by_speaker[speaker])
        n = heldout_count(len(utts), fraction)
        if n < 1:
            without.append(speaker)
            continue
        held.update(random.Random(f"heldout:{seed}:{speaker}").sample(utts, n))
    return HeldOutSplit(
        train=[s for s in samples if s.utt_id not in held],
        validation=[s for s in samples if s.utt_id in held and s.mic == mic],
        utterances=frozenset(held),
        candidates=sum(len(u) for u in by_speaker.values()),
        speakers_without=tuple(without),
    )
