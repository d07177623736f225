"""`redline replay`: run recorded events through a baseline and a candidate pack, report what changes.

Both packs load with the normal loader (a candidate whose own examples fail is refused, as at
serve time). Each event is classified by both engines with the same clock: its `sent_at`, or
`--now` for events without one (default 2025-01-01T00:00:00Z, the examples' clock), so calendar
windows and the report are the same on every run and every machine.

Exit: 0 nothing to fail on, 1 changes that `--fail-on` counts, 2 unusable input (events file
unreadable or without a single valid event, a pack refused, a bad flag).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, TextIO

from service.admission import EventLimits, decode_checkable
from service.batches import SLICE_CHARS, slices_by_chars
from service.engine.classifier import Engine
from service.errors import EventDecodeError, PackError
from service.events import ACTION_RANK, ChatEvent, Match, Verdict
from service.rules.loader import EXAMPLE_CLOCK, load_pack
from service.settings import Settings, bundled_rules_dir

FailOn = Literal["any", "action", "none"]
FAIL_ON: Final[tuple[FailOn, ...]] = ("any", "action", "none")
TEXT_PREVIEW_CHARS: Final = 80
# Events decoded before both engines decide them (in slices of service.batches.SLICE_CHARS).
REPLAY_BATCH_EVENTS: Final = 2048
MAX_MALFORMED_SHOWN: Final = 20


def add_parser(commands: Any) -> None:
    """Register `replay` on the CLI's subparsers (`commands` is argparse's subparsers action)."""
    parser = commands.add_parser(
        "replay", help="re-run recorded events against a candidate pack and report which verdicts change"
    )
    parser.add_argument("--events", type=Path, required=True, help="ChatEvent JSON lines (- for stdin)")
    parser.add_argument("--rules", type=Path, required=True, help="candidate rule pack directory")
    parser.add_argument("--baseline", type=Path, help="baseline pack directory (default: the bundled pack)")
    parser.add_argument("--now", help="RFC 3339 clock for events without sent_at (default 2025-01-01T00:00:00Z)")
    parser.add_argument("--examples", type=int, default=3, help="example events shown per change (default 3)")
    parser.add_argument(
        "--fail-on", choices=FAIL_ON, default="any",
        help="exit 1 on: any change of matches or action (default), verdict action changes only, or never",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


@dataclass
class Change:
    """How often one kind of change happened, with the first few events that showed it."""

    count: int = 0
    examples: list[dict[str, str]] = field(default_factory=list)

    def add(self, event: ChatEvent, limit: int) -> None:
        self.count += 1
        if len(self.examples) < limit:
            self.examples.append({"event_id": event.id, "text": _preview(event)})


@dataclass
class Report:
    baseline: dict[str, str]
    candidate: dict[str, str]
    lines: int = 0
    malformed: int = 0
    classified: int = 0
    changed_events: int = 0
    action_changed_events: int = 0
    malformed_lines: list[dict[str, Any]] = field(default_factory=list)
    actions: dict[str, Change] = field(default_factory=dict)  # "allow→block"
    rules: dict[str, dict[str, Change]] = field(default_factory=dict)  # rule → added|removed|changed
    categories: dict[str, dict[str, Change]] = field(default_factory=dict)

    def failed(self, fail_on: FailOn) -> bool:
        if fail_on == "none":
            return False
        return (self.changed_events if fail_on == "any" else self.action_changed_events) > 0

    def as_json(self, fail_on: FailOn) -> dict[str, Any]:
        def changes(table: dict[str, dict[str, Change]]) -> dict[str, Any]:
            return {k: {kind: vars(c) for kind, c in sorted(v.items())} for k, v in sorted(table.items())}

        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "events": {
                "lines": self.lines,
                "malformed": self.malformed,
                "classified": self.classified,
                "changed": self.changed_events,
                "action_changed": self.action_changed_events,
            },
            "malformed_lines": self.malformed_lines,
            "actions": {k: vars(c) for k, c in sorted(self.actions.items())},
            "rules": changes(self.rules),
            "categories": changes(self.categories),
            "fail_on": fail_on,
            "failed": self.failed(fail_on),
        }


def replay(events: Iterator[tuple[int, bytes]], baseline: Engine, candidate: Engine, now: datetime,
           *, examples: int = 3, limits: EventLimits | None = None) -> Report:
    """Classify every event with both engines and tally the differences; events are read as
    `POST /check` and `redline check` read them (`id` optional, the same limits)."""
    report = Report(_describe(baseline), _describe(candidate))
    limits = limits or EventLimits.from_settings(Settings.model_validate({}))
    pending: list[ChatEvent] = []
    for number, line in events:
        report.lines += 1
        try:
            event, _ = decode_checkable(line, limits)  # unknown fields: as the stream, accepted
        except EventDecodeError as exc:
            report.malformed += 1
            if len(report.malformed_lines) < MAX_MALFORMED_SHOWN:
                report.malformed_lines.append({"line": number, "error": str(exc)})
            continue
        report.classified += 1
        pending.append(event)
        if len(pending) >= REPLAY_BATCH_EVENTS:
            _compare_batch(report, pending, baseline, candidate, now, examples)
            pending = []
    _compare_batch(report, pending, baseline, candidate, now, examples)
    return report


def _compare_batch(report: Report, events: list[ChatEvent], baseline: Engine, candidate: Engine, now: datetime,
                   examples: int) -> None:
    """Both engines' verdicts of `events`, compared in order: one batch call per engine and slice."""
    for part in slices_by_chars(events, SLICE_CHARS):
        piece = events[part.start : part.stop]
        before, after = baseline.classify_batch(piece, now), candidate.classify_batch(piece, now)
        for event, old, new in zip(piece, before, after, strict=True):
            _compare(report, event, old, new, examples)


