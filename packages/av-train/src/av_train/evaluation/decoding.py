"""Decoding an evaluation split with one model or a true ensemble of several.

The ensemble averages the members' next-token log-probabilities at every step, greedy or beam
(log p(y_t) = mean_k log p_k(y_t | y_<t, x)), so all members extend the same hypothesis; each
member keeps its own encoder output, video states and KV cache (av_fusion_models.generation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from av_eval import Prediction
from av_fusion_models.generation import EnsembleStep, beam_search, greedy_search
from av_fusion_models.audio_check import decode_with_audio_check
from av_train.data.dataset import Collator, UASpeechAVDataset
from av_train.data.manifest import Sample, load_samples
from av_train.data.samplers import DurationBatchSampler
from av_train.evaluation.loading import LoadedRun
from av_train.model_io import model_inputs, predictions

# --split value -> (manifest split, block or None for all blocks of that split)
SPLITS: dict[str, tuple[str, str | None]] = {
    "B1": ("train", "B1"), "B2": ("test", "B2"), "B3": ("train", "B3"), "train": ("train", None), "test": ("test", None),
}


def eval_samples(run: LoadedRun, split: str = "B2", need_video: bool | None = None) -> list[Sample]:
    """The utterances of ``split`` on the run's first microphone (as training's B2 scores use)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLITS)}")
    cfg = run.cfg
    manifest_split, block = SPLITS[split]
    samples, _ = load_samples(
        cfg.uaspeech_root, manifest_split, cfg.microphones[:1], cfg.speakers,
        need_video=cfg.uses_video if need_video is None else need_video, vocabulary=cfg.vocabulary,
    )
    if block is not None:
        samples = [s for s in samples if s.block == block]
    if not samples:
        raise ValueError(f"{Path(cfg.uaspeech_root) / 'manifest.jsonl'}: no {split} utterances for microphone "
                         f"{cfg.microphones[0]}" + (f" and speakers {cfg.speakers}" if cfg.speakers else ""))
    return samples


def eval_dataset(run: LoadedRun, samples: list[Sample], with_video: bool, with_audio: bool = True) -> UASpeechAVDataset:
    return UASpeechAVDataset(samples, run.targets, with_video, train=False, n_mels=run.n_mels, cache_features=False,
                             with_audio=with_audio)


@torch.no_grad()
def decode_batch(
    runs: Sequence[LoadedRun], inputs: Sequence[dict], prompt: torch.Tensor, max_new_tokens: int,
    eos_token_id: int, pad_token_id: int | None = None, num_beams: int = 1, use_cache: bool = True,
    constraint=None, loop_repeats: int | None = None, return_reliability: bool = False,
) -> tuple:
    """One batch decoded by one run or the true ensemble of several (av_fusion_models.generation).

    The ensemble averages the members' log-probabilities at every step (`EnsembleStep`), greedy or beam.
    Shapes:
        inputs[k]: keyword inputs of run k's model (``model_inputs``); prompt [B, P], the same for every run
    Returns:
        ids [B, P + N] (finished rows padded with ``pad_token_id``, default the end-of-text id), per run
        its route probabilities [B, 3] (None for models without a router), and with ``return_reliability`` per
        run its video reliability [B] (None for models without a reliability scorer)
    """
    if not runs:
        raise ValueError("an ensemble needs at least one model")
    models = [r.model for r in runs]
    vocab = {m.whisper.proj_out.out_features for m in models}
    if len(vocab) != 1:
        raise ValueError(f"ensemble members have different vocabularies {sorted(vocab)}: they must share a tokenizer")
    pad = eos_token_id if pad_token_id is None else pad_token_id
    room = min(m.whisper.config.max_target_positions for m in models) - prompt.shape[1]
    steps, routes = [], []
    for m, kw in zip(models, inputs):
        step, route = m.decoder_step(**kw, use_cache=use_cache)
        steps.append(step)
        routes.append(None if route is None else route.float().cpu())
    reliabilities = [None if s.video_reliability is None else s.video_reliability.float().cpu() for s in steps]
    step = steps[0] if len(steps) == 1 else EnsembleStep(steps)
    max_new_tokens = min(max_new_tokens, room)

    def search(s):
        if num_beams > 1:
            return beam_search(s, prompt, max_new_tokens, num_beams, [eos_token_id], pad, constraint=constraint,
                               loop_repeats=loop_repeats)
        return greedy_search(s, prompt, max_new_tokens, [eos_token_id], pad, constraint=constraint,
                             loop_repeats=loop_repeats)

    # one run: its audio check, if its config asks for one (an ensemble's step carries none)
    ids, checked = decode_with_audio_check(step, search, prompt.shape[1], [eos_token_id], pad)
    if len(steps) == 1 and checked is not None:
        reliabilities = [checked.float().cpu()]
    return (ids, routes, reliabilities) if return_reliability else (ids, routes)


