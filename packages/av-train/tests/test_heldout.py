"""model_selection: heldout: checkpoint selection on held-out B1 + B3 utterances, scores still on B2."""

import json
import logging

import pytest

from av_train.config import from_dict
from av_train.data.datamodule import UASpeechDataModule
from av_train.data.heldout import heldout_count, hold_out
from av_train.data.manifest import load_samples
from av_train.data.targets import TargetEncoder


def _targets(tiny_whisper_dir):
    from transformers import AutoTokenizer

    return TargetEncoder(AutoTokenizer.from_pretrained(tiny_whisper_dir), char_level=True)


def _dm(tree, whisper, **kw):
    cfg = from_dict({"uaspeech_root": str(tree), "num_workers": 0, "batch_size": 4, "microphones": ["M5", "M6"],
                     "model_selection": "heldout", "heldout_fraction": 0.25, **kw})
    dm = UASpeechDataModule(cfg, _targets(whisper))
    dm.setup("fit")
    return dm


def _utts(dataset):
    return {s.utt_id for s in dataset.samples}


def test_heldout_utterances_leave_training_on_every_microphone(prepared_tree, tiny_whisper_dir, caplog):
    with caplog.at_level(logging.INFO, logger="av_train.data.datamodule"):
        dm = _dm(prepared_tree, tiny_whisper_dir, seed=1)
    held, train = _utts(dm.val_set), _utts(dm.train_set)
    all_train, _ = load_samples(prepared_tree, "train", ["M5", "M6"])
    # 2 speakers x 8 B1 + B3 utterances, a quarter of each speaker's held out
    assert len(held) == 2 * heldout_count(8, 0.25) == 4
    assert held.isdisjoint(train)  # no channel of a held-out utterance is trained on
    assert held | train == {s.utt_id for s in all_train}
    assert len(dm.train_set) == len(all_train) - 2 * len(held)  # both microphones of each left training
    assert {s.mic for s in dm.val_set.samples} == {"M5"} and len(dm.val_set) == len(held)  # first mic only
    assert {s.block for s in dm.val_set.samples} <= {"B1", "B3"}
    assert {(s.speaker, s.level) for s in dm.val_set.samples} == {("M12", "very_low"), ("F05", "high")}
    assert "4 of 16 training utterances (B1 + B3) held out" in caplog.text
    # validation is the held-out set, the test pass block B2
    val_utts = {m["utt_id"] for batch in dm.val_dataloader() for m in batch["meta"]}
    assert val_utts == held
    dm.setup("test")
    test_utts = {m["utt_id"] for batch in dm.test_dataloader() for m in batch["meta"]}
    assert len(test_utts) == 8 and {u.split("_")[1] for u in test_utts} == {"B2"}


def test_heldout_set_is_a_function_of_the_seed(prepared_tree, tiny_whisper_dir):
    samples, _ = load_samples(prepared_tree, "train", ["M5", "M6"])

    def held(seed, speakers=("M12", "F05")):
        return hold_out([s for s in samples if s.speaker in speakers], 0.25, seed, "M5").utterances

    assert held(1) == held(1) == _utts(_dm(prepared_tree, tiny_whisper_dir, seed=1).val_set)  # what the run uses
    assert len({held(s) for s in range(1, 6)}) > 1
    # a speaker's held-out utterances do not depend on which other speakers the run uses
    assert held(3, speakers=("F05",)) == {u for u in held(3) if u.startswith("F05")}


def test_default_validates_on_b2(prepared_tree, tiny_whisper_dir):
    cfg = from_dict({"uaspeech_root": str(prepared_tree), "num_workers": 0, "microphones": ["M5", "M6"]})
    dm = UASpeechDataModule(cfg, _targets(tiny_whisper_dir))
    dm.setup("fit")
    assert dm.val_set is dm.test_set and {s.block for s in dm.val_set.samples} == {"B2"}
    assert len(dm.train_set) == 2 * 2 * 4 * 2


def test_hold_out_keeps_a_speakers_only_utterance_and_checks_the_fraction(prepared_tree):
    samples, _ = load_samples(prepared_tree, "train", ["M5", "M6"])
    one = [s for s in samples if s.speaker == "M12" and s.utt_id == "M12_B1_D0"]
    split = hold_out([*one, *(s for s in samples if s.speaker == "F05")], 0.5, 1, "M5")
    assert split.speakers_without == ("M12",) and "M12_B1_D0" in {s.utt_id for s in split.train}
    assert {s.speaker for s in split.validation} == {"F05"} and len(split.utterances) == 4
    assert heldout_count(2, 0.5) == 1 and heldout_count(3, 0.5) == 2 and heldout_count(100, 0.1) == 10
    with pytest.raises(ValueError, match="fraction"):
        hold_out(samples, 0.6, 1, "M5")


def test_training_selects_on_heldout_and_reports_b2(prepared_tree, tiny_whisper_dir, tmp_path):
    """One epoch: the validations during training (best.ckpt, early stopping) see the held-out utterances; the
    final scores of best.ckpt are B2's, written where they always are; the held-out ones under their own name."""
    from lightning.pytorch.callbacks import Callback

    from av_train.pipeline import run

    class Seen(Callback):
        def __init__(self):
            self.passes = []

        def on_validation_epoch_end(self, trainer, pl_module):
            self.passes.append((trainer.state.fn.value, {p.utt_id for p in pl_module._val_preds}))

        def on_test_epoch_end(self, trainer, pl_module):
            self.passes.append((trainer.state.fn.value, {p.utt_id for p in pl_module._val_preds}))

    cfg = from_dict({
        "uaspeech_root": str(prepared_tree), "model_name": str(tiny_whisper_dir), "local_model_only": True,
        "output_root": str(tmp_path), "train_name": "t", "train_id": "heldout", "batch_size": 8, "max_epochs": 1,
        "num_workers": 0, "learning_rate": 1e-3, "warmup_steps": 2, "progress_bar": False, "max_new_tokens": 8,
        "microphones": ["M5", "M6"], "model_selection": "heldout", "heldout_fraction": 0.25,
    })
    seen = Seen()
    result = run(cfg, extra_callbacks=[seen])
    out = tmp_path / "results" / "t" / "heldout"
    b2 = [json.loads(line) for line in (out / "predictions_B2.jsonl").open()]
    held = [json.loads(line) for line in (out / "predictions_heldout.jsonl").open()]
    b2_utts, held_utts = {p["utt_id"] for p in b2}, {p["utt_id"] for p in held}
    assert len(b2_utts) == 8 and {u.split("_")[1] for u in b2_utts} == {"B2"}
    assert len(held_utts) == 4 and {u.split("_")[1] for u in held_utts} <= {"B1", "B3"}
    assert seen.passes == [("fit", held_utts), ("validate", held_utts), ("test", b2_utts)]
    assert result.report.total.n == 8 and result.heldout_report.total.n == 4
    assert json.loads((out / "metrics.json").read_text())["total"]["n"] == 8
    assert json.loads((out / "metrics_heldout.json").read_text())["total"]["n"] == 4
    # validate_model scores best.ckpt the same two ways
    from dataclasses import replace

    again = run(replace(cfg, validate_model=True))
    assert again.report.total.n == 8 and again.heldout_report.total.n == 4
    assert again.report.total.wer == result.report.total.wer
