"""``voicebank.Client``: a TTS worker's view of a ``voicebank serve`` server.

>>> from voicebank import Client                          # doctest: +SKIP
>>> client = Client("http://voices:8000", api_key="vbk_...")
>>> voice = client.get("alice")                            # ready conditionals, cached on disk
>>> voice.apply_to(model)                                  # a Chatterbox model

:meth:`Client.get` keeps each voice file it downloads on disk with its ``ETag`` and revalidates with
``If-None-Match``: an unchanged voice costs one small request and no transfer.  When the server cannot be
reached, a cached copy is used (with a warning).  Only ``.safetensors`` voice files are ever loaded: nothing
from the network is unpickled.  Needs ``httpx`` (``pip install 'voicebank[service]'``).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .chatterbox import DEFAULT_EXAGGERATION
from .errors import InvalidOptionError, MissingDependencyError, VoicebankError, VoiceNotFoundError
from .fileio import atomic_write, check_output_path

if TYPE_CHECKING:
    import httpx

    from .settings import Settings
    from .voice import Voice

log = logging.getLogger(__name__)

ENV_API_KEY = "VOICEBANK_API_KEY"


class ServiceError(VoicebankError):
    """The server refused a request (``status``, its stable ``code``) or could not be reached (``status`` 0)."""

    def __init__(self, message: str, *, status: int = 0, code: str = "unreachable",
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class RemoteVoiceNotFoundError(ServiceError, VoiceNotFoundError):
    """The server has no voice of that name (404); also a :class:`~voicebank.errors.VoiceNotFoundError`."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("voicebank.Client needs httpx: pip install 'voicebank[service]'") from e
    return httpx


def _settings() -> Settings:
    from .settings import Settings

    return Settings.from_env()


def check_server_url(url: object) -> str:
    """``url`` without a trailing slash if it is an ``http://`` or ``https://`` URL with a host, else
    :class:`~voicebank.errors.InvalidOptionError` saying what one looks like."""
    hx = _httpx()
    example = "; pass one such as http://127.0.0.1:8000"
    if not isinstance(url, str) or not url.strip():
        raise InvalidOptionError(f"the server URL {url!r} is empty or not text{example}")
    try:
        parsed = hx.URL(url.strip())
    except (hx.InvalidURL, ValueError, TypeError) as e:
        raise InvalidOptionError(f"the server URL {url!r} is not a valid URL ({e}){example}") from e
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidOptionError(f"the server URL {url!r} is not an http:// or https:// URL with a host{example}")
    return url.strip().rstrip("/")


def default_cache_dir() -> Path:
    """``$VOICEBANK_CLIENT_CACHE``, else ``client`` in voicebank's cache directory (``$VOICEBANK_CACHE_DIR``, else
    the user cache directory: ``<user cache dir>/voicebank/client``)."""
    settings = _settings()
    return settings.client_cache if settings.client_cache is not None else settings.cache_path / "client"


