"""Atomic writes with the user's umask, and one writer per output."""

from __future__ import annotations

import os

import pytest

from av_common.files import OutputBusy, atomic_write_text, current_umask, output_lock, private_staging


def test_atomic_write_replaces_whole_and_takes_the_umask(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["a.txt"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def test_a_second_writer_is_refused_with_the_holders_pid_and_the_lock_goes_with_the_holder(tmp_path):
    out = tmp_path / "out"
    with output_lock(out, "first command"):
        with pytest.raises(OutputBusy, match=rf"{out} is being written by another process \(pid {os.getpid()}: "
                                             r"first command\); wait for it to finish, or give this second"):
            with output_lock(out, "second"):
                pass
    assert not (tmp_path / ".out.lock").exists()
    with output_lock(out, "second"):  # free again
        pass


def test_staging_is_private_and_stale_ones_of_dead_processes_go(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / ".out.export-tmp-999999999"  # no such pid
    dead.mkdir()
    mine = private_staging(out, "export-tmp")
    assert mine.name == f".out.export-tmp-{os.getpid()}" and mine.is_dir() and not dead.exists()
