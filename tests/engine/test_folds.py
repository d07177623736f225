"""Folded readings: emoji stand-ins, near-homophones as an opt-in layer, and the rule that a match
holding only through a fold asks for review unless the rule says otherwise (`folded_action`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.engine.classifier import Engine
from service.engine.folds import FoldedHits
from service.events import ChatEvent
from service.rules import tables
from service.rules.channels import MAX_NEAR_LITERALS, near_twins
from service.rules.loader import load_pack

NOW = datetime(2025, 1, 1, tzinfo=UTC)

PACK = """\
name: folds
version: "1"
normalize: {homophones: true, stand_ins: true}
categories:
  insult: {description: insults}
rules: ["rules/*.yaml"]
"""

RULES = """\
rules:
  - id: insult.family
    category: insult
    severity: high
    action: block
    when: {keywords: [你妈的, 王八蛋]}
    examples:
      match: [你妈的, {text: 你嘛的, action: review}, {text: 你🐴的, action: review}]
      no_match: [你们的]
  - id: insult.trusted_folds
    category: insult
    severity: high
    action: block
    folded_action: block
    when: {keywords: [死变态]}
    examples:
      match: [{text: 死便态, action: block}]
      no_match: [变化]
  - id: insult.near
    category: insult
    severity: medium
    action: review
    normalize: {near_homophones: true}
    when: {keywords: [脑残]}
    examples:
      match: [老残, 脑残]
      no_match: [老师]
  - id: insult.initials
    category: insult
    severity: high
    action: block
    normalize: {initials: true}
    when: {keywords: [操你妈, 去你的吧, rnm]}
    examples:
      match: [{text: cnm, action: review}, {text: CNM你个垃圾, action: review}, 操你妈, rnm]
      no_match: [cnmx, 每天看CNN新闻, qnd]
  - id: insult.near_shared
    category: insult
    severity: medium
    action: review
    normalize: {near_homophones: true}
    when: {keywords: [王八蛋]}
    examples:
      match: [王八蛋, 万八蛋]
      no_match: [王先生]
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    pack = tmp_path_factory.mktemp("folds")
    (pack / "rules").mkdir()
    (pack / "pack.yaml").write_text(PACK, encoding="utf-8")
    (pack / "rules" / "main.yaml").write_text(RULES, encoding="utf-8")
    return load_pack(pack)


def _match(engine: Engine, text: str, rule: str) -> tuple[str, list[str]] | None:
    verdict = engine.classify(ChatEvent(id="e", text=text), NOW)
    found = next((m for m in verdict.matches if m.rule == rule), None)
    return None if found is None else (found.action, [e.text for e in found.evidence])


CASES = [
    # (text, rule, expected action and evidence, or None)
    ("你妈的，闭嘴", "insult.family", ("block", ["你妈的"])),  # exact: the rule's own action
    ("你嘛的，闭嘴", "insult.family", ("review", ["你嘛的"])),  # homophone only: at most review
    ("你🐴的，闭嘴", "insult.family", ("review", ["你🐴的"])),  # an emoji read as its name (马 ma)
    ("你🎠的，闭嘴", "insult.family", ("review", ["你🎠的"])),  # 🎠 旋转木马: its 4th character (马 ma)
    ("你🐴的你妈的", "insult.family", ("block", ["你妈的"])),  # an exact hit too: not capped
    ("王🎱蛋", "insult.family", ("review", ["王🎱蛋"])),  # 🎱 shows 8, read 八 (ba)
    ("你 🐴 的", "insult.family", ("review", ["你 🐴 的"])),  # separators around the stand-in
    ("我🐴上到", "insult.family", None),  # a stand-in emoji alone is nothing
    ("死便态", "insult.trusted_folds", ("block", ["死便态"])),  # folded_action: block
    ("老残", "insult.near", ("review", ["老残"])),  # near-homophone (n/l) in an opted-in rule
    ("老残", "insult.family", None),
    # 万 wan / 王 wang differ by -ang/-an: the rule with the layer reads 万八蛋 as 王八蛋, the rule
    # without it (the same keyword, the same channel) does not.
    # Pinyin initials: a keyword of three or more hanzi as a whole Latin word, a folded reading
    # (cnm is also an acronym); an explicit Latin keyword keeps the rule's action.
    ("cnm，闭嘴", "insult.initials", ("review", ["cnm"])),
    ("CNM你个垃圾", "insult.initials", ("review", ["CNM"])),
    ("qndb", "insult.initials", ("review", ["qndb"])),
    ("rnm", "insult.initials", ("block", ["rnm"])),
    ("cnmd", "insult.initials", None),  # not a whole word
    ("cnm", "insult.family", None),  # the layer is the rule's own
    ("万八蛋", "insult.near_shared", ("review", ["万八蛋"])),
    ("万八蛋", "insult.family", None),
    ("王巴蛋", "insult.family", ("review", ["王巴蛋"])),  # a homophone (ba) for both
    ("王巴蛋", "insult.near_shared", ("review", ["王巴蛋"])),
]


