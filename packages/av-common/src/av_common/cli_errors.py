"""How every command of the toolkit ends when the user's input or machine is at fault: one line, no traceback.

``run_command(prog, body, argv)`` runs ``body(argv)`` and turns the toolkit's own errors (all of them
subclass ``ValueError`` or ``RuntimeError``), ``OSError`` (missing, read-only, full, a file where a folder
belongs) and a refused pickle into ``prog: message`` on stderr and exit code 2; Ctrl-C into exit 130. A
programming error (``TypeError``, ``KeyError`` ...) keeps its traceback: that is a bug to report. ``--debug``
anywhere on the command line (or ``AV_DEBUG=1``) re-raises, so the traceback is one flag away.

``configure_cli_logging()`` (called by ``run_command``) makes the toolkit's library loggers print INFO messages
as plain lines, the way the commands printed them before the libraries logged: INFO to stdout, warnings and
errors to stderr.

``ensure_output_dir`` is the check commands make before the work (decoding a block takes minutes), so that an
output folder that cannot be written fails at once instead of after all the work is done.

Every command of every package uses this module (av-common depends on nothing); av-fusion-models has no command.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Callable

# The toolkit's top-level packages: their modules log through logging.getLogger(__name__), below these names.
TOOLKIT_LOGGERS = ("av_eval", "av_train", "av_fusion_models", "av_cli", "uaspeech_prep")

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


class _ConsoleHandler(logging.Handler):
    """A log record as the line ``print`` showed: the message alone, INFO and below on stdout, WARNING and above
    on stderr. The stream is looked up at every record (not kept), so a redirected or captured ``sys.stdout``
    (pytest's capsys, ``contextlib.redirect_stdout``) receives the lines like it received the prints."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never break the command (logging's own rule)
            self.handleError(record)


def configure_cli_logging() -> None:
    """Show the toolkit's log messages of level INFO and above as plain lines (see ``_ConsoleHandler``).

    Only the toolkit's own loggers (``TOOLKIT_LOGGERS``) are set up, not the root logger: third-party libraries
    (Lightning, transformers ...) keep their own output. Records still propagate, so pytest's caplog sees them.
    Calling it again changes nothing; a level someone set on one of these loggers is kept."""
    for name in TOOLKIT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
            logger.addHandler(_ConsoleHandler())
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


def run_command(prog: str, body: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Run a command's ``body(argv)``; user errors become ``prog: message`` and exit 2 (see the module doc)."""
    configure_cli_logging()
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
