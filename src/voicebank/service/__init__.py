"""``voicebank serve``: the voice library over HTTP, for TTS workers and a web page.

Needs the optional extra: ``pip install 'voicebank[service]'`` (FastAPI, uvicorn, httpx, python-multipart).

>>> from voicebank.service import ServiceSettings, create_app   # doctest: +SKIP
>>> app = create_app(ServiceSettings(library="voices/", weights="weights/"))
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import python_multipart  # noqa: F401  (FastAPI's form parser)
except ImportError as e:  # pragma: no cover - depends on the environment
    from ..errors import MissingDependencyError

    raise MissingDependencyError(f"the voice service needs its optional dependencies ({e.name} is missing): "
                                 "pip install 'voicebank[service]'") from e

from .app import create_app
from .settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
