"""Loading rule packs: every error at once with file:line, nothing half-loaded, paths confined."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from service.errors import PackError
from service.rules.loader import load_pack, load_pack_report

TESTS = Path(__file__).resolve().parent.parent
PACKS = TESTS / "packs"
GOLDEN = TESTS / "golden"


def refused(directory: Path) -> list[str]:
    with pytest.raises(PackError) as info:
        load_pack(directory)
    return [str(issue) for issue in info.value.issues]


@pytest.fixture
def mini_copy(tmp_path: Path) -> Path:
    target = tmp_path / "mini"
    shutil.copytree(PACKS / "mini", target)
    return target


def test_every_error_is_reported_once_with_its_line() -> None:
    with pytest.raises(PackError) as info:
        load_pack(PACKS / "broken")
    expected = (GOLDEN / "broken_pack.txt").read_text(encoding="utf-8")
    assert str(info.value).replace(str(PACKS / "broken"), "tests/packs/broken") + "\n" == expected


def test_valid_pack_loads_with_a_stable_digest(mini_copy: Path) -> None:
    first = load_pack_report(mini_copy)
    assert first.examples_run == 17
    assert load_pack(mini_copy).ruleset == first.engine.ruleset
    (mini_copy / "lexicons" / "insults.txt").write_text("傻逼\nidiot\nmoron\n", encoding="utf-8")
    assert load_pack(mini_copy).ruleset.digest != first.engine.ruleset.digest


def test_failing_examples_refuse_the_pack(mini_copy: Path) -> None:
    rules = mini_copy / "rules" / "main.yaml"
    rules.write_text(rules.read_text(encoding="utf-8").replace('no_match: ["idiotic plan"]', 'no_match: ["idiot"]'))
    assert refused(mini_copy) == [
        "rules/main.yaml:39: example should not match rule 'improper_remarks.insult' but does: 'idiot'; "
        "matched 'idiot' in text at 0-5"  # what matched, so the author sees why
    ]


def test_an_example_that_misses_says_what_the_verdict_was(mini_copy: Path) -> None:
    rules = mini_copy / "rules" / "main.yaml"
    rules.write_text(rules.read_text(encoding="utf-8").replace('match: ["你个傻逼",', 'match: ["hello",', 1))
    messages = refused(mini_copy)
    assert any("should match rule 'improper_remarks.insult' but does not: 'hello'; the verdict was allow with no match"
               in m for m in messages), messages


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # YAML syntax error, located
        ("rules: [\n  - id: x\n", "rules/main.yaml:2: invalid YAML"),
        # anchors/aliases (billion-laughs shapes) are refused outright
        ("a: &x [1]\nrules: *x\n", "rules/main.yaml:1: YAML anchors and aliases are not allowed"),
        # the file is not a mapping
        ("- 1\n", "rules/main.yaml:1: a rule file is a mapping"),
        # unknown top-level keys
        ("rules: []\nextra: 1\n", "rules/main.yaml:1: unknown top-level keys ['extra']"),
    ],
)
def test_malformed_rule_files(mini_copy: Path, content: str, message: str) -> None:
    (mini_copy / "rules" / "main.yaml").write_text(content, encoding="utf-8")
    issues = refused(mini_copy)
    assert any(issue.startswith(message) for issue in issues), issues


def test_non_utf8_file_is_refused(mini_copy: Path) -> None:
    (mini_copy / "lexicons" / "insults.txt").write_bytes(b"\xff\xfe bad")
    assert "pack.yaml:11: file 'lexicons/insults.txt': not UTF-8 (byte 0)" in refused(mini_copy)


def test_empty_pack_is_refused(mini_copy: Path) -> None:
    (mini_copy / "rules" / "main.yaml").write_text("rules: []\n", encoding="utf-8")
    assert refused(mini_copy) == ["pack.yaml:1: the pack has no rules"]


def test_symlink_out_of_the_pack_is_refused(mini_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n", encoding="utf-8")
    lexicon = mini_copy / "lexicons" / "insults.txt"
    lexicon.unlink()
    os.symlink(outside, lexicon)
    assert any("resolves outside the pack directory" in i for i in refused(mini_copy))


def test_rule_glob_cannot_leave_the_pack(mini_copy: Path) -> None:
    pack = mini_copy / "pack.yaml"
    pack.write_text(pack.read_text(encoding="utf-8") + 'rules: ["../**/*.yaml"]\n', encoding="utf-8")
    assert any("must stay inside the pack" in i for i in refused(mini_copy))


def test_missing_directory() -> None:
    assert refused(PACKS / "does-not-exist")[0].endswith("not a directory")


def test_large_generated_pack_loads(tmp_path: Path) -> None:
    # 20k keywords + regexes compile into one database per field
    shutil.copytree(PACKS / "mini", tmp_path / "big")
    terms = "\n".join(f"词{i:05d}" for i in range(20_000))
    (tmp_path / "big" / "lexicons" / "insults.txt").write_text("傻逼\nidiot\n" + terms, encoding="utf-8")
    engine = load_pack(tmp_path / "big")
    from datetime import UTC, datetime

    from service.events import ChatEvent

    verdict = engine.classify(ChatEvent(id="x", text="你好 词19999"), datetime.now(UTC))
    assert [m.rule for m in verdict.matches] == ["improper_remarks.insult"]
