"""Read a rule-pack directory, validate it, compile it and run every rule's examples.

Every problem is collected with its file and line and raised once as `PackError`; a pack is
either wholly valid (and returned as an Engine) or refused. Safety: YAML is read with a safe
loader that refuses anchors/aliases and nesting deeper than Python can walk, every file the pack
names must resolve inside the pack directory (no `../`, no symlinks out) and be a regular file (a
FIFO would block the reader for ever), and the pack's budget (service/rules/budget.py) bounds the
bytes read and the patterns compiled before the work they predict.
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import re
import stat
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec
import yaml

from service.engine.classifier import Engine
from service.engine.counting import counts_for
from service.errors import EventDecodeError, PackError, PackIssue
from service.events import Chat, ChatEvent, Match, Verdict, event_from_object
from service.rules import schema as s
from service.rules.budget import PackBudget, default_budget
from service.rules.compiler import RuleSource, compile_pack
from service.rules.hashbanks import HASH_BANK_MAX_BYTES, BankStats, load_hash_banks
from service.rules.models import load_models

# Examples without `sent_at` are evaluated at this fixed instant, so a pack's tests never depend
# on the day they run.
EXAMPLE_CLOCK: Final = datetime(2025, 1, 1, tzinfo=UTC)
MAX_FILE_BYTES: Final = 64 * 1024 * 1024


class _PackYamlLoader(yaml.SafeLoader):
    """Safe loader that keeps dates as strings (the schema parses them with a UTC offset)."""


_PackYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class _Document:
    """A parsed YAML file with a JSON-path → line index for error locations."""

    relative: str
    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def locate(self, path: str, message: str) -> PackIssue:
        probe = path
        while probe and probe not in self.lines:
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        return PackIssue(self.relative, self.lines.get(probe, 0), message)


class _Reader:
    def __init__(self, directory: Path, budget: PackBudget) -> None:
        self.directory = directory
        self.root = directory.resolve()
        self.issues: list[PackIssue] = []
        self.hasher = hashlib.sha256()
        self.budget = budget
        self.bytes_read = 0

    def confined(self, relative: str, where: PackIssue | None = None) -> Path | None:
        candidate = (self.directory / relative).resolve()
        if not candidate.is_relative_to(self.root):
            issue = where or PackIssue(relative, 0, "")
            self.issues.append(PackIssue(issue.file, issue.line, f"{relative!r} resolves outside the pack directory"))
            return None
        return candidate

    def read_bytes(
        self, path: Path, relative: str, limit: int = MAX_FILE_BYTES, where: PackIssue | None = None
    ) -> bytes | None:
        """The file's bytes, or None with the problem reported at `where` (the line that names the
        file: `pack.yaml:12` for a lexicon) or, without it, at the file itself."""
        try:
            found = path.stat()
            if not stat.S_ISREG(found.st_mode):
                self._problem(relative, where, "not a regular file (a pack reads only files)")
                return None
            if found.st_size > limit:
                self._problem(relative, where, f"file larger than {limit} bytes")
                return None
            if self.bytes_read + found.st_size > self.budget.max_bytes:
                limit_text = f"the pack's files pass {self.budget.max_bytes} bytes (REDLINE_PACK_MAX_BYTES)"
                self._problem(relative, where, limit_text)
                return None
            data = path.read_bytes()
        except FileNotFoundError:
            self._problem(relative, where, "not found")
            return None
        except OSError as exc:
            self._problem(relative, where, f"cannot read: {exc.strerror or exc}")
            return None
        self.bytes_read += len(data)
        self.hasher.update(relative.encode() + b"\0" + data + b"\0")
        return data

    def _problem(self, relative: str, where: PackIssue | None, message: str) -> None:
        if where is None:
            self.issues.append(PackIssue(relative, 0, message))
        else:
            self.issues.append(PackIssue(where.file, where.line, f"file {relative!r}: {message}"))

    def bank_bytes(self, relative: str, where: PackIssue) -> bytes | None:
        path = self.confined(relative, where)
        if path is None:
            return None
        return self.read_bytes(path, relative, HASH_BANK_MAX_BYTES, where)

    def read_text(self, path: Path, relative: str, where: PackIssue | None = None) -> str | None:
        data = self.read_bytes(path, relative, where=where)
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._problem(relative, where, f"not UTF-8 (byte {exc.start})")
            return None

    def yaml(self, relative: str) -> _Document | None:
        path = self.confined(relative)
        if path is None:
            return None
        text = self.read_text(path, relative)
        if text is None:
            return None
        try:
            node = yaml.compose(text, Loader=_PackYamlLoader)
            document = _Document(relative, None)
            if node is not None:
                _index_lines(node, "$", document.lines, set())
            document.data = yaml.load(text, Loader=_PackYamlLoader)
        except _AliasError as exc:
            self.issues.append(PackIssue(relative, exc.line, "YAML anchors and aliases are not allowed in rule packs"))
            return None
        except RecursionError:
            self.issues.append(PackIssue(relative, 0, "YAML nested too deeply"))
            return None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 0
            problem = getattr(exc, "problem", None) or str(exc)
            self.issues.append(PackIssue(relative, line, f"invalid YAML: {problem}"))
            return None
        return document


class _AliasError(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _index_lines(node: yaml.Node, path: str, lines: dict[str, int], seen: set[int]) -> None:
    if id(node) in seen:
        raise _AliasError(node.start_mark.line + 1)
    seen.add(id(node))
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            lines.setdefault(f"{path}.{name}", key.start_mark.line + 1)
            _index_lines(value, f"{path}.{name}", lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, f"{path}[{i}]", lines, seen)


def _convert(document: _Document, data: Any, kind: type[Any], path: str, issues: list[PackIssue]) -> Any:
    try:
        return msgspec.convert(data, kind)
    except RecursionError:
        issues.append(document.locate(path, "nested too deeply"))
        return None
    except msgspec.ValidationError as exc:
        message = str(exc)
        inner = "$"  # where the problem is, from `kind`'s root
        if " - at `$" in message:
            message, _, suffix = message.rpartition(" - at `")
            inner = suffix.rstrip("`")
        issues.append(_explained(document, kind, path, inner, message))
        return None


_UNKNOWN_KEY: Final = re.compile(r"^Object contains unknown field `(?P<key>[^`]*)`$")
_BAD_ENUM: Final = re.compile(r"^Invalid enum value (?P<value>.*)$")


def _explained(document: _Document, kind: type[Any], path: str, inner: str, message: str) -> PackIssue:
    """A validation error at `inner` (under `kind`, found at `path` in the document), located at
    the offending key's own line and saying what would be valid there."""
    where = path + inner[1:]
    name = where.removeprefix(path).lstrip(".") or "value"
    unknown = _UNKNOWN_KEY.match(message)
    if unknown is not None:
        key = unknown["key"]
        struct = s.struct_at(kind, inner)
        valid = s.field_names(struct) if struct is not None else []
        near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f"; did you mean `{near[0]}`?" if near else ""
        listed = f" (valid here: {', '.join(valid)})" if valid else ""
        return document.locate(f"{where}.{key}", f"unknown key `{key}`{hint}{listed}")
    enum = _BAD_ENUM.match(message)
    if enum is not None:
        choices = _choices(kind, inner)
        if name.startswith("unless[") and name.endswith(".action"):
            return document.locate(where, f"{name}: an `unless` can only lower the action, to {' or '.join(choices)} "
                                          f"(got {enum['value']})")
        if choices:
            return document.locate(where, f"{name}: {enum['value']} is not one of {', '.join(choices)}")
    return document.locate(where, f"{name}: {message}")


