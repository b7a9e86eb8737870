"""Vocabulary-constrained decoding: a prefix trie over the token sequences of allowed words.

With `AVWhisperForConditionalGeneration.generate(..., constraint=trie)` every generated token
(after the prompt) must extend a path of the trie, and end-of-text is allowed only where a word
ends, so the output is always exactly one listed word (for isolated-word corpora such as
UASpeech: 455 words). It works with greedy and beam search; beam scores stay the model's own
log-probabilities (the mask is applied after the log-softmax, as Transformers' prefix-constrained
processor does), so constrained beam search ranks listed words by their probability under the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def word_target_text(word: str, char_level: bool = False, lowercase: bool = True) -> str:
    """The decoder text of one word as av-train's targets write it: a leading space, then the word
    (" three") or its characters (" t h r e e"; several words joined by " | ": " x | r a y")."""
    word = word.strip()
    if lowercase:
        word = word.lower()
    if char_level:
        word = " | ".join(" ".join(w) for w in word.split())
    return " " + word


class TokenTrie:
    """Prefix tree over allowed token sequences (one per word, prompt and end-of-text excluded).

    Args:
        sequences: token id sequences; duplicates are merged, an empty sequence is an error.
    """

    def __init__(self, sequences: Iterable[Sequence[int]]):
        self._children: list[dict[int, int]] = [{}]
        self._terminal: list[bool] = [False]
        self.num_sequences = 0
        for seq in sequences:
            seq = [int(t) for t in seq]
            if not seq:
                raise ValueError("TokenTrie: an allowed sequence is empty")
            node = 0
            for tok in seq:
                nxt = self._children[node].get(tok)
                if nxt is None:
                    nxt = len(self._children)
                    self._children[node][tok] = nxt
                    self._children.append({})
                    self._terminal.append(False)
                node = nxt
            if not self._terminal[node]:
                self.num_sequences += 1
            self._terminal[node] = True
        if self.num_sequences == 0:
            raise ValueError("TokenTrie: no allowed sequence")

    @classmethod
    def from_texts(cls, tokenizer, texts: Iterable[str]) -> TokenTrie:
        """Trie of `tokenizer.encode(text, add_special_tokens=False)` for each text (already formatted,
        e.g. " three" or " t h r e e")."""
        return cls(tokenizer.encode(t, add_special_tokens=False) for t in texts)

    @classmethod
    def from_words(cls, tokenizer, words: Iterable[str], char_level: bool = False, lowercase: bool = True) -> TokenTrie:
        """Trie of the words formatted as training targets (see `word_target_text`)."""
        return cls.from_texts(tokenizer, (word_target_text(w, char_level, lowercase) for w in words))

    def _walk(self, prefix: Sequence[int]) -> int | None:
        node = 0
        for tok in prefix:
            node = self._children[node].get(int(tok))
            if node is None:
                return None
        return node

    def allowed(self, prefix: Sequence[int]) -> tuple[list[int], bool]:
        """(tokens that extend `prefix` along the trie, whether `prefix` is a complete sequence).
        A prefix outside the trie gives ([], False)."""
        node = self._walk(prefix)
        if node is None:
            return [], False
        return list(self._children[node]), self._terminal[node]

    def __contains__(self, sequence: Sequence[int]) -> bool:
        node = self._walk(sequence)
        return node is not None and self._terminal[node]

    def sequences(self) -> list[list[int]]:
        """All allowed sequences (depth-first, in insertion order of the branches)."""
        out: list[list[int]] = []

        def visit(node: int, path: list[int]) -> None:
            if self._terminal[node]:
                out.append(list(path))
            for tok, child in self._children[node].items():
                visit(child, path + [tok])

        visit(0, [])
        return out

    def allowed_mask(self, generated: torch.Tensor, vocab_size: int, eos_ids: Sequence[int]) -> torch.Tensor:
        """
        Shapes:
            generated [N, G] tokens after the prompt (G may be 0)
        Returns:
            bool [N, vocab_size], True = may come next. End-of-text (`eos_ids`) is allowed after a
            complete sequence; a row that left the trie (e.g. already finished) may only emit end-of-text.
        """
        mask = torch.zeros(generated.shape[0], vocab_size, dtype=torch.bool)
        for row, prefix in enumerate(generated.tolist()):
            tokens, complete = self.allowed(prefix)
            if complete or not tokens:
                tokens = tokens + [e for e in eos_ids if 0 <= e < vocab_size]
            mask[row, [t for t in tokens if 0 <= t < vocab_size]] = True
        return mask.to(generated.device)
