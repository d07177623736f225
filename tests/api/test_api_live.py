"""Against a real `redline serve` process (uvicorn on a free loopback port): the API over real
sockets, SIGHUP reloads, and schemathesis driven by the live OpenAPI document."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from service.events import decode_verdict
from service.settings import bundled_rules_dir
from tests.api.conftest import ADMIN_KEY, CHECK_KEY, REPO, LiveServer

JSON = {"content-type": "application/json"}


def logged(message: str) -> Callable[[dict[str, object]], bool]:
    return lambda record: record.get("msg") == message


def test_check_auth_and_limits_over_real_http(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(REDLINE_API_KEYS=CHECK_KEY, REDLINE_ADMIN_KEYS=ADMIN_KEY, REDLINE_MAX_BODY_BYTES="4096")
    auth = {"authorization": f"Bearer {CHECK_KEY}", **JSON}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json() == {"ready": True, "reasons": []}
        response = client.post("/check", content='{"id": "l-1", "text": "这份是机密文件"}'.encode(), headers=auth)
        assert response.status_code == 200
        verdict = decode_verdict(response.content)
        assert (verdict.event_id, verdict.action) == ("l-1", "block")
        assert client.post("/check", content=b"{}", headers=JSON).status_code == 401

        # Declared too large, and streamed (chunked) too large: both 413, server stays up.
        big = json.dumps({"text": "x" * 5000}).encode()
        assert client.post("/check", content=big, headers=auth).status_code == 413

        def chunks() -> Iterator[bytes]:
            for _ in range(100):
                yield b" " * 100

        response = client.post("/check", content=chunks(), headers=auth)
        assert response.status_code == 413
        assert response.json()["error"] == "request body larger than 4096 bytes"
        batch = client.post("/check/batch", content=b'[{"text": "a"}, {"text": "b"}]', headers=auth)
        assert len(batch.json()) == 2
        scrape = client.get("/metrics").text
        assert 'redline_http_requests_total{method="POST",route="/check",status="413"} 2.0' in scrape
    assert server.stop() == 0


def test_sighup_reloads_and_a_refused_pack_keeps_the_old_one(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        old = client.get("/rules").json()
        manifest = server.pack / "pack.yaml"
        manifest.write_text(manifest.read_text(encoding="utf-8").replace('version: "1.0"', 'version: "9.9"'),
                            encoding="utf-8")
        server.signal(signal.SIGHUP)
        server.wait_for_log(logged("rule pack reloaded"))
        new = client.get("/rules").json()
        assert new["version"] == "9.9"
        assert new["digest"] != old["digest"]

        rules = server.pack / "rules" / "main.yaml"
        rules.write_text(rules.read_text(encoding="utf-8").replace("category: secret_leak", "category: nope"),
                         encoding="utf-8")
        server.signal(signal.SIGHUP)
        refused = server.wait_for_log(lambda r: "refused" in str(r.get("msg")))
        assert refused["level"] == "warning"
        assert client.get("/rules").json()["digest"] == new["digest"]
        verdict = client.post("/check", content='{"text": "机密"}'.encode(), headers=JSON).json()
        assert verdict["ruleset"]["digest"] == new["digest"]
    assert server.stop() == 0


def test_pack_directory_watch_reloads_on_file_change(live_server: Callable[..., LiveServer]) -> None:
    # REDLINE_RULES_WATCH: serve starts the watcher; an edit is picked up without any signal
    server = live_server(REDLINE_RULES_WATCH="true", REDLINE_RULES_WATCH_POLL_SECONDS="0.2")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        old = client.get("/rules").json()
        manifest = server.pack / "pack.yaml"
        manifest.write_text(manifest.read_text(encoding="utf-8").replace('version: "1.0"', 'version: "7.7"'),
                            encoding="utf-8")
        server.wait_for_log(logged("rule pack reloaded"))
        new = client.get("/rules").json()
        assert new["version"] == "7.7"
        assert new["digest"] != old["digest"]
    assert server.stop() == 0


def test_default_pack_broken_copy_is_refused_over_http(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(bundled_rules_dir(), REDLINE_ADMIN_KEYS=ADMIN_KEY)
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        serving = client.get("/rules").json()
        assert serving["name"] == "redlines"
        assert len(serving["categories"]) == 8
        for rule_file in sorted((server.pack / "rules").glob("*.yaml"))[:2]:  # two files, two problems
            text = rule_file.read_text(encoding="utf-8")
            rule_file.write_text(text.replace("category: ", "category: no_such_", 1), encoding="utf-8")
        response = client.post("/rules/reload", headers=admin)
        assert response.status_code == 422
        issues = response.json()["detail"]
        assert len({issue["file"] for issue in issues}) >= 2
        assert all(issue["line"] > 0 and "no_such_" in issue["message"] for issue in issues)
        assert client.get("/rules").json()["digest"] == serving["digest"]
        verdict = client.post("/check", content=b'{"text": "hi"}', headers=JSON).json()
        assert verdict["ruleset"]["digest"] == serving["digest"]
    assert server.stop() == 0


def test_schemathesis_finds_no_server_errors_or_schema_violations(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server(REDLINE_API_KEYS=CHECK_KEY, REDLINE_ADMIN_KEYS=ADMIN_KEY)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()",
            "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
            "run", f"{server.url}/openapi.json",
            "--checks", "all",
            "--max-examples", "40",
            "--header", f"Authorization: Bearer {ADMIN_KEY}",
            "--request-timeout", "10",
        ],
        # Its caches (.schemathesis/, .hypothesis/) land in the working directory: keep them out of the tree.
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False,
    )
    # Failure reports quote whole bodies; keep the lines that say what failed.
    summary = [line[:300] for line in result.stdout.splitlines() if line.strip()][-80:]
    assert result.returncode == 0, "\n".join(summary) + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    assert server.stop() == 0