def _choices(kind: type[Any], inner: str) -> list[str]:
    """The allowed words of the enum field at `inner`, when it is one."""
    parent, _, field = inner.rpartition(".")
    struct = s.struct_at(kind, parent or "$")
    if struct is None:
        return []
    for info in msgspec.structs.fields(struct):
        if info.encode_name == field:
            return [str(a) for a in _literal_args(info.type)]
    return []


def _literal_args(kind: Any) -> tuple[Any, ...]:
    if typing.get_origin(kind) is typing.Literal:
        return typing.get_args(kind)
    for arg in typing.get_args(kind):
        found = _literal_args(arg)
        if found:
            return found
    return ()


def _parse_lexicon(text: str) -> list[str]:
    terms = []
    for line in text.splitlines():
        term = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if term:
            terms.append(term)
    return terms


def load_pack(directory: Path, budget: PackBudget | None = None) -> Engine:
    """Read, validate, compile and self-test the pack in `directory`, or raise PackError."""
    return load_pack_report(directory, budget=budget).engine


@dataclass(frozen=True)
class LoadReport:
    engine: Engine
    examples_run: int
    hash_banks: tuple[BankStats, ...] = ()


def load_pack_report(directory: Path, *, check_examples: bool = True, budget: PackBudget | None = None) -> LoadReport:
    """`load_pack` with the count of examples run; `check_examples=False` is for `rules lint` only
    (a pack is never served untested)."""
    budget = budget or default_budget()
    reader = _Reader(directory, budget)
    if not directory.is_dir():
        # The issue names no path: an HTTP client that asked for a reload learns nothing of the
        # server's file system (the CLI's message names the pack).
        raise PackError(str(directory), [PackIssue(".", 0, "the pack directory does not exist or is not a directory")])
    pack_doc = reader.yaml("pack.yaml")
    if pack_doc is None:
        raise PackError(str(directory), reader.issues)
    pack = _convert(pack_doc, pack_doc.data, s.PackFile, "$", reader.issues)
    if pack is None:
        raise PackError(str(directory), reader.issues)

    lexicons: dict[str, list[str]] = {}
    for name, relative in sorted(pack.lexicons.items()):
        declared = pack_doc.locate(f"$.lexicons.{name}", "")
        path = reader.confined(relative, declared)
        text = reader.read_text(path, relative, declared) if path is not None else None
        # An unreadable lexicon is reported once, at its declaration; it stays declared (empty),
        # so the rules that use it do not also read "unknown lexicon".
        lexicons[name] = _parse_lexicon(text) if text is not None else []
    terms = sum(len(words) for words in lexicons.values())
    if terms > budget.max_patterns:
        # Counted before any term is expanded: expansion (pinyin, homophones) is most of the cost.
        limit = budget.max_patterns
        message = f"the lexicons hold {terms} terms, more than {limit} (REDLINE_PACK_MAX_PATTERNS)"
        reader.issues.append(pack_doc.locate("$.lexicons", message))
        raise PackError(str(directory), reader.issues)
    hash_banks, bank_stats = load_hash_banks(pack, reader.bank_bytes, pack_doc.locate, reader.issues)
    models = load_models(pack, reader.yaml, reader.confined, reader.read_bytes, pack_doc.locate, reader.issues)

    documents = list(_rule_documents(reader, pack, pack_doc))
    sources: list[RuleSource] = []
    for document in documents:
        if not isinstance(document.data, dict):
            reader.issues.append(PackIssue(document.relative, 1, "a rule file is a mapping with a `rules:` list"))
            continue
        raw_rules = document.data.get("rules")
        if not isinstance(raw_rules, list):
            reader.issues.append(document.locate("$", "a rule file needs a `rules:` list"))
            continue
        extra = set(document.data) - {"rules"}
        if extra:
            reader.issues.append(document.locate("$", f"unknown top-level keys {sorted(extra)}"))
        for i, raw in enumerate(raw_rules):
            rule_path = f"$.rules[{i}]"
            spec = _convert(document, raw, s.RuleSpec, rule_path, reader.issues)
            if spec is not None:
                sources.append(RuleSource(spec, rule_path, document.locate))

    if not sources and not reader.issues:
        reader.issues.append(pack_doc.locate("$.rules", "the pack has no rules"))
    digest = "sha256:" + reader.hasher.hexdigest()
    issues = reader.issues
    engine = compile_pack(
        pack, sources, lexicons, digest, issues, pack_doc.locate,
        hash_banks=hash_banks, max_patterns=budget.max_patterns, models=models,
    )
    if engine is None or issues:
        raise PackError(str(directory), issues)
    examples_run = 0
    if check_examples:
        issues.extend(run_examples(engine, sources))
        examples_run = sum(len(x.spec.examples.match) + len(x.spec.examples.no_match) for x in sources)
    if issues:
        raise PackError(str(directory), issues)
    return LoadReport(engine, examples_run, tuple(bank_stats))


