"""Decoding loops ("yes yes yes ..."): detected at the tail, cut to one copy, and greedy search stops there."""

from __future__ import annotations

import pytest
import torch

from av_fusion_models import AVWhisperConfig, AVWhisperForConditionalGeneration
from av_fusion_models.generation import beam_search, cut_loops, ends_in_loop, greedy_search
from av_fusion_models.testing import tiny_whisper

EOS, PAD, V = 2, 0, 32


class ScriptedStep:
    """Row b says ``scripts[b][g]`` at generated position g (end-of-text once its script is spent)."""

    def __init__(self, scripts: list[list[int]], prompt_len: int):
        self.scripts, self.prompt_len, self.calls = scripts, prompt_len, 0

    def __call__(self, new_ids: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        g = ids.shape[1] - self.prompt_len
        logits = torch.zeros(ids.shape[0], V)
        for r, script in enumerate(self.scripts):
            logits[r, script[g] if g < len(script) else EOS] = 8.0
        return torch.log_softmax(logits, dim=-1)

    def repeat(self, k: int) -> ScriptedStep:
        return ScriptedStep([s for s in self.scripts for _ in range(k)], self.prompt_len)

    def reorder(self, index: torch.Tensor) -> None:
        pass  # every beam of a row reads the same script


def test_ends_in_loop_finds_units_of_any_length():
    rows = torch.tensor([
        [5, 7, 7, 7, 7],        # one token, 4 copies
        [9, 7, 7, 7, 8],        # ends in something else
        [7, 8, 7, 8, 7, 8][:5],  # 2-token unit, only 2.5 copies
        [3, 4, 5, 3, 4],
    ])
    assert ends_in_loop(rows, 4).tolist() == [True, False, False, False]
    assert ends_in_loop(rows, 2).tolist() == [True, False, True, False]
    spelled = torch.tensor([[11, 12, 13] * 4])  # " y e s" four times, character-level
    assert ends_in_loop(spelled, 4).tolist() == [True] and ends_in_loop(spelled[:, 1:], 4).tolist() == [False]


def test_cut_loops_keeps_one_copy_and_ends_the_row():
    p = 2  # prompt [1, 3]
    ids = torch.tensor([
        [1, 3, 7, 7, 7, 7, 7, 7],          # loop to the end: one 7, then end-of-text
        [1, 3, 5, 6, 5, 6, 5, 6],          # 2-token unit, 3 copies: below 4, unchanged
        [1, 3, 9, 5, 6, 5, 6, 5],          # 2-token unit, 2.5 copies: unchanged
        [1, 3, 4, 7, 7, 7, 7, EOS],        # a loop that ended by itself is cut too (same rule, same answer)
    ])
    out = cut_loops(ids, p, 4, [EOS], PAD)
    assert out[0].tolist() == [1, 3, 7, EOS, PAD, PAD, PAD, PAD]
    assert out[1].tolist() == ids[1].tolist() and out[2].tolist() == ids[2].tolist()
    assert out[3].tolist() == [1, 3, 4, 7, EOS, PAD, PAD, PAD]
    out3 = cut_loops(ids, p, 3, [EOS], PAD)
    assert out3[1].tolist() == [1, 3, 5, 6, EOS, PAD, PAD, PAD]
    assert ids[0].tolist() == [1, 3, 7, 7, 7, 7, 7, 7]  # the input is not modified
    with pytest.raises(ValueError, match="at least 2"):
        cut_loops(ids, p, 1, [EOS], PAD)


def test_greedy_search_stops_a_loop_and_keeps_one_copy():
    prompt = torch.tensor([[1, 3], [1, 3], [1, 3]])
    scripts = [[4] + [11, 12, 13] * 20,   # " y e s" spelled, looping
               [20, 21],                  # a normal word, then end-of-text
               [7, 7, 7, 8]]              # 3 copies, then something else: not a loop at 4
    plain = greedy_search(ScriptedStep(scripts, 2), prompt, 40, [EOS], PAD)
    assert plain.shape[1] == 2 + 40  # the loop runs to max_new_tokens
    step = ScriptedStep(scripts, 2)
    out = greedy_search(step, prompt, 40, [EOS], PAD, loop_repeats=4)
    assert out[0, :6].tolist() == [1, 3, 4, 11, 12, 13] and out[0, 6] == EOS and (out[0, 7:] == PAD).all()
    assert out[1, :5].tolist() == [1, 3, 20, 21, EOS]
    assert out[2, :7].tolist() == [1, 3, 7, 7, 7, 8, EOS]
    # stopped when the 4th copy was complete: 1 + 4 * 3 tokens, not 40 steps
    assert step.calls == 13 and out.shape[1] == 2 + 13
    # off (None or 0): exactly the plain search
    assert torch.equal(greedy_search(ScriptedStep(scripts, 2), prompt, 40, [EOS], PAD, loop_repeats=None), plain)
    assert torch.equal(greedy_search(ScriptedStep(scripts, 2), prompt, 40, [EOS], PAD, loop_repeats=0), plain)


def test_beam_search_cuts_the_best_hypothesis_loop():
    prompt = torch.tensor([[1, 3], [1, 3]])
    scripts = [[9] * 30, [20, 21]]
    plain = beam_search(ScriptedStep(scripts, 2), prompt, 12, 3, [EOS], PAD)
    assert plain[0, 2:].tolist() == [9] * 12
    out = beam_search(ScriptedStep(scripts, 2), prompt, 12, 3, [EOS], PAD, loop_repeats=4)
    assert out[0].tolist()[:4] == [1, 3, 9, EOS] and (out[0, 4:] == PAD).all()
    assert out[1].tolist() == plain[1].tolist()


@torch.no_grad()
def test_generate_with_loop_cut_is_a_prefix_of_plain_generate():
    """A real (random tiny) model: the guarded transcript is the plain one up to the cut, then end-of-text."""
    model = AVWhisperForConditionalGeneration.from_whisper(
        tiny_whisper(1, eos_token_id=EOS), AVWhisperConfig(video_encoder="precomputed", video_dim=16)).eval()
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(6, 80, 100, generator=g)
    plain = model.generate(feats, max_new_tokens=30, pad_token_id=PAD)
    cut = model.generate(feats, max_new_tokens=30, pad_token_id=PAD, loop_repeats=3)
    looped = 0
    for a, b in zip(plain.tolist(), cut.tolist()):
        end = b.index(EOS) if EOS in b else len(b)
        assert b[:end] == a[:end]
        looped += end < len(a) and a[end] != EOS
        assert not ends_in_loop(torch.tensor([b[1:end]]), 3).item()  # nothing of the loop is left
    assert looped >= 1, "the random model did not loop: the test proves nothing; pick another seed"
