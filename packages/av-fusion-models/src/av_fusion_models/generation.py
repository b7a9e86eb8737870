"""Greedy and beam search over a decoder step: the one decoding loop of the package.

A *step* is all that generation needs from a model: called with the tokens that are new since its last
call (the whole prompt at first, then one token per sequence) and the whole prefix, it returns the
next-token log-probabilities and keeps its own KV cache. `AVWhisperForConditionalGeneration.decoder_step`
makes one for a batch of inputs (the encoder, video front-end and router have run by then); `EnsembleStep`
averages the log-probabilities of several steps, so a true ensemble decodes with the same two loops, beam
search included.

Shapes: N = batch (times beams), P = prompt length, G = generated so far, V = vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch.nn import functional as F

from .constrained import TokenTrie


class DecoderStep(Protocol):
    """Next-token log-probabilities of a decoder that keeps its own cache."""

    def __call__(self, new_ids: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """new_ids [N, n] (not yet seen by the step), ids [N, P + G] (the whole prefix) -> log-probs [N, V]"""
        ...

    def repeat(self, k: int) -> DecoderStep:
        """A fresh step with every sample's state repeated ``k`` times (beam search: row b * k + j)."""
        ...

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the cache rows ``index`` [N] (the surviving beams), in that order."""
        ...


class ModelStep:
    """One decoder's step: ``decode(new_ids, cache) -> hidden`` and ``head(hidden[:, -1]) -> logits``.

    ``use_cache=False`` runs the whole prefix at every step (slower; the reference the cache must equal).
    Tokens in ``suppress_tokens`` get probability 0.
    """

    def __init__(
        self,
        decode: Callable[..., tuple[torch.Tensor, object]],
        head: Callable[[torch.Tensor], torch.Tensor],
        encoder_hidden: torch.Tensor,
        fusion_kwargs: Callable[[int], dict],
        suppress_tokens: Sequence[int] | None = None,
        use_cache: bool = True,
        repeat_factor: int = 1,
    ):
        self._decode, self._head, self._fusion_kwargs = decode, head, fusion_kwargs
        self.suppress_tokens = list(suppress_tokens or [])
        self.use_cache = use_cache
        self._k = repeat_factor
        self._encoder_hidden = encoder_hidden if repeat_factor == 1 else encoder_hidden.repeat_interleave(
            repeat_factor, dim=0)  # [N, T_enc, D]
        self._kwargs = fusion_kwargs(repeat_factor)
        self._source = encoder_hidden
        self._cache = None
        self.video_reliability: torch.Tensor | None = None  # [B] set by the model's decoder_step, for reporting
        # the same inputs heard without the lips (audio_check.py), and the margin of the check; set by decoder_step
        self.audio_only: ModelStep | None = None
        self.audio_margin: float = 0.0

    def __call__(self, new_ids: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.use_cache:
            hidden, self._cache = self._decode(new_ids, self._encoder_hidden, self._kwargs, cache=self._cache,
                                               use_cache=True)
        else:
            hidden, _ = self._decode(ids, self._encoder_hidden, self._kwargs)
        logits = self._head(hidden[:, -1]).float()  # [N, V]
        if self.suppress_tokens:
            logits[:, self.suppress_tokens] = -float("inf")
        return F.log_softmax(logits, dim=-1)

    def repeat(self, k: int) -> ModelStep:
        return ModelStep(self._decode, self._head, self._source, self._fusion_kwargs, self.suppress_tokens,
                         self.use_cache, self._k * k)

    @torch.no_grad()
    def score(self, ids: torch.Tensor, prompt_len: int, eos: Sequence[int]) -> torch.Tensor:
        """Sum of the log-probabilities of each row's tokens after the prompt, up to and including its first ``eos``
        (what follows, padding, is not counted): ids [N, P + G] -> [N], one pass without the cache (the step's
        own cache is left alone). The same log-probabilities as the search saw (``suppress_tokens`` applied)."""
        hidden, _ = self._decode(ids[:, :-1], self._encoder_hidden, self._kwargs)
        logits = self._head(hidden[:, prompt_len - 1:]).float()  # [N, G, V]
        if self.suppress_tokens:
            logits[..., self.suppress_tokens] = -float("inf")
        targets = ids[:, prompt_len:].to(logits.device)  # [N, G]
        token_lp = F.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)
        is_eos = torch.isin(targets, targets.new_tensor(list(eos))) if eos else torch.zeros_like(targets, dtype=torch.bool)
        after_eos = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0  # strictly after the first eos
        return token_lp.masked_fill(after_eos, 0.0).sum(dim=1)

    def reorder(self, index: torch.Tensor) -> None:
        if self._cache is not None:
            self._cache.reorder_cache(index)


class EnsembleStep:
    """log p(y_t) = mean_k log p_k(y_t | y_<t, x): every member extends the same hypothesis."""

    def __init__(self, members: Sequence[DecoderStep]):
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.members = list(members)

    def __call__(self, new_ids: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        total = None
        for member in self.members:
            lp = member(new_ids, ids)
            total = lp if total is None else total + lp.to(total.device)
        return total / len(self.members)

    def repeat(self, k: int) -> EnsembleStep:
        return EnsembleStep([m.repeat(k) for m in self.members])

    def reorder(self, index: torch.Tensor) -> None:
        for member in self.members:
            member.reorder(index)


def _constrain(scores: torch.Tensor, ids: torch.Tensor, prompt_len: int, eos: list[int],
               constraint: TokenTrie | None) -> torch.Tensor:
    """-inf for the tokens ``constraint`` forbids after ids [N, P + G] (scores [N, V]); unchanged without one."""
    if constraint is None:
        return scores
    allowed = constraint.allowed_mask(ids[:, prompt_len:], scores.shape[-1], eos)
    return scores.masked_fill(~allowed.to(scores.device), -float("inf"))


def check_constraint(eos: Sequence[int], constraint: TokenTrie | None) -> None:
    """A closed vocabulary needs an end-of-text id: it is where an allowed word ends."""
    if constraint is not None and not eos:
        raise ValueError("constrained decoding needs an eos_token_id (the end of an allowed word)")


def ends_in_loop(generated: torch.Tensor, repeats: int) -> torch.Tensor:
    """generated [N, G] -> [N] bool: the row ends in ``repeats`` back-to-back copies of one token sequence.

    A unit of p tokens is tried for every p <= G / repeats, so " yes yes yes yes" (p = 1) and the character-level
    " y e s y e s y e s y e s" (p = 3) both count.
    """
    n, g = generated.shape
    looping = torch.zeros(n, dtype=torch.bool, device=generated.device)
    for p in range(1, g // repeats + 1):
        tail = generated[:, g - repeats * p:].reshape(n, repeats, p)  # [N, repeats, p]
        looping |= (tail == tail[:, :1]).all(dim=2).all(dim=1)
    return looping


def cut_loops(ids: torch.Tensor, prompt_len: int, repeats: int, eos: Sequence[int], pad: int) -> torch.Tensor:
    """ids [N, P + G] with every looping row cut after the first copy of its repeated unit and ended there.

    A row (trailing ``eos`` / ``pad`` aside) that ends in ``repeats`` or more back-to-back copies of one token
    sequence keeps one copy, then one end-of-text (``eos[0]``, else ``pad``), then ``pad``. Other rows are unchanged.
    """
    if repeats < 2:
        raise ValueError(f"a loop needs at least 2 copies of a unit, got loop_repeats={repeats}")
    out = ids.clone()
    stop = set(eos) | {pad}
    end = eos[0] if eos else pad
    for r, row in enumerate(ids.tolist()):
        gen = row[prompt_len:]
        while gen and gen[-1] in stop:
            gen.pop()
        for p in range(1, len(gen) // repeats + 1):
            unit = gen[len(gen) - p:]
            copies = 1
            while copies * p + p <= len(gen) and gen[len(gen) - (copies + 1) * p: len(gen) - copies * p] == unit:
                copies += 1
            if copies >= repeats:
                keep = prompt_len + len(gen) - (copies - 1) * p
                out[r, keep:] = pad
                out[r, keep] = end
                break
    return out


@torch.no_grad()
def greedy_search(
    step: DecoderStep, prompt: torch.Tensor, max_new_tokens: int, eos: Sequence[int], pad: int,
    constraint: TokenTrie | None = None, loop_repeats: int | None = None,
) -> torch.Tensor:
    """The most probable next token at every step.

    prompt [B, P] -> ids [B, P + N], N <= max_new_tokens; a row that produced one of ``eos`` is padded with
    ``pad`` until every row has (no ``eos``: never stops early). ``constraint`` restricts the tokens after
    the prompt to one of its words followed by end-of-text.

    ``loop_repeats`` (None: off): a row whose tokens end in that many back-to-back copies of one unit is a
    loop ("yes yes yes yes ..."): it stops there and keeps one copy (`cut_loops`), instead of repeating the
    unit until ``max_new_tokens``.
    """
    eos = list(eos)
    check_constraint(eos, constraint)
    ids = prompt
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    new_ids = ids
    for _ in range(max(0, max_new_tokens)):
        logprobs = _constrain(step(new_ids, ids), ids, prompt.shape[1], eos, constraint)
        next_tokens = logprobs.argmax(dim=-1).to(ids.device)  # [B]
        next_tokens = torch.where(finished, torch.full_like(next_tokens, pad), next_tokens)
        ids = torch.cat([ids, next_tokens[:, None]], dim=1)
        if eos:
            finished |= torch.isin(next_tokens, next_tokens.new_tensor(eos))
        if loop_repeats:
            finished |= ends_in_loop(ids[:, prompt.shape[1]:], loop_repeats)
        if bool(finished.all()):
            break
        new_ids = next_tokens[:, None]
    return ids if not loop_repeats else cut_loops(ids, prompt.shape[1], loop_repeats, eos, pad)


@torch.no_grad()
def beam_search(
    step: DecoderStep, prompt: torch.Tensor, max_new_tokens: int, num_beams: int, eos: Sequence[int], pad: int,
    length_penalty: float = 1.0, constraint: TokenTrie | None = None, loop_repeats: int | None = None,
) -> torch.Tensor:
    """Beam search with ``num_beams`` beams per sample.

    A hypothesis scores sum(log p) / (generated tokens) ** length_penalty; with a constraint the log-probs
    stay the model's own (masked after the log-softmax). prompt [B, P] -> ids [B, P + N], the best
    hypothesis per sample, right-padded with ``pad``. ``loop_repeats``: the best hypothesis's loop, if it
    ends in one, is cut to one copy after the search (`cut_loops`); the search itself is unchanged.
    """
    eos = list(eos)
    check_constraint(eos, constraint)
    bsz, k = prompt.shape[0], num_beams
    device = prompt.device
    step = step.repeat(k)
    ids = prompt.repeat_interleave(k, dim=0)  # [B*K, P]
    beam_scores = torch.zeros(bsz, k, device=device)
    beam_scores[:, 1:] = -float("inf")  # all beams start identical: expand the first one only
    hyps: list[list[tuple[float, torch.Tensor]]] = [[] for _ in range(bsz)]
    done = [False] * bsz
    offsets = (torch.arange(bsz, device=device) * k)[:, None]  # [B, 1]

    def add_hyp(b: int, score: float, tokens: torch.Tensor) -> None:
        hyps[b].append((score, tokens))
        hyps[b].sort(key=lambda h: h[0], reverse=True)
        del hyps[b][k:]

    new_ids = ids
    for t in range(max_new_tokens):
        logprobs = _constrain(step(new_ids, ids).to(device), ids, prompt.shape[1], eos, constraint)  # [B*K, V]
        vocab = logprobs.shape[-1]
        cand = (beam_scores.view(-1, 1) + logprobs).view(bsz, k * vocab)
        top_scores, top_idx = cand.topk(min(2 * k, k * vocab), dim=1)  # [B, 2K]
        top_src, top_tok = top_idx // vocab, top_idx % vocab
        next_scores = torch.full((bsz, k), -float("inf"), device=device)  # unfilled beams stay dead
        next_tokens = torch.full((bsz, k), pad, dtype=torch.long, device=device)
        next_src = torch.arange(k, device=device).repeat(bsz, 1)
        gen_len = t + 1
        for b in range(bsz):
            if done[b]:
                continue
            j = 0
            for rank in range(top_scores.shape[1]):
                score, tok, src = float(top_scores[b, rank]), int(top_tok[b, rank]), int(top_src[b, rank])
                if score == -float("inf"):
                    break  # sorted: only forbidden / dead candidates follow
                if tok in eos:
                    if rank < k:
                        seq = torch.cat([ids[b * k + src], ids.new_tensor([tok])])
                        add_hyp(b, score / gen_len**length_penalty, seq)
                    continue
                next_scores[b, j], next_tokens[b, j], next_src[b, j] = score, tok, src
                j += 1
                if j == k:
                    break
            if j == 0:
                done[b] = True  # no live beam left (a constraint allowed nothing but end-of-text)
            elif len(hyps[b]) >= k:
                best_running = float(next_scores[b, 0]) / gen_len**length_penalty
                if hyps[b][-1][0] >= best_running:
                    done[b] = True
        beam_idx = (offsets + next_src).view(-1)  # [B*K]
        ids = torch.cat([ids[beam_idx], next_tokens.view(-1, 1)], dim=1)
        beam_scores = next_scores
        if all(done):
            break
        step.reorder(beam_idx)
        new_ids = next_tokens.view(-1, 1)

    n_steps = ids.shape[1] - prompt.shape[1]
    best = []
    for b in range(bsz):
        if not done[b]:
            for j in range(k):
                if beam_scores[b, j] > -float("inf") or not hyps[b]:
                    add_hyp(b, float(beam_scores[b, j]) / max(n_steps, 1) ** length_penalty, ids[b * k + j])
        best.append(hyps[b][0][1])
    width = max(seq.shape[0] for seq in best)
    out = torch.full((bsz, width), pad, dtype=torch.long, device=device)
    for b, seq in enumerate(best):
        out[b, : seq.shape[0]] = seq
    return out if not loop_repeats else cut_loops(out, prompt.shape[1], loop_repeats, eos, pad)
