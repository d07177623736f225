"""The rule-pack format as msgspec structs: validation of the YAML and the editors' JSON Schema.

A pack is a directory: `pack.yaml` (this module's `PackFile`), rule files (`RuleFile`) and
lexicon text files. docs/rules.md documents every field; docs/rules.schema.json is generated
from these structs (`redline rules schema`) and a test keeps the two identical.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Annotated, Any, Literal

import msgspec

from service.events import EventType

TextField = Literal["text", "file.name", "link.url"]
RuleAction = Literal["review", "block"]
LoweredAction = Literal["allow", "review"]
RuleSeverity = Literal["low", "medium", "high", "critical"]
_Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.\-]*$", max_length=128)]


class _Spec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    pass


class NormalizeSpec(_Spec, kw_only=True):
    """Normalisation layers; on a rule, an unset layer inherits the pack's setting."""

    width: bool | None = None
    case: bool | None = None
    invisible: bool | None = None
    separators: bool | None = None
    traditional: bool | None = None
    leet: bool | None = None
    pinyin: bool | None = None
    initials: bool | None = None  # nmsl, cnm: a Chinese keyword spelled by its syllables' initials
    split_characters: bool | None = None  # 女表子 for 婊子, 弓虽女干 for 强奸: a hanzi written as its two parts
    homophones: bool | None = None
    near_homophones: bool | None = None  # with homophones: fuzzy pinyin too (n/l, h/f, en/eng…)
    stand_ins: bool | None = None  # with homophones: emoji read as their name's characters (🐴 → 妈)
    emoji: bool | None = None


class KeywordsSpec(_Spec, kw_only=True):
    """Terms from the rule and/or named lexicons. Latin terms match whole words only."""

    terms: list[str] = []
    lexicons: list[str] = []
    field: TextField = "text"


class RegexSpec(_Spec, kw_only=True):
    """An RE2-syntax regex over the normalised text (lower-cased, width-folded, simplified)."""

    pattern: str
    field: TextField = "text"


class NearSpec(_Spec, kw_only=True):
    """A term of `a` and a term of `b` with at most `within` units between them: a unit is a
    character, but a word of Latin letters or digits is one and whitespace none."""

    a: KeywordsSpec | list[str]
    b: KeywordsSpec | list[str]
    within: Annotated[int, msgspec.Meta(ge=0, le=10_000)]
    field: TextField = "text"


class PaymentSpec(_Spec, kw_only=True):
    direction: Literal["send", "receive"] | None = None
    min: Annotated[float, msgspec.Meta(ge=0)] | None = None
    max: Annotated[float, msgspec.Meta(ge=0)] | None = None
    currency: list[str] | None = None


class ChatSpec(_Spec, kw_only=True):
    kind: Literal["group", "direct"] | None = None
    min_members: Annotated[int, msgspec.Meta(ge=0)] | None = None
    max_members: Annotated[int, msgspec.Meta(ge=0)] | None = None


class ForwardSpec(_Spec, kw_only=True):
    """Holds for a forward whose `shares` or `views` reached the threshold (none set: any forward)."""

    shares: Annotated[int, msgspec.Meta(ge=0)] | None = None
    views: Annotated[int, msgspec.Meta(ge=0)] | None = None


class MediaHashSpec(_Spec, kw_only=True):
    """Holds for an image/video event with a `media.pdq` hash within a named bank's distance."""

    banks: list[str]


class HashBankSpec(_Spec, kw_only=True):
    """A file of PDQ hashes: one `<64 hex> <label> [quality 0-100]` per line, `#` comments."""

    file: str
    max_distance: Annotated[int, msgspec.Meta(ge=0, le=64)] = 31
    min_quality: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None


