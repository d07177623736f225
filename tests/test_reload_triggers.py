"""Reload triggers besides `POST /rules/reload`: the pack-directory watcher and `reload_logged`."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from service.engine.classifier import Engine
from service.errors import PackError
from service.reload_triggers import fingerprint, reload_logged, watch_rules
from service.runtime import Runtime
from service.settings import Settings
from tests.api.test_api_rules import break_pack, bump_version
from tests.kafka_helpers import rules_dir

PACK_SOURCE = rules_dir()


@pytest.fixture
def pack_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(PACK_SOURCE, tmp_path / "pack"))


@pytest.fixture
def reloadable_runtime(pack_dir: Path) -> Runtime:
    """A runtime serving its own copy of the pack, which the test may edit or break."""
    return Runtime.load(Settings(rules=pack_dir))


def observe_reloads(runtime: Runtime) -> asyncio.Queue[bool]:
    """Each finished `runtime.reload()` puts True (swapped) or False (refused) on the queue."""
    finished: asyncio.Queue[bool] = asyncio.Queue()
    original = runtime.reload

    async def observed() -> Engine:
        try:
            engine = await original()
        except PackError:
            finished.put_nowait(False)
            raise
        finished.put_nowait(True)
        return engine

    runtime.reload = observed  # type: ignore[method-assign]
    return finished


async def test_watcher_reloads_when_the_directory_changes(reloadable_runtime: Runtime, pack_dir: Path) -> None:
    reloads = observe_reloads(reloadable_runtime)
    watcher = asyncio.create_task(watch_rules(reloadable_runtime, poll_seconds=0.05))
    try:
        await asyncio.sleep(0)  # the watcher takes its first fingerprint before it first yields
        bump_version(pack_dir, "4.0")
        assert await asyncio.wait_for(reloads.get(), timeout=30) is True
        assert reloadable_runtime.engine.ruleset.version == "4.0"
        # A broken pack is refused and the serving one stays; the watcher keeps running.
        served = reloadable_runtime.engine
        break_pack(pack_dir)
        assert await asyncio.wait_for(reloads.get(), timeout=30) is False
        assert reloadable_runtime.engine is served
        assert not watcher.done()
        # ...and the fixed pack is picked up again.
        bump_version(pack_dir, "5.0")
        (pack_dir / "rules" / "main.yaml").write_text(
            (PACK_SOURCE / "rules" / "main.yaml").read_text(encoding="utf-8"), encoding="utf-8"
        )
        assert await asyncio.wait_for(reloads.get(), timeout=30) is True
        assert reloadable_runtime.engine.ruleset.version == "5.0"
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher


def test_fingerprint_sees_content_changes_and_ignores_hidden_files(pack_dir: Path) -> None:
    before = fingerprint(pack_dir)
    (pack_dir / ".swp").write_text("editor junk")
    assert fingerprint(pack_dir) == before
    (pack_dir / "lexicons" / "insults.txt").write_text("changed\n", encoding="utf-8")
    after = fingerprint(pack_dir)
    assert after != before
    assert {entry[0] for entry in after} == {entry[0] for entry in before}


async def test_reload_logged_never_raises_and_says_whether_the_pack_serves(
    reloadable_runtime: Runtime, pack_dir: Path
) -> None:
    served = reloadable_runtime.engine
    break_pack(pack_dir)
    assert await reload_logged(reloadable_runtime, "test") is False  # refused: logged, not raised
    assert reloadable_runtime.engine is served
    (pack_dir / "rules" / "main.yaml").write_text(
        (PACK_SOURCE / "rules" / "main.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    bump_version(pack_dir, "6.0")
    assert await reload_logged(reloadable_runtime, "test") is True
    assert reloadable_runtime.engine.ruleset.version == "6.0"
