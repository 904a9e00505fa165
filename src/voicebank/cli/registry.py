"""Which function answers which command: the whole command tree in one place."""

from __future__ import annotations

import typer

from . import files, maintenance, service, similarity, voices


def register(app: typer.Typer) -> None:
    """Add every command to ``app`` (idempotent: a second call does nothing)."""
    if any(c.name == "add" for c in app.registered_commands):
        return
    app.command("embed")(files.embed)
    app.command("extract")(files.extract)
    app.command("inspect-voice")(files.inspect_voice)
    app.command("inspect-audio")(maintenance.inspect_audio)
    app.command("add")(voices.add)
    app.command("list")(voices.list_voices)
    app.command("show")(voices.show)
    app.command("rm")(voices.rm)
    app.command("rename")(voices.rename)
    app.command("export")(voices.export)
    app.command("import")(voices.import_voice)
    app.command("compare")(similarity.compare)
    app.command("search")(similarity.search)
    app.command("blend")(similarity.blend)
    # deprecated spellings, kept for one release
    app.command("inspect", hidden=True)(files.inspect_voice_deprecated)
    maintenance.library_app.command("inspect", hidden=True)(maintenance.inspect_audio_deprecated)
    app.add_typer(maintenance.library_app, name="library")
    service.register(app)  # serve, keys, pull (the service itself is the voicebank[service] extra)
