"""The one-line error rules every command shares (av_common.cli_errors), and the files they name."""

from __future__ import annotations

import errno
import json

import pytest

from av_common.cli_errors import EXIT_USER_ERROR, describe, ensure_output_dir, run_command
from av_eval.predictions import read_predictions


def test_a_failed_command_removes_the_empty_folders_it_created(tmp_path, capsys):
    (tmp_path / "kept").mkdir()

    def body(argv):
        ensure_output_dir(tmp_path / "new" / "deeper")  # both levels are new
        ensure_output_dir(tmp_path / "kept")  # existed before: never removed
        ensure_output_dir(tmp_path / "filled")
        (tmp_path / "filled" / "result.json").write_text("{}")  # has work in it: kept
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "input.ckpt")

    assert run_command("cmd", body, []) == EXIT_USER_ERROR
    assert "cmd: input.ckpt: No such file or directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["filled", "kept"]
    assert (tmp_path / "filled" / "result.json").is_file()


def test_a_command_that_succeeds_keeps_its_empty_output_folder(tmp_path):
    assert run_command("cmd", lambda argv: ensure_output_dir(tmp_path / "out") and 0, []) == 0
    assert (tmp_path / "out").is_dir()


def test_describe_puts_the_path_first_with_what_to_do():
    e = OSError(errno.ENOSPC, "No space left on device", "/data/run/last.ckpt")
    assert describe(e) == "/data/run/last.ckpt: No space left on device (the disk is full: free space or write " \
                          "somewhere else)"


def test_a_predictions_file_that_is_not_text_names_the_file_and_line(tmp_path):
    good = json.dumps({"utt_id": "u", "reference": "one", "hypothesis": "one"})
    f = tmp_path / "preds.jsonl"
    f.write_bytes(good.encode() + b"\n\xc1\xff binary\n")
    with pytest.raises(ValueError, match=r"preds\.jsonl:2: not UTF-8 text"):
        read_predictions(f)


def test_cli_logging_prints_library_lines_like_print_did(capsys):
    import logging

    from av_common.cli_errors import configure_cli_logging

    configure_cli_logging()
    configure_cli_logging()  # a second call (nested commands) adds no second handler: each line once
    logging.getLogger("av_train.some_module").info("resuming from %s", "last.ckpt")
    logging.getLogger("av_eval.some_module").warning("warning: unreadable metrics")
    logging.getLogger("av_train.some_module").debug("not shown")
    out, err = capsys.readouterr()
    assert out == "resuming from last.ckpt\n"
    assert err == "warning: unreadable metrics\n"


def test_run_command_sets_up_the_cli_logging(capsys):
    import logging

    def body(argv):
        logging.getLogger("av_fusion_models.x").info("a library line")

    assert run_command("cmd", body, []) == 0
    assert capsys.readouterr().out == "a library line\n"
