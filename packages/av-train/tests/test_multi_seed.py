"""Multi-seed runner: seed configs, where seeds run, one job per GPU slot, failures, summary."""

import math
import threading
import time

import pytest

from av_train.cli import parse_overrides
from av_train.config import from_dict, load_config
from av_train.multi_seed import (
    SeedResult, plan, run_on_slots, seed_command, seed_config, summarize, summary_markdown,
)
from av_train.multi_seed_command import main


def _cfg(**kw):
    return from_dict({"uaspeech_root": "/data/prepared", "train_id": "av_both", "modality": "audio_visual",
                      "pt_audio_ckpt": "weights/checkpoint/audio_{seed}/best.ckpt", **kw})


def test_seed_config_suffixes_train_id_and_substitutes_seed():
    cfg = seed_config(_cfg(), 3)
    assert cfg.seed == 3 and cfg.train_id == "av_both_3"
    assert cfg.resolve_seed_path(cfg.pt_audio_ckpt) == "weights/checkpoint/audio_3/best.ckpt"
    assert str(cfg.checkpoint_dir) == "weights/checkpoint/av_both_3"


def test_seed_command_round_trips_to_the_same_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("uaspeech_root: /data/prepared\ntrain_id: av_both\nmodality: audio_visual\n"
                    "pt_audio_ckpt: weights/checkpoint/audio_{seed}/best.ckpt\n")
    overrides = {"speakers": ["M09", "F02"], "learning_rate": 0.001}
    base = load_config(path, overrides)
    cmd = seed_command(str(path), overrides, seed_config(base, 4), {"devices": 1})
    assert cmd[1:4] == ["-m", "av_train.cli", str(path)]
    child = load_config(cmd[3], parse_overrides(cmd[4:]))
    assert child == seed_config(_cfg(speakers=["M09", "F02"], learning_rate=0.001, devices=1), 4)


@pytest.mark.parametrize(
    "options, gpus, sequential, expected",
    [
        ({}, [], False, "inprocess"),
        ({}, [0], False, "inprocess"),
        ({}, [0, 1], False, "parallel"),
        ({"devices": 1}, [0, 1, 2], False, "parallel"),
        ({}, [0, 1], True, "inprocess"),
        ({"devices": 2}, [0, 1], False, "subprocess"),
        ({"strategy": "ddp", "devices": 2, "accelerator": "cpu"}, [], False, "subprocess"),
        ({"num_nodes": 2}, [0, 1], False, "subprocess"),
    ],
)
def test_plan(options, gpus, sequential, expected):
    assert plan(_cfg(**options), gpus, sequential) == expected


def test_one_seed_per_slot_failures_reported_and_others_go_on():
    running: dict[int, int] = {}
    lock = threading.Lock()
    seen, peak = [], [0]

    def job(seed: int, slot: int) -> SeedResult:
        with lock:
            assert slot not in running, f"slot {slot} given to seed {seed} while seed {running.get(slot)} runs"
            running[slot] = seed
            peak[0] = max(peak[0], len(running))
            seen.append((seed, slot))
        time.sleep(0.05)
        with lock:
            del running[slot]
        if seed == 3:
            return SeedResult(seed, f"x_{seed}", False, 0.05, error="boom", gpu=slot)
        return SeedResult(seed, f"x_{seed}", True, 0.05, metrics={"wer": seed / 10, "cer": 0.1, "wsr": 0.5}, gpu=slot)

    results = run_on_slots([1, 2, 3, 4, 5], [0, 1], job)
    assert [r.seed for r in results] == [1, 2, 3, 4, 5]
    assert peak[0] == 2  # two GPUs busy at once, never more
    assert {slot for _, slot in seen} == {0, 1}
    assert [r.ok for r in results] == [True, True, False, True, True]

    summary = summarize(results)
    assert summary["failed"] == [3]
    wer = summary["aggregate"]["wer"]
    assert wer["n"] == 4 and wer["mean"] == pytest.approx((0.1 + 0.2 + 0.4 + 0.5) / 4)
    assert wer["std"] == pytest.approx(0.18257418583505536)  # sample std of .1 .2 .4 .5
    table = summary_markdown(results, summary)
    assert "| 3 | x_3 | failed: boom |" in table and "| mean +- std | 4 seed(s) |" in table
    assert "30.0 +- 18.3" in table


