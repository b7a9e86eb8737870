"""How every command of the toolkit ends when the user's input or machine is at fault: one line, no traceback.

``run_command(prog, body, argv)`` runs ``body(argv)`` and turns the toolkit's own errors (all of them
subclass ``ValueError`` or ``RuntimeError``), ``OSError`` (missing, read-only, full, a file where a folder
belongs) and a refused pickle into ``prog: message`` on stderr and exit code 2; Ctrl-C into exit 130. A
programming error (``TypeError``, ``KeyError`` ...) keeps its traceback: that is a bug to report. ``--debug``
anywhere on the command line (or ``AV_DEBUG=1``) re-raises, so the traceback is one flag away.

``ensure_output_dir`` is the check commands make before the work (decoding a block takes minutes), so that an
output folder that cannot be written fails at once instead of after all the work is done.

av-train and av-cli use this module too (they depend on av-eval); uaspeech-prep, which depends on no other
package of the toolkit, has the same rules in its own ``cli`` module.
"""

from __future__ import annotations

import errno
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Callable

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, RuntimeError, OSError, pickle.UnpicklingError)
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# errno -> what the user can do about it
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space or write somewhere else",
    errno.EDQUOT: "the disk quota is exhausted: free space or write somewhere else",
    errno.EACCES: "permission denied: choose a folder you can write (or fix its permissions)",
    errno.EPERM: "operation not permitted: choose a folder you can write (or fix its permissions)",
    errno.EROFS: "the file system is read-only: choose another folder",
    errno.ENOTDIR: "a part of this path is a file, not a folder: choose another path",
    errno.EISDIR: "this is a folder where a file was expected",
    errno.ENOENT: "no such file or folder: check the path",
    errno.EEXIST: "it already exists",
}


def describe(exc: BaseException) -> str:
    """The one line a user reads: the path first for OS errors, with what to do about it."""
    if isinstance(exc, OSError) and exc.errno in _OS_HINTS:
        where = exc.filename if exc.filename is not None else ""
        what = exc.strerror or _OS_HINTS[exc.errno]
        hint = _OS_HINTS[exc.errno]
        text = f"{where}: {what}" if where else what
        return text if hint == what else f"{text} ({hint})"
    text = str(exc).strip()
    if isinstance(exc, KeyError) or not text:
        text = f"{type(exc).__name__}: {text}".rstrip(": ")
    return text


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """(whether ``--debug`` was given or AV_DEBUG=1 is set, argv without ``--debug``)."""
    rest = [a for a in argv if a != "--debug"]
    return len(rest) != len(argv) or os.environ.get("AV_DEBUG", "") not in ("", "0"), rest


# Output folders that ``ensure_output_dir`` created during the running command: a command that fails removes
# those it left empty, so a mistyped input does not leave an empty results folder behind.
_created_dirs: list[Path] = []


def _remove_empty_created_dirs() -> None:
    for d in reversed(_created_dirs):
        try:
            d.rmdir()  # only succeeds when empty: nothing of the user's or of the work is ever removed
        except OSError:
            pass
    _created_dirs.clear()


def run_command(prog: str, body: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Run a command's ``body(argv)``; user errors become ``prog: message`` and exit 2 (see the module doc)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug, argv = debug_requested(argv)
    _created_dirs.clear()
    try:
        rc = int(body(argv) or 0)
    except KeyboardInterrupt:
        _remove_empty_created_dirs()
        if debug:
            raise
        print(f"\n{prog}: interrupted; finished outputs are kept and rerunning the same command resumes "
              "where the command supports it", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as e:
        _remove_empty_created_dirs()
        if debug:
            raise
        print(f"{prog}: {describe(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    if rc == EXIT_USER_ERROR:
        _remove_empty_created_dirs()
    _created_dirs.clear()
    return rc


def ensure_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` if needed and prove a file can be written in it (raises ``OSError`` naming it)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"the {what} is a file, not a folder: choose another path", str(p))
    missing = [q for q in (p, *p.parents) if not q.exists()]
    p.mkdir(parents=True, exist_ok=True)
    _created_dirs.extend(reversed(missing))  # outermost first; removed innermost first
    try:
        # 64 KiB and fsync: a full disk answers ENOSPC here, not after the work
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-check-") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        raise type(e)(e.errno, f"cannot write in the {what} ({e.strerror})", str(p)) from None
    return p
