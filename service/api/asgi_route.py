"""Routes FastAPI documents but does not run: the hot paths answer as plain ASGI apps.

FastAPI's per-request machinery (dependency solving, validation, serialisation, exit stacks) was
measured here at ~45 µs per request, several times the classifier itself. `AsgiRoute` keeps a
route in FastAPI's router and OpenAPI document (schemas via `openapi_extra`) but answers with
the given ASGI app. `JsonEndpoint` is that app for "JSON body in, JSON body out": it reads the
body within the size limit, calls a synchronous `answer(body)` and sends the result; `ApiError`
becomes the usual JSON error answer. An answer that has to wait (an image to hash) returns an
awaitable `Reply` instead of bytes; an endpoint given an `upload` handler also takes
`multipart/form-data` bodies, which that handler reads itself (their limits differ).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import ApiError, error_response
from service.api.limits import ClientGone, content_type, is_json, is_multipart_form, read_body

_JSON_HEADER: Final = (b"content-type", b"application/json")

Headers = list[tuple[bytes, bytes]]
Reply = tuple[bytes, Headers]  # JSON body, extra response headers
# (body, query string) → the JSON body, or it with extra headers, or an awaitable of that.
Answer = Callable[[bytes, bytes], "bytes | Reply | Awaitable[Reply]"]
Upload = Callable[[Receive, bytes, bytes], Awaitable[Reply]]  # (receive, Content-Type value, query) → reply


async def _answered_by_asgi_app() -> None:  # pragma: no cover - AsgiRoute replaces the handler
    raise RuntimeError("AsgiRoute answers with its ASGI app")


class AsgiRoute(APIRoute):
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
        openapi_extra: dict[str, Any],
    ) -> None:
        super().__init__(
            path,
            _answered_by_asgi_app,
            name=name,
            methods=list(methods),
            tags=list(tags),
            summary=summary,
            description=description,
            response_class=Response,
            openapi_extra=openapi_extra,
        )
        self.app = asgi_app


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
