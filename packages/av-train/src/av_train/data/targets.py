"""Text targets for Whisper: word or character level, with the decoder prompt."""

from __future__ import annotations

from dataclasses import dataclass

from av_fusion_models import word_target_text
from av_fusion_models.processing_av_whisper import decoder_prompt


@dataclass
class TargetEncoder:
    """Turns words into decoder inputs / labels and generated ids back into text.

    Targets carry a leading space like Whisper's own transcripts, so character-level text
    " t h r e e" is one token per character (" t", " h", ...).
    """

    tokenizer: object  # a transformers WhisperTokenizer(Fast)
    char_level: bool = True

    def __post_init__(self) -> None:
        tok = self.tokenizer
        self.sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
        self.eot = tok.convert_tokens_to_ids("<|endoftext|>")
        # the exported processor uses the same two rules, so a model decodes as it was trained
        self.prompt: list[int] = decoder_prompt(tok)
        self.pad_id = self.eot

    def text_of(self, word: str) -> str:
        return word_target_text(word, char_level=self.char_level)

    def encode(self, word: str) -> tuple[list[int], list[int]]:
        """(decoder_input_ids, labels) for one word; labels ignore the prompt positions (-100)."""
        text_ids = self.tokenizer.encode(self.text_of(word), add_special_tokens=False)
        full = self.prompt + text_ids + [self.eot]
        dec_in = full[:-1]
        labels = full[1:]
        labels[: len(self.prompt) - 1] = [-100] * (len(self.prompt) - 1)
        return dec_in, labels

    def decode(self, ids) -> str:
        """Generated ids (prompt included or not) -> text without special tokens."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()
