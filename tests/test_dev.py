"""`redline dev` as a newcomer meets it: end to end with a live summary, a taken port, and a kill
that must not orphan the broker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from service.embedded_broker import free_port
from tests.kafka_helpers import rules_dir

REPO = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}


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


def test_a_taken_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "service", "dev", "--port", str(port), "--duration", "5"],
            cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60, check=False,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"redline dev: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another process holds it: choose another with --port or REDLINE_HTTP_PORT)"
    ]
    assert result.stdout == ""  # nothing was started: no broker line, no summary


def test_serve_with_a_taken_port_ends_before_compiling_the_pack() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = _env() | {"REDLINE_HTTP_HOST": "127.0.0.1", "REDLINE_HTTP_PORT": str(port)}
        result = subprocess.run(
            [sys.executable, "-m", "service", "serve"], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(f"redline serve: cannot listen on 127.0.0.1:{port}")
    assert "rule pack loaded" not in result.stderr


def _children(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat.split("(", 1)[1].rsplit(")", 1)
            if int(rest.split()[1]) == pid:
                found[int(entry.name)] = name
    return found


def _gone(pid: int) -> bool:
    """Exited: no process, or a zombie its new parent has not reaped yet."""
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_the_broker_dies_with_a_killed_dev() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dev = subprocess.Popen(
        [sys.executable, "-m", "service", "dev", "--port", str(port)],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert dev.stdout is not None
        assert dev.stdout.readline().startswith("redline dev: broker")  # the broker is up
        brokers = [pid for pid, name in _children(dev.pid).items() if name.startswith("tansu")]
        assert len(brokers) == 1
        dev.send_signal(signal.SIGKILL)
        dev.wait(10)
        deadline = time.monotonic() + 20
        while not _gone(brokers[0]) and time.monotonic() < deadline:
            time.sleep(0.1)  # the kernel's SIGTERM, then the broker's own shutdown: nothing to await
        assert _gone(brokers[0]), "the broker outlived redline dev"
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()


def test_ctrl_c_in_a_terminal_stops_dev_cleanly() -> None:
    # A terminal's ^C sends SIGINT to the whole foreground process group: redline dev, its stream
    # members and the embedded broker at once. The broker must outlive the drain, so the stop is
    # quiet: no traceback, no connection errors, exit 0.
    dev = subprocess.Popen(
        [sys.executable, "-m", "service", "dev", "--port", str(free_port())],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    try:
        assert dev.stdout is not None
        assert dev.stdout.readline().startswith("redline dev: broker")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not dev.stdout.readline().startswith("[ "):
            pass  # wait for the first summary line: traffic is flowing through the members
        os.killpg(dev.pid, signal.SIGINT)
        _, stderr = dev.communicate(timeout=30)
        assert dev.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
        assert '"level": "error"' not in stderr, stderr
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
