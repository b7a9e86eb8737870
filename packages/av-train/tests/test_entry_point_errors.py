"""Every command x every class of bad input or machine fault ends with one line naming the path, a non-zero
exit, no traceback, and nothing written under a final name (issue: hardening).

The commands are the package entry points that ``av-cli`` hands its arguments to unchanged (apps/cli's own
test covers that hand-over). Classes: a missing input, an output that is a file, a full disk (``fsync``
answering ENOSPC), a damaged checkpoint, a hostile pickle, a bad config value.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import yaml

from av_eval.cli import main as eval_main
from av_train.cli import main as train_main
from av_train.evaluation.noise_command import main as noise_main
from av_train.evaluation.validate_ensemble_command import main as ensemble_main
from av_train.export.cli import main as export_main
from av_train.inference.transcribe_command import main as transcribe_main
from av_train.multi_seed_command import main as multi_seed_main
from uaspeech_prep.cli import main as prep_main


@pytest.fixture(scope="module")
def world(make_run, prepared_tree, tiny_whisper_dir, tmp_path_factory):
    """A finished run, its predictions, a config that trains it, a wav; all read-only for the cases."""
    root = tmp_path_factory.mktemp("world")
    cfg = make_run(prepared_tree, tiny_whisper_dir, root / "runs", seed=1, train_id="good")
    preds = root / "preds.jsonl"
    preds.write_text(json.dumps({"utt_id": "M12_B2_D1", "speaker": "M12", "level": "very_low", "block": "B2",
                                 "word_id": "D1", "reference": "one", "hypothesis": "one"}) + "\n")
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump({
        "uaspeech_root": str(prepared_tree), "model_name": str(tiny_whisper_dir), "local_model_only": True,
        "output_root": str(root / "train_out"), "train_id": "sweep", "max_epochs": 1, "batch_size": 8,
        "num_workers": 0, "progress_bar": False, "microphones": ["M5"], "max_new_tokens": 6}))
    wav = next((prepared_tree / "audio" / "M12").glob("M12_B2_*_M5.wav"))
    return {"run": cfg.checkpoint_dir, "runs": root / "runs", "preds": preds, "config": config, "wav": wav,
            "tree": prepared_tree, "root": root}


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def _check(capsys, rc: int, *must_name: str, forbidden=("Traceback", "weights_only=False")) -> str:
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1] if err else ""
    assert rc != 0, err
    assert not any(f in err for f in forbidden), err
    for name in must_name:
        assert name in last, f"{name!r} not in the last line: {last!r}"
    return last


# --------------------------------------------------------------------------- a missing input, every command
def _missing_cases(w, nope):
    return {
        "train": (train_main, [str(nope / "cfg.yaml")]),
        "train-multi-seed": (multi_seed_main, [str(nope / "cfg.yaml"), "--num_seeds", "1"]),
        "validate-ensemble": (ensemble_main, [str(nope / "cfg.yaml")]),
        "eval": (eval_main, ["eval", str(nope), "--no-progress"]),
        "score": (eval_main, ["score", str(nope / "p.jsonl")]),
        "compare": (eval_main, ["compare", str(nope / "s.json"), "--output", str(w["root"] / "cmp")]),
        "noise-eval": (noise_main, [str(nope), "--snrs", "clean", "--no-progress"]),
        "export": (export_main, [str(nope), str(w["root"] / "never")]),
        "transcribe": (transcribe_main, [str(nope), str(w["wav"]), "--no-progress"]),
        "prepare": (prep_main, ["prepare", "--source", str(nope), "--output", str(w["root"] / "never2"),
                                "--skip-roi", "--quiet"]),
        "validate-only": (prep_main, ["prepare", "--validate-only", "--output", str(nope)]),
        "stats": (prep_main, ["stats", str(nope)]),
    }


@pytest.mark.parametrize("command", ["train", "train-multi-seed", "validate-ensemble", "eval", "score", "compare",
                                     "noise-eval", "export", "transcribe", "prepare", "stats"])
def test_missing_input_is_one_line_naming_it(world, tmp_path, capsys, command):
    nope = tmp_path / "does_not_exist"
    main, argv = _missing_cases(world, nope)[command]
    before = _files(world["root"])
    _check(capsys, main(argv), "does_not_exist")
    assert _files(world["root"]) == before


# --------------------------------------------------------------------------- outputs that cannot be written
def _output_cases(w, blocker: Path):
    """Commands whose output lands under ``blocker`` (a plain file)."""
    out = blocker / "sub"
    cfg = yaml.safe_load(w["config"].read_text())
    cfg_path = blocker.parent / "to_file.yaml"
    cfg_path.write_text(yaml.safe_dump({**cfg, "output_root": str(out)}))
    return {
        "train": (train_main, [str(cfg_path)]),
        "eval": (eval_main, ["eval", str(w["runs"]), "--output", str(out), "--no-progress"]),
        "score": (eval_main, ["score", str(w["preds"]), "--output", str(out)]),
        "noise-eval": (noise_main, [str(w["run"]), "--snrs", "clean", "--output", str(out), "--no-progress"]),
        "export": (export_main, [str(w["run"]), str(out)]),
        "transcribe": (transcribe_main, [str(w["run"]), str(w["wav"]), "--output", str(out / "t.jsonl"),
                                         "--no-progress"]),
        "prepare": (prep_main, ["prepare", "--source", str(w["tree"]), "--output", str(out), "--skip-roi",
                                "--quiet"]),
    }


OUTPUT_COMMANDS = ["train", "eval", "score", "noise-eval", "export", "transcribe", "prepare"]


@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
def test_output_under_a_file_fails_before_the_work(world, tmp_path, capsys, command):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    main, argv = _output_cases(world, blocker)[command]
    before = _files(world["root"])
    _check(capsys, main(argv), "a_file")
    assert blocker.read_text() == "not a folder" and _files(world["root"]) == before


@pytest.mark.parametrize("command", ["train", "eval", "score", "noise-eval", "transcribe", "prepare"])
def test_full_disk_fails_before_the_work(world, tmp_path, capsys, monkeypatch, command):
    """A full disk (fsync answers ENOSPC) is found by the write check, before minutes of decoding."""
    (tmp_path / "x").mkdir()
    out = tmp_path / "x" / "sub"  # where _output_cases puts each command's output
    main, argv = _output_cases(world, tmp_path / "x")[command]

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    last = _check(capsys, main(argv), str(out))
    assert "disk is full" in last or "No space left" in last
    assert not [f for f in _files(out) if not Path(f).name.startswith(".")]


# --------------------------------------------------------------------------- checkpoints that must not load
@pytest.fixture
def bad_runs(world, tmp_path):
    """Copies of the good run with a damaged best.ckpt, and with a hostile pickle."""
    runs = {}
    for kind in ("damaged", "hostile"):
        folder = tmp_path / kind / "weights" / "checkpoint" / kind
        folder.mkdir(parents=True)
        shutil.copy(world["run"] / "config.yaml", folder / "config.yaml")
        ckpt = folder / "best.ckpt"
        if kind == "damaged":
            data = (world["run"] / "best.ckpt").read_bytes()
            ckpt.write_bytes(data[: len(data) // 3])
        else:
            class Evil:
                def __reduce__(self):
                    return (os.system, (f"touch {tmp_path / 'pwned'}",))

            with open(ckpt, "wb") as fh:
                pickle.dump({"state_dict": Evil()}, fh)
        runs[kind] = folder
    return runs


@pytest.mark.parametrize("kind", ["damaged", "hostile"])
@pytest.mark.parametrize("command", ["eval", "noise-eval", "export", "transcribe"])
def test_bad_checkpoint_is_named_and_nothing_runs(world, bad_runs, tmp_path, capsys, command, kind):
    run = bad_runs[kind]
    out = tmp_path / "out"
    main, argv = {
        "eval": (eval_main, ["eval", str(run), "--output", str(out), "--no-progress"]),
        "noise-eval": (noise_main, [str(run), "--snrs", "clean", "--output", str(out), "--no-progress"]),
        "export": (export_main, [str(run), str(out)]),
        "transcribe": (transcribe_main, [str(run), str(world["wav"]), "--no-progress"]),
    }[command]
    _check(capsys, main(argv), "best.ckpt")
    assert not (tmp_path / "pwned").exists(), "a pickle ran"
    assert not [f for f in _files(out) if not f.startswith(".")]


def test_eval_reports_a_bad_checkpoint_and_scores_the_others(world, bad_runs, tmp_path, capsys):
    folder = tmp_path / "mixed"
    shutil.copytree(world["run"], folder / "good")
    shutil.copytree(bad_runs["damaged"], folder / "damaged")
    rc = eval_main(["eval", str(folder), "--output", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "damaged" in err and "Traceback" not in err
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "could not be evaluated" in summary and "damaged" in summary
    assert (tmp_path / "out" / "good" / "metrics.json").is_file()


# --------------------------------------------------------------------------- configuration values
@pytest.mark.parametrize("override, names", [
    ("train_id=../../escaped", "train_id"),
    ("max_epochs=0", "max_epochs"),
    ("learning_rate=-1e-4", "learning_rate"),
    ("batch_size=oops", "batch_size"),
    ("speakers=[]", "speakers"),
])
def test_bad_config_values_are_refused_before_anything_is_written(world, tmp_path, capsys, override, names):
    cfg = yaml.safe_load(world["config"].read_text())
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**cfg, "output_root": str(tmp_path / "o")}))
    _check(capsys, train_main([str(path), override]), names)
    assert not (tmp_path / "o").exists() and not (tmp_path / "escaped").exists()


def test_learning_rate_written_1e_3_is_a_number(world):
    from av_train.config import load_config

    # PyYAML reads 1e-3 (no dot) as the string "1e-3"
    assert load_config(world["config"], {"learning_rate": "1e-3"}).learning_rate == pytest.approx(1e-3)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        eval_main(["eval", str(tmp_path / "nope"), "--debug"])


def test_a_failed_fresh_training_leaves_nothing_behind(world, tmp_path, capsys, monkeypatch):
    from av_train.module import AVSRModule

    def boom(self, batch, batch_idx):
        raise RuntimeError("boom in the first step")

    monkeypatch.setattr(AVSRModule, "training_step", boom)
    import logging
    import sys

    # Lightning's handlers hold the stderr of the test that first imported it (a closed capture by now)
    for name in [n for n in logging.Logger.manager.loggerDict if n.startswith("lightning")]:
        for handler in getattr(logging.getLogger(name), "handlers", []):
            if isinstance(handler, logging.StreamHandler):
                monkeypatch.setattr(handler, "stream", sys.stderr)
    cfg = yaml.safe_load(world["config"].read_text())
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**cfg, "output_root": str(tmp_path / "o")}))
    last = _check(capsys, train_main([str(path)]), "boom")
    assert last.startswith("av-train: ")
    assert _files(tmp_path / "o") == set(), _files(tmp_path / "o")  # no config.yaml, no empty event file


def test_a_diverging_run_stops_with_exit_2_before_the_weights_are_spoiled(world, tmp_path, capsys, monkeypatch):
    """learning_rate 1000 makes the gradients non-finite within the first steps: the run stops before they reach
    the weights, names its config and the likely cause, and keeps no checkpoint at all (the first validation is
    never reached), where it used to train NaN weights to the end, save them as best.ckpt and exit 0."""
    import logging
    import sys

    for name in [n for n in logging.Logger.manager.loggerDict if n.startswith("lightning")]:
        for handler in getattr(logging.getLogger(name), "handlers", []):
            if isinstance(handler, logging.StreamHandler):
                monkeypatch.setattr(handler, "stream", sys.stderr)
    cfg = yaml.safe_load(world["config"].read_text())
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**cfg, "output_root": str(tmp_path / "o"), "learning_rate": 1000.0,
                                    "warmup_steps": 0, "lr_schedule": "constant", "max_epochs": 3}))
    rc = train_main([str(path)])
    assert rc == 2
    last = _check(capsys, rc, "sweep", "config.yaml", "learning_rate", "step")
    assert "gradient norm is nan" in last or "loss is nan" in last or "loss is inf" in last, last
    assert not list((tmp_path / "o").rglob("*.ckpt")), list((tmp_path / "o").rglob("*.ckpt"))


@pytest.mark.parametrize("command", ["eval", "noise-eval", "export", "transcribe", "prepare", "synth"])
def test_an_output_another_writer_holds_is_refused(world, tmp_path, capsys, command):
    """(issue: hardening round two, class 1) two writers on one output would mix their work: the second is refused"""
    from av_common.files import output_lock

    out = tmp_path / ("t.jsonl" if command == "transcribe" else "out")
    main, argv, name = {
        "eval": (eval_main, ["eval", str(world["runs"]), "--output", str(out), "--no-progress"], "av-eval eval"),
        "noise-eval": (noise_main, [str(world["run"]), "--snrs", "clean", "--output", str(out), "--no-progress"],
                       "av-cli noise-eval"),
        "export": (export_main, [str(world["run"]), str(out)], "av-cli export"),
        "transcribe": (transcribe_main, [str(world["run"]), str(world["wav"]), "--output", str(out),
                                         "--no-progress"], "av-cli transcribe"),
        "prepare": (prep_main, ["prepare", "--source", str(world["tree"]), "--output", str(out), "--skip-roi",
                                "--quiet"], "uaspeech-prep prepare"),
        "synth": (prep_main, ["synth", "--output", str(out), "--size", "tiny", "--no-progress"], "uaspeech-prep synth"),
    }[command]
    with output_lock(out, "test"):
        rc = main(argv)
        last = _check(capsys, rc, str(out), "being written by another process (pid ", ": test)", f"this {name}")
    assert rc == 2
    assert not out.exists() or not any(out.iterdir())


def test_a_predictions_line_that_is_not_an_object_and_an_unknown_split(world, tmp_path, capsys):
    """(issue: hardening round two, class 6) a line `42` was a TypeError traceback; --split B9 loaded the model
    before refusing"""
    preds = tmp_path / "p.jsonl"
    preds.write_text(world["preds"].read_text() + "42\n")
    _check(capsys, eval_main(["score", str(preds)]), "p.jsonl:2", "a JSON object")
    with pytest.raises(SystemExit) as e:
        eval_main(["eval", str(world["runs"]), "--split", "B9", "--no-progress"])
    assert e.value.code == 2 and "invalid choice: 'B9'" in capsys.readouterr().err