def test_main_config_errors_exit_2(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("uaspeech_root: /data/prepared\nfusion_locaton: both\n")
    assert main([str(path), "--num_seeds", "2"]) == 2
    assert "Did you mean 'fusion_location'" in capsys.readouterr().err
    path.write_text("uaspeech_root: /data/prepared\n")
    assert main([str(path), "seed=3"]) == 2
    assert "--start_seed" in capsys.readouterr().err
    assert main([str(path), "--num_seeds", "0"]) == 2


def test_overrides_may_follow_the_flags():
    from av_train.multi_seed_command import build_parser

    args = build_parser().parse_intermixed_args(["c.yaml", "--num_seeds", "5", "a=1", "--start_seed", "3", "b=2"])
    assert (args.config, args.num_seeds, args.start_seed, args.overrides) == ("c.yaml", 5, 3, ["a=1", "b=2"])
    args = build_parser().parse_intermixed_args(["c.yaml"])
    assert (args.num_seeds, args.start_seed, args.sequential) == (10, 1, False)  # the seed README's defaults


def test_a_failing_seed_process_is_reported_with_its_log(tmp_path):
    from av_train.multi_seed import run_seed_subprocess

    path = tmp_path / "c.yaml"
    path.write_text(f"uaspeech_root: /data/prepared\noutput_root: {tmp_path}\ntrain_id: x\n")
    scfg = seed_config(load_config(path), 2)
    cmd = seed_command(str(path), {"batch_sise": 4}, scfg)  # a typo: the child exits with status 2
    log = tmp_path / "seed2.log"
    r = run_seed_subprocess(cmd, scfg, gpu=0, log_file=log)
    assert not r.ok and r.seed == 2 and r.gpu == 0
    assert "exit status 2" in r.error and "Did you mean 'batch_size'" in r.error and str(log) in r.error


def test_one_seed_has_no_std_as_in_av_eval():
    """The runner's statistics are av-eval's: with one seed the std is None (null in the JSON), not 0."""
    import json

    from av_eval import summarize as av_eval_summarize

    results = [SeedResult(1, "x_1", True, 1.0, metrics={"wer": 0.3, "cer": 0.1, "wsr": 0.7})]
    summary = summarize(results)
    assert summary["aggregate"]["wer"] == {"mean": 0.3, "std": None, "n": 1}
    assert math.isnan(av_eval_summarize([0.3]).std)
    json.dumps(summary, allow_nan=False)  # valid JSON: no NaN
    assert "| mean +- std | 1 seed(s) | | 30.0 | 10.0 | 70.0 | |" in summary_markdown(results, summary)
    two = results + [SeedResult(2, "x_2", True, 1.0, metrics={"wer": 0.5, "cer": 0.1, "wsr": 0.7})]
    assert summarize(two)["aggregate"]["wer"]["std"] == av_eval_summarize([0.3, 0.5]).std


def test_a_seed_failing_on_bad_input_is_one_line_not_a_traceback(monkeypatch, caplog):
    """(issue: hardening round two, class 6)"""
    import logging

    import av_train.pipeline as pipeline
    from av_train.config import from_dict
    from av_train.divergence import TrainingDiverged
    from av_train.multi_seed import run_seed_inprocess

    def diverge(cfg):
        raise TrainingDiverged("run x_3 (config.yaml): the training gradient norm is nan at step 2")

    monkeypatch.setattr(pipeline, "main_train", diverge)
    cfg = from_dict({"uaspeech_root": "/nowhere", "train_id": "x_3", "seed": 3})
    with caplog.at_level(logging.ERROR):
        result = run_seed_inprocess(cfg)
    assert not result.ok and "gradient norm is nan" in result.error
    assert "Traceback" not in caplog.text
    assert "seed 3 (x_3): run x_3 (config.yaml): the training gradient norm is nan at step 2" in caplog.text
