"""Who may import whom on the Kafka side (docs/architecture.md): the plumbing knows nothing of
events or the engine, and the stream and the counter owner never import each other's package."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded_by(module: str) -> set[str]:
    code = f"import sys, json, importlib; importlib.import_module({module!r}); print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name for name in json.loads(result.stdout) if name.startswith("service.")}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        # The plumbing: no event model, no engine, no user of it.
        ("service.kafka.batch_loop", ("service.engine", "service.events", "service.stream", "service.counters",
                                      "service.decisions", "service.rules")),
        ("service.stream.processor", ("service.counters",)),
        ("service.stream.members", ("service.counters",)),
        ("service.counters.owner", ("service.stream",)),
    ],
)
def test_imports_stay_inside_their_lines(module: str, forbidden: tuple[str, ...]) -> None:
    loaded = loaded_by(module)
    assert not {name for name in loaded if name.startswith(forbidden)}, sorted(
        name for name in loaded if name.startswith(forbidden)
    )
