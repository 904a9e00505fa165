"""The Typer app, its error boundary (library errors become exit code 1 and one line on stderr) and ``main``."""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from .._version import __version__
from ..chatterbox import VARIANTS

app = typer.Typer(
    name="voicebank",
    help="Extract, store, compare and serve Chatterbox voice conditionals without loading the TTS model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

VariantOpt = Annotated[str, typer.Option("--variant", help=f"Chatterbox variant: {', '.join(VARIANTS)}.")]


def _err(message: str) -> None:
    from .common import error_line

    error_line(message)


_OWN_PROCESS = False
"""True when :func:`main` runs the command line of this process (the console script), not a caller's argv."""


@contextmanager
def heavy_imports() -> Iterator[None]:
    """Wrap the import of torch and the models: in the ``voicebank`` process, the cyclic garbage collector
    is paused during the import (it would walk the growing heap dozens of times: ~0.13 s of the 1 s that
    ``import torch`` takes) and what the import created is then frozen out of later collections.  Elsewhere
    (tests calling :func:`main` with arguments) it does nothing."""
    if not _OWN_PROCESS or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"voicebank {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
    blobs: Annotated[str | None, typer.Option(
        "--blobs", show_default=False,
        help="A shared library's content files: s3://bucket/prefix (with --library postgresql://...; default: "
        "$VOICEBANK_BLOBS; credentials and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "AWS_ENDPOINT_URL).")] = None,
) -> None:
    """voicebank: Chatterbox voices without the TTS model."""
    from .common import BLOBS

    BLOBS[0] = blobs


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``voicebank`` script; returns the exit code.

    ``argv=None`` means "the command line of this process" (the console script), which ends right after:
    the interpreter is then spared some work on the way out (see :func:`_exit_quickly`).
    """
    global _OWN_PROCESS
    _OWN_PROCESS = argv is None
    try:
        rc = _run(argv)
    finally:
        if argv is None:
            # Freeze every live object into the permanent GC generation, so that the interpreter's last
            # collection no longer walks the objects torch created on import (~0.3 s).
            gc.freeze()
    if argv is None and _QUICK_EXIT:
        _exit_quickly(rc)
    return rc


_QUICK_EXIT = False
"""Set by the commands that have written, fsynced and printed everything when they return."""


def quick_exit_ok() -> None:
    global _QUICK_EXIT
    _QUICK_EXIT = True


def _exit_quickly(code: int) -> None:
    """End the process now: tearing down torch's modules and libraries takes ~0.1 s, 5 % of a cold
    ``voicebank extract``.  Only for commands whose results are all on disk and on the terminal."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said there
            pass
    os._exit(code)


def _run(argv: list[str] | None) -> int:
    """Run the command line: the one error boundary of the CLI.

    Every failure ends as one escaped line ``voicebank: error: ...`` (at most 500 characters) and exit 1;
    usage errors exit 2 (click's message, or that line for an option value the checks of
    :mod:`voicebank.options` refuse); never a traceback.
    """
    from ..errors import InvalidOptionError, VoicebankError
    from .registry import command_of, register

    _install_log_handler()
    args = sys.argv[1:] if argv is None else argv
    register(app, only=command_of(args))
    try:
        rc = app(args=args, standalone_mode=False)
    except InvalidOptionError as e:  # an option's value refused by the one set of checks: a usage error
        _err(str(e))
        return 2
    except VoicebankError as e:
        _err(str(e))
        return 1
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except typer.Abort:
        _err("aborted")
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except MemoryError:
        _err("out of memory")
        return 1
    except _usage_errors() as e:  # click's message and its exit code (2)
        e.show()  # type: ignore[attr-defined]
        return int(e.exit_code)  # type: ignore[attr-defined]
    except Exception as e:
        _err(_describe_unexpected(e))
        return 1
    return rc if isinstance(rc, int) else 0


def _usage_errors() -> type[Exception]:
    """click's ``ClickException``, the base of every usage error: the class typer's ``BadParameter`` derives
    from, so it is typer's own copy of click where typer vendors it (0.17 and later) and click itself before."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _describe_unexpected(e: BaseException) -> str:
    """A one-line message for an error no layer below turned into a :class:`VoicebankError`."""
    import sqlite3

    if isinstance(e, sqlite3.DatabaseError):
        return f"the library catalogue cannot be used ({e}); run voicebank library check"
    if isinstance(e, ImportError) and (e.name or "").split(".")[0] == "torch":  # a torch-free install
        from ..models.torch_runtime import INSTALL_TORCH

        return f"this command needs torch, which is not installed: {INSTALL_TORCH}"
    if isinstance(e, OSError):
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror or e}"
    text = str(e).strip().splitlines()
    return f"unexpected {type(e).__name__}: {text[0] if text else ''}"


_LOG_HANDLER: logging.Handler | None = None


class _CleanHandler(logging.Handler):
    """Warnings of the library as ``voicebank: warning: ...`` lines, escaped like every other output."""

    def emit(self, record: logging.LogRecord) -> None:
        from .common import error_line

        try:
            error_line(record.getMessage(), kind="warning")
        except Exception:  # a logging handler never raises
            self.handleError(record)


def _install_log_handler() -> None:
    global _LOG_HANDLER
    if _LOG_HANDLER is None:
        _LOG_HANDLER = _CleanHandler(logging.WARNING)
        logger = logging.getLogger("voicebank")
        logger.addHandler(_LOG_HANDLER)
