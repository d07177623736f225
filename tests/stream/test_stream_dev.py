"""`redline dev` end to end: embedded broker, service, sample traffic, live summary, clean exit."""

from __future__ import annotations

import subprocess
import sys

from kafka_helpers import REPO, rules_dir

from service.embedded_broker import free_port


def test_dev_prints_a_live_summary_with_verdicts_and_dead_letters() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "dev", "--rules", str(rules_dir()), "--port", str(free_port()),
         "--rate", "400", "--duration", "8"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("redline dev: broker 127.0.0.1:")
    final = lines[-1]
    assert final.startswith("[total")
    verdicts = int(final.split("verdicts ")[1].split(":")[0])
    dead_letters = int(final.split("dead letters ")[1].split(" ")[0])
    assert verdicts > 500
    assert dead_letters > 0  # ~3% of the sample traffic is malformed on purpose
    assert sum(line.startswith("[ ") for line in lines) >= 5  # one line per second