@pytest.mark.parametrize(("text", "rule", "expected"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_folded_readings(engine: Engine, text: str, rule: str, expected: tuple[str, list[str]] | None) -> None:
    found = _match(engine, text, rule)
    if expected is None:
        assert found is None
        return
    assert found is not None
    action, evidence = expected
    assert found[0] == action
    assert sorted(found[1]) == sorted(evidence)


def test_near_homophones_stay_in_the_rules_that_opt_in(engine: Engine) -> None:
    # 脑 nao / 老 lao differ by n/l: only the rule with near_homophones reads them alike.
    verdict = engine.classify(ChatEvent(id="e", text="老残"), NOW)
    assert [m.rule for m in verdict.matches] == ["insult.near"]
    assert "folded reading" in verdict.matches[0].reason or verdict.matches[0].action == "review"


def test_rules_with_and_without_near_homophones_share_one_channel(engine: Engine) -> None:
    # One scan of the text for every rule: the near-homophone twins are written over the
    # homophone view (service/rules/channels.py), not scanned over a view of their own.
    assert len(engine.channels) == 1


def test_a_near_homophone_twin_is_written_over_the_homophone_view() -> None:
    plain, near = tables.homophone_fold, tables.near_homophone_fold
    twins = near_twins(near("脑残"), literal=True)
    assert plain("脑残") in twins and plain("老残") in twins  # n/l: both homophone groups
    assert all(near(twin) == near("脑残") for twin in twins)
    assert len(twins) <= MAX_NEAR_LITERALS
    # More alternatives than that: one pattern with a class per character.
    (regex,) = near_twins(near("脑残"), literal=False)
    assert regex.startswith("[") and plain("老") in regex and plain("脑") in regex


def test_folded_hits_keep_their_exact_part() -> None:
    hits = FoldedHits({1: [(0, 2), (5, 7)], 2: [(3, 4)]}, {(1, (5, 7)), (2, (3, 4))})
    assert hits.exact() == {1: [(0, 2)]}
    assert dict(hits) == {1: [(0, 2), (5, 7)], 2: [(3, 4)]}


def test_packs_without_the_layers_read_no_emoji(tmp_path: Path) -> None:
    pack = tmp_path / "plain"
    (pack / "rules").mkdir(parents=True)
    (pack / "pack.yaml").write_text(PACK.replace("{homophones: true, stand_ins: true}", "{homophones: true}"),
                                    encoding="utf-8")
    rules = RULES.replace(", {text: 你🐴的, action: review}", "")
    (pack / "rules" / "main.yaml").write_text(rules, encoding="utf-8")
    engine = load_pack(pack)
    assert _match(engine, "你🐴的", "insult.family") is None
    assert _match(engine, "你嘛的", "insult.family") == ("review", ["你嘛的"])
