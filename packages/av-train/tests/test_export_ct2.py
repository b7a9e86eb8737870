"""--format ct2: CTranslate2's converter on our fine-tune; faster-whisper decodes the same words as we do."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("faster_whisper", reason="faster-whisper (dev dependency) decodes the CTranslate2 export")

from av_fusion_models import AVWhisperForConditionalGeneration, AVWhisperProcessor, recognize  # noqa: E402
from av_train.export import export_hf  # noqa: E402
from av_train.export.ct2 import export_ct2  # noqa: E402



@pytest.mark.slow
def test_faster_whisper_decodes_our_fine_tune_to_the_same_words(make_run, prepared_tree, real_tiny_en,
                                                                 word_clips, tmp_path):
    from faster_whisper import WhisperModel

    # a "fine-tune": real tiny.en weights moved a little, so the export must carry the run's weights
    cfg = make_run(prepared_tree, real_tiny_en, tmp_path, seed=5, noise=0.02, modality="audio", char_level=False,
                   cut_encoder_positions=False, max_new_tokens=24, train_id="audio_ft")
    ct2 = export_ct2(cfg.checkpoint_dir, tmp_path / "ct2").path
    names = {p.name for p in ct2.iterdir()}
    assert {"model.bin", "config.json", "tokenizer.json", "preprocessor_config.json", "README.md",
            "export.json"} <= names
    assert json.loads((ct2 / "export.json").read_text())["format"] == "ct2"
    assert "faster_whisper" in (ct2 / "README.md").read_text()
    hf = export_hf(cfg.checkpoint_dir, tmp_path / "hf", decode_vocabulary="open").path
    model = AVWhisperForConditionalGeneration.from_pretrained(hf)
    proc = AVWhisperProcessor.from_pretrained(hf)
    assert proc.pad_audio_to_30s  # the run kept Whisper's 30-s input, as faster-whisper feeds it

    fw = WhisperModel(str(ct2), device="cpu", compute_type="float32", cpu_threads=2)
    import ctranslate2
    import torch
    from faster_whisper.feature_extractor import FeatureExtractor

    ours, theirs = [], []
    for path in word_clips:
        audio, rate = sf.read(path, dtype="float32")
        assert rate == 16000
        [r] = recognize(model, proc, audio=audio, sampling_rate=rate)
        ours.append(r.text)
        # faster-whisper's transcribe pads the log-mel *features* of a short clip with zeros, where Whisper
        # (and our processor) pad the *audio* with silence; given the clip padded to 30 s itself, its input
        # is Whisper's, and its words must be ours
        padded = np.concatenate([audio, np.zeros(30 * 16000 - audio.size, np.float32)])
        segments, _ = fw.transcribe(padded, beam_size=1, temperature=0.0, without_timestamps=True,
                                    condition_on_previous_text=False, suppress_tokens=[], suppress_blank=False,
                                    vad_filter=False, language="en")
        theirs.append("".join(s.text for s in segments).strip())
        # and on faster-whisper's own features of the bare clip, token for token
        feats = FeatureExtractor()(audio)
        feats = np.pad(feats, ((0, 0), (0, max(0, 3000 - feats.shape[1]))))[:, :3000]
        ct2_ids = fw.model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None])),
                                    [proc.prompt_ids], beam_size=1, max_length=24, suppress_tokens=[],
                                    suppress_blank=False)[0].sequences_ids[0]
        our_ids = model.generate(input_features=torch.from_numpy(feats)[None], max_new_tokens=24,
                                 decoder_input_ids=torch.tensor([proc.prompt_ids]), eos_token_id=proc.eos_token_id)
        assert ct2_ids == [t for t in our_ids[0, len(proc.prompt_ids):].tolist() if t != proc.eos_token_id]
    assert ours == theirs
    # a working model, not a degenerate one (zero-shot tiny.en is poor on espeak words: issue "Unseen words")
    assert all(ours) and len(set(ours)) >= 5, ours


def test_ct2_quantization_is_checked(make_run, prepared_tree, tiny_whisper_dir, tmp_path):
    from av_train.export import ExportError

    cfg = make_run(prepared_tree, tiny_whisper_dir, tmp_path, modality="audio")
    with pytest.raises(ExportError, match="unknown quantization"):
        export_ct2(cfg.checkpoint_dir, tmp_path / "q", quantization="int3")
    out = export_ct2(cfg.checkpoint_dir, tmp_path / "q8", quantization="int8").path
    assert json.loads((out / "export.json").read_text())["quantization"] == "int8"
    assert not list(tmp_path.glob(".q8*"))