def decode_runs(
    runs: Sequence[LoadedRun], split: str = "B2", dataset: UASpeechAVDataset | None = None, batch_size: int = 16,
    progress: bool = True, use_cache: bool = True, desc: str | None = None, decode_vocabulary: str | None = None,
) -> list[Prediction]:
    """Predictions of one run (``runs=[run]``) or of the true ensemble of several on ``split``.

    ``num_beams`` and ``loop_repeats`` of the first run's config: greedy (1) or beam search, for one run exactly
    ``model.generate``'s, for several the ensemble's. Decoding is constrained to
    ``decode_vocabulary`` (default: the first run's config value; ``open``, ``uaspeech`` or a file).
    """
    from av_train.vocabulary import constraint_for, decode_words

    if not runs:
        raise ValueError("no runs to decode")
    first = runs[0]
    for r in runs[1:]:
        if r.targets.prompt != first.targets.prompt or r.cfg.char_level != first.cfg.char_level:
            raise ValueError(f"{r.checkpoint} and {first.checkpoint} use different prompts / target levels: "
                             "an ensemble needs runs of the same Whisper tokenizer and char_level")
        if r.cfg.cut_encoder_positions != first.cfg.cut_encoder_positions:
            raise ValueError(f"{r.checkpoint} and {first.checkpoint} disagree on cut_encoder_positions")
    with_video = any(r.cfg.uses_video for r in runs)
    with_audio = any(r.cfg.uses_audio for r in runs)
    if dataset is None:
        dataset = eval_dataset(first, eval_samples(first, split, need_video=with_video), with_video, with_audio)
    collate = Collator(first.targets.pad_id, pad_audio_to=None if first.cfg.cut_encoder_positions else 3000)
    sampler = DurationBatchSampler([s.duration_s for s in dataset.samples], max_seconds=float("inf"), shuffle=False,
                                   max_batch_size=batch_size)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=0)
    device = next(first.model.parameters()).device
    beams = first.cfg.num_beams
    spec = first.cfg.decode_vocabulary if decode_vocabulary is None else decode_vocabulary
    constraint = constraint_for(first.targets.tokenizer, decode_words(spec), first.cfg.char_level)
    preds: list[Prediction] = []
    for batch in tqdm(loader, desc=desc or f"decoding {split}", disable=not progress, leave=False):
        prompt = torch.tensor(first.targets.prompt, device=device).repeat(len(batch["meta"]), 1)
        inputs = [model_inputs(batch, r.cfg, device) for r in runs]
        ids, routes, trust = decode_batch(runs, inputs, prompt, first.cfg.max_new_tokens, first.targets.eot,
                                   num_beams=beams, use_cache=use_cache, constraint=constraint,
                                   loop_repeats=first.cfg.decoding_loop_repeats, return_reliability=True)
        hyps = [first.targets.decode(seq[prompt.shape[1]:].tolist()) for seq in ids]
        preds.extend(predictions(batch["meta"], hyps, routes[0] if len(runs) == 1 else None,
                                 trust[0] if len(runs) == 1 else None))
    return preds
