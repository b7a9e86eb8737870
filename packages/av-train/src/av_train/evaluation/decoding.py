"""Decoding an evaluation split with one model or a true ensemble of several.

The ensemble averages the members' next-token log-probabilities at every greedy step
(log p(y_t) = mean_k log p_k(y_t | y_<t, x)), so all members extend the same hypothesis; each
member keeps its own encoder output, video states and KV cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from av_eval import LEVELS, Prediction
from av_train.data.dataset import Collator, UASpeechAVDataset
from av_train.data.manifest import Sample, load_samples
from av_train.data.samplers import DurationBatchSampler
from av_train.evaluation.loading import LoadedRun

# --split value -> (manifest split, block or None for all blocks of that split)
SPLITS: dict[str, tuple[str, str | None]] = {
    "B1": ("train", "B1"), "B2": ("test", "B2"), "B3": ("train", "B3"), "train": ("train", None), "test": ("test", None),
}


def eval_samples(run: LoadedRun, split: str = "B2", need_video: bool | None = None) -> list[Sample]:
    """The utterances of ``split`` on the run's first microphone (as validation uses)."""
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


def model_inputs(run: LoadedRun, batch: dict, device: torch.device) -> dict:
    """The keyword inputs of ``run``'s model for a collated batch (video only for audio-visual runs)."""
    kw = {"input_features": batch["input_features"].to(device), "input_lengths": batch["feature_lengths"].to(device)}
    if run.cfg.uses_video:
        kw["video"] = batch["video"].to(device)
        kw["video_padding_mask"] = batch["video_padding_mask"].to(device)
    if run.cfg.routing_use_level:
        kw["levels"] = torch.tensor([LEVELS.index(m["level"]) for m in batch["meta"]], device=device)
    return kw


@torch.no_grad()
def ensemble_greedy(
    models: Sequence[torch.nn.Module], inputs: Sequence[dict], prompt: torch.Tensor, max_new_tokens: int,
    eos_token_id: int, pad_token_id: int | None = None, use_cache: bool = True, constraint=None,
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Greedy decoding from the mean of the models' log-probabilities.

    Shapes:
        inputs[k]: keyword inputs of model k (input_features [B, n_mels, T_a], video [B, T_v, 88, 88], ...)
        prompt: [B, P] decoder prompt, the same for every model
        constraint: optional av_fusion_models TokenTrie; tokens it forbids get -inf (closed vocabulary)
    Returns:
        ids [B, P + N] (finished rows padded with ``pad_token_id``), and per model its route
        probabilities [B, 3] (None for models without a router)
    """
    if not models:
        raise ValueError("an ensemble needs at least one model")
    vocab = {m.whisper.proj_out.out_features for m in models}
    if len(vocab) != 1:
        raise ValueError(f"ensemble members have different vocabularies {sorted(vocab)}: they must share a tokenizer")
    pad = eos_token_id if pad_token_id is None else pad_token_id
    room = min(m.whisper.config.max_target_positions for m in models) - prompt.shape[1]
    max_new_tokens = min(max_new_tokens, room)
    members, routes = [], []
    for m, kw in zip(models, inputs):
        fusion = m.prepare_fusion(kw["input_features"], kw.get("video"), kw.get("video_padding_mask"), kw.get("levels"),
                                  kw.get("input_lengths"), modality_dropout=False)
        encoder_hidden = m.encode(fusion.input_features, fusion)
        dec_kwargs = fusion.kwargs("decoder") if m.config.fuse_decoder else {}
        members.append([m, encoder_hidden, dec_kwargs, None])
        routes.append(None if fusion.route is None else fusion.route.route_probs.float().cpu())
    ids = prompt
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    step_input = ids
    for _ in range(max(0, max_new_tokens)):
        logprobs = None
        for member in members:
            m, encoder_hidden, dec_kwargs, cache = member
            if use_cache:
                hidden, member[3] = m.decode(step_input, encoder_hidden, dec_kwargs, cache=cache, use_cache=True)
            else:  # the whole prefix again: slower, the reference the cached path must equal
                hidden, _ = m.decode(ids, encoder_hidden, dec_kwargs)
            lp = F.log_softmax(m.whisper.proj_out(hidden[:, -1]).float(), dim=-1)  # [B, V]
            logprobs = lp if logprobs is None else logprobs + lp
        logprobs = logprobs / len(members)
        if constraint is not None:
            allowed = constraint.allowed_mask(ids[:, prompt.shape[1]:], logprobs.shape[-1], [eos_token_id])
            logprobs = logprobs.masked_fill(~allowed.to(logprobs.device), -float("inf"))
        next_tokens = logprobs.argmax(dim=-1)
        next_tokens = torch.where(finished, torch.full_like(next_tokens, pad), next_tokens)
        ids = torch.cat([ids, next_tokens[:, None]], dim=1)
        finished |= next_tokens == eos_token_id
        if bool(finished.all()):
            break
        step_input = next_tokens[:, None]
    return ids, routes


def decode_runs(
    runs: Sequence[LoadedRun], split: str = "B2", dataset: UASpeechAVDataset | None = None, batch_size: int = 16,
    progress: bool = True, use_cache: bool = True, desc: str | None = None, decode_vocabulary: str | None = None,
) -> list[Prediction]:
    """Predictions of one run (``runs=[run]``) or of the true ensemble of several on ``split``.

    One run with ``num_beams > 1`` in its config decodes with the model's beam search; otherwise
    greedy (for one model this is exactly ``model.generate``'s greedy path). Decoding is constrained to
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
    beams = first.cfg.num_beams if len(runs) == 1 else 1
    spec = first.cfg.decode_vocabulary if decode_vocabulary is None else decode_vocabulary
    constraint = constraint_for(first.targets.tokenizer, decode_words(spec), first.cfg.char_level)
    preds: list[Prediction] = []
    for batch in tqdm(loader, desc=desc or f"decoding {split}", disable=not progress, leave=False):
        prompt = torch.tensor(first.targets.prompt, device=device).repeat(len(batch["meta"]), 1)
        inputs = [model_inputs(r, batch, device) for r in runs]
        if beams > 1:
            ids = first.model.generate(**inputs[0], decoder_input_ids=prompt, max_new_tokens=first.cfg.max_new_tokens,
                                       num_beams=beams, eos_token_id=first.targets.eot, constraint=constraint)
            routes = [None]
            if first.model.router is not None:
                kw = inputs[0]
                fusion = first.model.prepare_fusion(kw["input_features"], kw.get("video"), kw.get("video_padding_mask"),
                                                    kw.get("levels"), kw.get("input_lengths"), modality_dropout=False)
                routes = [None if fusion.route is None else fusion.route.route_probs.float().cpu()]
        else:
            ids, routes = ensemble_greedy([r.model for r in runs], inputs, prompt, first.cfg.max_new_tokens,
                                          first.targets.eot, use_cache=use_cache, constraint=constraint)
        route = routes[0] if len(runs) == 1 else None
        for i, (meta, seq) in enumerate(zip(batch["meta"], ids)):
            hyp = first.targets.decode(seq[prompt.shape[1]:].tolist())
            rp = None if route is None else tuple(float(x) for x in route[i])
            preds.append(Prediction(meta["utt_id"], meta["word"], hyp, meta["speaker"], meta["level"],
                                    meta["category"], rp))
    return preds
