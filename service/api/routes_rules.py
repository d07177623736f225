"""`GET /rules` (the serving pack) and `POST /rules/reload` (load it again from its source)."""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.responses import Response

from service.api import openapi
from service.api.errors import ApiError, pack_issue_details
from service.api.schemas import ReloadResult, RulesView, RuleView, encode
from service.engine.classifier import Engine
from service.errors import PackError
from service.runtime import Runtime


def describe_pack(engine: Engine) -> RulesView:
    ref = engine.ruleset
    return RulesView(
        name=ref.name,
        version=ref.version,
        digest=ref.digest,
        categories=dict(engine.categories),
        rules=[
            RuleView(id=r.id, category=r.category, severity=r.severity, action=r.action, shadow=r.shadow,
                     reason=r.reason)
            for r in engine.rules
        ],
    )


def add_rules_routes(app: FastAPI, runtime: Runtime) -> None:
    @app.get(
        "/rules",
        tags=["rules"],
        summary="The serving rule pack",
        description="Name, version, digest, categories and rules (with their shadow flags).",
        response_class=Response,
        openapi_extra=openapi.rules_operation(),
    )
    async def rules() -> Response:
        return Response(encode(describe_pack(runtime.engine)), media_type="application/json")

    @app.post(
        "/rules/reload",
        tags=["rules"],
        summary="Reload the rule pack from its source",
        description="Loads and compiles the pack again and runs every rule example. On any failure "
        "answers 422 with every issue and the old pack keeps serving; on success the new pack "
        "replaces it in one step (no request sees a half-loaded pack). Also triggered by SIGHUP.",
        response_class=Response,
        openapi_extra=openapi.reload_operation(),
    )
    async def reload() -> Response:
        previous = runtime.engine.ruleset.digest
        started = time.perf_counter()
        try:
            engine = await runtime.reload()
        except PackError as exc:
            raise ApiError(422, "rule pack refused", pack_issue_details(exc.issues)) from exc
        result = ReloadResult(
            ruleset=engine.ruleset,
            previous_digest=previous,
            changed=engine.ruleset.digest != previous,
            rules=len(engine.rules),
            seconds=round(time.perf_counter() - started, 4),
        )
        return Response(encode(result), media_type="application/json")

