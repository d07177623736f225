"""The installed distribution's version: `redline --version` and the OpenAPI document say it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def installed_version() -> str:
    try:
        return version("redline")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+source"
