"""The engine package is pure: importing it pulls in no I/O, logging or metrics library."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("aiokafka", "fastapi", "starlette", "uvicorn", "prometheus_client", "logging", "yaml", "socket")


def test_engine_imports_no_io_library() -> None:
    code = (
        "import sys, json\n"
        "import service.engine.classifier, service.engine.conditions, service.engine.matcher\n"
        "import service.engine.normalize, service.engine.textmodel, service.engine.model_score\n"
        "import service.engine.folds, service.engine.stand_ins\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(result.stdout))
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)


def test_engine_source_reads_no_clock_or_files() -> None:
    import inspect

    import service.engine.classifier as classifier
    import service.engine.conditions as conditions
    import service.engine.folds as folds
    import service.engine.matcher as matcher
    import service.engine.model_score as model_score
    import service.engine.normalize as normalize
    import service.engine.stand_ins as stand_ins
    import service.engine.textmodel as textmodel

    for module in (classifier, conditions, matcher, normalize, textmodel, model_score, folds, stand_ins):
        source = inspect.getsource(module)
        for call in ("datetime.now(", "time.time(", "open(", "time.perf_counter(", "os.environ"):
            assert call not in source, f"{module.__name__} calls {call}"
