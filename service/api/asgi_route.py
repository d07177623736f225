"""Routes FastAPI documents but does not run: the hot paths answer as plain ASGI apps.

FastAPI's per-request machinery (dependency solving, validation, serialisation, exit stacks) was
measured here at ~45 µs per request, several times the classifier itself. `AsgiRoute` is
Starlette's public `Route` given an ASGI app as its endpoint, plus the OpenAPI operation FastAPI
would have written for it (summary, tags, `operationId`, schemas via `openapi_extra`):
`document_asgi_routes` puts those into the document FastAPI generates, which covers only its own
`APIRoute`s, in route order. `JsonEndpoint` is that app for "JSON body in, JSON body out": it
reads the body within the size limit, calls a synchronous `answer(body)` and sends the result; `ApiError`
becomes the usual JSON error answer. An answer that has to wait (an image to hash) returns an
awaitable `Reply` instead of bytes; an endpoint given an `upload` handler also takes
`multipart/form-data` bodies, which that handler reads itself (their limits differ).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import ApiError, error_response
from service.api.limits import ClientGone, content_type, is_json, is_multipart_form, read_body

_JSON_HEADER: Final = (b"content-type", b"application/json")

Headers = list[tuple[bytes, bytes]]
Reply = tuple[bytes, Headers]  # JSON body, extra response headers
# (body, query string) → the JSON body, or it with extra headers, or an awaitable of that.
Answer = Callable[[bytes, bytes], "bytes | Reply | Awaitable[Reply]"]
Upload = Callable[[Receive, bytes, bytes], Awaitable[Reply]]  # (receive, Content-Type value, query) → reply
JsonObject = dict[str, Any]


class AsgiRoute(Route):
    def __init__(
        self,
        path: str,
        asgi_app: ASGIApp,
        *,
        name: str,
        methods: Sequence[str],
        tags: list[str],
        summary: str,
        description: str,
        openapi_extra: JsonObject,
    ) -> None:
        super().__init__(path, asgi_app, methods=list(methods), name=name)
        self.tags = list(tags)
        self.summary = summary
        self.description = description
        self.openapi_extra = openapi_extra

    def operations(self) -> dict[str, JsonObject]:
        """The route's OpenAPI operations by lower-case method, as FastAPI writes an APIRoute's."""
        found: dict[str, JsonObject] = {}
        for method in sorted(self.methods or ()):
            if method == "HEAD":
                continue
            operation_id = re.sub(r"\W", "_", f"{self.name}{self.path}") + f"_{method.lower()}"
            found[method.lower()] = {
                "tags": self.tags, "summary": self.summary, "description": self.description,
                "operationId": operation_id,
                "responses": {"200": {"description": "Successful Response"}},
            }
            _merge(found[method.lower()], self.openapi_extra)
        return found


def document_asgi_routes(document: JsonObject, routes: Sequence[BaseRoute]) -> None:
    """Add the `AsgiRoute`s' operations to a FastAPI-generated document, paths in route order."""
    generated: dict[str, JsonObject] = document.get("paths", {})
    paths: dict[str, JsonObject] = {}
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(route, AsgiRoute):
            paths.setdefault(route.path, {}).update(route.operations())
        elif path in generated:
            paths.setdefault(path, {}).update(generated[path])
    paths.update((path, item) for path, item in generated.items() if path not in paths)
    document["paths"] = paths


def _merge(target: JsonObject, extra: Mapping[str, Any]) -> None:
    """Deep-merge `extra` into `target`, as FastAPI merges `openapi_extra` into an operation."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


class JsonEndpoint:
    def __init__(self, answer: Answer, *, max_body_bytes: int, upload: Upload | None = None) -> None:
        self.answer = answer
        self.max_body_bytes = max_body_bytes
        self.upload = upload
        accepted = "application/json or multipart/form-data" if upload is not None else "application/json"
        self.unsupported = f"Content-Type must be {accepted}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra: Headers | None = None
        try:
            declared = content_type(scope["headers"])
            if is_json(declared):
                body = await read_body(receive, self.max_body_bytes)
                answer = self.answer(body, scope.get("query_string", b""))
                if isinstance(answer, bytes):
                    payload = answer
                elif isinstance(answer, tuple):
                    payload, extra = answer
                else:
                    payload, extra = await answer
            elif self.upload is not None and is_multipart_form(declared):
                payload, extra = await self.upload(receive, declared, scope.get("query_string", b""))
            else:
                raise ApiError(415, self.unsupported)
        except ApiError as exc:
            await error_response(exc.status, exc.error, exc.detail, exc.headers)(scope, receive, send)
            return
        except ClientGone:
            return  # nobody is left to read an answer
        headers = [_JSON_HEADER, (b"content-length", b"%d" % len(payload))]
        if extra:
            headers += extra
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class HotRoutesMiddleware:
    """Sends the hot endpoints straight to their ASGI apps, skipping FastAPI's exception and
    exit-stack layers and the router's linear match (~20 µs per request here).

    A pure shortcut: the same apps are mounted as `AsgiRoute`s, so a request this misses (say,
    under a root path) still reaches them through the router with the same answer.
    """

    def __init__(self, app: ASGIApp, *, endpoints: Mapping[tuple[str, str], ASGIApp]) -> None:
        self.app = app
        self.endpoints = dict(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.endpoints.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)
