import pytest
import torch

from av_fusion_models.tokenizer import build_whisper_tokenizer  # noqa: F401  (tokenizer comes from the fixture dir)
from av_train.config import from_dict
from av_train.data.datamodule import UASpeechDataModule
from av_train.data.manifest import ManifestError, load_samples
from av_train.data.targets import TargetEncoder


def _targets(tiny_whisper_dir, char_level=True):
    from transformers import AutoTokenizer

    return TargetEncoder(AutoTokenizer.from_pretrained(tiny_whisper_dir), char_level=char_level)


def test_targets_char_level_tokens_and_prompt(tiny_whisper_dir):
    t = _targets(tiny_whisper_dir)
    assert t.prompt == [50257, 50362]  # English-only: <|startoftranscript|><|notimestamps|>
    dec_in, labels = t.encode("Three")
    assert t.tokenizer.decode(dec_in[2:]) == " t h r e e"
    assert len(dec_in) == len(labels) == 2 + 5
    assert labels[0] == -100 and labels[-1] == t.eot  # prompt position ignored, ends with <|endoftext|>
    assert labels[1:-1] == dec_in[2:]
    assert t.decode(dec_in + [t.eot]) == "t h r e e"
    word = _targets(tiny_whisper_dir, char_level=False)
    assert word.tokenizer.decode(word.encode("X-ray")[0][2:]) == " x-ray"


def test_manifest_samples_split_and_channels(prepared_tree):
    train, skipped = load_samples(prepared_tree, "train", ["M5", "M6"])
    test, _ = load_samples(prepared_tree, "test", ["M5"])
    assert len(train) == 2 * 2 * 4 * 2 and not skipped  # speakers x blocks x words x mics
    assert len(test) == 2 * 4 and {s.block for s in test} == {"B2"}
    _, skipped = load_samples(prepared_tree, "test", ["M8"])
    assert len(skipped) == 8 and "no channel M8" in skipped[0]


def test_manifest_lines_that_are_not_samples_name_the_line(prepared_tree, tmp_path):
    import json

    lines = (prepared_tree / "manifest.jsonl").read_text().splitlines()
    for bad, why in (("{broken", "not valid JSON"), (json.dumps({"utt_id": "F02_B1_D0", "speaker": "F02"}), "missing")):
        (tmp_path / "manifest.jsonl").write_text("\n".join([lines[0], bad, *lines[1:]]) + "\n")
        with pytest.raises(ManifestError, match=f"manifest.jsonl:2: {why}"):
            load_samples(tmp_path, "train", ["M5"])
    (tmp_path / "manifest.jsonl").write_text("\n")
    with pytest.raises(ManifestError, match="lists no utterances"):
        load_samples(tmp_path, "train", ["M5"])


def test_batches_audio_visual(prepared_tree, tiny_whisper_dir):
    cfg = from_dict({"uaspeech_root": str(prepared_tree), "modality": "audio_visual", "batch_size": 4,
                     "num_workers": 0, "microphones": ["M5"]})
    dm = UASpeechDataModule(cfg, _targets(tiny_whisper_dir))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    b = batch["input_features"].shape[0]
    assert b == 4 and batch["input_features"].shape[1] == 80
    assert batch["input_features"].shape[2] % 2 == 0
    assert batch["video"].shape[:1] == (4,) and batch["video"].shape[2:] == (88, 88)
    lengths = (~batch["video_padding_mask"]).sum(1)
    assert lengths.max() == batch["video"].shape[1]
    # padded frames are zeros before normalisation -> (0 - mean) / std after
    for i in range(b):
        if lengths[i] < batch["video"].shape[1]:
            assert torch.allclose(batch["video"][i, lengths[i]:], torch.tensor(-0.421 / 0.165))
    assert (batch["labels"] == -100).any()
    val = next(iter(dm.val_dataloader()))
    assert all(m["utt_id"].split("_")[1] == "B2" for m in val["meta"])


def test_training_order_is_deterministic(prepared_tree, tiny_whisper_dir):
    cfg = from_dict({"uaspeech_root": str(prepared_tree), "batch_size": 4, "num_workers": 0, "seed": 7})
    orders = []
    for _ in range(2):
        dm = UASpeechDataModule(cfg, _targets(tiny_whisper_dir))
        dm.setup("fit")
        orders.append([m["utt_id"] + m["mic"] for batch in dm.train_dataloader() for m in batch["meta"]])
    assert orders[0] == orders[1]