class ClassifierSpec(_Spec, kw_only=True):
    """A pack model's score of a text field is at least `min_score` (and below `below`, when set).

    Evidence: the score (field `classifier.<model>`) and the spans of the original text that
    contributed most. Models are declared in pack.yaml `models:` (docs/rules.md, "Models")."""

    model: _Name
    min_score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    below: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    field: TextField = "text"
    # Characters the model must read (its first view: separators and punctuation deleted; an emoji
    # with a Chinese name counts as one): a model fitted on sentences is not calibrated on a word
    # or two (女人, 码头 alone).
    min_chars: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1


class SeenSpec(_Spec, kw_only=True):
    """The same `of` seen `at_least` times within `within`, counted across replicas (docs/counters.md).

    Counts the events for which the rest of the rule's top-level `all` holds, this one included;
    `distinct` says what makes two sightings different (`chat`: how many chats; `event`: how many
    times). Only allowed as a member of a rule's top-level `all`.
    """

    of: Literal["content", "sender", "chat"]
    distinct: Literal["chat", "sender", "event"] = "event"
    at_least: Annotated[int, msgspec.Meta(ge=2, le=10_000)]
    within: Annotated[str, msgspec.Meta(pattern=r"^[1-9][0-9]*(s|m|h|d)$")]


class AtLeastSpec(_Spec, kw_only=True):
    n: Annotated[int, msgspec.Meta(ge=1)]
    of: list[ConditionSpec]


class ConditionSpec(_Spec, kw_only=True):
    """Exactly one key per condition; compose with all / any / not / at_least."""

    all: list[ConditionSpec] | None = None
    any: list[ConditionSpec] | None = None
    not_: ConditionSpec | None = msgspec.field(default=None, name="not")
    at_least: AtLeastSpec | None = None
    keywords: KeywordsSpec | list[str] | None = None
    regex: RegexSpec | str | None = None
    near: NearSpec | None = None
    type: list[EventType] | None = None
    payment: PaymentSpec | None = None
    sender_role: list[str] | None = None
    chat: ChatSpec | None = None
    file_name: list[str] | None = None
    link_domain: list[str] | None = None
    forward: ForwardSpec | None = None
    calendar: str | None = None
    media_hash: MediaHashSpec | list[str] | None = None
    seen: SeenSpec | None = None
    classifier: ClassifierSpec | None = None


class UnlessSpec(_Spec, kw_only=True):
    """When `when` holds, the match stays in the verdict with a lowered action."""

    when: ConditionSpec
    action: LoweredAction
    severity: RuleSeverity | None = None
    reason: str


class ExampleSpec(_Spec, kw_only=True):
    """An example event (`text` alone is a text message), optionally with the expected action."""

    text: str | None = None
    event: dict[str, Any] | None = None
    action: Literal["allow", "review", "block"] | None = None
    # For rules with `seen`: the count every counter of the event reads (unset: not counted yet).
    seen: Annotated[int, msgspec.Meta(ge=0)] | None = None


Example = str | ExampleSpec


class ExamplesSpec(_Spec, kw_only=True):
    match: list[Example]
    no_match: list[Example]


class RuleSpec(_Spec, kw_only=True):
    id: _Name
    category: str
    severity: RuleSeverity
    action: RuleAction
    shadow: bool = False
    description: str = ""
    reason: str | None = None
    normalize: NormalizeSpec | None = None
    # The strongest action of a match that exists only through a folded reading (homophone,
    # near-homophone, emoji stand-in): by default such a match asks for review, never blocks.
    folded_action: RuleAction = "review"
    when: ConditionSpec
    unless: list[UnlessSpec] = []
    examples: ExamplesSpec


class RuleFile(_Spec, kw_only=True):
    rules: list[RuleSpec]


class CategorySpec(_Spec, kw_only=True):
    description: str


class WindowSpec(_Spec, kw_only=True):
    """A calendar window; dates are whole days in the pack's `utc_offset`, `end` inclusive."""

    start: str
    end: str
    label: str = ""


