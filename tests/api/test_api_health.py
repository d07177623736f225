"""Probes, the Prometheus scrape and the HTTP metrics (bounded labels)."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY

from service.runtime import Runtime
from service.stream.processor import NOT_READY
from tests.api.conftest import ClientFactory

JSON = {"content-type": "application/json"}


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_without_stream(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "reasons": []}


async def test_readyz_follows_the_parts_reporting_to_the_runtime(make_client: ClientFactory) -> None:
    async with make_client() as client:
        transport = client._transport
        assert isinstance(transport, httpx.ASGITransport)
        runtime: Runtime = transport.app.state.runtime  # type: ignore[attr-defined]
        stream = runtime.readiness.part("stream", NOT_READY)  # what the stream registers when it runs
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"ready": False, "reasons": [NOT_READY]}
        stream.set(True)
        assert (await client.get("/readyz")).status_code == 200


async def test_http_metrics_count_routes_and_bound_labels(client: httpx.AsyncClient) -> None:
    before_ok = sample("redline_http_requests_total", route="/check", method="POST", status="200")
    before_bad = sample("redline_http_requests_total", route="/check", method="POST", status="422")
    before_other = sample("redline_http_requests_total", route="other", method="GET", status="404")
    before_weird = sample("redline_http_requests_total", route="other", method="other", status="404")
    before_time = sample("redline_http_request_duration_seconds_count", route="/check", method="POST")
    await client.post("/check", content=b'{"text": "hi"}', headers=JSON)
    await client.post("/check", content=b"{", headers=JSON)
    for i in range(3):  # hostile paths all land on one series
        await client.get(f"/random/{i}")
    await client.request("BREW", "/pot")
    assert sample("redline_http_requests_total", route="/check", method="POST", status="200") == before_ok + 1
    assert sample("redline_http_requests_total", route="/check", method="POST", status="422") == before_bad + 1
    assert sample("redline_http_requests_total", route="other", method="GET", status="404") == before_other + 3
    assert sample("redline_http_requests_total", route="other", method="other", status="404") == before_weird + 1
    assert sample("redline_http_request_duration_seconds_count", route="/check", method="POST") == before_time + 2


async def test_check_counts_verdicts_and_classify_time_as_http(client: httpx.AsyncClient) -> None:
    classified = sample("redline_events_classified_total", source="http")
    timed = sample("redline_classify_duration_seconds_count", source="http")
    blocked = sample("redline_verdicts_total", source="http", action="block")
    await client.post("/check", content='{"text": "这份是机密文件"}'.encode(), headers=JSON)
    await client.post("/check/batch", content=b'[{"text": "a"}, {"text": "b"}, {"text": "c"}]', headers=JSON)
    await client.get("/metrics")  # verdict counts are batched; a scrape flushes them
    assert sample("redline_events_classified_total", source="http") == classified + 4
    assert sample("redline_classify_duration_seconds_count", source="http") == timed + 4
    assert sample("redline_verdicts_total", source="http", action="block") == blocked + 1


async def test_metrics_scrape(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'redline_http_requests_total{method="GET",route="/healthz",status="200"}' in response.text