def _compare(report: Report, event: ChatEvent, before: Verdict, after: Verdict, limit: int) -> None:
    changed = False
    if before.action != after.action:
        changed = True
        report.action_changed_events += 1
        report.actions.setdefault(f"{before.action}→{after.action}", Change()).add(event, limit)
    old = {m.rule: m for m in before.matches}
    new = {m.rule: m for m in after.matches}
    for rule in sorted(old.keys() | new.keys()):
        kind = _kind(old.get(rule), new.get(rule))
        if kind is not None:
            changed = True
            report.rules.setdefault(rule, {}).setdefault(kind, Change()).add(event, limit)
    old_categories, new_categories = _by_category(before.matches), _by_category(after.matches)
    for category in sorted(old_categories.keys() | new_categories.keys()):
        was, now = old_categories.get(category), new_categories.get(category)
        kind = "added" if was is None else "removed" if now is None else "changed" if was != now else None
        if kind is not None:
            report.categories.setdefault(category, {}).setdefault(kind, Change()).add(event, limit)
    if changed:
        report.changed_events += 1


def _kind(was: Match | None, now: Match | None) -> str | None:
    if was is None:
        return "added"
    if now is None:
        return "removed"
    if (was.action, was.severity, was.shadow) != (now.action, now.severity, now.shadow):
        return "changed"
    return None


def _by_category(matches: tuple[Match, ...]) -> dict[str, str]:
    """Category → strongest action among its non-shadow matches (shadow-only: "shadow")."""
    strongest: dict[str, str] = {}
    for match in matches:
        action = "shadow" if match.shadow else match.action
        known = strongest.get(match.category)
        if known is None or known == "shadow" or (action != "shadow" and ACTION_RANK[action] > ACTION_RANK[known]):
            strongest[match.category] = action
    return strongest


def _describe(engine: Engine) -> dict[str, str]:
    ref = engine.ruleset
    return {"name": ref.name, "version": ref.version, "digest": ref.digest}


