"""Packs with a budget: bytes, patterns, compile time and memory; only regular files; no recursion.

Each hostile pack is refused as a PackError naming what it passed, never a hang, a 500 or a
server that keeps the memory: the compile runs in a child process the parent kills.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.errors import PackError
from service.events import ChatEvent, decode_event
from service.rules.budget import PackBudget, default_budget
from service.rules.isolated import load_isolated, load_isolated_now
from service.rules.loader import load_pack
from service.sample_traffic import SampleTraffic
from service.settings import bundled_rules_dir

PACKS = Path(__file__).resolve().parent.parent / "packs"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    return Path(shutil.copytree(PACKS / "mini", tmp_path / "mini"))


def _messages(directory: Path, budget: PackBudget | None = None) -> list[str]:
    with pytest.raises(PackError) as info:
        load_pack(directory, budget)
    return [str(issue) for issue in info.value.issues]


def _add_lexicon(pack: Path, name: str, relative: str) -> None:
    manifest = pack / "pack.yaml"
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(text.replace("lexicons:\n", f"lexicons:\n  {name}: {relative}\n", 1), encoding="utf-8")


def test_a_fifo_is_refused_not_read(mini: Path) -> None:
    # Opening a FIFO blocks until a writer comes: a reload thread hung on one for ever.
    os.mkfifo(mini / "lexicons" / "pipe.txt")
    _add_lexicon(mini, "pipe", "lexicons/pipe.txt")
    done = threading.Event()
    found: list[str] = []

    def load() -> None:
        found.extend(_messages(mini))
        done.set()

    threading.Thread(target=load, daemon=True).start()
    assert done.wait(30), "the loader blocked on a FIFO"
    assert any(m.endswith("file 'lexicons/pipe.txt': not a regular file (a pack reads only files)") for m in found)


def test_yaml_nested_deeper_than_python_can_walk_is_an_issue(mini: Path) -> None:
    deep = mini / "rules" / "deep.yaml"
    deep.write_text("rules:\n  - " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    assert any(m.startswith("rules/deep.yaml") and "nested too deeply" in m for m in _messages(mini))


def test_bytes_over_the_budget(mini: Path) -> None:
    size = sum(p.stat().st_size for p in mini.rglob("*") if p.is_file())
    messages = _messages(mini, replace(default_budget(), max_bytes=size // 2))
    assert any("the pack's files pass" in m and "(REDLINE_PACK_MAX_BYTES)" in m for m in messages)
    load_pack(mini, replace(default_budget(), max_bytes=size))  # exactly the pack's size passes


def test_lexicon_terms_are_counted_before_they_are_expanded(mini: Path) -> None:
    (mini / "lexicons" / "big.txt").write_text("\n".join(f"词{i}" for i in range(5000)), encoding="utf-8")
    _add_lexicon(mini, "big", "lexicons/big.txt")
    messages = _messages(mini, replace(default_budget(), max_patterns=1000))
    expected = "terms, more than 1000 (REDLINE_PACK_MAX_PATTERNS)"
    assert any(m.startswith("pack.yaml:") and expected in m for m in messages)


def test_patterns_after_expansion_are_counted(mini: Path) -> None:
    # The mini pack's few terms pass the term count, but their variants (pinyin, homophones...) don't.
    engine = load_pack(mini)
    compiled = sum(len(c.matcher.patterns) for c in engine.channels)
    messages = _messages(mini, replace(default_budget(), max_patterns=compiled - 1))
    assert any("the pack compiles to" in m and "(REDLINE_PACK_MAX_PATTERNS)" in m for m in messages)


def test_isolated_compile_gives_the_same_verdicts() -> None:
    # The engine compiled in the child and pickled back decides exactly as one compiled here.
    here = load_pack(bundled_rules_dir())
    there = load_isolated_now(bundled_rules_dir(), default_budget())
    assert there.peak_memory_bytes > 50 * 1024 * 1024  # measured: the child holds a compiled pack
    traffic = SampleTraffic(3, malformed_ratio=0.0)
    events = [decode_event(record.value) for record in traffic.records(2000)]
    events += [ChatEvent(id=f"t{i}", text=t) for i, t in enumerate(["这份是机 密文件", "你个沙比", "hongbao发给你"])]
    for event in events:
        assert there.report.engine.classify(event, NOW) == here.classify(event, NOW)


def test_memory_budget_kills_the_compile() -> None:
    budget = replace(default_budget(), max_memory_bytes=64 * 1024 * 1024)  # the default pack needs ~200 MiB
    with pytest.raises(PackError) as info:
        load_isolated_now(bundled_rules_dir(), budget)
    (issue,) = info.value.issues
    assert "used more than 67108864 bytes of memory (REDLINE_PACK_COMPILE_MAX_MEMORY_BYTES)" in issue.message


def test_time_budget_kills_the_compile() -> None:
    budget = replace(default_budget(), compile_timeout_seconds=0.3)
    with pytest.raises(PackError) as info:
        load_isolated_now(bundled_rules_dir(), budget)
    (issue,) = info.value.issues
    assert issue.message == "compiling the pack took longer than 0.3 s (REDLINE_PACK_COMPILE_TIMEOUT_SECONDS)"


async def test_a_cancelled_load_kills_its_child(tmp_path: Path) -> None:
    # Shutdown cancels a reload in flight: the compiling child must not outlive it.
    task = asyncio.create_task(load_isolated(bundled_rules_dir(), default_budget()))
    await asyncio.sleep(0.3)
    children = _children_of(os.getpid())
    assert children, "the compiling child should be running"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(_gone(pid) for pid in children)


def _children_of(parent: int) -> list[str]:
    """The compiling children of `parent` (the suite's own brokers and servers are children too)."""
    return [
        p.name for p in Path("/proc").iterdir()
        if p.name.isdigit() and _parent(p.name) == parent and b"service.rules.isolated" in _cmdline(p.name)
    ]


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _gone(pid: str) -> bool:
    return not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"


def _parent(pid: str) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1
    return int(fields[1])


def _state(pid: str) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_missing_pack_names_no_path_in_its_issue(tmp_path: Path) -> None:
    # The issue is what POST /rules/reload answers: it must not reveal the server's file system.
    with pytest.raises(PackError) as info:
        load_pack(tmp_path / "gone")
    assert [(i.file, i.message) for i in info.value.issues] == [
        (".", "the pack directory does not exist or is not a directory")
    ]
    assert str(tmp_path) in str(info.value)  # the CLI's message still names it
