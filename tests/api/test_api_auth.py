"""Bearer keys: who may call what, 401 vs 403, constant-time comparison, keys never echoed or logged."""

from __future__ import annotations

import hmac
import logging

import httpx
import pytest

from service.api import auth
from service.api.auth import Access, KeyRing
from service.api.token_buckets import RateLimit
from tests.api.conftest import ADMIN_KEY, CHECK_KEY, ClientFactory

EVENT = b'{"text": "hello"}'
JSON = {"content-type": "application/json"}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def call(client: httpx.AsyncClient, route: str, headers: dict[str, str]) -> httpx.Response:
    method, path = route.split(" ")
    body = b"[]" if path == "/check/batch" else EVENT
    return await client.request(method, path, content=body if method == "POST" else None, headers={**JSON, **headers})


# (route, credentials, expected status) with both kinds of keys configured.
TABLE = [
    ("POST /check", {}, 401),  # no header
    ("POST /check", bearer("wrong"), 401),  # unknown key
    ("POST /check", {"authorization": CHECK_KEY}, 401),  # not a Bearer credential
    ("POST /check", {"authorization": f"Basic {CHECK_KEY}"}, 401),  # another scheme
    ("POST /check", bearer(CHECK_KEY), 200),
    ("POST /check", {"authorization": f"bearer {CHECK_KEY}"}, 200),  # scheme is case-insensitive
    ("POST /check", bearer(ADMIN_KEY), 200),  # admin keys may check too
    ("POST /check/batch", {}, 401),
    ("POST /check/batch", bearer(CHECK_KEY), 200),
    ("GET /rules", {}, 401),
    ("GET /rules", bearer(CHECK_KEY), 200),
    ("POST /rules/reload", {}, 401),
    ("POST /rules/reload", bearer("wrong"), 401),
    ("POST /rules/reload", bearer(CHECK_KEY), 403),  # a check key on the admin route
    ("POST /rules/reload", bearer(ADMIN_KEY), 200),
    ("GET /healthz", {}, 200),  # probes, metrics and docs stay open
    ("GET /readyz", {}, 200),
    ("GET /metrics", {}, 200),
    ("GET /openapi.json", {}, 200),
    ("GET /check", {}, 405),  # wrong method: 405 before any key check
]


@pytest.mark.parametrize(("route", "headers", "status"), TABLE)
async def test_access_table(make_client: ClientFactory, route: str, headers: dict[str, str], status: int) -> None:
    async with make_client(api_keys=f"other-key,{CHECK_KEY}", admin_keys=ADMIN_KEY) as client:
        response = await call(client, route, headers)
    assert response.status_code == status, response.text
    if status in (401, 403):
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) == {"error", "detail"}
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_no_keys_leaves_check_open_and_reload_off(make_client: ClientFactory) -> None:
    """Secure by default: without an admin key, nobody reloads over HTTP, and the answer says how."""
    async with make_client() as client:
        for route in ("POST /check", "GET /rules"):
            assert (await call(client, route, {})).status_code == 200
        response = await call(client, "POST /rules/reload", {})
    assert response.status_code == 403
    assert response.json()["error"] == auth.ADMIN_OFF
    assert "REDLINE_ADMIN_KEYS" in response.json()["error"]


async def test_only_check_keys_turns_reload_off(make_client: ClientFactory) -> None:
    """With check keys but no admin key, nobody may reload over HTTP (SIGHUP still can)."""
    async with make_client(api_keys=CHECK_KEY) as client:
        assert (await call(client, "POST /rules/reload", bearer(CHECK_KEY))).status_code == 403
        assert (await call(client, "POST /rules/reload", {})).json()["error"] == auth.ADMIN_OFF


async def test_only_admin_keys_leaves_check_open(make_client: ClientFactory) -> None:
    async with make_client(admin_keys=ADMIN_KEY) as client:
        assert (await call(client, "POST /check", {})).status_code == 200
        assert (await call(client, "POST /rules/reload", {})).status_code == 401
        assert (await call(client, "POST /rules/reload", bearer(ADMIN_KEY))).status_code == 200


async def test_failed_authentication_is_throttled_per_address(make_client: ClientFactory) -> None:
    # A burst of 3 failures, then the address waits a second per further try, whatever it sends;
    # the good key from the same address waits too (it might be the guesser's), other routes don't.
    keys = {"api_keys": CHECK_KEY, "auth_failures_burst": 3, "auth_failures_per_second": 1.0}
    async with make_client(**keys) as client:
        statuses = [(await call(client, "POST /check", bearer(f"guess-{i}"))).status_code for i in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        throttled = await call(client, "POST /check", bearer(CHECK_KEY))
        assert throttled.status_code == 429
        assert throttled.headers["retry-after"] == "1"
        assert throttled.json()["error"] == "too many failed authentications from this address"
        assert (await client.get("/healthz")).status_code == 200


def test_throttle_refills_and_tracks_addresses_apart() -> None:
    now = [0.0]
    throttle = auth.FailedAuthThrottle(RateLimit(per_second=0.5, burst=2, max_clients=10), lambda: now[0])
    for _ in range(2):
        assert throttle.wait(b"10.0.0.1") == 0
        throttle.failed(b"10.0.0.1")
    assert throttle.wait(b"10.0.0.1") == pytest.approx(2.0)  # one token at 0.5 per second
    assert throttle.wait(b"10.0.0.2") == 0  # another address is not held back
    now[0] = 2.0
    assert throttle.wait(b"10.0.0.1") == 0


async def test_keys_are_never_echoed_or_logged(make_client: ClientFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with make_client(api_keys=CHECK_KEY, admin_keys=ADMIN_KEY) as client:
        responses = [
            await call(client, "POST /check", bearer(CHECK_KEY + "x")),
            await call(client, "POST /rules/reload", bearer(CHECK_KEY)),
            await call(client, "POST /rules/reload", bearer(ADMIN_KEY)),
        ]
        responses.append(await client.get("/openapi.json"))
        responses.append(await client.get("/metrics"))
    for response in responses:
        assert CHECK_KEY not in response.text
        assert ADMIN_KEY not in response.text
    assert CHECK_KEY not in caplog.text
    assert ADMIN_KEY not in caplog.text


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    ring = KeyRing(["c1", "c2"], ["a1"])
    # A match on the first key still compares against every other one (no early exit).
    assert ring.grants(b"c1") is Access.CHECK
    assert sorted(compared) == [b"a1", b"c1", b"c2"]
    compared.clear()
    assert ring.grants(b"a1") is Access.ADMIN
    assert ring.grants(b"nope") is None
    assert ring.grants(b"") is None
    assert len(compared) == 9


async def test_openapi_declares_security_only_where_keys_guard(make_client: ClientFactory) -> None:
    async with make_client(api_keys=CHECK_KEY, admin_keys=ADMIN_KEY) as client:
        doc = (await client.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearerKey"]["scheme"] == "bearer"
    assert doc["paths"]["/check"]["post"]["security"] == [{"bearerKey": []}]
    assert "403" in doc["paths"]["/rules/reload"]["post"]["responses"]
    assert "security" not in doc["paths"]["/healthz"]["get"]
    async with make_client() as client:
        doc = (await client.get("/openapi.json")).json()
    assert "securitySchemes" not in doc["components"]
    assert "security" not in doc["paths"]["/check"]["post"]
