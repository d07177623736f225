"""Every error answer is JSON `{"error": "...", "detail": [...]}`, never an HTML page or a 500 for
client input.

`ApiError` is raised by the routes and the body reader; the handlers installed here also turn
Starlette's own 404/405 and FastAPI's validation errors into the same shape.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from service.api.schemas import ErrorBody, ErrorDetail, encode
from service.errors import PackIssue, RedlineError

log = logging.getLogger(__name__)

# msgspec ends its messages with " - at `$.chat.id`" when the problem has a location.
_PATH_SUFFIX: Final = re.compile(r"^(?P<message>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)


class ApiError(RedlineError):
    """An answer other than success, with the status and body it will be sent as."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Sequence[ErrorDetail] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = list(detail)
        self.headers = dict(headers or {})


def error_response(
    status: int, error: str, detail: Sequence[ErrorDetail] = (), headers: Mapping[str, str] | None = None
) -> Response:
    body = encode(ErrorBody(error=error, detail=list(detail)))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def decode_error_detail(message: str, path_prefix: str = "") -> ErrorDetail:
    """Split a msgspec message into text and JSON path; `path_prefix` re-roots `$` (batch items)."""
    found = _PATH_SUFFIX.match(message)
    if found is None:
        return ErrorDetail(message=message, path=path_prefix or "$")
    path = found["path"]
    if path_prefix:
        path = path_prefix + path[1:]
    return ErrorDetail(message=found["message"], path=path)


def pack_issue_details(issues: Iterable[PackIssue]) -> list[ErrorDetail]:
    return [ErrorDetail(message=i.message, file=i.file, line=i.line) for i in issues]


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.error, exc.detail, exc.headers)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    # Starlette's 404/405 carry their reason phrase as detail; 405 carries the Allow header.
    return error_response(exc.status_code, str(exc.detail), (), exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    # Only routes that let FastAPI validate parameters get here; the hot routes decode with msgspec.
    assert isinstance(exc, RequestValidationError)
    detail = [
        ErrorDetail(message=str(err.get("msg", "invalid")), path=_loc_to_path(err.get("loc", ())))
        for err in exc.errors()
    ]
    return error_response(422, "invalid request", detail)


async def _on_disconnect(request: Request, exc: Exception) -> Response:
    # The client left while sending its body; nobody will read this answer.
    return error_response(400, "client disconnected")


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return error_response(500, "internal error")


def _loc_to_path(loc: Sequence[object]) -> str:
    parts = ["$"]
    for item in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        parts.append(f"[{item}]" if isinstance(item, int) else f".{item}")
    return "".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ClientDisconnect, _on_disconnect)
    app.add_exception_handler(Exception, _on_unexpected)
