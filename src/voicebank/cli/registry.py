"""Which function answers which command: the whole command tree in one place.

Typer turns every registered function's signature into a click command each time the app runs (about 4 ms
a command); the console script registers only the command it was asked for (see :func:`command_of`), and
imports only the module that holds it, so a cold ``voicebank extract`` does not pay for the other 25.  Help,
a mistyped name or no name register all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

import typer


def _attr(module: str, name: str) -> Any:
    """``voicebank.cli.<module>.<name>``, imported on first use."""
    return getattr(import_module(f"{__package__}.{module}"), name)


def _library_group(app: typer.Typer) -> None:
    maintenance = import_module(f"{__package__}.maintenance")
    app.add_typer(maintenance.library_app, name="library")


def _command(name: str, module: str, function: str, *, hidden: bool = False) -> Callable[[typer.Typer], None]:
    def add(app: typer.Typer) -> None:
        app.command(name, hidden=hidden)(_attr(module, function))

    return add


def _registrar(module: str) -> Callable[[typer.Typer], None]:
    """A module's own ``register(app)`` (for commands that come in groups)."""

    def add(app: typer.Typer) -> None:
        _attr(module, "register")(app)

    return add


COMMANDS: dict[str, Callable[[typer.Typer], None]] = {
    "embed": _command("embed", "files", "embed"),
    "extract": _command("extract", "files", "extract"),
    "inspect-voice": _command("inspect-voice", "files", "inspect_voice"),
    "inspect-audio": _command("inspect-audio", "maintenance", "inspect_audio"),
    "add": _command("add", "voices", "add"),
    "list": _command("list", "voices", "list_voices"),
    "show": _command("show", "voices", "show"),
    "rm": _command("rm", "voices", "rm"),
    "rename": _command("rename", "voices", "rename"),
    "export": _command("export", "voices", "export"),
    "import": _command("import", "voices", "import_voice"),
    "compare": _command("compare", "similarity", "compare"),
    "search": _command("search", "similarity", "search"),
    "blend": _command("blend", "similarity", "blend"),
    "library": _library_group,
    "batch": _registrar("batch"),  # Parquet datasets; Ray is the voicebank[ray] extra
    "serve": _registrar("service"),  # serve, keys, pull: the service itself is the voicebank[service] extra
    "pull": _registrar("service"),
    "keys": _registrar("service"),
}
"""Top-level command or group name -> the function that adds it (and, for ``serve``, its siblings) to an app."""


def registered_names(app: typer.Typer) -> set[str]:
    """The top-level command and group names ``app`` has."""
    return {c.name for c in app.registered_commands if c.name} | {g.name for g in app.registered_groups if g.name}


def register(app: typer.Typer, only: str | None = None) -> None:
    """Add every command to ``app``, or only the command (or group) called ``only`` when there is one.

    Idempotent: what ``app`` already has is not added again, so a later full registration completes a
    partial one.
    """
    wanted = [only] if only in COMMANDS else list(COMMANDS)
    for name in wanted:
        if name not in registered_names(app):
            COMMANDS[name](app)


def command_of(argv: Sequence[str]) -> str | None:
    """The command an argument list asks for: its first argument when that is a command's name, else ``None``
    (options first, such as ``--help`` or ``--version``, or a name that is not a command)."""
    if argv and argv[0] in COMMANDS:
        return argv[0]
    return None
