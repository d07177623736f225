"""docs/events.md is the wire contract, and cannot drift from service/events.py.

- every field of the ChatEvent and Verdict structs (nested ones included) has a row, and every row
  is a field, with the code's default, enum values and bounds;
- every ```json ChatEvent / Verdict``` example decodes strictly with `service.events`, every event
  example is accepted by `POST /check`, and every verdict example is consistent (action and severity
  follow from its matches; evidence offsets index the original text of the example event);
- every ```json request``` example gets exactly the ```json ErrorBody``` shown after it from the app;
- the dead-letter reasons and headers are those of service/stream/dead_letters.py.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from service.api.app import create_app
from service.api.schemas import ErrorBody
from service.errors import EventDecodeError
from service.events import (
    ACTION_RANK,
    EVENT_TYPES,
    SEVERITY_RANK,
    ChatEvent,
    Verdict,
    decode_event,
    decode_verdict,
)
from service.kafka import dead_letters
from service.rules.loader import load_pack
from service.runtime import Runtime
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "events.md"
MINI_PACK = REPO / "tests" / "packs" / "mini"
EXAMPLE = re.compile(r"^```json (\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
ROW = re.compile(r"^\|\s*`([a-z0-9_.\[\]]+)`\s*\|([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|$")
BOUND_TEXT = {2**53: "2⁵³", 1e12: "10¹²"}


@cache
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of the `## title` section, up to the next `## ` heading."""
    text = doc_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def rows(text: str) -> dict[str, tuple[str, str, str, str]]:
    """Field path → (type, default, limits, meaning) of the field tables in `text`."""
    found: dict[str, tuple[str, str, str, str]] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} documented twice"
            found[match.group(1)] = tuple(c.strip() for c in match.group(2, 3, 4, 5))  # type: ignore[assignment]
    return found


@dataclass(frozen=True)
class Field:
    annotation: Any
    required: bool
    default: Any


def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of a union (None dropped), each with Annotated stripped."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
    else:
        args = [annotation]
    return [typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a for a in args]


def struct_fields(struct: type, prefix: str = "") -> dict[str, Field]:
    """Every field of a msgspec struct and of the structs inside it, by JSON path (`matches[].rule`)."""
    out: dict[str, Field] = {}
    for info in msgspec.structs.fields(struct):
        path = prefix + info.name
        default = info.default_factory() if info.default_factory is not msgspec.NODEFAULT else info.default
        out[path] = Field(info.type, info.required, default)
        for alternative in _unwrap(info.type):
            if isinstance(alternative, type) and issubclass(alternative, msgspec.Struct):
                out.update(struct_fields(alternative, f"{path}."))
            elif typing.get_origin(alternative) is tuple:
                item = _unwrap(typing.get_args(alternative)[0])[0]
                if isinstance(item, type) and issubclass(item, msgspec.Struct):
                    out.update(struct_fields(item, f"{path}[]."))
    return out


def _literals(annotation: Any) -> set[str]:
    found: set[str] = set()
    if typing.get_origin(annotation) is typing.Literal:
        found.update(typing.get_args(annotation))
    for arg in typing.get_args(annotation):
        if not isinstance(arg, msgspec.Meta):
            found |= _literals(arg)
    return found


def _metas(annotation: Any) -> list[msgspec.Meta]:
    found = [a for a in typing.get_args(annotation) if isinstance(a, msgspec.Meta)]
    for arg in typing.get_args(annotation):
        if not isinstance(arg, msgspec.Meta):
            found += _metas(arg)
    return found


@pytest.mark.parametrize(("title", "struct"), [("ChatEvent", ChatEvent), ("Verdict", Verdict)])
def test_every_field_is_documented_and_every_row_is_a_field(title: str, struct: type) -> None:
    fields = struct_fields(struct)
    documented = rows(section(title))
    assert sorted(set(fields) - set(documented)) == [], f"document these fields in docs/events.md, {title}"
    assert sorted(set(documented) - set(fields)) == [], f"not fields of {title} any more"


