"""--format whisper: Transformers' own WhisperForConditionalGeneration and ASR pipeline load our audio-only fine-tune
(every weight, none missing or unexpected) and write the same words as our decoding of the same run."""

from __future__ import annotations

import json

import pytest
import soundfile as sf

from av_fusion_models import AVWhisperForConditionalGeneration, AVWhisperProcessor, recognize
from av_train.export import ExportError, export_hf
from av_train.export.whisper import char_level_words, export_whisper



def test_char_level_words():
    assert char_level_words(" t h r e e") == "three"
    assert char_level_words(" x | r a y") == "x ray"
    assert char_level_words("") == ""


@pytest.mark.slow
@pytest.mark.parametrize("char_level", [False, True])
def test_transformers_pipeline_decodes_our_fine_tune_to_the_same_words(make_run, prepared_tree, real_tiny_en,
                                                                       word_clips, tmp_path, char_level):
    from transformers import WhisperForConditionalGeneration, pipeline

    # a "fine-tune": real tiny.en weights moved a little, so the export must carry the run's weights
    cfg = make_run(prepared_tree, real_tiny_en, tmp_path, seed=5, noise=0.02, modality="audio", char_level=char_level,
                   cut_encoder_positions=False, max_new_tokens=24, train_id=f"audio_ft_{char_level}")
    out = export_whisper(cfg.checkpoint_dir, tmp_path / "whisper").path
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "preprocessor_config.json", "README.md", "export.json"} <= names
    assert json.loads((out / "config.json").read_text())["model_type"] == "whisper"
    assert json.loads((out / "export.json").read_text())["format"] == "whisper"
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and 'pipeline("automatic-speech-recognition"' in card

    model, info = WhisperForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    hf = export_hf(cfg.checkpoint_dir, tmp_path / "hf", decode_vocabulary="open").path
    ours_model = AVWhisperForConditionalGeneration.from_pretrained(hf)
    import torch

    for name, theirs in model.state_dict().items():  # the run's weights, not the base model's
        assert torch.equal(theirs, ours_model.whisper.state_dict()[name]), name

    proc = AVWhisperProcessor.from_pretrained(hf)
    asr = pipeline("automatic-speech-recognition", model=str(out), device="cpu")
    ours, theirs = [], []
    for path in word_clips:
        audio, rate = sf.read(path, dtype="float32")
        [r] = recognize(ours_model, proc, audio=audio, sampling_rate=rate)
        ours.append(r.text)
        text = asr({"raw": audio, "sampling_rate": rate})["text"]
        theirs.append(char_level_words(text) if char_level else text.strip())
    assert theirs == ours, (theirs, ours)
    assert len(set(ours)) >= 3, ours  # words that depend on the clip, not one fixed output


def test_refuses_audio_visual_and_cut_runs(make_run, prepared_tree, tiny_whisper_dir, tmp_path):
    av = make_run(prepared_tree, tiny_whisper_dir, tmp_path, modality="audio_visual", train_id="av")
    with pytest.raises(ExportError, match="no video path"):
        export_whisper(av.checkpoint_dir, tmp_path / "out_av")
    cut = make_run(prepared_tree, tiny_whisper_dir, tmp_path, modality="audio", cut_encoder_positions=True,
                   train_id="cut")
    with pytest.raises(ExportError, match="--allow-cut"):
        export_whisper(cut.checkpoint_dir, tmp_path / "out_cut")
    assert not (tmp_path / "out_av").exists() and not (tmp_path / "out_cut").exists()
    out = export_whisper(cut.checkpoint_dir, tmp_path / "out_cut", allow_cut=True).path
    assert "did not see in training" in (out / "README.md").read_text()
