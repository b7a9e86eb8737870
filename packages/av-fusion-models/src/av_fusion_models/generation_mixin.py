"""Decoding of audio-visual Whisper: the decoder step that greedy / beam search and ensembles drive, and
`generate` (a mixin of `AVWhisperForConditionalGeneration`, in the manner of Hugging Face's GenerationMixin).

The encoder, video front-end, router and video reliability scorer run once per batch (`decoder_step`); the
search (`generation`) then calls the returned step once per token with Whisper's KV cache.
"""

from __future__ import annotations

import torch

from .audio_check import decode_with_audio_check
from .constrained import TokenTrie
from .generation import ModelStep, beam_search, check_constraint, greedy_search


class AVWhisperGenerationMixin:
    """`decoder_step` and `generate` of `AVWhisperForConditionalGeneration` (needs its `prepare_fusion`,
    `encoder_states`, `decode`, `whisper` and `config`)."""

    _IGNORED_GENERATE_KWARGS = {"do_sample": False, "num_return_sequences": 1, "use_cache": True}

    @torch.no_grad()
    def decoder_step(
        self,
        input_features: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        video_padding_mask: torch.Tensor | None = None,
        levels: torch.Tensor | None = None,
        input_lengths: torch.Tensor | None = None,
        suppress_tokens: list[int] | None = None,
        use_cache: bool = True,
    ) -> tuple[ModelStep, torch.Tensor | None]:
        """Run the encoder, video front-end and router once; return the decoder's step and the route probabilities.

        The step (see `generation`) gives next-token log-probabilities with Whisper's KV cache and the video
        states of every fused decoder layer; greedy / beam search or an ensemble drive it.
        Shapes: inputs as in `forward` (batch B). Returns (step, route_probs [B, 3] or None without routing); the
        step's ``video_reliability`` is the reliability scale [B] applied to each sample's video (None without a
        scorer or without video). With ``reliability_audio_margin`` the step also carries ``audio_only``, the same
        inputs heard without the lips, for the audio check (audio_check.py). Modality dropout is never applied here.
        """
        fusion = self.prepare_fusion(
            input_features, video, video_padding_mask, levels, input_lengths, modality_dropout=False
        )
        encoder_hidden = self.encoder_states(fusion)

        def fusion_kwargs(repeat: int) -> dict:
            return fusion.kwargs("decoder", repeat=repeat) if self.config.fuse_decoder else {}

        step = ModelStep(self.decode, self.whisper.proj_out, encoder_hidden, fusion_kwargs, suppress_tokens, use_cache)
        step.video_reliability = fusion.video_reliability
        margin = self.config.reliability_audio_margin
        if margin > 0 and fusion.video_states is not None and fusion.reliability is None:
            # no scorer: every clip with video has its lips at full weight, unless the check overrules them
            has_video = torch.ones(encoder_hidden.shape[0], device=encoder_hidden.device)
            if fusion.video_padding_mask is not None:
                has_video = (~fusion.video_padding_mask.all(dim=1)).to(has_video)
            step.video_reliability = has_video
        if margin > 0 and step.video_reliability is not None and bool((step.video_reliability > 0).any()):
            # the audio check's listener (audio_check.py): Whisper alone, as r = 0 gives it; without encoder fusion
            # the encoder heard the audio alone already
            audio_hidden = self.encode(fusion.input_features) if self.config.fuse_encoder else encoder_hidden
            step.audio_only = ModelStep(self.decode, self.whisper.proj_out, audio_hidden, lambda _: {},
                                        suppress_tokens, use_cache)
            step.audio_margin = margin
        return step, None if fusion.route is None else fusion.route.route_probs

    @torch.no_grad()
    def generate(
        self,
        input_features: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        video_padding_mask: torch.Tensor | None = None,
        levels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        max_new_tokens: int | None = None,
        num_beams: int = 1,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        length_penalty: float = 1.0,
        suppress_tokens: list[int] | None = None,
        input_lengths: torch.Tensor | None = None,
        constraint: TokenTrie | None = None,
        return_route_probs: bool = False,
        return_video_reliability: bool = False,
        loop_repeats: int | None = None,
        **kwargs,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Greedy (num_beams=1) or beam search decoding with Whisper's KV cache (`generation`).

        Shapes:
            input_features [B, n_mels, T_a]; video [B, T_v, 88, 88]; video_padding_mask [B, T_v]; levels [B]
            decoder_input_ids [B, P] prompt (same length for all samples); default: decoder_start_token_id
        Returns:
            [B, P + N] token ids including the prompt; finished sequences are right-padded with
            `pad_token_id` (default: Whisper's pad token). `eos_token_id` may be one id or a list
            (default: Whisper's eos; an id that never occurs, e.g. -1, disables stopping). No token
            is suppressed unless listed in `suppress_tokens`. Beam scores are sum of log-probs divided
            by (number of generated tokens) ** length_penalty. With `return_route_probs`: (ids, route
            probabilities [B, 3] of the router, or None), computed in the same pass. With
            `return_video_reliability`: (ids, route probabilities or None, video reliability [B] or None: the scale
            the reliability scorer gave each sample's video).

        `constraint` (a `TokenTrie`, e.g. `TokenTrie.from_words(tokenizer, words, char_level=True)`)
        restricts the tokens after the prompt to one allowed sequence followed by end-of-text; with
        beam search the scores stay the model's own log-probabilities (masked after the log-softmax).

        `loop_repeats` (None: off, as Whisper): a transcript ending in that many back-to-back copies of one
        token sequence ("yes yes yes yes") is a loop, cut to one copy and ended (`generation.cut_loops`).

        The encoder, video front-end and router run once; the video states (and the decoder
        fusion scale) are repeated per beam and passed to every decoder step. Modality dropout
        is never applied here.
        """
        for key, value in kwargs.items():
            if key not in self._IGNORED_GENERATE_KWARGS or value != self._IGNORED_GENERATE_KWARGS[key]:
                raise TypeError(f"generate() got an unsupported argument {key}={value!r}")
        wcfg = self.whisper.config
        eos_token_id = wcfg.eos_token_id if eos_token_id is None else eos_token_id
        eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
        if pad_token_id is None:
            pad_token_id = wcfg.pad_token_id if wcfg.pad_token_id is not None else eos_ids[0]
        check_constraint(eos_ids, constraint)  # before the encoder runs: fail fast
        bsz = (input_features if input_features is not None else video).shape[0]
        device = self.device
        if decoder_input_ids is None:
            decoder_input_ids = torch.full((bsz, 1), wcfg.decoder_start_token_id, dtype=torch.long, device=device)
        decoder_input_ids = decoder_input_ids.to(device=device, dtype=torch.long)
        room = wcfg.max_target_positions - decoder_input_ids.shape[1]
        max_new_tokens = room if max_new_tokens is None else min(max_new_tokens, room)
        if max_new_tokens <= 0:
            return self._generate_result(decoder_input_ids, None, None, return_route_probs, return_video_reliability)

        step, route_probs = self.decoder_step(
            input_features, video, video_padding_mask, levels, input_lengths, suppress_tokens
        )
        def search(s):
            if num_beams <= 1:
                return greedy_search(s, decoder_input_ids, max_new_tokens, eos_ids, pad_token_id, constraint,
                                     loop_repeats)
            return beam_search(s, decoder_input_ids, max_new_tokens, num_beams, eos_ids, pad_token_id,
                               length_penalty, constraint, loop_repeats)

        ids, reliability = decode_with_audio_check(step, search, decoder_input_ids.shape[1], eos_ids, pad_token_id)
        return self._generate_result(ids, route_probs, reliability, return_route_probs, return_video_reliability)

    @staticmethod
    def _generate_result(ids, route_probs, reliability, with_routes: bool, with_reliability: bool):
        if with_reliability:
            return ids, route_probs, reliability
        return (ids, route_probs) if with_routes else ids

