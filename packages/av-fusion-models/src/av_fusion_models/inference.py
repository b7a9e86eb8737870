"""Recognising words with a trained audio-visual Whisper and its processor.

`recognize` is the whole inference path: processor -> `generate` (greedy or beam, optionally constrained
to a closed vocabulary) -> text, plus, under a closed vocabulary, the k most probable words with their
log-probabilities and, for router models, the route probabilities. `av-cli transcribe` and the web page
call it; another project needs only this package::

    model = AVWhisperForConditionalGeneration.from_pretrained("my_model")
    processor = AVWhisperProcessor.from_pretrained("my_model")
    [result] = recognize(model, processor, audio=waveform, video=mouth_frames, sampling_rate=16000)
    print(result.text, result.top_k)
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from .processing_av_whisper import AVWhisperProcessor
from .router import ROUTES

# Decoder calls batch up to this many partial words of the best-first search at a time.
_EXPAND_BATCH = 16


@dataclass
class Recognition:
    """What the model made of one input."""

    text: str
    top_k: list[tuple[str, float]] = field(default_factory=list)
    """(word, log p(word | input)) best first, under the closed vocabulary; empty for open decoding."""
    route_probs: dict[str, float] | None = None
    """Router models: probability of each fusion route (encoder / decoder / both)."""
    video_reliability: float | None = None
    """Models with a reliability scorer (`AVWhisperConfig.video_reliability`) and video: how far the lips were
    trusted, 0 (the audio alone) .. 1 (the video at the full weight the model learned)."""


def _fusion_state(model, inputs: dict):
    fusion = model.prepare_fusion(
        inputs.get("input_features"), inputs.get("video"), inputs.get("video_padding_mask"), inputs.get("levels"),
        inputs.get("input_lengths"), modality_dropout=False,
    )
    return fusion, model.encoder_states(fusion)  # with the video reliability the decoder's fusion is scaled by


def _select(kwargs: dict, i: int, repeat: int) -> dict:
    return {k: (None if v is None else v[i : i + 1].expand(repeat, *v.shape[1:])) for k, v in kwargs.items()}


@torch.no_grad()
def rank_vocabulary(
    model, processor: AVWhisperProcessor, inputs: dict, k: int = 5, vocabulary: Sequence[str] | None = None,
    overruled: torch.Tensor | None = None,
) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable words of the closed vocabulary per input, exactly.

    log p(word) = sum of the model's log-probabilities of the word's tokens and of end-of-text after the
    prompt (full softmax over Whisper's vocabulary, no length normalisation). Best-first search over the
    vocabulary's token trie: log-probabilities only fall as a prefix grows, so the first complete words
    taken from the queue are the best ones; only the prefixes that can still win are run through the
    decoder, not every word of the vocabulary.

    Shapes: inputs as returned by the processor (batch B); ``overruled`` [B] bool: inputs whose lips the audio
    check overruled (audio_check.py), ranked by the audio alone as they were decoded. Returns B lists of
    (word, log-prob).
    """
    if vocabulary is not None:
        processor = processor.with_vocabulary(vocabulary)
    word_of = processor.words_by_tokens()  # (cached on the processor: tokenized once, not per input)
    if not word_of or k <= 0:
        return [[] for _ in range(_batch_size(inputs))]
    trie = processor.constraint()
    eos = processor.eos_token_id
    device = model.device
    inputs = {key: v.to(device) for key, v in inputs.items()}
    fusion, encoder_hidden = _fusion_state(model, inputs)
    dec_kwargs = fusion.kwargs("decoder") if model.config.fuse_decoder else {}
    audio_hidden = None
    if overruled is not None and bool(overruled.any()):
        audio_hidden = model.encode(fusion.input_features) if model.config.fuse_encoder else encoder_hidden
    prompt = list(processor.prompt_ids)
    results = []
    for i in range(encoder_hidden.shape[0]):
        alone = audio_hidden is not None and bool(overruled[i])
        source = (audio_hidden if alone else encoder_hidden)[i : i + 1]
        kwargs_i = {} if alone else _select(dec_kwargs, i, 1)
        # the prompt once: its self-attention keys / values and the cross-attention ones of the encoder states, which
        # every expansion below reuses instead of projecting the encoder states again for each prefix
        hidden0, prompt_cache = model.decode(torch.tensor([prompt], device=device), source, kwargs_i, cache=None,
                                             use_cache=True)
        after_prompt = F.log_softmax(model.whisper.proj_out(hidden0[:, -1]).float(), dim=-1).cpu()
        found: list[tuple[str, float]] = []
        # (-log p, tiebreak, tokens after the prompt, complete)
        queue: list[tuple[float, int, tuple[int, ...], bool]] = [(0.0, 0, (), False)]
        counter = 1
        while queue and len(found) < min(k, len(word_of)):
            if queue[0][3]:
                neg, _, seq, _ = heapq.heappop(queue)
                found.append((word_of[seq], -neg))
                continue
            batch = []
            while queue and not queue[0][3] and len(batch) < _EXPAND_BATCH:
                batch.append(heapq.heappop(queue))
            lengths = [len(b[2]) for b in batch]
            if max(lengths) == 0:  # the root: the distribution after the prompt, computed above
                logprobs = after_prompt.expand(len(batch), -1)
            else:
                ids = torch.full((len(batch), max(lengths)), eos, dtype=torch.long, device=device)
                for j, b in enumerate(batch):
                    if b[2]:
                        ids[j, : len(b[2])] = torch.tensor(b[2], device=device)
                cache = copy.deepcopy(prompt_cache)
                cache.reorder_cache(torch.zeros(len(batch), dtype=torch.long, device=device))
                hidden, _ = model.decode(ids, source.expand(len(batch), *source.shape[1:]),
                                         {} if alone else _select(dec_kwargs, i, len(batch)), cache=cache,
                                         use_cache=True)
                # the causal decoder: right padding does not change a row's own last position (a row without tokens
                # after the prompt is the root, whose distribution is after_prompt)
                last = hidden[torch.arange(len(batch)), torch.tensor([max(n - 1, 0) for n in lengths])]
                logprobs = F.log_softmax(model.whisper.proj_out(last).float(), dim=-1).cpu()
                for j, n in enumerate(lengths):
                    if n == 0:
                        logprobs[j] = after_prompt[0]
            for j, (neg, _, seq, _) in enumerate(batch):
                nxt, complete = trie.allowed(seq)
                for tok in nxt:
                    heapq.heappush(queue, (neg - float(logprobs[j, tok]), counter, seq + (tok,), False))
                    counter += 1
                if complete:
                    heapq.heappush(queue, (neg - float(logprobs[j, eos]), counter, seq, True))
                    counter += 1
        results.append(found)
    return results


