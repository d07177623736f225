"""One compiled multi-pattern database per scanned field; `scan` returns spans per pattern id.

Hyperscan scans the UTF-8 bytes of the normalised text once for all patterns of a field
(~2 µs for 10k keywords). Start offsets are not asked of Hyperscan (its start-of-match mode makes
databases ~5x larger and is no faster): a fixed-length pattern starts at end − length, a
variable-length one is located by RE2 (linear time) only when Hyperscan reported a hit.

Patterns flagged `single_match` report once per scan, which bounds callback work on hostile
input; the others (used by proximity conditions) keep up to `MAX_SPANS_PER_PATTERN` spans.

Word boundaries (`\b`) are stripped from what Hyperscan compiles: they made a 10k-keyword database
compile 6x slower (2.3 s vs 0.38 s measured here). Removing an assertion only widens what a
pattern matches, so Hyperscan stays a complete prefilter; the boundary is then checked exactly:
in Python for a literal's two ends, by RE2 (which runs the original pattern) otherwise.

Two more views of a text can be scanned, both 1:1 or mapped back to the text's own offsets:
- the *alternate* view (`Normalizer.without_kept`): kept characters between words removed, so a
  stand-in emoji or a pattern's symbol used as a separator (畜🥧牲, 红★包) still lets the plain
  keyword match; scanned with the same database only when such a character is present;
- the *homophone* view (service.engine.homophones): with homophones on, the database is compiled
  over the view and the view is all that is scanned: one `str.translate`, one Hyperscan call. A
  pattern whose characters have homophones matches the view where it matches the text and where
  a homophone of it stands; each such hit is read on the text: the pattern's own characters are
  a hit, a homophone counts under its pattern's id (through the pattern's twins,
  `PatternSpec.homophones`) only where the original characters are not, and do not straddle, a
  common word (`Homophones.ordinary`): 沙比 stands for 傻逼, 大厦比较 does not.

This module reads the views and merges their hits; patterns.py holds the pattern spec, the
linear-time check and the end checks, pattern_database.py one compiled database and its hits.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from service.engine.code_tables import CodeTable, text_of, utf8_widths
from service.engine.folds import FoldedHits
from service.engine.homophones import Homophones
from service.engine.homophonic import Homophonic, homophonic
from service.engine.normalize import NormalizedText, TranslateTable
from service.engine.normalize_batch import NormalizedBatch
from service.engine.pattern_database import PatternDatabase, Report
from service.engine.patterns import MAX_SPANS_PER_PATTERN, Hits, PatternSpec, Span, SyllableEdges, literal_chars
from service.engine.stand_ins import StandIns

View = Callable[[str], NormalizedText | None]
Candidates = list[tuple[int, Span]]  # (pattern id, span) of homophone hits not yet checked


def _canonical(item: tuple[int, list[Span]]) -> tuple[Span, int]:
    return item[1][0], item[0]


def _probed(probe: re.Pattern[str], joined: str, starts: list[int], stops: list[int]) -> set[int]:
    """The texts of a joined batch (text i is `joined[starts[i]:stops[i]]`) that `probe` finds in."""
    found: set[int] = set()
    for match in probe.finditer(joined):
        position = match.start()
        index = bisect_right(starts, position) - 1
        if index >= 0 and position < stops[index]:
            found.add(index)
    return found



@dataclass
class FieldMatcher:
    """Scans one field's normalised text for every pattern compiled into its database.

    `alternate` and `homophones` switch on the second and third views (module docstring);
    `syllables` (toneless pinyin syllables) checks the ends of the patterns in `spelled`.
    """

    patterns: tuple[PatternSpec, ...]
    alternate: View | None = None
    homophones: Homophones | None = None
    syllables: frozenset[str] = frozenset()
    spelled: frozenset[int] = frozenset()
    # Finds every character `alternate` can remove (maybe more): text without one skips the call.
    alternate_probe: re.Pattern[str] | None = None
    stand_ins: StandIns | None = None  # emoji read as hanzi (engine/stand_ins.py), with homophones
    _main: PatternDatabase = field(init=False, repr=False)
    _fold: TranslateTable | None = field(init=False, repr=False)  # the homophone view's, when scanned
    _fold_codes: CodeTable | None = field(init=False, repr=False)  # the same, for a batch
    _deferred: dict[int, Homophonic] = field(init=False, repr=False)  # database id → its pattern
    _homophonic_ids: frozenset[int] = field(init=False, repr=False)  # the patterns _deferred reads
    _always_folded: frozenset[int] = field(init=False, repr=False)  # patterns whose hits are all folded
    # Two-hanzi literal patterns, by id: a stand-in hit of one that keeps neither character as
    # written must not split a common word (`_splits_a_word`).
    _two_hanzi: dict[int, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lengths = {i: p.fixed_length for i, p in enumerate(self.patterns)}
        single = {i: p.single_match for i, p in enumerate(self.patterns)}
        syllable_edges = (
            SyllableEdges(self.syllables, max(map(len, self.syllables))) if self.syllables and self.spelled else None
        )
        expressions = [(i, p.expression) for i, p in enumerate(self.patterns)]
        self._deferred = {}
        self._fold = None
        if self.homophones is not None and any(p.homophones for p in self.patterns):
            expressions = self._homophone_view(lengths, single, syllable_edges)
            self._fold = self.homophones.fold
        self._fold_codes = None if self._fold is None else CodeTable(self._fold)
        self._main = PatternDatabase(
            lengths, single, expressions, syllable_edges, self.spelled, frozenset(self._deferred)
        )
        self._homophonic_ids = frozenset(h.pattern_id for h in self._deferred.values())
        self._always_folded = frozenset(i for i, p in enumerate(self.patterns) if p.folded)
        self._two_hanzi = {}
        for i, p in enumerate(self.patterns):
            chars = literal_chars(p.expression) if p.fixed_length == 2 else None
            if chars is not None and len(chars[0]) == 2:
                self._two_hanzi[i] = chars[0]

    def _homophone_view(
        self, lengths: dict[int, int | None], single: dict[int, bool], syllables: SyllableEdges | None
    ) -> list[tuple[int, str]]:
        """The database's expressions over the homophone view. A pattern that mentions no
        character with homophones, and has no twin of its own, compiles as it is (its hits on the
        view are its hits on the text); the others compile as their view (Homophones.view), with
        the twins the view does not cover as extra ids, and are read by `Homophonic`."""
        assert self.homophones is not None
        expressions: list[tuple[int, str]] = []
        extra = len(self.patterns)
        for i, pattern in enumerate(self.patterns):
            view = self.homophones.view(pattern.expression)
            twins = [t for t in pattern.homophones if t != pattern.expression]
            if view is None and not twins:
                expressions.append((i, pattern.expression))
                continue
            reader = homophonic(i, pattern, syllables if i in self.spelled else None)
            self._deferred[i] = reader
            expressions.append((i, view or pattern.expression))
            for twin in dict.fromkeys(twins):
                if twin != view:
                    self._deferred[extra] = reader
                    lengths[extra] = lengths[i]
                    single[extra] = True
                    expressions.append((extra, twin))
                    extra += 1
        return expressions

    def scan(self, text: str) -> Hits:
        """Every pattern's spans in `text`; `FoldedHits` when some exist only through a fold."""
        if not text:
            return {}
        ascii_only = text.isascii()
        fold = self._fold
        # The fold maps hanzi only: ASCII text is its own view.
        view = text if fold is None or ascii_only else text.translate(fold)
        data = view.encode("utf-8", "replace")
        return self._hits(text, view, data, self._main.ends(data), ascii_only)

    def scan_batch(self, batch: NormalizedBatch) -> dict[int, Hits]:
        """`scan` of every text of `batch` (by index), the texts without a hit left out: the
        batch's view is folded, encoded and scanned at once (pattern_database.ends_batch), and
        only a text that Hyperscan reported in, or that may hold a kept character or a stand-in
        emoji (one probe over the batch), is read on its own."""
        codes = batch.compact_codes
        if not len(codes):
            return {}
        compact = batch.compact
        starts, stops = batch.starts, batch.stops
        view_codes = codes if self._fold_codes is None else self._fold_codes.apply(codes)
        view = compact if self._fold_codes is None else text_of(view_codes)
        data = view.encode("utf-8", "replace")
        byte_offsets = np.zeros(len(codes) + 1, dtype=np.int64)
        np.cumsum(utf8_widths(view_codes), out=byte_offsets[1:])
        byte_starts = byte_offsets[starts].tolist()
        byte_stops = byte_offsets[stops].tolist()
        non_ascii = np.zeros(len(codes) + 1, dtype=np.int64)
        np.cumsum(codes >= 0x80, out=non_ascii[1:])
        has_non_ascii = (non_ascii[stops] > non_ascii[starts]).tolist()
        reports = self._main.ends_batch(data, byte_starts, byte_stops)
        # The texts a probe found a kept character or a stand-in emoji in (only text with a
        # character beyond ASCII is read for either); None: every such text may hold one.
        kept = None if self.alternate_probe is None else _probed(self.alternate_probe, compact, starts, stops)
        stand_ins = None if self.stand_ins is None else _probed(self.stand_ins.probe, compact, starts, stops)
        needed = set(reports)
        if self.alternate is not None:
            if kept is None:
                needed.update(i for i, wide in enumerate(has_non_ascii) if wide)
            else:
                needed |= kept
        if stand_ins is not None:
            needed |= stand_ins
        out: dict[int, Hits] = {}
        for index in sorted(needed):
            start, stop = starts[index], stops[index]
            if start == stop or (index not in reports and not has_non_ascii[index]):
                continue
            hits = self._hits(
                compact[start:stop], view[start:stop], data[byte_starts[index] : byte_stops[index]],
                reports.get(index, []), not has_non_ascii[index],
                may_keep=None if kept is None else index in kept,
                may_stand_in=stand_ins is not None and index in stand_ins,
            )
            if hits:
                out[index] = hits
        return out

    def _hits(
        self, text: str, view: str, data: bytes, byte_ends: list[Report], ascii_only: bool,
        *, may_keep: bool | None = None, may_stand_in: bool = True,
    ) -> Hits:
        """The hits of one text from its main view's reports, plus the other views' (module
        docstring), in a canonical order: by first span, then pattern id. The order of Hyperscan's
        reports does not reach a verdict's evidence, so a text scanned alone and the same text
        scanned inside a batch list the same evidence in the same order. A batch passes what its
        probes found (`may_keep`: a kept character; `may_stand_in`: a stand-in emoji's block)."""
        fold = self._fold
        hits, candidates = self._read(text, view, data, byte_ends) if byte_ends else ({}, None)
        folded: set[tuple[int, Span]] = set()
        # Only text with hanzi can have a kept character between words (Normalizer.without_kept).
        probe = self.alternate_probe
        alternate = None
        alternate_candidates: Candidates | None = None
        if may_keep is None:
            may_keep = probe is None or probe.search(text) is not None
        if self.alternate is not None and not ascii_only and may_keep:
            alternate = self.alternate(text)
        if alternate is not None:
            alternate_view = alternate.text if fold is None else alternate.text.translate(fold)
            alternate_data = alternate_view.encode("utf-8", "replace")
            alternate_ends = self._main.ends(alternate_data)
            found, alternate_candidates = (
                self._read(alternate.text, alternate_view, alternate_data, alternate_ends)
                if alternate_ends
                else ({}, None)
            )
            for pattern_id, spans in found.items():
                self._merge(hits, pattern_id, [alternate.original_span(*span) for span in spans])
        if candidates:
            self._add_homophones(hits, text, candidates, None, folded)
        if alternate is not None and alternate_candidates:
            self._add_homophones(hits, alternate.text, alternate_candidates, alternate, folded)
        if self.stand_ins is not None and not ascii_only and may_stand_in:
            self._add_stand_ins(hits, text, folded)
        if len(hits) > 1:
            hits = dict(sorted(hits.items(), key=_canonical))
        if self._always_folded:
            for pattern_id in self._always_folded.intersection(hits):
                folded.update((pattern_id, span) for span in hits[pattern_id])
        return FoldedHits(hits, folded) if folded else hits

    def _read(self, text: str, view: str, data: bytes, byte_ends: list[Report]) -> tuple[Hits, Candidates | None]:
        """The hits over one view of the text (the text's own characters), and its homophone
        candidates. `view` is the folded text (the text itself without homophones) and `data` its
        UTF-8: folded hanzi keep their UTF-8 length (3 bytes), so its byte offsets are the text's."""
        deferred = self._deferred
        if not deferred:
            return self._main.spans(text, data, byte_ends), None
        direct: list[tuple[int, int]] = []
        touched: dict[int, Homophonic] = {}
        for hit in byte_ends:
            homophonic = deferred.get(hit[0])
            if homophonic is None:
                direct.append(hit)
            else:
                touched[homophonic.pattern_id] = homophonic
        hits = self._main.spans(text, data, direct) if direct else {}
        candidates: Candidates | None = None
        for pattern_id, homophonic in touched.items():
            literal = homophonic.literal
            if homophonic.plain_single:
                assert literal is not None
                start = text.find(literal)
                if start >= 0:
                    hits[pattern_id] = [(start, start + homophonic.length)]
                    continue
            else:
                spans = homophonic.exact(text)
                if spans:
                    hits[pattern_id] = spans
                    if homophonic.single:
                        continue  # one hit is all a single-match pattern reports
            if homophonic.twinned:
                if candidates is None:
                    candidates = []
                candidates.extend((pattern_id, span) for span in homophonic.homophones(text, view))
        return hits, candidates

    def _add_stand_ins(self, hits: Hits, text: str, folded: set[tuple[int, Span]]) -> None:
        """Add the hits of the stand-in views that read one of their emoji (engine/stand_ins.py)."""
        assert self.stand_ins is not None
        positions = self.stand_ins.positions(text)
        if not positions:
            return

        def reads_emoji(span: Span) -> bool:
            # Positions are ascending: the first at or after the span's start decides, in O(log n)
            # (trying every position for every span made an emoji-dense text cost O(n²)).
            first = bisect_left(positions, span[0])
            return first < len(positions) and positions[first] < span[1]

        # The same view twice is scanned once: an emoji with a short name reads alike in the last
        # views (🐴 马头: its 3rd to 6th are all 头).
        views = dict.fromkeys(text.translate(table) for table in self.stand_ins.tables)
        fitted = self.stand_ins.fitted(text, positions)
        if fitted is not None:
            views[fitted] = None
        for view in views:
            data = view.encode("utf-8", "replace")
            ends = self._main.ends(data)
            if not ends:
                continue
            found, candidates = self._read(text, view, data, ends)
            for pattern_id, spans in found.items():
                if pattern_id in self._homophonic_ids:
                    continue  # its exact hits on the text: the main scan has them
                for span in filter(reads_emoji, spans):
                    if self._splits_a_word(pattern_id, text, span):
                        continue
                    known = hits.get(pattern_id)
                    if not known or span not in known:
                        self._merge(hits, pattern_id, [span])
                        folded.add((pattern_id, span))
            if candidates:
                kept = [c for c in candidates if reads_emoji(c[1]) and not self._splits_a_word(c[0], text, c[1])]
                self._add_homophones(hits, text, kept, None, folded)

    def _splits_a_word(self, pattern_id: int, text: str, span: Span) -> bool:
        """Whether a stand-in hit of a two-hanzi keyword that keeps neither character as written
        reads an emoji that stands between the two characters of a common word (印🔈度: 印度): an
        emoji inside a word is decoration, not a character (a homophone and an emoji together
        would otherwise read 印🔈 as a two-character term)."""
        keyword = self._two_hanzi.get(pattern_id)
        start, stop = span
        if keyword is None or stop - start != 2 or text[start] == keyword[0] or text[start + 1] == keyword[1]:
            return False
        assert self.homophones is not None  # a stand-in hit: the channel has both
        assert self.stand_ins is not None
        words = self.homophones.words
        emoji = self.stand_ins.chars
        return any(
            0 < position < len(text) - 1
            and text[position] in emoji
            and text[position - 1] + text[position + 1] in words
            for position in (start, start + 1)
        )

    def _add_homophones(
        self, hits: Hits, text: str, candidates: Candidates, view: NormalizedText | None,
        folded: set[tuple[int, Span]],
    ) -> None:
        """Add the homophone hits that are new and not ordinary text (大厦比较 holds no 傻逼);
        each is a folded reading (engine/folds.py)."""
        ordinary = self.homophones.ordinary if self.homophones is not None else None
        assert ordinary is not None
        for pattern_id, span in candidates:
            known = hits.get(pattern_id)
            if known and self.patterns[pattern_id].single_match:
                continue
            found = view.original_span(*span) if view is not None else span
            if known and found in known:
                continue
            if not ordinary(text, *span):
                self._merge(hits, pattern_id, [found])
                folded.add((pattern_id, found))

    def _merge(self, hits: Hits, pattern_id: int, spans: list[Span]) -> None:
        """Add another view's spans under the pattern's id, as one scan would have reported them."""
        found = hits.get(pattern_id)
        if found is None:
            hits[pattern_id] = spans[:1] if self.patterns[pattern_id].single_match else spans
            return
        if self.patterns[pattern_id].single_match:
            return
        for span in spans:
            if span not in found and len(found) < MAX_SPANS_PER_PATTERN:
                found.append(span)
