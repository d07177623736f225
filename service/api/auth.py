"""Bearer-key access control, as a pure ASGI middleware (no per-request objects, one header scan).

Levels: `check` routes (`/check`, `/check/batch`, `GET /rules`) need a check key or an admin key
when check keys are configured; `admin` routes (`/rules/reload`) need an admin key whenever any
key is configured (fail closed: configuring only check keys makes reload SIGHUP-only). Probes,
metrics and the docs stay open. A missing or unknown key answers 401, a check key on an admin
route 403. Every configured key is compared with `hmac.compare_digest` (no early exit), and keys
are never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import error_response

_BEARER: Final = b"bearer "
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="redline"'}


class Access(Enum):
    CHECK = "check"
    ADMIN = "admin"


class KeyRing:
    def __init__(self, check_keys: Iterable[str], admin_keys: Iterable[str]) -> None:
        self._check = tuple(k.encode() for k in check_keys)
        self._admin = tuple(k.encode() for k in admin_keys)

    @property
    def guards_check(self) -> bool:
        return bool(self._check)

    @property
    def guards_admin(self) -> bool:
        return bool(self._check or self._admin)

    def grants(self, token: bytes) -> Access | None:
        """The highest level `token` holds, comparing against every key in constant time."""
        admin = _matches_any(token, self._admin)
        check = _matches_any(token, self._check)
        if admin:
            return Access.ADMIN
        return Access.CHECK if check else None


def _matches_any(token: bytes, keys: tuple[bytes, ...]) -> bool:
    found = False
    for key in keys:
        found |= hmac.compare_digest(token, key)
    return found


Endpoint = tuple[str, str]  # (method, path)


def guarded_routes(keys: KeyRing, access: Mapping[Endpoint, Access]) -> dict[Endpoint, Access]:
    """The endpoints the configured keys actually guard, with the level each one needs."""
    return {
        endpoint: level
        for endpoint, level in access.items()
        if (keys.guards_admin if level is Access.ADMIN else keys.guards_check)
    }


class AuthMiddleware:
    def __init__(self, app: ASGIApp, *, keys: KeyRing, protected: Mapping[Endpoint, Access]) -> None:
        self.app = app
        self.keys = keys
        self.protected = dict(protected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            required = self.protected.get((scope["method"], scope["path"]))
            if required is not None:
                granted = self.keys.grants(_bearer_token(scope["headers"]))
                if granted is None:
                    response = error_response(401, "missing or unknown bearer key", headers=_CHALLENGE)
                    await response(scope, receive, send)
                    return
                if required is Access.ADMIN and granted is not Access.ADMIN:
                    await error_response(403, "this route needs an admin key")(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == _BEARER:
                return value[7:].strip()
            return b""
    return b""
