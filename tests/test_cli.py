"""The `redline` command end to end, as a user runs it (a real subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.events import decode_verdict

PACK = Path(__file__).resolve().parent / "packs" / "mini"


def redline(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], input=stdin, capture_output=True, timeout=120, check=False
    )


def test_check_writes_verdicts_to_stdout_and_each_bad_line_to_stderr() -> None:
    lines = [
        b'{"id":"a","text":"\xe6\x9c\xba\xe5\xaf\x86"}',  # 机密
        b'{"id":1}',  # wrong type
        b"",  # blank line: skipped, not an error
        b"\xff\xfe not utf-8",
        b'{"id":"d","type":"red_packet","sender":{"roles":["official"]},'
        b'"payment":{"amount":5,"direction":"receive"}}',
        b'{"id":"e","type":"hologram"}',  # unknown event type
        b"[" * 5000 + b"]" * 5000,  # deeply nested JSON
        b'{"text":"\xe6\x9c\xba\xe5\xaf\x86"}',  # no id: accepted as /check accepts it
        b'{"id":"g","sent_at":"9999-12-31T23:59:59-23:59"}',  # past year 9999 in UTC
    ]
    result = redline("check", "--rules", str(PACK), stdin=b"\n".join(lines) + b"\n")
    assert result.returncode == 1  # some lines were malformed; all were processed
    verdicts = [decode_verdict(line) for line in result.stdout.splitlines()]
    assert [v.action for v in verdicts] == ["block", "block", "block"]
    assert verdicts[0].event_id == "a"
    assert verdicts[1].matches[0].rule == "illicit_payment.official_receives"
    assert len(verdicts[2].event_id) == 36  # a UUID, as /check gives
    errors = result.stderr.decode().splitlines()
    assert errors[0] == "redline check: line 2: Expected `str | null`, got `int` - at `$.id`"  # as /check says
    assert [e.split(":")[1].strip() for e in errors] == ["line 2", "line 4", "line 6", "line 7", "line 9"]
    assert "Invalid enum value 'hologram'" in errors[2]
    assert errors[4].endswith("timestamp out of range once converted to UTC - at `$.sent_at`")


def test_check_text() -> None:
    result = redline("check", "--rules", str(PACK), "--text", "這是機 密")
    assert result.returncode == 0
    verdict = decode_verdict(result.stdout)
    assert verdict.action == "block"
    assert verdict.matches[0].evidence[0].text == "機 密"


def test_check_many_lines_stays_in_order() -> None:
    events = b"\n".join(b'{"id":"%d","text":"%s"}' % (i, "机密".encode() if i % 3 == 0 else b"hi") for i in range(2000))
    result = redline("check", "--rules", str(PACK), stdin=events + b"\n")
    assert result.returncode == 0
    verdicts = [decode_verdict(line) for line in result.stdout.splitlines()]
    assert [v.event_id for v in verdicts] == [str(i) for i in range(2000)]
    assert [v.action for v in verdicts] == ["block" if i % 3 == 0 else "allow" for i in range(2000)]


@pytest.mark.parametrize(
    ("command", "pack", "code", "needle"),
    [
        ("test", "mini", 0, "17 examples passed"),
        ("lint", "mini", 0, "valid"),
        ("lint", "broken", 2, "refused with 14 error(s)"),
        ("test", "broken", 2, "unknown category 'nope'"),
    ],
)
def test_rules_commands(command: str, pack: str, code: int, needle: str) -> None:
    result = redline("rules", command, str(PACK.parent / pack))
    assert result.returncode == code
    assert needle in (result.stdout + result.stderr).decode()


def test_rules_test_exits_1_when_only_examples_fail(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(PACK, tmp_path / "p")
    rules = tmp_path / "p" / "rules" / "main.yaml"
    rules.write_text(rules.read_text(encoding="utf-8").replace('"idiotic plan"', '"idiot"'), encoding="utf-8")
    result = redline("rules", "test", str(tmp_path / "p"))
    assert result.returncode == 1
    assert b"should not match rule 'improper_remarks.insult'" in result.stderr


def test_schema_on_disk_is_current() -> None:
    result = redline("rules", "schema")
    committed = (Path(__file__).resolve().parent.parent / "docs" / "rules.schema.json").read_bytes()
    assert result.stdout == committed, "run: redline rules schema --output docs/rules.schema.json"


def test_version() -> None:
    from service.version import installed_version

    result = redline("--version")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"redline {installed_version()}"
    assert installed_version()[0].isdigit()


def test_check_names_unknown_fields_on_stderr_and_strict_refuses_them() -> None:
    lines = b'{"id":"a","txt":"hi"}\n{"id":"b","text":"hi"}\n'
    lenient = redline("check", "--rules", str(PACK), stdin=lines)
    assert lenient.returncode == 0
    assert [decode_verdict(v).event_id for v in lenient.stdout.splitlines()] == ["a", "b"]
    assert lenient.stderr.decode().splitlines() == ["redline check: line 1: unknown fields ignored: $.txt"]
    strict = redline("check", "--strict", "--rules", str(PACK), stdin=lines)
    assert strict.returncode == 1
    assert [decode_verdict(v).event_id for v in strict.stdout.splitlines()] == ["b"]
    assert strict.stderr.decode().splitlines() == ["redline check: line 1: unknown fields (--strict): $.txt"]
