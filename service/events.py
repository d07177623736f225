"""Wire models of the DESIGN.md contract (ChatEvent in, Verdict out) and their JSON codec.

msgspec structs: decoding validates types and constraints in one C pass (~1 µs per event), about
4x cheaper than pydantic, and the same structs serve the engine, the stream, the CLI and the API.
Unknown fields are ignored; a wrong type or a missing required field raises `EventDecodeError`
whose message names the JSON path (``$.chat.id``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from service.errors import EventDecodeError

EventType = Literal["text", "image", "video", "red_packet", "transfer", "file", "link"]
ChatKind = Literal["group", "direct"]
Direction = Literal["send", "receive"]
Action = Literal["allow", "review", "block"]
Severity = Literal["none", "low", "medium", "high", "critical"]

EVENT_TYPES: Final[tuple[str, ...]] = ("text", "image", "video", "red_packet", "transfer", "file", "link")
ACTIONS: Final[tuple[Action, ...]] = ("allow", "review", "block")
SEVERITIES: Final[tuple[Severity, ...]] = ("none", "low", "medium", "high", "critical")
ACTION_RANK: Final[dict[str, int]] = {a: i for i, a in enumerate(ACTIONS)}
SEVERITY_RANK: Final[dict[str, int]] = {s: i for i, s in enumerate(SEVERITIES)}

# Bounds that keep hostile numbers out of the engine: 1e999 decodes to inf and fails `le`.
_Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
_Amount = Annotated[float, msgspec.Meta(ge=0, le=1e12)]
_Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-fA-F]{64}$")]
_Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]


class Chat(msgspec.Struct, frozen=True, gc=False):
    id: str
    kind: ChatKind = "group"
    members: _Count | None = None


class Sender(msgspec.Struct, frozen=True, gc=False):
    id: str = ""
    roles: tuple[str, ...] = ()


class Payment(msgspec.Struct, frozen=True, gc=False):
    amount: _Amount
    direction: Direction
    currency: str = "CNY"


class Media(msgspec.Struct, frozen=True, gc=False):
    pdq: tuple[_Hex64, ...] = ()
    sha256: _Hex64 | None = None


class File(msgspec.Struct, frozen=True, gc=False):
    name: str
    size: _Count | None = None


class Link(msgspec.Struct, frozen=True, gc=False):
    url: str


class Forward(msgspec.Struct, frozen=True, gc=False):
    origin_id: str | None = None
    shares: _Count = 0
    views: _Count = 0


class _EventBody(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    type: EventType = "text"
    chat: Chat | None = None
    sender: Sender | None = None
    sent_at: _Timestamp | None = None
    text: str = ""
    payment: Payment | None = None
    media: Media | None = None
    file: File | None = None
    link: Link | None = None
    forward: Forward | None = None


class ChatEvent(_EventBody, frozen=True, kw_only=True):
    """One group-chat event. `id` is the idempotency key; `sent_at` defaults to receipt time."""

    id: str


class AdHocEvent(_EventBody, frozen=True, kw_only=True):
    """The body of `POST /check`: a ChatEvent whose `id` may be omitted (the API assigns one)."""

    id: str | None = None

    def with_id(self, event_id: str) -> ChatEvent:
        fields = msgspec.structs.asdict(self)
        fields["id"] = self.id if self.id is not None else event_id
        return ChatEvent(**fields)


class Evidence(msgspec.Struct, frozen=True, gc=False):
    """A span of an event field that made a condition true; offsets index the original text."""

    field: str
    start: int
    end: int
    text: str


class Match(msgspec.Struct, frozen=True, gc=False):
    rule: str
    category: str
    severity: Severity
    action: Action
    shadow: bool
    evidence: tuple[Evidence, ...]
    reason: str


class RulesetRef(msgspec.Struct, frozen=True, gc=False):
    name: str
    version: str
    digest: str


class Verdict(msgspec.Struct, frozen=True, gc=False):
    event_id: str
    action: Action
    severity: Severity
    matches: tuple[Match, ...]
    ruleset: RulesetRef
    decided_at: datetime


_event_decoder: Final = msgspec.json.Decoder(ChatEvent)
_adhoc_decoder: Final = msgspec.json.Decoder(AdHocEvent)
_verdict_decoder: Final = msgspec.json.Decoder(Verdict)
_encoder: Final = msgspec.json.Encoder()


def decode_event(data: bytes | str) -> ChatEvent:
    try:
        return _event_decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass: both carry the JSON path
        raise EventDecodeError(str(exc)) from exc
    except RecursionError as exc:  # msgspec recurses into nested unknown fields
        raise EventDecodeError("JSON is nested too deeply") from exc


def decode_adhoc_event(data: bytes | str) -> AdHocEvent:
    try:
        return _adhoc_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise EventDecodeError(str(exc)) from exc
    except RecursionError as exc:
        raise EventDecodeError("JSON is nested too deeply") from exc


def event_from_object(obj: object) -> ChatEvent:
    """Build a ChatEvent from already-parsed JSON-like data (rule examples, fixtures)."""
    try:
        return msgspec.convert(obj, ChatEvent)
    except msgspec.ValidationError as exc:
        raise EventDecodeError(str(exc)) from exc


def encode_verdict(verdict: Verdict) -> bytes:
    return _encoder.encode(verdict)


def plain_allow_encoder(ruleset: RulesetRef, decided_at: datetime) -> Callable[[str], bytes]:
    """`encode_verdict` of a plain allow (no match) by `ruleset` at `decided_at`, given its event id.

    Most events match nothing, and their verdicts differ only in the event id: the bytes around
    it are encoded once per batch, which costs ~0.1 µs per verdict instead of ~0.35.
    """
    head = b'{"event_id":'
    empty = _encoder.encode(Verdict("", "allow", "none", (), ruleset, decided_at))
    if not empty.startswith(head + b'""'):  # event_id is the struct's first field
        raise AssertionError(f"unexpected verdict encoding: {empty[:40]!r}")
    tail = empty[len(head) + 2 :]
    encode = _encoder.encode

    def encode_allow(event_id: str) -> bytes:
        return head + encode(event_id) + tail

    return encode_allow


def encode_event(event: ChatEvent) -> bytes:
    return _encoder.encode(event)


def decode_verdict(data: bytes | str) -> Verdict:
    return _verdict_decoder.decode(data)


def event_json_schema() -> dict[str, object]:
    """JSON Schema of ChatEvent, for the OpenAPI document and editors."""
    schema: dict[str, object] = msgspec.json.schema(ChatEvent)
    return schema
