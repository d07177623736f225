"""Bodies of the API's own answers (the wire models ChatEvent and Verdict live in service.events).

msgspec structs like the wire models: one encoder for every route, and `openapi.py` derives the
documented schemas from these same types, so the document cannot drift from what is sent.
"""

from __future__ import annotations

from typing import Final

import msgspec

from service.events import Action, RulesetRef, Severity


class ErrorDetail(msgspec.Struct, frozen=True, omit_defaults=True):
    """One problem. `path` is a JSON path into the request body (`$[2].chat.id`) when there is one;
    `file` and `line` locate a problem of a refused rule pack (relative file, 1-based line)."""

    message: str
    path: str | None = None
    file: str | None = None
    line: int | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    error: str
    detail: list[ErrorDetail] = []


class RuleView(msgspec.Struct, frozen=True):
    id: str
    category: str
    severity: Severity
    action: Action
    shadow: bool
    reason: str


class RulesView(msgspec.Struct, frozen=True):
    name: str
    version: str
    digest: str
    categories: dict[str, str]
    rules: list[RuleView]


class ReloadResult(msgspec.Struct, frozen=True):
    ruleset: RulesetRef
    previous_digest: str
    changed: bool
    rules: int
    seconds: float


class Health(msgspec.Struct, frozen=True):
    status: str


class Readiness(msgspec.Struct, frozen=True):
    ready: bool
    reasons: list[str] = []


_encoder: Final = msgspec.json.Encoder()


def encode(value: object) -> bytes:
    return _encoder.encode(value)
