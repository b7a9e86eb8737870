"""Transformers' Auto classes load an audio-visual folder once av_fusion_models is imported (issue: fit the
ecosystem, part 2): the same weights, through our strict loader; a Hub id that cannot be fetched is one clear error."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSpeechSeq2Seq

from av_fusion_models import AVWhisperAutoConfig, AVWhisperConfig, AVWhisperForConditionalGeneration, testing
from av_fusion_models.folder_checks import ModelFolderError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("av_model")
    whisper = testing.tiny_whisper(0, max_source_positions=100, num_mel_bins=80).eval()
    torch.manual_seed(3)
    model = AVWhisperForConditionalGeneration.from_whisper(
        whisper, AVWhisperConfig(fusion_location="both", resnet_width=4, video_reliability=True)).eval()
    model.save_pretrained(path)
    return path, model


def test_auto_config_reads_the_folder(folder):
    path, model = folder
    cfg = AutoConfig.from_pretrained(path)
    assert isinstance(cfg, AVWhisperAutoConfig) and cfg.model_type == "av_whisper"
    assert cfg.to_av_config() == model.config


@pytest.mark.parametrize("auto", [AutoModel, AutoModelForSpeechSeq2Seq])
def test_auto_models_load_every_weight(folder, auto):
    path, model = folder
    loaded = auto.from_pretrained(path)
    assert type(loaded) is AVWhisperForConditionalGeneration and not loaded.training
    theirs, ours = loaded.state_dict(), model.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in ours)


def test_auto_model_dtype_and_strictness(folder, tmp_path):
    path, _ = folder
    assert AutoModel.from_pretrained(path, dtype=torch.float64).whisper.proj_out.weight.dtype == torch.float64
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in path.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFolderError, match="model.safetensors"):  # never a model with weights left out
        AutoModel.from_pretrained(broken)


def test_a_hub_id_that_cannot_be_fetched_is_one_clear_error():
    with pytest.raises(FileNotFoundError, match="someone/no-such-av-model: not in the Hugging Face cache"):
        AVWhisperForConditionalGeneration.from_pretrained("someone/no-such-av-model", local_files_only=True)
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        AVWhisperForConditionalGeneration.from_pretrained("not/a/folder/at/all")
    with pytest.raises(TypeError, match="'float99' is not a torch dtype"):
        AVWhisperForConditionalGeneration.from_pretrained("x", dtype="float99")
    with pytest.raises(TypeError, match="unsupported arguments"):
        AVWhisperForConditionalGeneration.from_pretrained("x", frobnicate=True)