@pytest.mark.parametrize(("title", "struct"), [("ChatEvent", ChatEvent), ("Verdict", Verdict)])
def test_rows_state_the_codes_defaults_enums_and_bounds(title: str, struct: type) -> None:
    documented = rows(section(title))
    for path, field in struct_fields(struct).items():
        if path not in documented:
            continue  # reported by the test above
        _, default, limits, meaning = documented[path]
        assert meaning, path
        if field.required:
            assert default.startswith("required"), f"{path} is required"
        elif path != "id":
            shown = json.dumps(list(field.default) if isinstance(field.default, tuple) else field.default,
                               ensure_ascii=False)
            assert f"`{shown}`" in default, f"{path}: default is {shown}"
        choices = _literals(field.annotation)
        stated = set(re.findall(r"`([a-z_]+)`", limits))
        if choices and title == "ChatEvent":
            assert stated == choices, f"{path}: accepted values are {sorted(choices)}"
        elif choices:
            assert stated and stated <= choices, f"{path}: values are among {sorted(choices)}"
        for meta in _metas(field.annotation):
            if meta.ge is not None:
                assert f"{meta.ge} …" in limits, f"{path}: lower bound {meta.ge}"
            if meta.le is not None:
                assert f"… {BOUND_TEXT.get(meta.le, meta.le)}" in limits, f"{path}: upper bound {meta.le}"
            if meta.pattern == "^[0-9a-fA-F]{64}$":
                assert "64 hexadecimal digits" in limits, f"{path}: 64 hex digits"
            if meta.tz:
                assert "offset is required" in limits, f"{path}: needs a time zone"


def test_id_may_be_omitted_only_on_check() -> None:
    """`id` is required on the wire; the row says `POST /check` assigns one (AdHocEvent)."""
    assert rows(section("ChatEvent"))["id"][1].startswith("required (`POST /check`")
    with pytest.raises(EventDecodeError, match="missing required field `id`"):
        decode_event(b'{"text": "hi"}')


# --- examples -----------------------------------------------------------------------------------------

def examples(kind: str) -> list[str]:
    return [body for found_kind, body in EXAMPLE.findall(doc_text()) if found_kind == kind]


def test_every_json_block_is_a_typed_example() -> None:
    kinds = {kind for kind, _ in EXAMPLE.findall(doc_text())}
    assert kinds <= {"ChatEvent", "Verdict", "request", "ErrorBody"}
    assert doc_text().count("```json") == len(EXAMPLE.findall(doc_text()))


def test_event_examples_decode_and_cover_every_event_type() -> None:
    events = [decode_event(body) for body in examples("ChatEvent")]
    for body in examples("ChatEvent"):
        msgspec.json.decode(body, type=ChatEvent, strict=True)
    assert {e.type for e in events} == set(EVENT_TYPES)
    assert len({e.id for e in events}) == len(events), "example ids are unique"


def _event_examples() -> dict[str, dict[str, Any]]:
    return {(e := json.loads(body))["id"]: e for body in examples("ChatEvent")}


def _field_value(event: dict[str, Any], field: str) -> str:
    if field == "text":
        return str(event.get("text", ""))
    part, name = field.split(".")
    return str(event[part][name])


