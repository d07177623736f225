"""Bearer-key access control, as a pure ASGI middleware (no per-request objects, one header scan).

Levels: `check` routes (`/check`, `/check/batch`, `GET /rules`) need a check key or an admin key
when check keys are configured; `admin` routes (`/rules/reload`) need an admin key, and without
admin keys configured they are off: 403 with how to turn them on (secure by default: an open
reload endpoint would let anyone swap packs in and out). Probes, metrics and the docs stay open.
A missing or unknown key answers 401, a check key on an admin route 403. Every configured key is
compared with `hmac.compare_digest` (no early exit), and keys are never logged or echoed.

Guessing is throttled per client address (`FailedAuthThrottle`): each 401 takes a token from the
address's bucket, and an address with an empty bucket gets 429 with `Retry-After` on any guarded
route, before its key is even compared, until the bucket refills.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from enum import Enum
from typing import Final

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import error_response
from service.api.token_buckets import RateLimit, TokenBuckets
from service.metrics import http_auth_failures_total, http_auth_throttled_total

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
        return bool(self._admin)

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


ADMIN_OFF: Final = (
    "admin routes are off: set REDLINE_ADMIN_KEYS to reload over HTTP "
    "(SIGHUP and REDLINE_RULES_WATCH reload without a key)"
)


class FailedAuthThrottle:
    """Failed authentications per client address, in token buckets (token_buckets.py)."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets = TokenBuckets(limit, clock)

    def wait(self, address: bytes) -> float:
        """0 when `address` may try a key now, else the seconds until it may."""
        return self._buckets.wait(address)

    def failed(self, address: bytes) -> None:
        self._buckets.take(address)


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyRing,
        protected: Mapping[Endpoint, Access],
        disabled: Collection[Endpoint] = (),
        throttle: FailedAuthThrottle | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.protected = dict(protected)
        self.disabled = frozenset(disabled)
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = (scope["method"], scope["path"])
            if endpoint in self.disabled:
                await error_response(403, ADMIN_OFF)(scope, receive, send)
                return
            required = self.protected.get(endpoint)
            if required is not None:
                refusal = self._refusal(scope, required)
                if refusal is not None:
                    await refusal(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, required: Access) -> Response | None:
        throttle = self.throttle
        address = _address(scope) if throttle is not None else b""
        if throttle is not None and (wait_seconds := throttle.wait(address)) > 0:
            http_auth_throttled_total.inc()
            retry = {"Retry-After": str(max(1, math.ceil(wait_seconds)))}
            return error_response(429, "too many failed authentications from this address", headers=retry)
        granted = self.keys.grants(_bearer_token(scope["headers"]))
        if granted is None:
            http_auth_failures_total.inc()
            if throttle is not None:
                throttle.failed(address)
            return error_response(401, "missing or unknown bearer key", headers=_CHALLENGE)
        if required is Access.ADMIN and granted is not Access.ADMIN:
            return error_response(403, "this route needs an admin key")
        return None


def disabled_routes(keys: KeyRing, access: Mapping[Endpoint, Access]) -> frozenset[Endpoint]:
    """The admin endpoints, when no admin key is configured: off, whatever the request carries."""
    if keys.guards_admin:
        return frozenset()
    return frozenset(endpoint for endpoint, level in access.items() if level is Access.ADMIN)


def _address(scope: Scope) -> bytes:
    client = scope.get("client")
    return client[0].encode() if client else b""


def _bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == _BEARER:
                return value[7:].strip()
            return b""
    return b""
