"""`GET /rules` and `POST /rules/reload` (success, refusal, atomic swap under load)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.runtime import Runtime
from tests.api.conftest import ADMIN_KEY, asgi_client

JSON = {"content-type": "application/json"}
SECRET = json.dumps({"text": "这份是机密文件"}).encode()


def bump_version(pack: Path, version: str) -> None:
    manifest = pack / "pack.yaml"
    text = manifest.read_text(encoding="utf-8")
    lines = [f'version: "{version}"' if line.startswith("version:") else line for line in text.splitlines()]
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")


def break_pack(pack: Path) -> None:
    """Two independent problems in two rules: an unknown category and an unknown action."""
    rules = pack / "rules" / "main.yaml"
    text = rules.read_text(encoding="utf-8")
    text = text.replace("category: secret_leak", "category: secrets", 1)
    text = text.replace("action: review", "action: shout", 1)
    rules.write_text(text, encoding="utf-8")


def fail_an_example(pack: Path) -> None:
    """A valid pack whose rule examples no longer hold."""
    rules = pack / "rules" / "main.yaml"
    text = rules.read_text(encoding="utf-8")
    rules.write_text(text.replace('no_match: ["idiotic plan"]', 'no_match: ["idiotic plan", "you idiot"]', 1),
                     encoding="utf-8")


@pytest.fixture
async def reload_client(reloadable_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(reloadable_runtime, headers={"authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client


async def test_rules_describes_the_serving_pack(client: httpx.AsyncClient, runtime: Runtime) -> None:
    body = (await client.get("/rules")).json()
    engine = runtime.engine
    assert (body["name"], body["version"], body["digest"]) == (
        engine.ruleset.name, engine.ruleset.version, engine.ruleset.digest
    )
    assert body["categories"] == engine.categories
    assert [r["id"] for r in body["rules"]] == [r.id for r in engine.rules]
    assert {r["id"]: r["shadow"] for r in body["rules"]} == {r.id: r.shadow for r in engine.rules}
    assert any(r["shadow"] for r in body["rules"])  # the test pack has a shadow rule
    assert set(body["rules"][0]) == {"id", "category", "severity", "action", "shadow", "reason"}


async def test_reload_swaps_in_the_new_pack(
    reload_client: httpx.AsyncClient, reloadable_runtime: Runtime, pack_dir: Path
) -> None:
    old = reloadable_runtime.engine.ruleset.digest
    unchanged = (await reload_client.post("/rules/reload")).json()
    assert unchanged["changed"] is False
    assert unchanged["ruleset"]["digest"] == old

    bump_version(pack_dir, "2.0")
    response = await reload_client.post("/rules/reload")
    assert response.status_code == 200
    result = response.json()
    assert result["previous_digest"] == old
    assert result["changed"] is True
    assert result["ruleset"]["version"] == "2.0"
    assert result["rules"] == len(reloadable_runtime.engine.rules)
    assert result["seconds"] >= 0
    new = result["ruleset"]["digest"]
    assert (await reload_client.get("/rules")).json()["digest"] == new
    verdict = (await reload_client.post("/check", content=SECRET, headers=JSON)).json()
    assert verdict["ruleset"]["digest"] == new


async def test_refused_pack_reports_every_issue_and_keeps_serving(
    reload_client: httpx.AsyncClient, reloadable_runtime: Runtime, pack_dir: Path
) -> None:
    old = reloadable_runtime.engine.ruleset.digest
    break_pack(pack_dir)
    response = await reload_client.post("/rules/reload")
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "rule pack refused"
    assert len(body["detail"]) >= 2, body
    for issue in body["detail"]:
        assert set(issue) == {"file", "line", "message"}
        assert issue["file"] == "rules/main.yaml"
        assert issue["line"] > 0
    messages = " ".join(issue["message"] for issue in body["detail"])
    assert "secrets" in messages
    assert "shout" in messages
    # The old pack is still the one deciding.
    assert (await reload_client.get("/rules")).json()["digest"] == old
    verdict = (await reload_client.post("/check", content=SECRET, headers=JSON)).json()
    assert verdict["ruleset"]["digest"] == old
    assert verdict["action"] == "block"


async def test_failing_rule_example_refuses_the_pack(
    reload_client: httpx.AsyncClient, reloadable_runtime: Runtime, pack_dir: Path
) -> None:
    old = reloadable_runtime.engine.ruleset.digest
    fail_an_example(pack_dir)
    response = await reload_client.post("/rules/reload")
    assert response.status_code == 422
    [issue] = response.json()["detail"]
    assert issue["file"] == "rules/main.yaml"
    assert issue["line"] > 0
    assert "you idiot" in issue["message"]
    assert reloadable_runtime.engine.ruleset.digest == old


async def test_no_request_sees_a_half_loaded_pack(
    reload_client: httpx.AsyncClient, reloadable_runtime: Runtime, pack_dir: Path
) -> None:
    old = reloadable_runtime.engine.ruleset.digest
    bump_version(pack_dir, "3.0")
    stop = asyncio.Event()
    digests: list[str] = []
    statuses: list[int] = []

    async def hammer() -> None:
        while not stop.is_set():
            response = await reload_client.post("/check", content=SECRET, headers=JSON)
            statuses.append(response.status_code)
            digests.append(response.json()["ruleset"]["digest"])
            await asyncio.sleep(0)  # in-memory ASGI calls may never suspend: let the reload progress

    workers = [asyncio.create_task(hammer()) for _ in range(4)]
    reload_response = await reload_client.post("/rules/reload")  # compiles in a thread meanwhile
    after = (await reload_client.post("/check", content=SECRET, headers=JSON)).json()
    stop.set()
    await asyncio.gather(*workers)
    new = reload_response.json()["ruleset"]["digest"]
    assert new != old
    assert after["ruleset"]["digest"] == new  # a request after the reload answered is on the new pack
    assert len(statuses) > 4
    assert set(statuses) == {200}
    assert set(digests) <= {old, new}  # every verdict came from one whole pack or the other


def _failed_reloads() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("redline_rule_pack_reloads_total", {"result": "failure"}) or 0.0


@pytest.mark.parametrize(
    ("hostile", "message"),
    [
        ("deep", "YAML nested too deeply"),  # was a 500 (RecursionError), not counted as a failure
        ("gone", "the pack directory does not exist or is not a directory"),  # no absolute path echoed
    ],
)
async def test_every_refused_pack_is_a_422_and_a_failed_reload(
    reload_client: httpx.AsyncClient, pack_dir: Path, hostile: str, message: str
) -> None:
    if hostile == "deep":
        (pack_dir / "rules" / "deep.yaml").write_text("rules:\n  - " + "[" * 5000 + "]" * 5000 + "\n")
    else:
        shutil.rmtree(pack_dir)
    before = _failed_reloads()
    response = await reload_client.post("/rules/reload")
    assert response.status_code == 422
    assert any(issue["message"] == message for issue in response.json()["detail"])
    assert str(pack_dir) not in response.text
    assert _failed_reloads() == before + 1
