"""av-cli wiring: every subcommand reaches a real function of the package that owns the job."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from av_cli.main import PASSTHROUGH, build_parser, main

REPO = Path(__file__).resolve().parents[3]


def test_every_passthrough_target_exists_and_is_callable():
    for name, (module, func, _prefix, _help) in PASSTHROUGH.items():
        target = getattr(importlib.import_module(module), func, None)
        assert callable(target), f"av-cli {name} points at missing {module}:{func}"


def test_parser_lists_every_command():
    help_text = build_parser().format_help()
    for name in [*PASSTHROUGH, "import-ct2", "demo"]:
        assert name in help_text


@pytest.mark.parametrize("command,usage", [
    ("prepare", "uaspeech-prep prepare"),
    ("train", "av-train"),
    ("validate-ensemble", "validate-ensemble"),
])
def test_help_of_a_passthrough_is_the_owning_packages_help(command, usage, capsys):
    # A leading --help must reach the package's own parser instead of av-cli's.
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert usage in capsys.readouterr().out


def test_passthrough_forwards_arguments_and_exit_code(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert main(["score", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_score_passthrough_scores_a_predictions_file(tmp_path):
    preds = tmp_path / "run.jsonl"
    rows = [
        {"utt_id": "F02_B2_D1_M5", "reference": "one", "hypothesis": "o n e", "speaker": "F02", "level": "low"},
        {"utt_id": "F02_B2_D2_M5", "reference": "two", "hypothesis": "t o o", "speaker": "F02", "level": "low"},
    ]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["score", str(preds), "--output", str(tmp_path / "out")]) == 0
    metrics = json.loads(next((tmp_path / "out").glob("*metrics.json")).read_text())
    # one of two words wrong; character-level hypotheses are joined back into words
    assert metrics["total"]["wer"] == pytest.approx(0.5)
    assert metrics["total"]["wsr"] == pytest.approx(0.5)


def test_import_ct2_converts_the_bundled_tiny_en(tmp_path, capsys):
    dst = tmp_path / "tiny.en"
    assert main(["import-ct2", "bundled-tiny.en", str(dst)]) == 0
    assert (dst / "config.json").is_file()
    assert any(dst.glob("*.safetensors"))
    assert "wrote Hugging Face Whisper" in capsys.readouterr().out
    # errors are one line naming the folder, exit 2
    assert main(["import-ct2", "bundled-tiny.en", str(dst)]) == 2
    assert str(dst) in capsys.readouterr().err
    assert main(["import-ct2", "bundled-tiny.en", str(dst), "--overwrite"]) == 0  # an earlier conversion: replaced
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    assert main(["import-ct2", "bundled-tiny.en", str(precious), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "not an earlier conversion" in err and "Traceback" not in err
    assert (precious / "chapter1.tex").read_text() == "years of work"
    assert main(["import-ct2", str(tmp_path / "no_such_ct2"), str(tmp_path / "x")]) == 2
    assert "no_such_ct2" in capsys.readouterr().err


def test_errors_of_every_command_are_one_line_in_a_real_process(tmp_path):
    """As a user sees it: a fresh process, stderr holds one line, no traceback; --debug brings it back."""
    nope = tmp_path / "nope"
    for args in (["eval", str(nope)], ["prepare", "--source", str(nope), "--output", str(tmp_path / "o")],
                 ["import-ct2", str(nope), str(tmp_path / "d")]):
        proc = subprocess.run([sys.executable, "-m", "av_cli", *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and str(nope) in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "av_cli", "eval", str(nope), "--debug"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


@pytest.mark.slow
def test_demo_runs_end_to_end_on_the_tiny_corpus(tmp_path):
    # In a fresh interpreter, as a user runs it (and away from the state of the other tests).
    work = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "av_cli", "demo", "--workdir", str(work), "--size", "tiny",
         "--audio-epochs", "1", "--lip-epochs", "1", "--av-epochs", "1"],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (work / "results" / "demo" / "demo_summary.md").read_text()
    for level in ("very_low", "low", "mid", "high", "total"):
        assert f"| {level} |" in summary
    assert (work / "results" / "demo" / "demo_wer_levels.png").stat().st_size > 1000
    assert (work / "weights" / "checkpoint" / "demo_av" / "best.ckpt").is_file()
    assert "audio-visual WER" in proc.stdout and "wall time" in proc.stdout
    assert "litlogger" not in proc.stdout + proc.stderr


def test_import_ct2_refuses_a_destination_another_writer_holds(tmp_path, capsys):
    """(issue: hardening round two, class 1)"""
    from av_common.files import output_lock

    dst = tmp_path / "w"
    with output_lock(dst, "another conversion"):
        assert main(["import-ct2", "bundled-tiny.en", str(dst)]) == 2
    err = capsys.readouterr().err
    assert "being written by another process" in err and "another conversion" in err and not dst.exists()
