"""The service commands of the ``voicebank`` CLI: ``serve``, ``keys create|list|revoke`` and ``pull``.

Cheap to import: FastAPI, uvicorn and httpx (the ``voicebank[service]`` extra) load inside the commands.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import VoicebankError
from ..options import Limits, check_numbers
from .common import (
    BLOBS,
    DeviceOpt,
    JsonOpt,
    LibraryOpt,
    ParentsOpt,
    ThreadsOpt,
    WeightsOpt,
    check_device,
    check_executor,
    check_output,
    clean,
    torch_threads,
)

if TYPE_CHECKING:
    from ..library import Library
    from ..service.settings import ServiceSettings

log = logging.getLogger("voicebank.service")

KeysFileOpt = Annotated[Path | None, typer.Option(
    "--keys-file", envvar="VOICEBANK_KEYS_FILE", show_default=False,
    help="API keys file (default: $VOICEBANK_KEYS_FILE, else service-keys.json in the library directory; for a "
    "shared library (postgresql://...), a table in its catalogue that every replica reads).")]

keys_app = typer.Typer(name="keys", help="API keys of `voicebank serve`: create, list, revoke.", no_args_is_help=True)


class ServeError(VoicebankError):
    """``voicebank serve`` cannot start as asked."""


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``keys`` and ``pull`` to ``app`` (idempotent)."""
    if any(c.name == "serve" for c in app.registered_commands):
        return
    app.command("serve")(serve)
    app.command("pull")(pull)
    app.add_typer(keys_app, name="keys")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


