"""Damaged model folders (issue: hardening round two, class 4): each is one ModelFolderError naming the file and the
fix, never a traceback from deep inside safetensors or Transformers, and never a model that loads wrong."""

from __future__ import annotations

import json
import struct

import pytest

from av_fusion_models import AVWhisperConfig, AVWhisperForConditionalGeneration, testing
from av_fusion_models.folder_checks import ModelFolderError


@pytest.fixture()
def folder(tmp_path):
    whisper = testing.tiny_whisper(0, max_source_positions=100, num_mel_bins=80).eval()
    model = AVWhisperForConditionalGeneration.from_whisper(whisper, AVWhisperConfig(resnet_width=4))
    model.save_pretrained(tmp_path)
    return tmp_path


def test_the_folder_loads_as_saved(folder):
    model = AVWhisperForConditionalGeneration.from_pretrained(folder)
    assert model.whisper.proj_out.weight.data_ptr() == model.whisper.model.decoder.embed_tokens.weight.data_ptr()


def _load_fails(folder, *words):
    with pytest.raises(ModelFolderError) as e:
        AVWhisperForConditionalGeneration.from_pretrained(folder)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_truncated_weights(folder):
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    _load_fails(folder, "model.safetensors", "truncated")


def test_a_header_claiming_a_huge_length(folder):
    f = folder / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(struct.pack("<Q", 2**60) + data[8:])
    _load_fails(folder, "model.safetensors", "not a readable safetensors file")


def test_weights_of_another_shape(folder, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    whisper = testing.tiny_whisper(0, max_source_positions=100, num_mel_bins=80).eval()
    AVWhisperForConditionalGeneration.from_whisper(whisper, AVWhisperConfig(resnet_width=8)).save_pretrained(other)
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    _load_fails(folder, "model.safetensors", "tensors differ in shape, first:", "in the file")


def test_weights_of_another_model(folder, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    whisper = testing.tiny_whisper(0, max_source_positions=100, num_mel_bins=80).eval()
    AVWhisperForConditionalGeneration.from_whisper(whisper, AVWhisperConfig(fusion_location="none")).save_pretrained(
        other)
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    _load_fails(folder, "model.safetensors", "of the model's tensors are missing, first:")


@pytest.mark.parametrize("name, edit, words", [
    ("whisper_config.json", {"num_mel_bins": "eighty"}, ["whisper_config.json", "'num_mel_bins' must be a positive"]),
    ("config.json", {"fusion_location": "sideways"}, ["config.json", "fusion_location"]),
])
def test_config_fields_of_the_wrong_kind(folder, name, edit, words):
    path = folder / name
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    _load_fails(folder, *words)


def test_truncated_config(folder):
    path = folder / "config.json"
    path.write_text(path.read_text()[:40])
    _load_fails(folder, "config.json", "not valid JSON")