class PackFile(_Spec, kw_only=True):
    name: _Name
    version: str
    description: str = ""
    utc_offset: Annotated[str, msgspec.Meta(pattern=r"^[+-]\d{2}:\d{2}$")] = "+00:00"
    normalize: NormalizeSpec = msgspec.field(default_factory=NormalizeSpec)
    categories: dict[str, CategorySpec]
    lexicons: dict[str, str] = {}
    calendars: dict[str, list[WindowSpec]] = {}
    hash_banks: dict[str, HashBankSpec] = {}
    # name → the model's manifest file inside the pack (`redline train` writes it; docs/rules.md).
    models: dict[_Name, str] = {}
    # Bank lines with a quality below this are ignored at load (PDQ advises ≥ 50); a bank may override.
    hash_min_quality: Annotated[int, msgspec.Meta(ge=0, le=100)] = 50
    rules: list[str] = msgspec.field(default_factory=lambda: ["rules/*.yaml"])


ModelView = Literal["plain", "homophones", "near_homophones"]


class ModelThresholds(_Spec, kw_only=True):
    """Scores chosen on the training run's dev data (informational: rules set their own)."""

    review: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    block: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None


class ModelManifest(_Spec, kw_only=True):
    """A text model's manifest (`models/<name>.yaml`): what service.engine.textmodel needs."""

    format: Literal["redline-ngram-linear"]
    version: int
    name: _Name
    views: Annotated[list[ModelView], msgspec.Meta(min_length=1, max_length=2)]
    max_order: Annotated[int, msgspec.Meta(ge=1, le=5)]
    bits: Annotated[int, msgspec.Meta(ge=8, le=24)]
    weights: str  # file inside the pack: 2^bits little-endian float16 values
    weights_sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    bias: float
    thresholds: ModelThresholds = msgspec.field(default_factory=ModelThresholds)
    card: str | None = None  # the model card (markdown) beside it


def json_schemas() -> dict[str, Any]:
    """JSON Schemas for editors: `pack.yaml` and rule files.

    Descriptions are cleaned here (`inspect.cleandoc`) rather than left to msgspec, whose releases
    disagree on docstring indentation (0.23 strips it, 0.22 keeps it): the committed schema must
    not change with the library's version.
    """
    return {
        "pack": _clean_descriptions(msgspec.json.schema(PackFile)),
        "rules": _clean_descriptions(msgspec.json.schema(RuleFile)),
    }


def _clean_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _clean_value(key, value) for key, value in node.items()}
    if isinstance(node, list):
        return [_clean_descriptions(item) for item in node]
    return node


def _clean_value(key: str, value: Any) -> Any:
    return inspect.cleandoc(value) if key == "description" and isinstance(value, str) else _clean_descriptions(value)


def struct_at(root: type[msgspec.Struct], path: str) -> type[msgspec.Struct] | None:
    """The struct that validates the object at `path` (`$.rules[0].when.all[1]`) under `root`, or
    None: what a pack error says is valid at that place."""
    kind: Any = root
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        if index:
            kind = _member(kind, list)
            if kind is None:
                return None
            kind = typing.get_args(kind)[0]
        elif (struct := _member(kind, msgspec.Struct)) is not None:
            fields = {f.encode_name: f.type for f in msgspec.structs.fields(struct)}
            if name not in fields:
                return None
            kind = fields[name]
        elif (mapping := _member(kind, dict)) is not None:
            kind = typing.get_args(mapping)[1]  # a named entry: `hash_banks.<name>`
        else:
            return None
    found = _member(kind, msgspec.Struct)
    return found if isinstance(found, type) and issubclass(found, msgspec.Struct) else None


def _member(kind: Any, wanted: type) -> Any:
    """`kind` itself, or its member of a union, that is a `wanted` (a list, or a Struct)."""
    candidates = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    for candidate in candidates:
        origin = typing.get_origin(candidate) or candidate
        if isinstance(origin, type) and issubclass(origin, wanted):
            return candidate
    return None


def field_names(struct: type[msgspec.Struct]) -> list[str]:
    return [f.encode_name for f in msgspec.structs.fields(struct)]
