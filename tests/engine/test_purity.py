"""The engine package is pure: importing it pulls in no I/O, logging or metrics library, and no
module of it reads the clock, files or the environment."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys

import pytest

import service.engine

FORBIDDEN = ("aiokafka", "fastapi", "starlette", "uvicorn", "prometheus_client", "logging", "yaml", "socket")
# Every module of the package, found rather than listed: a new module is covered the day it lands.
MODULES = sorted(f"service.engine.{m.name}" for m in pkgutil.iter_modules(service.engine.__path__))


def test_every_engine_module_is_covered() -> None:
    assert {"service.engine.classifier", "service.engine.conditions", "service.engine.counting"} <= set(MODULES)


def test_engine_imports_no_io_library() -> None:
    code = (
        "import sys, json, importlib\n"
        f"for name in {MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(result.stdout))
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)


@pytest.mark.parametrize("name", MODULES)
def test_engine_source_reads_no_clock_or_files(name: str) -> None:
    source = inspect.getsource(importlib.import_module(name))
    for call in ("datetime.now(", "time.time(", "open(", "time.perf_counter(", "time.monotonic(", "os.environ",
                 "Path(", ".read_text(", ".read_bytes("):
        assert call not in source, f"{name} calls {call}"
