"""uvicorn factory for the benchmarks: Redline's app built from REDLINE_* settings, no stream."""

from __future__ import annotations

from fastapi import FastAPI

from service.api.app import create_app
from service.runtime import Runtime
from service.settings import Settings


def create() -> FastAPI:
    return create_app(Runtime.load(Settings()))
