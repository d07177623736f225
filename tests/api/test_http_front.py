"""The HTTP front protects itself, against a real `redline serve` over raw sockets.

Each case is an attack an adversary tried on the plain uvicorn front: never-ending headers,
thousands of headers, slow heads and bodies, connections that send nothing, more connections
than the process can hold, malformed framing. Each now gets a JSON refusal and a closed
connection, counted in `redline_http_refused_connections_total{reason}`, while other clients
are served.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import httpx
import pytest

from tests.api.conftest import LiveServer

FRONT = {
    "REDLINE_HTTP_MAX_HEADER_BYTES": "4096",
    "REDLINE_HTTP_MAX_HEADERS": "20",
    "REDLINE_HTTP_HEADER_TIMEOUT_SECONDS": "1",
    "REDLINE_HTTP_BODY_TIMEOUT_SECONDS": "1",
    "REDLINE_HTTP_MAX_CONNECTIONS": "30",
}


@pytest.fixture
def server(live_server: Callable[..., LiveServer]) -> LiveServer:
    return live_server(**FRONT)


def _connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """Read until the server closes; the status and the JSON body of its one answer."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower()
    return int(head.split(b" ", 2)[1]), json.loads(body)


def _refusals(server: LiveServer, reason: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    line = f'redline_http_refused_connections_total{{reason="{reason}"}} '
    return next(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line))


def _still_serving(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/check", json={"text": "hello"}, timeout=10)
    assert response.status_code == 200


CASES = [
    # (name, bytes sent, then keep the connection open?, status, reason, message contains)
    (
        "never-ending header",
        b"POST /check HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000,
        431, "header_size", "larger than 4096 bytes",
    ),
    (
        "many small headers",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(50)) + b"\r\n",
        431, "header_count", "more than 20 request headers",
    ),
    (
        "head sent whole in one packet, too large",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 8000 + b"\r\n\r\n",
        431, "header_size", "larger than 4096 bytes",
    ),
    (
        "Content-Length that is not a number",
        b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n{}",
        400, "invalid_request", "invalid HTTP request",
    ),
    (
        "NUL in a header value",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        400, "invalid_request", "invalid HTTP request",
    ),
    (
        "slow head: one byte, then nothing",
        b"G",
        408, "header_timeout", "request headers not received within 1 s",
    ),
    (
        "connects and sends nothing",
        b"",
        408, "header_timeout", "request headers not received within 1 s",
    ),
    (
        "slow body: half the declared length, then nothing",
        b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"te",
        408, "body_timeout", "request body not received within 1 s",
    ),
]


@pytest.mark.parametrize(("name", "sent", "status", "reason", "message"), CASES, ids=[c[0] for c in CASES])
def test_attack_is_refused_with_json(
    server: LiveServer, name: str, sent: bytes, status: int, reason: str, message: str
) -> None:
    before = _refusals(server, reason)
    with _connect(server) as sock:
        if sent:
            sock.sendall(sent)
        got_status, body = _answer(sock)
    assert got_status == status
    assert message in str(body["error"])
    assert body["detail"] == []
    assert _refusals(server, reason) == before + 1
    _still_serving(server)


def test_a_good_head_under_the_limits_passes_and_keep_alive_goes_on(server: LiveServer) -> None:
    # Two requests on one connection, each head under the limits: httpx adds 7 headers of its own.
    headers = {f"X-{i}": "v" * 200 for i in range(12)}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(2):
            assert client.post("/check", json={"text": "hello"}, headers=headers).status_code == 200


def test_connections_beyond_the_cap_are_refused_and_others_served_after(server: LiveServer) -> None:
    before = _refusals(server, "connections")
    held = [_connect(server) for _ in range(30)]
    try:
        # The open count is the server's: wait until it has accepted all 30.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{server.url}/metrics", timeout=10)  # itself refused while full
            if metrics.status_code == 503:
                break
            time.sleep(0.05)
        with _connect(server) as extra:
            status, body = _answer(extra)
        assert status == 503
        assert "too many open connections (limit 30)" in str(body["error"])
    finally:
        for sock in held:
            sock.close()
    # The held connections were idle: each also hit the header timeout or was closed by us.
    deadline = time.monotonic() + 10
    while True:
        try:
            _still_serving(server)
            break
        except (httpx.HTTPError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert _refusals(server, "connections") >= before + 1


def test_health_answers_while_a_heavy_batch_is_classified(live_server: Callable[..., LiveServer]) -> None:
    # ~3 MB of the costliest hostile text (loadtest/adversarial.py) in 60 events: seconds of engine
    # work in one request. Sliced, the loop answers /healthz between slices throughout (about one
    # answer per slice, ~33 here); unsliced, only before and after the classification. With 40
    # events (~22 slices) a loaded CI machine once counted 19.
    import random
    import threading

    from loadtest.adversarial import Kinds
    from service.settings import bundled_rules_dir

    server = live_server(bundled_rules_dir(), REDLINE_MAX_BODY_BYTES=str(4 * 1024 * 1024))
    make = Kinds(bundled_rules_dir()).table()["keyword_homophones"]
    events = [{"text": make(16384, random.Random(i))} for i in range(60)]
    done = threading.Event()
    answered_meanwhile = 0

    def batch() -> None:
        response = httpx.post(f"{server.url}/check/batch", json=events, timeout=120)
        assert response.status_code == 200
        done.set()

    worker = threading.Thread(target=batch)
    worker.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        while not done.is_set():
            if client.get("/healthz").status_code == 200 and not done.is_set():
                answered_meanwhile += 1
    worker.join()
    assert answered_meanwhile >= 20
    print(f"\n/healthz answered {answered_meanwhile} times during the heavy batch")
