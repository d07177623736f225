"""Per-client token buckets: refill arithmetic on a fake clock, bounded memory, and 429 answers from
the real app (keyed by bearer key with auth on, by client address with auth off)."""

from __future__ import annotations

import pytest

from service.api.token_buckets import RateLimit, TokenBuckets
from service.metrics import http_rate_limited_total
from service.settings import Settings
from tests.api.conftest import ADMIN_KEY, CHECK_KEY, ClientFactory


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_serves_its_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(RateLimit(per_second=2.0, burst=3, max_clients=10), clock)
    assert [buckets.take(b"a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take(b"a") == pytest.approx(0.5)  # one token at 2/s
    assert buckets.take(b"b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert buckets.take(b"a") == 0.0
    clock.now += 60  # refill is capped at the burst
    assert [buckets.take(b"a") for _ in range(4)][-1] > 0


def test_the_table_is_bounded_and_evicts_the_least_recently_seen() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(RateLimit(per_second=1.0, burst=1, max_clients=3), clock)
    for client in (b"a", b"b", b"c"):
        assert buckets.take(client) == 0.0
    assert buckets.take(b"a") > 0  # a is now the most recently seen
    assert buckets.take(b"d") == 0.0  # evicts b, the oldest
    assert len(buckets) == 3
    assert buckets.take(b"c") > 0  # c kept its (empty) bucket
    assert buckets.take(b"b") == 0.0  # b came back with a full bucket


@pytest.mark.parametrize(
    ("per_second", "burst", "expected"),
    [
        (0.0, 5, None),  # 0 = off
        (10.0, 0, RateLimit(10.0, 10, 10_000)),  # burst defaults to one second's worth
        (0.5, 0, RateLimit(0.5, 1, 10_000)),  # but at least one request
        (5.0, 20, RateLimit(5.0, 20, 10_000)),
    ],
)
def test_settings(per_second: float, burst: int, expected: RateLimit | None) -> None:
    settings = Settings(rate_limit_per_second=per_second, rate_limit_burst=burst)
    assert RateLimit.from_settings(settings) == expected


EVENT = {"id": "rl-1", "text": "hello"}


async def test_429_with_retry_after_per_key_and_probes_stay_open(make_client: ClientFactory) -> None:
    before = http_rate_limited_total._value.get()
    async with make_client(api_keys=CHECK_KEY, admin_keys=ADMIN_KEY, rate_limit_per_second=0.01,
                           rate_limit_burst=2) as client:
        check = {"Authorization": f"Bearer {CHECK_KEY}"}
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        statuses = [(await client.post("/check", json=EVENT, headers=check)).status_code for _ in range(2)]
        assert statuses == [200, 200]
        refused = await client.post("/check", json=EVENT, headers=check)
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate limit exceeded"
        assert int(refused.headers["Retry-After"]) >= 1
        assert CHECK_KEY not in refused.text
        # Another key has its own bucket; an unknown key is refused by auth, not counted as a client.
        assert (await client.post("/check", json=EVENT, headers=admin)).status_code == 200
        assert (await client.post("/check", json=EVENT, headers={"Authorization": "Bearer nope"})).status_code == 401
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code != 429
    assert http_rate_limited_total._value.get() == before + 1


async def test_without_auth_the_client_address_is_the_key(make_client: ClientFactory) -> None:
    async with make_client(rate_limit_per_second=0.01, rate_limit_burst=1) as client:
        assert (await client.post("/check", json=EVENT)).status_code == 200
        # A made-up bearer key does not buy a fresh bucket.
        response = await client.post("/check", json=EVENT, headers={"Authorization": "Bearer fresh-bucket?"})
        assert response.status_code == 429


async def test_off_by_default(make_client: ClientFactory) -> None:
    async with make_client() as client:
        responses = [await client.post("/check", json=EVENT) for _ in range(30)]
    assert {r.status_code for r in responses} == {200}
