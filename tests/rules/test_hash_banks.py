"""Hash banks in rule packs: loading, quality filtering, located errors, the digest, verdict evidence."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loadtest.make_demo_bank import demo_hash, flip_bits
from service.errors import PackError
from service.events import Chat, ChatEvent, Media
from service.rules.hashbanks import BankStats
from service.rules.loader import load_pack, load_pack_report

PACKS = Path(__file__).resolve().parent.parent / "packs"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def media_copy(tmp_path: Path) -> Path:
    target = tmp_path / "media"
    shutil.copytree(PACKS / "media", target)
    return target


def refused(directory: Path) -> list[str]:
    with pytest.raises(PackError) as info:
        load_pack(directory)
    return [str(issue) for issue in info.value.issues]


def image(*pdq: str, event_type: str = "image") -> ChatEvent:
    return ChatEvent(id="m", type=event_type, chat=Chat(id="c"), media=Media(pdq=tuple(pdq)))  # type: ignore[arg-type]


def test_banks_load_with_low_quality_lines_counted() -> None:
    report = load_pack_report(PACKS / "media")
    assert report.hash_banks == (
        BankStats("demo", "banks/demo.txt", 60, 4, 31),  # every 16th line has quality 30
        BankStats("demo_strict", "banks/demo.txt", 0, 64, 8),  # min_quality 95 drops all 90s
    )


def test_pack_level_min_quality_applies_where_a_bank_sets_none(media_copy: Path) -> None:
    pack = media_copy / "pack.yaml"
    pack.write_text(pack.read_text(encoding="utf-8") + "hash_min_quality: 20\n", encoding="utf-8")
    report = load_pack_report(media_copy, check_examples=False)
    assert [(b.name, b.hashes, b.ignored_low_quality) for b in report.hash_banks] == [
        ("demo", 64, 0),
        ("demo_strict", 0, 64),  # its own min_quality wins
    ]


def test_verdict_evidence_names_frame_label_and_distance() -> None:
    engine = load_pack(PACKS / "media")
    near = flip_bits(demo_hash("redline-demo", 3), 20)
    unrelated = demo_hash("unrelated", 0)
    verdict = engine.classify(image(unrelated, near, event_type="video"), NOW)
    assert verdict.action == "block"
    (match,) = verdict.matches
    assert [(e.field, e.start, e.end, e.text) for e in match.evidence] == [
        ("media.pdq[1]", 0, 64, "synthetic-test-0003 d=20")
    ]
    assert engine.classify(image(near, event_type="text"), NOW).action == "allow"  # images and videos only
    assert engine.classify(image(unrelated), NOW).action == "allow"


def test_bank_errors_are_located_by_file_and_line(media_copy: Path) -> None:
    good = demo_hash("x", 1)
    (media_copy / "banks" / "demo.txt").write_text(
        "\n".join([
            "# comment",
            f"{good} ok 90",
            f"{good[:-1]} short",  # 63 digits
            f"{good[:-2]}zz bad-hex",
            f"{good} bad-quality 101",
            good,  # no label
            "",
            f"{good} label 90 extra",
            f"{good} fine",  # quality is optional
        ]) + "\n",
        encoding="utf-8",
    )
    assert refused(media_copy) == [
        "banks/demo.txt:3: hash must be 64 hex digits, got 63",
        "banks/demo.txt:4: hash is not hexadecimal: '" + good[:-2] + "zz'",
        "banks/demo.txt:5: quality must be an integer 0-100, got '101'",
        "banks/demo.txt:6: expected `<64 hex digits> <label> [quality 0-100]`",
        "banks/demo.txt:8: expected `<64 hex digits> <label> [quality 0-100]`",
    ]


def test_unknown_bank_missing_file_and_escape_are_located(media_copy: Path) -> None:
    pack = media_copy / "pack.yaml"
    text = pack.read_text(encoding="utf-8")
    text = text.replace("demo_strict: {file: banks/demo.txt,", "demo_strict: {file: banks/missing.txt,")
    text += "  outside: {file: ../../etc/passwd}\n  wide: {file: banks/demo.txt, max_distance: 65}\n"
    pack.write_text(text, encoding="utf-8")
    rules = media_copy / "rules" / "media.yaml"
    rules.write_text(rules.read_text(encoding="utf-8").replace("banks: [demo]", "banks: [demo, nope]"))
    assert refused(media_copy) == [
        # msgspec names a mapping key `[...]`, so the line is that of `hash_banks:`
        "pack.yaml:8: hash_banks[...].max_distance: Expected `int` <= 64",
    ]
    pack.write_text(text.replace(", max_distance: 65", ""), encoding="utf-8")
    assert refused(media_copy) == [
        "pack.yaml:10: file 'banks/missing.txt': not found",
        "pack.yaml:11: '../../etc/passwd' resolves outside the pack directory",
        "rules/media.yaml:7: unknown hash bank 'nope' (declare it in pack.yaml)",
    ]


def test_bank_files_count_in_the_digest(media_copy: Path) -> None:
    before = load_pack(media_copy).ruleset.digest
    bank = media_copy / "banks" / "demo.txt"
    bank.write_text(bank.read_text(encoding="utf-8") + "# one more comment\n", encoding="utf-8")
    assert load_pack(media_copy).ruleset.digest != before
