"""FastAPI dependencies: the service, and API-key checks per scope (``read`` / ``read-write``).

They are ``async`` because they never block (the key check is a hash and a dictionary lookup): FastAPI would
otherwise hop to a worker thread for each of them on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError
from .security import ApiKey
from .state import Service

bearer = HTTPBearer(auto_error=False, description="An API key made with `voicebank keys create` "
                    "(`Authorization: Bearer vbk_...`). Needed only when the server has keys.")


async def get_service(request: Request) -> Service:
    """The service of the app handling ``request``."""
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _authorize(service: Service, credentials: HTTPAuthorizationCredentials | None, write: bool) -> ApiKey | None:
    if not service.keys.enabled and not service.settings.require_keys:
        return None  # no keys: the server is bound to loopback only (see voicebank serve)
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "missing_api_key", "this server needs an API key: send `Authorization: Bearer <key>`",
                       headers={"WWW-Authenticate": "Bearer"})
    key = service.keys.verify(credentials.credentials)
    if key is None:
        raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked",
                       headers={"WWW-Authenticate": "Bearer"})
    if write and key.scope != "read-write":
        raise ApiError(403, "read_only_key", f"API key {key.id} is read-only; this needs a read-write key")
    return key


async def require_read(request: Request, service: ServiceDep, credentials: Credentials) -> ApiKey | None:
    """Any active key (or none when the server has no keys)."""
    key = _authorize(service, credentials, write=False)
    request.state.key_id = key.id if key else None
    return key


async def require_write(request: Request, service: ServiceDep, credentials: Credentials) -> ApiKey | None:
    """A read-write key (or none when the server has no keys)."""
    key = _authorize(service, credentials, write=True)
    request.state.key_id = key.id if key else None
    return key


ReadKey = Annotated[ApiKey | None, Depends(require_read)]
WriteKey = Annotated[ApiKey | None, Depends(require_write)]