def test_verdict_examples_decode_and_are_consistent() -> None:
    events = _event_examples()
    verdicts = [decode_verdict(body) for body in examples("Verdict")]
    assert len(verdicts) >= 3
    for verdict in verdicts:
        msgspec.json.decode(examples("Verdict")[verdicts.index(verdict)], type=Verdict, strict=True)
        live = [m for m in verdict.matches if not m.shadow]
        action = max((m.action for m in live), key=ACTION_RANK.__getitem__, default="allow")
        severity = max((m.severity for m in live if m.action != "allow"), key=SEVERITY_RANK.__getitem__,
                       default="none")
        assert (verdict.action, verdict.severity) == (action, severity), verdict.event_id
        assert verdict.ruleset.digest.startswith("sha256:") and len(verdict.ruleset.digest) == 71
        assert verdict.decided_at.tzinfo is not None
        event = events[verdict.event_id]  # every verdict shown is the verdict of an event shown
        for match in verdict.matches:
            for evidence in match.evidence:
                value = _field_value(event, evidence.field)
                assert value[evidence.start : evidence.end] == evidence.text, (verdict.event_id, evidence)


def test_offsets_count_code_points_as_the_doc_says() -> None:
    """The engine's evidence for the doc's emoji example starts at 5 (code points), not 6 (UTF-16)."""
    engine = load_pack(MINI_PACK)  # its secret_leak rule matches 机密 the same way
    now = datetime(2026, 3, 2, tzinfo=UTC)
    plain = engine.classify(decode_event('{"id": "a", "text": "这份是機 密文件"}'), now)
    emoji = engine.classify(decode_event('{"id": "b", "text": "😀 这份是機 密文件"}'), now)
    [(first,)] = [m.evidence for m in plain.matches]
    [(second,)] = [m.evidence for m in emoji.matches]
    assert (first.start, second.start) == (3, 5)
    assert first.text == second.text == "機 密"
    assert '"😀 这份是機 密文件"`, the same span is `start` 5, `end` 9' in doc_text()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    runtime = Runtime(settings=Settings(rules=MINI_PACK), engine=load_pack(MINI_PACK))
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://redline.test") as c:
        yield c
    app.state.verdict_tally.flush()


async def test_check_accepts_every_event_example(client: httpx.AsyncClient) -> None:
    for body in examples("ChatEvent"):
        response = await client.post("/check", content=body.encode(), headers={"content-type": "application/json"})
        assert response.status_code == 200, (body, response.text)
        assert response.json()["event_id"] == json.loads(body)["id"]


async def test_error_examples_are_what_the_api_answers(client: httpx.AsyncClient) -> None:
    blocks = EXAMPLE.findall(doc_text())
    pairs = [(body, blocks[i + 1][1]) for i, (kind, body) in enumerate(blocks) if kind == "request"]
    assert len(pairs) == len(examples("request")) == len(examples("ErrorBody")) >= 3
    for request, answer in pairs:
        msgspec.json.decode(answer, type=ErrorBody, strict=True)
        path = "/check/batch" if request.lstrip().startswith("[") else "/check"
        response = await client.post(path, content=request.encode(), headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json() == json.loads(answer)


def test_dead_letter_detail_example_is_the_decoders_message() -> None:
    shown = re.search(r"`` (Expected .*?) ``", section("Errors"))
    assert shown is not None
    with pytest.raises(EventDecodeError) as raised:
        decode_event(examples("request")[0])
    assert str(raised.value) == shown.group(1)


def test_dead_letter_reasons_and_headers_are_the_streams() -> None:
    text = section("Errors")
    reasons = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.MULTILINE))
    headers = set(re.findall(r"^\| `(redline-[a-z-]+)` \|", text, re.MULTILINE))
    assert reasons == set(typing.get_args(dead_letters.DeadLetterReason))
    expected = {value for name, value in vars(dead_letters).items() if name.endswith("_HEADER")}
    assert headers == expected


def test_the_checkers_see_drift() -> None:
    """The row parser and the struct walker notice a missing or an extra field."""
    assert set(struct_fields(Verdict)) >= {"matches[].evidence[].start", "ruleset.digest", "decided_at"}
    table = "| `chat.id` | string | required | | The chat. |\n| `chat.colour` | string | `\"\"` | | x |\n"
    assert set(rows(table)) == {"chat.id", "chat.colour"}
    assert "chat.colour" not in struct_fields(ChatEvent)
