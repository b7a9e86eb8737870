"""Writing outputs safely: atomic files, and one writer per output (two commands writing the same folder or file
must not mix their work).

`atomic_write_text` writes through a temporary file in the same folder and renames it, so a reader sees the old file
or the new one, never half of one; the file gets the user's umask, as any file they write.

`output_lock(out, command)` holds an exclusive ``flock`` on ``.<name>.lock`` beside ``out`` while a command writes it;
a second writer is refused at once with the holder's pid (`OutputBusy`, a RuntimeError: exit code 2 through the
commands' error policy). Staging names are private to the process (`private_staging`), so a refused or crashed
writer never touches another's half-written folder. The lock file is removed by its holder, still holding it;
a writer that locked a file just removed sees that it is no longer the live one and locks again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it 0600: the user's umask decides, as for any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class OutputBusy(RuntimeError):
    """Another process is writing the same output."""


@contextmanager
def output_lock(out: str | Path, command: str) -> Iterator[Path]:
    import fcntl

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "pid ?"
            finally:
                os.close(fd)
            raise OutputBusy(f"{out} is being written by another process ({holder}); wait for it to finish, or give "
                             f"this {command} another output") from None
        try:  # the holder before us may have removed the file between our open and our lock: lock the live one
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {command}".encode())
        yield out
    finally:
        lock.unlink(missing_ok=True)  # while still holding it (see the inode check above)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def private_staging(out: Path, tag: str) -> Path:
    """A new, empty staging folder ``.<name>.<tag>-<pid>`` beside ``out``; stale ones of dead processes are removed."""
    for old in out.parent.glob(f".{out.name}.{tag}-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    tmp = out.parent / f".{out.name}.{tag}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)  # our own pid: a previous call of this process that failed
    tmp.mkdir(parents=True)
    return tmp


def pid_alive(pid: int) -> bool:
    """Whether a process of that pid exists (ours included; one of another user counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
