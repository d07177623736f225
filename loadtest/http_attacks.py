"""The hostile-input attacks, replayed against a real `redline serve`, with the figures they hold to.

    .venv/bin/python -m loadtest.http_attacks                 # every attack, ~1 min
    .venv/bin/python -m loadtest.http_attacks --only headers,slow

Starts `python -m service serve` on a free loopback port (default settings, keys configured) and
measures, against it:
- headers: 10 connections each sending an endless header for 5 s: how each ends, the server's
  resident memory before and after (it grew from 216 MB to 1 GB before the front had limits);
- slow: 1,000 connections that send one byte and stall: how many are still open after the header
  timeout, and how long a normal /check takes meanwhile;
- cap: more idle connections than REDLINE_HTTP_MAX_CONNECTIONS (set low): how many are refused;
- guess: one address trying wrong keys as fast as it can for 3 s: 401s (keys compared) vs 429s;
- text: one /check with 65,536 letters of pinyin (37 s before the edge check was bounded);
- pack: a reload of a pack with a 200,000-term lexicon (107 s and +3 GB before packs had a
  budget): its answer, its time, the server's memory after.
docs/reliability.md quotes these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from service.rules import tables
from service.settings import bundled_rules_dir

CHECK_KEY = "attack-check-key-0123456789"
ADMIN_KEY = "attack-admin-key-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    def __init__(self, pack: Path, **env: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")} | {
            "REDLINE_RULES": str(pack), "REDLINE_HTTP_HOST": "127.0.0.1", "REDLINE_HTTP_PORT": str(self.port),
            "REDLINE_API_KEYS": CHECK_KEY, "REDLINE_ADMIN_KEYS": ADMIN_KEY, "REDLINE_LOG_LEVEL": "WARNING", **env,
        }
        self.process = subprocess.Popen([sys.executable, "-m", "service", "serve"], env=full,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("serve did not start")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def check_seconds(self) -> float:
        started = time.perf_counter()
        httpx.post(f"{self.url}/check", json={"text": "hello"}, timeout=60,
                   headers={"authorization": f"Bearer {CHECK_KEY}"})
        return time.perf_counter() - started

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _status_of(sock: socket.socket) -> str:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"


def attack_headers(pack: Path) -> dict[str, object]:
    server = Server(pack)
    before = server.rss_mib()
    outcomes: Counter[str] = Counter()
    sent: list[int] = []

    def endless() -> None:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        total = 0
        deadline = time.monotonic() + 5
        try:
            while time.monotonic() < deadline:
                sock.sendall(b"a" * 4096)
                total += 4096
        except OSError:
            pass
        sent.append(total)
        outcomes[_status_of(sock)] += 1
        sock.close()

    threads = [threading.Thread(target=endless) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = server.rss_mib()
    server.stop()
    return {"connections": 10, "answers": dict(outcomes), "max_bytes_sent_before_refusal": max(sent),
            "rss_before_mib": round(before), "rss_after_mib": round(after)}


def _still_open(sock: socket.socket) -> bool:
    """Nothing to read and no end of stream: the server has neither answered nor closed it."""
    sock.setblocking(False)
    try:
        sock.recv(65536)  # the 408 answer, or b"" once closed
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def attack_slow(pack: Path) -> dict[str, object]:
    server = Server(pack, REDLINE_HTTP_HEADER_TIMEOUT_SECONDS="2", REDLINE_HTTP_MAX_CONNECTIONS="1200")
    socks = []
    for _ in range(1000):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"G")
        socks.append(sock)
    check_during = server.check_seconds()
    time.sleep(3)  # past the 2 s header timeout
    still_open = sum(_still_open(sock) for sock in socks)
    for sock in socks:
        sock.close()
    server.stop()
    return {"slow_connections": 1000, "still_open_after_timeout": still_open,
            "check_seconds_meanwhile": round(check_during, 3)}


def attack_cap(pack: Path) -> dict[str, object]:
    server = Server(pack, REDLINE_HTTP_MAX_CONNECTIONS="100", REDLINE_HTTP_HEADER_TIMEOUT_SECONDS="30")
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
    time.sleep(0.5)
    refused: Counter[str] = Counter()
    for _ in range(50):
        with socket.create_connection(("127.0.0.1", server.port)) as extra:
            extra.settimeout(5)
            refused[_status_of(extra)] += 1
    for sock in held:
        sock.close()
    time.sleep(0.5)
    after = server.check_seconds()
    server.stop()
    return {"cap": 100, "extra_connections": 50, "answers": dict(refused), "check_seconds_after": round(after, 3)}


def attack_guess(pack: Path) -> dict[str, object]:
    server = Server(pack)
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + 3
    with httpx.Client(base_url=server.url, timeout=10) as client:
        i = 0
        while time.monotonic() < deadline:
            statuses[client.post("/check", json={"text": "x"},
                                 headers={"authorization": f"Bearer guess-{i}"}).status_code] += 1
            i += 1
    server.stop()
    return {"seconds": 3, "answers": dict(statuses), "keys_compared_per_second": round(statuses[401] / 3, 1)}


def attack_text(pack: Path) -> dict[str, object]:
    server = Server(pack)
    rng = random.Random(1)
    syllables = sorted(tables.pinyin_syllables())
    text = ""
    while len(text) < 65536:
        text += rng.choice(syllables)
    started = time.perf_counter()
    response = httpx.post(f"{server.url}/check", json={"text": text[:65536]}, timeout=600,
                          headers={"authorization": f"Bearer {CHECK_KEY}"})
    seconds = time.perf_counter() - started
    server.stop()
    return {"chars": 65536, "status": response.status_code, "seconds": round(seconds, 3)}


def attack_pack(pack: Path) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(shutil.copytree(pack, Path(scratch) / "pack"))
        server = Server(copy)
        before = server.rss_mib()
        (copy / "lexicons" / "huge.txt").write_text("\n".join(f"词语{i}" for i in range(200_000)), encoding="utf-8")
        manifest = copy / "pack.yaml"
        manifest.write_text(manifest.read_text().replace("lexicons:\n", "lexicons:\n  huge: lexicons/huge.txt\n", 1))
        started = time.perf_counter()
        response = httpx.post(f"{server.url}/rules/reload", timeout=600,
                              headers={"authorization": f"Bearer {ADMIN_KEY}"})
        seconds = time.perf_counter() - started
        after = server.rss_mib()
        server.stop()
    return {"terms": 200_000, "status": response.status_code, "error": response.json()["detail"][0]["message"],
            "seconds": round(seconds, 3), "rss_before_mib": round(before), "rss_after_mib": round(after)}


ATTACKS: dict[str, Callable[[Path], dict[str, object]]] = {
    "headers": attack_headers, "slow": attack_slow, "cap": attack_cap, "guess": attack_guess,
    "text": attack_text, "pack": attack_pack,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated attacks; default all")
    parser.add_argument("--rules", type=Path, default=bundled_rules_dir())
    args = parser.parse_args(argv)
    for name in [n for n in args.only.split(",") if n] or list(ATTACKS):
        print(json.dumps({"attack": name, **ATTACKS[name](args.rules)}, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