def _rule_documents(reader: _Reader, pack: s.PackFile, pack_doc: _Document) -> Iterator[_Document]:
    seen: set[str] = set()
    for i, pattern in enumerate(pack.rules):
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            reader.issues.append(pack_doc.locate(f"$.rules[{i}]", f"{pattern!r} must stay inside the pack"))
            continue
        matches = sorted(glob.glob(pattern, root_dir=reader.directory))
        if not matches:
            reader.issues.append(pack_doc.locate(f"$.rules[{i}]", f"{pattern!r} matches no file"))
        for relative in matches:
            if relative in seen:
                continue
            seen.add(relative)
            document = reader.yaml(relative)
            if document is not None:
                yield document


def example_event(example: s.Example, rule_id: str, index: int) -> ChatEvent:
    """The event an example stands for (raises EventDecodeError when it is not a valid event)."""
    event_id = f"example:{rule_id}:{index}"
    if isinstance(example, str):
        return ChatEvent(id=event_id, text=example, chat=Chat(id="example"))
    fields: dict[str, Any] = {"id": event_id, "chat": {"id": "example"}}
    if example.event is not None:
        fields.update(example.event)
    if example.text is not None:
        fields["text"] = example.text
    return event_from_object(fields)


def run_examples(engine: Engine, sources: list[RuleSource]) -> list[PackIssue]:
    """Every rule's examples through the whole engine: what must match does, what must not doesn't."""
    issues: list[PackIssue] = []
    for source in sources:
        spec = source.spec
        for kind, examples in (("match", spec.examples.match), ("no_match", spec.examples.no_match)):
            for i, example in enumerate(examples):
                path = f"{source.path}.examples.{kind}[{i}]"
                try:
                    event = example_event(example, spec.id, i)
                except EventDecodeError as exc:
                    issues.append(source.locate(path, f"example is not a valid event: {exc}"))
                    continue
                verdict = _classify_example(engine, event, example)
                match = next((m for m in verdict.matches if m.rule == spec.id), None)
                label = _describe(example)
                if kind == "match" and match is None:
                    issues.append(source.locate(
                        path, f"example should match rule {spec.id!r} but does not: {label}; {_verdict_said(verdict)}"
                    ))
                elif kind == "no_match" and match is not None:
                    issues.append(source.locate(
                        path, f"example should not match rule {spec.id!r} but does: {label}; {_matched(match)}"
                    ))
                elif (
                    match is not None
                    and isinstance(example, s.ExampleSpec)
                    and example.action
                    and match.action != example.action
                ):
                    issues.append(source.locate(
                        path, f"example expects action {example.action!r}, rule gave {match.action!r}: {label}; "
                        f"{_matched(match)}"
                    ))
    return issues


