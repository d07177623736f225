"""The FastAPI application: routes, error shapes, the OpenAPI document and cheap ASGI layers.

Request path, outermost first: HttpMetricsMiddleware (count and time) → AuthMiddleware (bearer
keys) → RateLimitMiddleware (only when configured; per known key or peer IP) →
BodyLimitMiddleware (declared Content-Length; larger for image uploads) → HotRoutesMiddleware (`POST /check*`
straight to their ASGI endpoints) → FastAPI's exception layer and router → the other routes.
All pure ASGI (no BaseHTTPMiddleware: it costs a task and a stream per request).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI
from starlette.routing import Route

from service.api.asgi_route import HotRoutesMiddleware
from service.api.auth import Access, AuthMiddleware, FailedAuthThrottle, KeyRing, disabled_routes, guarded_routes
from service.api.errors import install_error_handlers
from service.api.health import add_health_routes
from service.api.http_metrics import HttpMetricsMiddleware
from service.api.image_hasher import ImageHasher
from service.api.limits import BodyLimitMiddleware, Limits
from service.api.openapi import install_openapi
from service.api.rate_limit import RateLimitMiddleware
from service.api.routes_check import UPLOAD_ROUTES, add_check_routes
from service.api.routes_rules import add_rules_routes
from service.api.token_buckets import RateLimit
from service.api.verdict_tally import VerdictTally
from service.runtime import Runtime
from service.version import installed_version

# Which routes need which key when keys are configured (see auth.py).
# Keyed by (method, path) so a wrong method still answers 405, not 401.
ACCESS: Final = {
    ("POST", "/check"): Access.CHECK,
    ("POST", "/check/batch"): Access.CHECK,
    ("GET", "/rules"): Access.CHECK,
    ("POST", "/rules/reload"): Access.ADMIN,
}

DESCRIPTION: Final = """\
Redline checks group-chat events against the loaded red-line rule pack.

`POST /check` answers the same verdict the Kafka stream would publish for the same event and pack.
Errors are JSON `{"error": "...", "detail": [...]}`; a 422 names the offending field's JSON path.
"""


def create_app(runtime: Runtime) -> FastAPI:
    settings = runtime.settings
    limits = Limits.from_settings(settings)
    hasher = ImageHasher()  # its child process starts with the first image

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await hasher.close()

    app = FastAPI(
        title="Redline",
        version=installed_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry probes global providers on every request; Redline exports
        # Prometheus metrics of its own (HttpMetricsMiddleware), so it stays off.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    # Routes directly on the app (no include_router): flat matching, route templates in app.routes.
    tally = VerdictTally("http")
    app.state.verdict_tally = tally
    app.state.image_hasher = hasher
    hot_routes = add_check_routes(app, runtime, limits, tally, hasher)
    add_rules_routes(app, runtime)
    add_health_routes(app, runtime, tally)
    install_error_handlers(app)

    keys = KeyRing(settings.api_key_set, settings.admin_key_set)
    protected = guarded_routes(keys, ACCESS)
    throttle = FailedAuthThrottle(
        RateLimit(settings.auth_failures_per_second, settings.auth_failures_burst, settings.rate_limit_max_clients)
    )
    install_openapi(app, limits, protected)

    routes = [route.path for route in app.routes if isinstance(route, Route)]
    routes += [path for path in (app.openapi_url, app.docs_url, app.redoc_url) if path]
    # add_middleware wraps outward: the last added runs first.
    app.add_middleware(HotRoutesMiddleware, endpoints=hot_routes)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=limits.max_body_bytes,
                       max_upload_bytes=limits.max_upload_bytes, upload_routes=UPLOAD_ROUTES)
    if (rate_limit := RateLimit.from_settings(settings)) is not None:  # inside auth: only known keys
        app.add_middleware(RateLimitMiddleware, limit=rate_limit, keys=keys)
    app.add_middleware(
        AuthMiddleware, keys=keys, protected=protected, disabled=disabled_routes(keys, ACCESS), throttle=throttle
    )
    app.add_middleware(HttpMetricsMiddleware, routes=routes)
    return app
