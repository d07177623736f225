"""The `redline` command: serve, dev, check, rules lint|test|schema, replay.

Exit codes: 0 success; 1 some input lines were malformed (check), examples failed (rules test) or
verdicts would change (replay, see service/replay.py); 2 the rule pack or the command line is unusable.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from service import replay
from service.admission import EventLimits, decode_checkable, refusal
from service.batches import SLICE_CHARS, slices_by_chars
from service.engine.classifier import Engine
from service.errors import ConfigError, EventDecodeError, PackError
from service.events import Chat, ChatEvent, encode_verdict
from service.rules.loader import load_pack, load_pack_report
from service.rules.schema import json_schemas
from service.settings import Settings, load_settings
from service.training import cli as training_cli
from service.version import installed_version

CHECK_BATCH_LINES = 512  # lines decoded and classified together: one clock read per batch


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redline", description="Red-line moderation for group chats.")
    parser.add_argument("--version", action="version", version=f"redline {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API, and the Kafka stream when a bootstrap is set")
    serve.add_argument("--rules", type=Path, help="rule pack directory (env REDLINE_RULES)")
    serve.add_argument("--port", type=int, help="HTTP port (env REDLINE_HTTP_PORT)")

    dev = commands.add_parser("dev", help="embedded broker + service + sample traffic, with a live summary")
    dev.add_argument("--rules", type=Path, help="rule pack directory")
    dev.add_argument("--port", type=int, help="HTTP port (env REDLINE_HTTP_PORT, default 8080)")
    dev.add_argument("--rate", type=float, default=200.0, help="sample events per second (default 200)")
    dev.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")

    check = commands.add_parser(
        "check", help="classify ChatEvent JSON lines from stdin, one verdict line each (errors on stderr)"
    )
    check.add_argument("--rules", type=Path, help="rule pack directory")
    check.add_argument("--text", help="classify this one text message instead of reading stdin")
    check.add_argument("--strict", action="store_true", help="refuse events with unknown fields (else: warn)")

    rules = commands.add_parser("rules", help="work on rule packs")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True)
    lint = rule_commands.add_parser("lint", help="validate and compile a pack (every error at once)")
    lint.add_argument("directory", type=Path)
    test = rule_commands.add_parser("test", help="validate, compile and run every rule's examples")
    test.add_argument("directory", type=Path)
    schema = rule_commands.add_parser("schema", help="print the JSON Schemas of pack.yaml and rule files")
    schema.add_argument("--output", type=Path, help="write to this file instead of stdout")
    replay.add_parser(commands)
    training_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("serve", "dev", "check", "replay"):
        try:
            settings = load_settings(_flags(args))
        except ConfigError as exc:
            for line in str(exc).splitlines():
                print(f"redline {args.command}: {line}", file=sys.stderr)
            return 2
    if args.command == "serve":
        from service.serve import run as run_serve

        return run_serve(settings)
    if args.command == "dev":
        from service.dev import run as run_dev

        return run_dev(settings, rate=args.rate, duration=args.duration)
    if args.command == "check":
        return _check(settings, args.text, sys.stdin.buffer, sys.stdout.buffer, strict=args.strict)
    if args.command == "replay":
        return replay.run(args, limits=EventLimits.from_settings(settings))
    if args.command == "train":  # service/training: pack text models
        return training_cli.run(args, "redline train " + shlex.join(sys.argv[2:] if argv is None else argv[1:]))
    if args.rules_command == "schema":
        return _schema(args.output)
    return _rules(args.rules_command, args.directory)


def _flags(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    """The settings given as flags: field → (the flag, its value), for load_settings' messages."""
    flags: dict[str, tuple[str, Any]] = {}
    if getattr(args, "rules", None) is not None:
        flags["rules"] = ("--rules", args.rules)
    if getattr(args, "port", None) is not None:
        flags["http_port"] = ("--port", args.port)
    return flags


def _load(directory: Path) -> Engine | None:
    try:
        return load_pack(directory)
    except PackError as exc:
        print(exc, file=sys.stderr)
        return None


def _check(settings: Settings, text: str | None, stdin: BinaryIO, stdout: BinaryIO, *, strict: bool = False) -> int:
    """Verdict lines on stdout, in input order; a line that is no admissible event gets one line on
    stderr naming its number and the problem (exit 1 at the end); blank lines are skipped. Fields
    the contract does not know are named on stderr and ignored, or refused with `strict`."""
    engine = _load(settings.rules)
    if engine is None:
        return 2
    limits = EventLimits.from_settings(settings)
    if text is not None:
        single = ChatEvent(id="cli", text=text, chat=Chat(id="cli"))
        found = refusal(single, limits)
        if found is not None:
            print(f"redline check: --text: {found.message}", file=sys.stderr)
            return 2
        stdout.write(encode_verdict(engine.classify(single, datetime.now(UTC))) + b"\n")
        stdout.flush()
        return 0
    failed = False
    for batch in _batches(stdin):
        now = datetime.now(UTC)
        events: list[ChatEvent] = []
        for number, line in batch:
            if not line.strip():
                continue
            try:
                event, unknown = decode_checkable(line, limits)
            except EventDecodeError as exc:
                failed = True
                sys.stderr.write(f"redline check: line {number}: {exc}\n")
                continue
            if unknown:
                fields = ", ".join(unknown)
                if strict:
                    failed = True
                    sys.stderr.write(f"redline check: line {number}: unknown fields (--strict): {fields}\n")
                    continue
                sys.stderr.write(f"redline check: line {number}: unknown fields ignored: {fields}\n")
            events.append(event)
        out = [
            encode_verdict(verdict)
            for part in slices_by_chars(events, SLICE_CHARS)
            for verdict in engine.classify_batch(events[part.start : part.stop], now)
        ]
        if out:
            stdout.write(b"\n".join(out) + b"\n")
            stdout.flush()
    return 1 if failed else 0


def _batches(stream: BinaryIO) -> Iterator[list[tuple[int, bytes]]]:
    batch: list[tuple[int, bytes]] = []
    for number, line in enumerate(stream, start=1):
        batch.append((number, line.rstrip(b"\r\n")))
        if len(batch) >= CHECK_BATCH_LINES:
            yield batch
            batch = []
    if batch:
        yield batch


def _rules(command: str, directory: Path) -> int:
    try:
        report = load_pack_report(directory, check_examples=command == "test")
    except PackError as exc:
        print(exc, file=sys.stderr)
        return 1 if command == "test" and _only_example_failures(exc) else 2
    ruleset = report.engine.ruleset
    summary = f"{ruleset.name} {ruleset.version} ({ruleset.digest}): {len(report.engine.rules)} rules"
    if command == "test":
        summary += f", {report.examples_run} examples passed"
    else:
        summary += ", valid"
    print(summary)
    for bank in report.hash_banks:
        print(f"  hash bank {bank.name} ({bank.file}): {bank.hashes} hashes, max distance {bank.max_distance}, "
              f"{bank.ignored_low_quality} low-quality lines ignored")
    return 0


def _only_example_failures(exc: PackError) -> bool:
    return all("example" in issue.message for issue in exc.issues)


def _schema(output: Path | None) -> int:
    text = json.dumps(json_schemas(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
    return 0