def _classify_example(engine: Engine, event: ChatEvent, example: s.Example) -> Verdict:
    """As the stream would: `seen: N` is the count every counter of the event reads."""
    seen = example.seen if isinstance(example, s.ExampleSpec) else None
    if seen is None:
        return engine.classify(event, EXAMPLE_CLOCK)
    sightings = engine.evaluate(event, EXAMPLE_CLOCK).sightings
    return engine.classify(event, EXAMPLE_CLOCK, counts=counts_for(sightings, seen))


def _verdict_said(verdict: Verdict) -> str:
    """What the engine decided instead, for an example that should have matched."""
    if not verdict.matches:
        return f"the verdict was {verdict.action} with no match"
    others = ", ".join(f"{m.rule} ({m.action})" for m in verdict.matches)
    return f"the verdict was {verdict.action}, matched by {others}"


def _matched(match: Match) -> str:
    """The spans that made `match` hold, as a reviewer reads them."""
    spans = [f"{e.text!r} in {e.field} at {e.start}-{e.end}" for e in match.evidence[:3]]
    more = f" and {len(match.evidence) - 3} more" if len(match.evidence) > 3 else ""
    return f"matched {', '.join(spans)}{more}" if spans else "matched on the event's other fields (no text span)"


def _describe(example: s.Example) -> str:
    if isinstance(example, str):
        return repr(example[:60])
    if example.text is not None:
        return repr(example.text[:60])
    return repr(msgspec.json.encode(example.event).decode()[:80])
