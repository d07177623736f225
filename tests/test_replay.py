"""`redline replay` end to end (a real subprocess): two packs differing by one rule."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKS = Path(__file__).resolve().parent / "packs"

EVENTS = [
    {"id": "e1", "text": "这份是机密文件"},  # matches secret_leak.marking in both packs
    {"id": "e2", "text": "这是内部资料，不要外传"},  # only the candidate's extra keyword
    {"id": "e3", "text": "今天天气不错"},  # nothing
    {"id": "e4", "text": "你个傻逼"},  # improper_remarks.insult: review in both
    {"id": "e5", "text": "内部资料 again", "sent_at": "2026-03-02T10:00:00+08:00"},
]


def redline(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "replay", *map(str, args)],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "events.jsonl"
    lines = [json.dumps(e, ensure_ascii=False) for e in EVENTS]
    lines.insert(2, '{"id": 7}')  # malformed: reported and skipped
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return path


def variant(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the mini pack with one rule edited."""
    target = tmp_path / "candidate"
    shutil.copytree(PACKS / "mini", target)
    rules = target / "rules" / "main.yaml"
    text = rules.read_text(encoding="utf-8")
    assert old in text
    rules.write_text(text.replace(old, new, 1), encoding="utf-8")
    return target


@pytest.fixture
def wider(tmp_path: Path) -> Path:
    # secret_leak.marking gains the keyword 内部资料
    return variant(tmp_path, "keywords: [机密, 绝密]", "keywords: [机密, 绝密, 内部资料]")


def test_identical_packs_change_nothing(events: Path) -> None:
    result = redline("--events", events, "--rules", PACKS / "mini", "--baseline", PACKS / "mini")
    assert result.returncode == 0, result.stderr
    assert "events: 6 read, 1 malformed, 5 classified, 0 with changed matches" in result.stdout
    assert "malformed line 3: Expected `str | null`, got `int` - at `$.id`" in result.stdout
    assert "no verdict changes" in result.stdout


def test_one_rule_changed_reports_actions_rules_categories_and_fails(events: Path, wider: Path) -> None:
    result = redline("--events", events, "--rules", wider, "--baseline", PACKS / "mini", "--examples", "1")
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "allow→block: 2" in out
    assert "secret_leak.marking: added 2" in out
    assert '      added e.g. e2: "这是内部资料，不要外传"' in out  # one example, as asked
    assert "e5" not in out
    assert "result: FAIL (--fail-on any)" in out


def test_json_report(events: Path, wider: Path) -> None:
    result = redline("--events", events, "--rules", wider, "--baseline", PACKS / "mini", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["events"] == {"lines": 6, "malformed": 1, "classified": 5, "changed": 2, "action_changed": 2}
    assert report["actions"]["allow→block"]["count"] == 2
    assert [x["event_id"] for x in report["actions"]["allow→block"]["examples"]] == ["e2", "e5"]
    assert report["rules"] == {
        "secret_leak.marking": {"added": {"count": 2, "examples": report["actions"]["allow→block"]["examples"]}}
    }
    assert report["categories"]["secret_leak"]["added"]["count"] == 2
    assert report["baseline"]["digest"] != report["candidate"]["digest"]
    assert report["failed"] is True


def test_fail_on_action_ignores_changes_that_keep_every_action(events: Path, tmp_path: Path) -> None:
    # The insult rule's severity rises: its match changes, no verdict action does.
    candidate = variant(tmp_path, "severity: medium\n    action: review", "severity: high\n    action: review")
    common = ("--events", events, "--rules", candidate, "--baseline", PACKS / "mini")
    assert redline(*common).returncode == 1
    relaxed = redline(*common, "--fail-on", "action")
    assert relaxed.returncode == 0, relaxed.stdout
    assert "improper_remarks.insult: changed 1" in relaxed.stdout
    assert redline(*common, "--fail-on", "none").returncode == 0


def test_unusable_input_exits_2(events: Path, tmp_path: Path) -> None:
    missing = redline("--events", tmp_path / "nope.jsonl", "--rules", PACKS / "mini", "--baseline", PACKS / "mini")
    assert missing.returncode == 2
    assert "not found" in missing.stderr
    broken = redline("--events", events, "--rules", PACKS / "broken", "--baseline", PACKS / "mini")
    assert broken.returncode == 2
    assert broken.stderr.startswith("candidate: rule pack")
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n", encoding="utf-8")
    assert redline("--events", garbage, "--rules", PACKS / "mini", "--baseline", PACKS / "mini").returncode == 2
    bad_now = redline("--events", events, "--rules", PACKS / "mini", "--baseline", PACKS / "mini", "--now", "today")
    assert bad_now.returncode == 2


def test_dash_reads_the_events_from_stdin(events: Path) -> None:
    command = [sys.executable, "-m", "service", "replay", "--events", "-", "--rules", str(PACKS / "mini"),
               "--baseline", str(PACKS / "mini")]
    result = subprocess.run(command, input=events.read_bytes(), capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert b"events: 6 read, 1 malformed, 5 classified" in result.stdout
