"""Probes and the Prometheus scrape: `/healthz` (alive), `/readyz` (pack loaded, stream assigned)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api import openapi
from service.api.schemas import Health, Readiness, encode
from service.api.verdict_tally import VerdictTally
from service.runtime import Runtime

_ALIVE = encode(Health(status="ok"))


def add_health_routes(app: FastAPI, runtime: Runtime, tally: VerdictTally) -> None:
    @app.get(
        "/healthz",
        tags=["operations"],
        summary="Liveness",
        response_class=Response,
        openapi_extra=openapi.health_operation(),
    )
    async def healthz() -> Response:
        return Response(_ALIVE, media_type="application/json")

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness",
        description="200 when the pack is loaded and, with the stream on, Kafka is reachable and "
        "this process is a member of the consumer group; 503 otherwise.",
        response_class=Response,
        openapi_extra=openapi.ready_operation(),
    )
    async def readyz() -> Response:
        ready, reasons = runtime.readiness.state()  # the pack is loaded once a Runtime exists
        body = encode(Readiness(ready=ready, reasons=reasons))
        return Response(body, status_code=200 if ready else 503, media_type="application/json")

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        openapi_extra=openapi.metrics_operation(),
    )
    async def prometheus_metrics() -> Response:
        tally.flush()  # verdicts already answered are in this scrape
        # Rendering walks every series; keep it off the event loop that serves /check.
        payload = await asyncio.to_thread(generate_latest, runtime.metrics_registry)
        return Response(payload, media_type=CONTENT_TYPE_LATEST)