def _preview(event: ChatEvent) -> str:
    text = event.text or (event.file.name if event.file else "") or (event.link.url if event.link else "")
    if not text and event.media is not None and event.media.pdq:
        text = f"[{event.type}: {len(event.media.pdq)} pdq hash(es)]"
    return text if len(text) <= TEXT_PREVIEW_CHARS else text[: TEXT_PREVIEW_CHARS - 1] + "…"


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as stream:
        yield from _numbered(stream)


def _stdin_lines() -> Iterator[tuple[int, bytes]]:
    yield from _numbered(sys.stdin.buffer)


def _numbered(stream: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(stream, start=1):
        stripped = line.strip()
        if stripped:
            yield number, stripped


def render_text(report: Report, fail_on: FailOn) -> str:
    b, c = report.baseline, report.candidate
    out = [
        f"baseline:  {b['name']} {b['version']} ({b['digest']})",
        f"candidate: {c['name']} {c['version']} ({c['digest']})",
        f"events: {report.lines} read, {report.malformed} malformed, {report.classified} classified, "
        f"{report.changed_events} with changed matches, {report.action_changed_events} with a changed action",
    ]
    out.extend(f"  malformed line {m['line']}: {m['error']}" for m in report.malformed_lines)
    if report.actions:
        out.append("verdict actions:")
        for key, change in sorted(report.actions.items()):
            out.append(f"  {key}: {change.count}")
            out.extend(_example_lines(change))
    for title, table in (("rules", report.rules), ("categories", report.categories)):
        if table:
            out.append(f"{title}:")
            for name, kinds in sorted(table.items()):
                summary = ", ".join(f"{kind} {change.count}" for kind, change in sorted(kinds.items()))
                out.append(f"  {name}: {summary}")
                for kind, change in sorted(kinds.items()):
                    out.extend(_example_lines(change, kind))
    if not report.changed_events:
        out.append("no verdict changes")
    out.append(f"result: {'FAIL' if report.failed(fail_on) else 'ok'} (--fail-on {fail_on})")
    return "\n".join(out) + "\n"


def _example_lines(change: Change, kind: str = "") -> list[str]:
    prefix = f"{kind} " if kind else ""
    return [f"      {prefix}e.g. {x['event_id']}: {json.dumps(x['text'], ensure_ascii=False)}" for x in change.examples]


def _parse_now(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def run(
    args: argparse.Namespace,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
    limits: EventLimits | None = None,
) -> int:
    """The `redline replay` command."""
    fail_on: FailOn = args.fail_on
    if args.examples < 0:
        print("--examples must be ≥ 0", file=stderr)
        return 2
    now = EXAMPLE_CLOCK if args.now is None else _parse_now(args.now)
    if now is None:
        print(f"--now {args.now!r} is not an RFC 3339 timestamp with an offset", file=stderr)
        return 2
    from_stdin = str(args.events) == "-"
    if not from_stdin and not args.events.is_file():
        print(f"events file {str(args.events)!r} not found", file=stderr)
        return 2
    engines: list[Engine] = []
    for role, directory in (("baseline", args.baseline or bundled_rules_dir()), ("candidate", args.rules)):
        try:
            engines.append(load_pack(directory))
        except PackError as exc:
            print(f"{role}: {exc}", file=stderr)
            return 2
    try:
        lines = _stdin_lines() if from_stdin else _lines(args.events)
        report = replay(lines, engines[0], engines[1], now, examples=args.examples, limits=limits)
    except OSError as exc:
        print(f"cannot read events: {exc}", file=stderr)
        return 2
    if args.json:
        stdout.write(json.dumps(report.as_json(fail_on), ensure_ascii=False, indent=2) + "\n")
    else:
        stdout.write(render_text(report, fail_on))
    if report.classified == 0:
        print("no valid event in the events file", file=stderr)
        return 2
    return 1 if report.failed(fail_on) else 0