SERVE_LIMITS: Limits = {
    "workers": (1, 64, True),
    "queue": (0, 10_000, True),
    "cache_mb": (0, 1 << 20, False),
    "max_upload_mb": (0.001, 1 << 20, False),
    "max_audio_seconds": (0.1, 86_400, False),
    "body_timeout": (0.1, 3_600, False),
    "graceful_timeout": (0, 3_600, False),
}
"""``voicebank serve``'s numeric options: (lowest, highest, whole number)."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening, made before the models load, so that an address that
    cannot be served is one clear :class:`ServeError` (what is wrong, what to do) and not a server that loads
    everything and then stops.  uvicorn serves on it as on a socket it made itself."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ServeError(f"--host {host!r} is not an address of this machine ({getattr(e, 'strerror', None) or e}); "
                         "pass an IP address such as 127.0.0.1 or 0.0.0.0") from e
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        fixes = {errno.EADDRINUSE: "the port is in use; choose another --port or stop what listens there",
                 errno.EACCES: "this user may not use that port; choose --port 1024 or above",
                 errno.EADDRNOTAVAIL: "this machine has no such address; pass one of its addresses or 0.0.0.0"}
        why = fixes.get(e.errno or 0, e.strerror or str(e))
        raise ServeError(f"cannot listen on {host}:{port}: {why}") from e
    sock.set_inheritable(True)
    return sock


def library_location(library: str | Path | None) -> Path | str:
    """The library ``--library`` names: a directory, or a shared library's ``postgresql://`` URL (also from
    ``$VOICEBANK_LIBRARY``)."""
    from ..library import resolve_library_path
    from ..settings import Settings
    from ..store.pgcatalogue import is_postgres_url

    if library is None:
        library = Settings.from_env().library_url
    if is_postgres_url(library):
        return str(library)
    return resolve_library_path(library)


def _keystore(library: str | Path | None, keys_file: Path | None):  # -> KeyStore
    from ..service.keystores import open_keys

    return open_keys(library_location(library), keys_file)


def serve(
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs API keys.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
    library: LibraryOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    workers: Annotated[int, typer.Option(help="Extraction worker threads.", min=1, max=64)] = 1,
    queue: Annotated[int, typer.Option(help="Extractions that may wait; beyond that uploads get 429.", min=0)] = 8,
    cache_mb: Annotated[float, typer.Option(help="Memory budget of the ready-conditionals cache (MiB).", min=0)] = 256,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body (MiB).", min=0.001)] = 25,
    max_audio_seconds: Annotated[float, typer.Option(help="Longest reference clip (seconds).", min=0.1)] = 300,
    body_timeout: Annotated[float, typer.Option(help="Seconds to wait for the next piece of an upload.",
                                                min=0.1)] = 30,
    variant: Annotated[list[str] | None, typer.Option("--variant", help="Variants to load at start (repeat).")] = None,
    keys_file: KeysFileOpt = None,
    cors_origin: Annotated[list[str] | None, typer.Option("--cors-origin", help="Allow this origin (repeat); "
                                                          "CORS is off without it.")] = None,
    no_page: Annotated[bool, typer.Option("--no-page", help="Do not serve the web page at /.")] = False,
    log_format: Annotated[str, typer.Option(help="Log lines: auto (text on a terminal, else JSON lines), json "
                                            "or text.")] = "auto",
    graceful_timeout: Annotated[float, typer.Option(help="Seconds to let requests finish on shutdown.")] = 30,
    threads: ThreadsOpt = None,
    executor: Annotated[str, typer.Option("--executor", help="Where extraction runs: local (--workers threads of "
                                          "this process, which loads the models) or ray (--ray-workers actors of a "
                                          "Ray cluster; this process loads no model; pip install "
                                          "'voicebank\\[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Ray cluster to join: auto or HOST:PORT "
                                                    "(default: start a local one).", show_default=False)] = None,
    ray_workers: Annotated[int, typer.Option("--ray-workers", min=1, max=1024, help="Ray actors holding the "
                                             "models (each extracts one upload at a time).")] = 1,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker", min=0.0, max=64.0, help="Ray: GPUs per "
                                                   "actor (with --device cuda; 0.5 puts two actors on a GPU).")] = 0.0,
) -> None:
    """Serve the voice library over HTTP (OpenAI-style voices API, ready conditionals, web page at /)."""
    try:
        import uvicorn

        from ..service import ServiceSettings, create_app
        from ..service.logs import configure
        from ..settings import Settings
    except ImportError as e:
        raise ServeError(f"`voicebank serve` needs the service extra ({e}); pip install 'voicebank[service]'") from e
    if log_format not in LOG_FORMATS:
        raise typer.BadParameter(f"--log-format must be one of {', '.join(LOG_FORMATS)}")
    json_logs = json_log_lines(log_format)
    device = check_device(device)
    chosen = check_executor(executor, ray_address, gpus_per_worker, device)
    remote = chosen == "ray"
    check_numbers(SERVE_LIMITS, {"workers": workers, "queue": queue, "cache_mb": cache_mb,
                                 "max_upload_mb": max_upload_mb, "max_audio_seconds": max_audio_seconds,
                                 "body_timeout": body_timeout, "graceful_timeout": graceful_timeout}, prefix="--")
    lib_path = library_location(library)
    settings = ServiceSettings(library=lib_path, blobs=BLOBS[0] or Settings.from_env().blobs, weights=weights,
                               device=device, workers=workers,
                               threads=threads if remote else torch_threads(threads, share=workers),
                               queue_size=queue, cache_mb=cache_mb, max_upload_mb=max_upload_mb,
                               max_audio_seconds=max_audio_seconds, body_timeout_s=body_timeout,
                               variants=tuple(variant or ["english"]), keys_file=keys_file,
                               cors_origins=tuple(cors_origin or ()), require_keys=not is_loopback(host),
                               page=not no_page, log_json=json_logs,
                               executor=chosen,
                               ray_address=ray_address, ray_workers=ray_workers, ray_gpus=gpus_per_worker)
    # Everything that can fail at start-up is checked here, before the server starts, each failure one line
    # and exit 1 (as every other command): the keys file, the address, the weights, the library.
    keys = _keystore(lib_path, keys_file)
    if not keys.enabled and not is_loopback(host):  # refused before this process's logging is set up for serving
        raise ServeError(f"refusing to bind {host}: no API keys exist, so anyone who can reach this address could "
                         "change the library; create one with `voicebank keys create NAME --scope read-write`, or "
                         "bind 127.0.0.1")
    sock = listening_socket(host, port)
    try:
        opened = preflight(settings)
    except BaseException:
        sock.close()
        raise
    url = listen_url(host, int(sock.getsockname()[1]))
    configure(json_logs=json_logs)
    if not keys.enabled:
        log.warning("no API keys: serving on loopback %s only, without authentication", host)
    app = create_app(settings, library=opened)
    app.state.url = url
    config = uvicorn.Config(app, host=host, port=int(sock.getsockname()[1]), log_config=None, access_log=False,
                            timeout_graceful_shutdown=max(1, round(graceful_timeout)), server_header=False,
                            limit_concurrency=1000, timeout_keep_alive=5)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except SystemExit as e:  # uvicorn's exit 3: the app's start-up failed (after the checks above)
        failure = getattr(app.state, "startup_error", None)
        if e.code in (0, None) or failure is None:
            raise
        raise ServeError(f"the server could not start: {failure}") from failure
    finally:
        sock.close()


LOG_FORMATS = ("auto", "json", "text")
"""``--log-format`` values."""


def json_log_lines(log_format: str, stream: object = None) -> bool:
    """Whether the server logs JSON lines: ``json``, or ``auto`` when ``stream`` (default stderr) is not a
    terminal (a log collector, a file, a test); ``text`` (and ``auto`` on a terminal) is for people."""
    if log_format != "auto":
        return log_format == "json"
    import sys

    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return not (callable(isatty) and isatty())
    except (OSError, ValueError):  # a closed stream
        return True


def listen_url(host: str, port: int) -> str:
    """The URL of ``host:port`` (IPv6 addresses in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def preflight(settings: ServiceSettings) -> Library:
    """Check what the server needs before it starts, without loading a model, and open the library: the
    weights of every variant loaded at start (:meth:`~voicebank.engine.Engine.weight_files` raises
    :class:`~voicebank.errors.WeightsNotFoundError`; their fingerprints read each file's header) and the
    library (its catalogue is read once, so a damaged one is refused now).  Each failure is a
    :class:`~voicebank.errors.VoicebankError` (one line, exit 1).  With ``--executor ray``, the Ray workers are
    started here and load the weights on their nodes (the cluster unreachable, or short of resources: one line)."""
    from ..options import check_variant

    variants = [check_variant(v) for v in settings.variants]  # an unknown one: a usage error (exit 2)
    if settings.executor == "ray":  # the weights are the Ray workers' to find: they load them now
        from ..service.remote import remote_library

        library: Library = remote_library(settings)
    else:
        library = _local_library(settings, variants)
    try:
        len(library)  # opens and checks the catalogue
        if settings.shared:
            check_shared(library)
    except BaseException:
        library.close()
        raise
    return library


def _local_library(settings: ServiceSettings, variants: Sequence[str]) -> Library:
    """The library with this process's engine, its weights checked (no model loaded)."""
    from ..engine import shared_engine
    from ..library import Library

    engine = shared_engine(settings.weights, device=settings.device, threads=settings.threads)
    for v in variants:
        engine.weight_files(v)
        engine.weights_fingerprint(v)  # reads each checkpoint's header and a few KiB: a damaged file fails now
    return Library(settings.library, engine=engine, blobs=settings.blobs)


def check_shared(library: Library) -> None:
    """A shared library's servers answer with the credentials given: the database (opening the library
    read its schema; a count reads a table) and the bucket (one object listed).  A
    :class:`~voicebank.errors.LibraryError` (one line: which server, what it said, what to check) otherwise."""
    from ..store.shared import SharedVoiceStore

    store = library.store
    if isinstance(store, SharedVoiceStore):
        for _ in store.s3.files():  # one listing request: LibraryError when it is refused
            break


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A label for the key (who or what uses it).")],
    scope: Annotated[str, typer.Option(help="read or read-write.")] = "read",
    library: LibraryOpt = None,
    keys_file: KeysFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; the key is printed once (only its hash is stored)."""
    store = _keystore(library, keys_file)
    rec, token = store.create(name, scope)
    if as_json:
        typer.echo(json.dumps({**rec.public(), "key": token}))
    else:
        typer.echo(token)
        typer.echo(clean(f"key {rec.id} ({rec.scope}) for {name!r}, its hash written to {store.where}: keep the key "
                         "now, it is not shown again"), err=True)


@keys_app.command("list")
def keys_list(library: LibraryOpt = None, keys_file: KeysFileOpt = None, as_json: JsonOpt = False) -> None:
    """List API keys (ids, labels, scopes; never the keys)."""
    keys = _keystore(library, keys_file).list()
    if as_json:
        typer.echo(json.dumps([k.public() for k in keys]))
        return
    if not keys:
        typer.echo("no API keys (the server binds loopback only)", err=True)
    for k in keys:
        state = "active" if k.active else f"revoked {k.revoked_at}"
        typer.echo(f"{clean(k.id)}  {clean(k.scope):10s}  {clean(k.created_at)}  {state:30s}  {clean(k.name)}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (`voicebank keys list`).")],
                library: LibraryOpt = None, keys_file: KeysFileOpt = None) -> None:
    """Revoke an API key (a running server stops accepting it within a second)."""
    rec = _keystore(library, keys_file).revoke(key_id)
    typer.echo(f"revoked {clean(rec.id)} ({clean(rec.name)})", err=True)


def pull(
    name: Annotated[str, typer.Argument(help="Voice name on the server.")],
    server: Annotated[str | None, typer.Option("--server", help="Server URL, e.g. http://voices:8000 (default "
                                               "$VOICEBANK_SERVER).", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output file: .safetensors or .pt (default "
                                                "NAME.safetensors in the current directory).",
                                                show_default=False)] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="VOICEBANK_API_KEY", show_default=False,
                                                help="API key (default $VOICEBANK_API_KEY).")] = None,
    variant: Annotated[str | None, typer.Option(help="Variant (default: the voice's own).")] = None,
    exaggeration: Annotated[float | None, typer.Option(help="Exaggeration (default: the voice's own).")] = None,
    parents: ParentsOpt = False,
) -> None:
    """Download a voice's ready conditionals from a voicebank server."""
    from ..client import Client
    from ..library.names import check_name
    from ..settings import ENV_SERVER, Settings

    if server is None:
        server = Settings.from_env().server
        if server is None:
            raise typer.BadParameter(f"none given: pass a URL such as http://voices:8000, or set ${ENV_SERVER}",
                                     param_hint="'--server'")
    if output is None:
        try:
            check_name(name)  # a name the server can hold is a file name too (no separators, not . or ..)
        except VoicebankError as e:
            raise typer.BadParameter(str(e), param_hint="'NAME'") from e
        output = Path(f"{name}.safetensors")

    with Client(server, api_key=api_key) as client:
        check_output(output, parents)
        path = client.download(name, output, variant=variant, exaggeration=exaggeration, mkdir=parents)
    typer.echo(str(path))