def _batch_size(inputs: dict) -> int:
    for key in ("input_features", "video"):
        if key in inputs:
            return int(inputs[key].shape[0])
    raise ValueError("inputs hold neither input_features nor video")


@torch.no_grad()
def recognize(
    model,
    processor: AVWhisperProcessor,
    audio=None,
    video=None,
    sampling_rate: int | Sequence[int] = 16_000,
    top_k: int = 5,
    num_beams: int | None = None,
    levels: torch.Tensor | None = None,
) -> list[Recognition]:
    """Recognise one input (arrays) or a batch (lists): see `AVWhisperProcessor.__call__` for the formats.

    Decoding is the processor's (``num_beams``, ``max_new_tokens``, ``loop_repeats``), constrained to its closed vocabulary when
    it has one; ``top_k`` words with log-probabilities come with every result under a closed vocabulary.
    ``levels`` [B] (severity level index) is needed only by routers trained with ``routing_use_level``.
    """
    inputs = processor(audio=audio, video=video, sampling_rate=sampling_rate)
    if levels is not None:
        inputs["levels"] = torch.as_tensor(levels, dtype=torch.long)
    return recognize_inputs(model, processor, inputs, top_k=top_k, num_beams=num_beams)


@torch.no_grad()
def recognize_inputs(
    model, processor: AVWhisperProcessor, inputs: dict, top_k: int = 5, num_beams: int | None = None,
) -> list[Recognition]:
    """`recognize` for inputs the processor already made (a dict of batched tensors)."""
    device = model.device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    bsz = _batch_size(inputs)
    prompt = torch.tensor(processor.prompt_ids, device=device).repeat(bsz, 1)
    ids, route_probs, trust = model.generate(
        **inputs, decoder_input_ids=prompt, max_new_tokens=processor.max_new_tokens,
        num_beams=num_beams or processor.num_beams, eos_token_id=processor.eos_token_id,
        constraint=processor.constraint(), return_video_reliability=True, loop_repeats=processor.loop_repeats,
    )
    texts = processor.batch_decode(ids[:, prompt.shape[1]:])
    overruled = None
    if trust is not None and model.config.reliability_audio_margin > 0:  # the audio check set these clips' r to 0
        overruled = trust == 0
    ranked = (rank_vocabulary(model, processor, inputs, top_k, overruled=overruled) if processor.vocabulary
              else [[] for _ in texts])
    routes: list[dict[str, float] | None] = [None] * bsz
    if route_probs is not None:  # no router, or no video (sound alone): nothing was routed, routes stay None
        routes = [dict(zip(ROUTES, (float(p) for p in row))) for row in route_probs.float().cpu()]
    trusts = [None] * bsz if trust is None else [float(x) for x in trust.float().cpu()]
    return [Recognition(t, r, rp, tr) for t, r, rp, tr in zip(texts, ranked, routes, trusts)]