class Client:
    """A client of one voicebank server at ``url``.

    ``api_key``: default ``$VOICEBANK_API_KEY`` (needed when the server has keys).  ``cache_dir``: where
    downloaded voice files are kept (``None``: :func:`default_cache_dir`; ``False``: no disk cache).
    ``timeout``: seconds per request.  ``transport``: an ``httpx`` transport (tests).
    """

    def __init__(self, url: str, *, api_key: str | None = None, cache_dir: str | os.PathLike[str] | bool | None = None,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None) -> None:
        hx = _httpx()
        self.url = check_server_url(url)
        key = api_key if api_key is not None else _settings().api_key
        headers = {"User-Agent": "voicebank-client"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.cache_dir: Path | None
        if cache_dir is False:
            self.cache_dir = None
        elif cache_dir is None or cache_dir is True:
            self.cache_dir = default_cache_dir()
        else:
            self.cache_dir = Path(cache_dir)
        self._http: httpx.Client = hx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                                transport=transport)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --- plumbing ------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        hx = _httpx()
        try:
            response = self._http.request(method, path, **kwargs)
        except hx.HTTPError as e:
            raise ServiceError(f"cannot reach the voicebank server at {self.url} ({e})") from e
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _error(self, response: httpx.Response) -> ServiceError:
        code, message = "http_error", response.text[:200]
        try:
            err = response.json()["error"]
            code, message = str(err["code"]), str(err["message"])
        except (ValueError, KeyError, TypeError):
            pass
        retry = response.headers.get("Retry-After")
        retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
        msg = f"{self.url}: {response.status_code} {code}: {message}"
        if response.status_code == 404 and code == "voice_not_found":
            return RemoteVoiceNotFoundError(msg, status=404, code=code)
        return ServiceError(msg, status=response.status_code, code=code, retry_after=retry_after)

    @staticmethod
    def _voice_path(name: str) -> str:
        from urllib.parse import quote

        return f"/v1/audio/voices/{quote(name, safe='')}"

    def _cache_paths(self, name: str, params: dict[str, Any]) -> tuple[Path, Path] | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(json.dumps([self.url, name, params], sort_keys=True).encode()).hexdigest()[:40]
        base = self.cache_dir / digest[:2] / digest
        return base.with_suffix(".bin"), base.with_suffix(".etag")

    # --- voices --------------------------------------------------------------------------------------

    def fetch(self, name: str, *, variant: str | None = None, exaggeration: float | None = None,
              format: str = "safetensors") -> bytes:
        """The bytes of voice ``name``'s ready conditionals file (revalidated against the disk cache by ETag)."""
        params: dict[str, Any] = {"format": format}
        if variant is not None:
            params["variant"] = variant
        if exaggeration is not None:
            params["exaggeration"] = float(exaggeration)
        paths = self._cache_paths(name, params)
        headers = {}
        cached: bytes | None = None
        etag: str | None = None
        if paths is not None and paths[0].is_file() and paths[1].is_file():
            cached, etag = paths[0].read_bytes(), paths[1].read_text().strip()
            # a damaged cache file must not be served: check it against its own (content-hash) ETag
            if etag != f'"{hashlib.sha256(cached).hexdigest()}"':
                cached, etag = None, None
            else:
                headers["If-None-Match"] = etag
        try:
            response = self._request("GET", f"{self._voice_path(name)}/conditionals", params=params, headers=headers)
        except ServiceError as e:
            if e.status == 0 and cached is not None:
                log.warning("%s; using the cached copy of %r", e, name)
                return cached
            raise
        if response.status_code == 304 and cached is not None:
            return cached
        data = response.content
        new_etag = response.headers.get("ETag")
        if paths is not None and new_etag:
            paths[0].parent.mkdir(parents=True, exist_ok=True)
            atomic_write(paths[0], lambda f: f.write(data))
            atomic_write(paths[1], lambda f: f.write(new_etag.encode()))
        return data

    def get(self, name: str, *, variant: str | None = None, exaggeration: float | None = None) -> Voice:
        """Voice ``name``'s ready conditionals (a :class:`~voicebank.voice.Voice`), validated on load.

        Raises :class:`RemoteVoiceNotFoundError` (a :class:`~voicebank.errors.VoiceNotFoundError`) for an
        unknown name: there is no fallback voice.
        """
        from .voice import Voice

        data = self.fetch(name, variant=variant, exaggeration=exaggeration, format="safetensors")
        return Voice.from_bytes(data, where=f"voice {name!r} from the service")

    def download(self, name: str, path: str | os.PathLike[str], *, variant: str | None = None,
                 exaggeration: float | None = None, mkdir: bool = False) -> Path:
        """Write voice ``name`` to ``path`` (``.safetensors`` or upstream ``.pt``, by suffix), atomically.

        ``path``'s directory must exist (:class:`~voicebank.errors.OutputPathError`, checked before the
        download) unless ``mkdir=True``, which creates the missing directories."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".safetensors", ".pt"):
            raise ServiceError(f"{path}: unknown voice file type {suffix or '(none)'}; use .safetensors or .pt",
                               status=0, code="bad_output")
        check_output_path(path, mkdir=mkdir)
        data = self.fetch(name, variant=variant, exaggeration=exaggeration, format=suffix.lstrip("."))
        atomic_write(path, lambda f: f.write(data), mkdir=mkdir)
        return path

    def add(self, audio: str | os.PathLike[str] | bytes, name: str, *, consent: str, mode: str = "audio",
            variant: str | Sequence[str] = "english", exaggeration: float = DEFAULT_EXAGGERATION,
            tags: Iterable[str] = (),
            base: str | None = None, force: bool = False, filename: str | None = None) -> dict[str, Any]:
        """Upload a reference clip as voice ``name``; returns the server's voice object (with ``warnings``)."""
        if isinstance(audio, (bytes, bytearray)):
            data, fname = bytes(audio), filename or "upload.wav"
        else:
            p = Path(audio)
            data, fname = p.read_bytes(), filename or p.name
        variants = [variant] if isinstance(variant, str) else list(variant)
        form: dict[str, Any] = {"name": name, "consent": consent, "mode": mode, "variant": variants,
                                "exaggeration": str(exaggeration), "tags": list(tags), "force": str(force).lower()}
        if base is not None:
            form["base"] = base
        response = self._request("POST", "/v1/audio/voices", data=form, files={"audio_sample": (fname, data)})
        result: dict[str, Any] = response.json()
        return result

    def list(self, *, tag: str | None = None, page_size: int = 500) -> builtins.list[dict[str, Any]]:
        """Every voice object on the server (all pages), sorted by name."""
        out: builtins.list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if tag is not None:
                params["tag"] = tag
            if after is not None:
                params["after"] = after
            page = self._request("GET", "/v1/audio/voices", params=params).json()
            out.extend(page["data"])
            # next_after: where the server stopped looking (past the last voice shown when a filtered page
            # stopped at its scan limit); an older server sends only last_id
            after = page.get("next_after") or page["last_id"]
            if not page.get("has_more") or after is None:
                return out

    def show(self, name: str) -> dict[str, Any]:
        """The server's voice object for ``name``."""
        result: dict[str, Any] = self._request("GET", self._voice_path(name)).json()
        return result

    def remove(self, name: str) -> dict[str, Any]:
        """Delete voice ``name`` on the server."""
        result: dict[str, Any] = self._request("DELETE", self._voice_path(name)).json()
        return result

    def rename(self, old: str, new: str) -> dict[str, Any]:
        """Rename a voice on the server."""
        result: dict[str, Any] = self._request("PATCH", self._voice_path(old), json={"name": new}).json()
        return result
