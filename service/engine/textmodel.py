"""A learned text signal: hashed character n-grams of normalised views, scored by a linear model.

Features. Each text is read through one or more *views*, each a `str.translate` table built at
pack load (service.rules.tables.model_view_table): width, case, script and invisible characters
folded as the normaliser does, separators, punctuation and emoji deleted, and — for the
`homophones` view — every common hanzi folded to its reading group, so 沙比 and 傻逼 share
features. A text with emoji, pinyin or a character split into its parts is also scored under
readings (each emoji as a character of its CLDR name, in context or k-th, or as its whole short
name; pinyin as hanzi; 女表 as 婊) and keeps the highest score; a text's readings are scored from
one window matrix (`_margins`). The n-grams
(1..`max_order` characters) of every view are hashed (multiplicative hashing on code points, view
and order salted) into 2^bits buckets; the score is sigmoid(bias + Σ weights[bucket] / sqrt(n-gram
count)). The views are joined into one string per text (`joined`), so one text is one small array.

Two entry points compute the same score, to the last bit: `score` for one text (a few numpy calls
over one small array) and `score_batch` for many at once (one array for the whole batch, the
stream's path). The weights are summed as integers (each weight in units of 2^-24, exact for the
float16 weights a model file holds), so a sum does not depend on the order it was added in, nor
on which other texts shared the batch; the sigmoid is Python's own per text. An engine may so
decide a rule on a batch's score and explain it with the same text's score alone.
`contributions` says which n-grams of the original text carried the score (a reviewer's "why");
it runs only when a rule matched.

Hashes use uint32 arithmetic (wrapping), so the features are the same on every platform and
every numpy version; nothing here reads a file or a clock.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import hyperscan
import numpy as np
import numpy.typing as npt

from service.engine.pattern_database import compiled, loaded

# A model view's `str.translate` table: a character may become several (an emoji read as its name).
ModelTable = list[int | str | None]

# The views of one text are joined with VIEW_BREAK (n-grams across it are features like any
# other); texts of a batch with TEXT_BREAK (n-grams across it are not). Both are control
# characters, which every view deletes, so neither occurs inside a view.
VIEW_BREAK: Final = "\x00"
TEXT_BREAK: Final = "\x01"
# A view after the first is moved to its own code-point range (planes 12-14), so the same
# character read by two views is two features: code points of a view table are < 0x30000.
VIEW_OFFSET: Final = 0xC0000
MAX_VIEWS: Final = 2
_ORDER_MULTIPLIERS: Final = (0x01000193, 0x27D4EB2F, 0x165667B1, 0x9E3779B1)  # odd; one per order ≥ 2
_MIX: Final = 0x9E3779B1  # Knuth's multiplicative hash
_MIX32: Final = np.uint32(_MIX)
_MASK32: Final = 0xFFFFFFFF  # uint32 wrapping, for the same hashes in Python integers
_DELETED: Final = 0xFFFFFFFF  # no character: what a view deletes, in a batch table as an array
# Weights are summed in units of 2^-24: a float16 weight is an exact multiple of it.
_WEIGHT_UNIT_BITS: Final = 24
_WEIGHT_UNIT: Final = 2.0**-_WEIGHT_UNIT_BITS
# Up to this many windows (characters in its views), `_margin` and `_margins` sum a text's weights
# as Python integers, which on a chat line is cheaper than two more NumPy calls (8.3 against
# 10.9 µs at 8 characters); the list grows with the text and costs more from ~50 characters
# (17.1 against 15.9 µs at 64), where NumPy reduces instead.
_SUMMED_IN_PYTHON: Final = 48
# Where emoji live (arrows, symbols, dingbats, the emoji planes): a text without one of these
# has no emoji reading to try.
_SYMBOLS: Final = re.compile("[\u2190-\u2bff\U0001f000-\U0001faff]")
# What a text with a reading holds, at least: an emoji, two Latin letters in a row or a letter
# that is a syllable alone (a run that may be pinyin, `_LATIN_RUN`).
_MAY_HAVE_READINGS: Final = re.compile(_SYMBOLS.pattern + "|[A-Za-z]{2}|[aeoAEO]")
# A written hanzi: the context an emoji is read in (`_fitted`).
_HANZI: Final = re.compile("[\u3400-\u4dbf\u4e00-\u9fff]")
# A word longer than this is not read as pinyin (a cloaked insult is a few syllables; this bounds
# the syllable split of a hostile run of letters).
MAX_SPELLED_LETTERS: Final = 48
MAX_SPELLED_PER_TEXT: Final = 256  # letters of runs read as pinyin per text
MAX_SPLIT_PAIRS: Final = 64  # characters written as their parts read whole per text (`_unsplit`)
# A run of Latin words is split into syllables once and remembered (`NgramModel._run_cache`):
# chat repeats its Latin words (ok, PPT, Reminder), and a split costs microseconds in Python.
# Bounded, and emptied when full, so unseen words sent on purpose cost memory no more than this.
MAX_CACHED_RUNS: Final = 4096
MAX_CACHED_RUN_CHARS: Final = 64
_MAX_WORD_SYLLABLES: Final = 4  # the longest word `pinyin_words` holds, in syllables
_UNKNOWN_SYLLABLE_COST: Final = 30.0  # −log of a share below any attested word's (~e^-17 at least)
# Emoji of a text read in context (`_fitted`): the first this many; and how many characters on
# each side are read to find an emoji's neighbours and the n-grams its reading takes part in.
MAX_FITTED_EMOJI: Final = 16
_FITTED_WINDOW: Final = 8
# An emoji is also read as its whole Chinese name (🤢 as 恶心, 👩 as 女人: the word it stands
# for) when the name has at most this many characters (`_named`); chosen on COLD dev.
MAX_NAMED_CHARS: Final = 2
# Two passes: the second decides each emoji again with its neighbours' readings of the first, so
# two emoji side by side (🕺📂 for 男的) are read together (dev: multi-character 0.856 → 0.896;
# a third pass changed nothing).
FITTED_PASSES: Final = 2
# Latin words (single spaces between them), the first of at least two letters or one of the
# one-letter syllables a, e, o (e心 for 恶心, e de nv ren): maybe pinyin.
# Written to consume a letter first (the lookbehind then reads the character before it), so `re`
# skips to the next letter in one C loop: 8x faster over a batch of mostly-hanzi chat.
_LATIN_RUN: Final = re.compile(r"[A-Za-z](?<![A-Za-z]{2})(?:[A-Za-z]+|(?<=[aeoAEO]))(?: [A-Za-z]+)*(?![A-Za-z])")
# Letter pairs toneless pinyin never holds: a consonant other than n, g, r (which end syllables)
# followed by another (but zh, ch, sh), or ending a word. Most English words have one (Meeting,
# moved): their runs are rejected by one regex search instead of a syllable split.
_NOT_PINYIN: Final = re.compile(
    r"[bdfhjklmpqtwxy][bcdfghjklmnpqrstwxyz]|[zcs][bcdfgjklmnpqrstwxyz]|[bcdfhjklmpqstwxyz](?![a-z])",
    re.IGNORECASE,
)


# A run of Latin words as pinyin: per word, its syllables.
Syllables = tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Span:
    """A span of the original text and the score it carried (sum of its n-grams' weights)."""

    start: int
    end: int
    weight: float


@dataclass(frozen=True, eq=False)
class NgramModel:
    """A compiled model: its views' tables, n-gram orders, hashed weights and bias."""

    name: str
    views: tuple[ModelTable, ...]
    max_order: int
    bits: int
    weights: npt.NDArray[np.float32]  # 2^bits values
    bias: float
    # Readings of emoji (emoji → a character of its name): a text holding one is scored as it is
    # (its views delete emoji) and under each reading, and keeps the highest (🐴 马头: 马, 头).
    readings: tuple[dict[int, str], ...] = ()
    # Toneless pinyin syllable → a hanzi read so: a run of Latin letters that reads entirely as
    # pinyin (shabi, sha bi) is also scored as those hanzi, and the text keeps the highest score.
    spellings: dict[str, str] = field(default_factory=dict)
    # Toneless pinyin of a word, syllables joined by ' → (the word, its cost: −log of its share of
    # a corpus): a run of pinyin is read as the words of least total cost (nvren 女人, not 女 and
    # the first hanzi read ren), as a pinyin input method reads it. Without an entry for a
    # syllable, `spellings` gives its hanzi.
    pinyin_words: dict[str, tuple[str, float]] = field(default_factory=dict)
    hanzi_syllables: dict[str, str] = field(default_factory=dict)  # common hanzi → its first reading, toneless
    # Emoji → its Chinese name, and common two-character words as the first view reads them (by
    # sound): a text with emoji is also read with each emoji as the character of its name that
    # makes one of these words with a neighbour and adds most to the score — 🐊心 as 恶心 (鳄 e),
    # 🕖视 as 歧视 (七 qi), whatever the meant character's place in the name (`_fitted`).
    emoji_names: dict[int, str] = field(default_factory=dict)
    emoji_words: frozenset[str] = frozenset()
    # Two adjacent hanzi → the character they are the parts of (女表 婊, 弓虽 强): a text holding
    # such a pair is also read with the character written whole (`_unsplit`), as a writer who
    # split it to slip past a filter meant it. Found by one Hyperscan scan (`_pairs`).
    split_pairs: dict[str, str] = field(default_factory=dict)
    _pairs: hyperscan.Database | None = field(init=False, repr=False)  # the pairs' UTF-8, literal
    _first_reading: dict[int, str] = field(init=False, repr=False)  # emoji → its name's first character
    # Emoji → each distinct character of its name and that character under the first view (`_fitted`).
    _name_reads: dict[int, tuple[tuple[str, str], ...]] = field(init=False, repr=False)
    _spelling_prefixes: frozenset[str] = field(init=False, repr=False)  # of every syllable, itself too
    _run_cache: dict[str, Syllables | None] = field(init=False, repr=False)  # `_run_syllables`'
    _tables: tuple[ModelTable, ...] = field(init=False, repr=False)
    _batch_tables: tuple[ModelTable, ...] = field(init=False, repr=False)  # TEXT_BREAK kept
    # The one view's batch table as an array (deleted: _DELETED), when the model reads one view
    # and the view maps each character to at most one: a batch's view is then one NumPy lookup.
    _batch_codes: npt.NDArray[np.uint32] | None = field(init=False, repr=False)
    _marking: tuple[ModelTable, ...] = field(init=False, repr=False)  # deleted → NUL (contributions)
    _shift: np.uint32 = field(init=False, repr=False)
    _units: npt.NDArray[np.int64] = field(init=False, repr=False)  # the weights in units of 2^-24
    _multipliers: tuple[np.uint32, ...] = field(init=False, repr=False)
    # `_margin`'s: column k−1 holds the coefficients of a window's characters in the hash of its
    # first k characters, times _MIX (mod 2^32), so a window times it is every order's bucket
    # before the shift; the padding after a text (max_order − 1 characters); and the n-grams of
    # the last max_order − 1 windows that reach into the padding, as places in the text's flat
    # row-major window matrix counted from its end, by how many of those last rows the text has
    # (one shorter than max_order − 1 has fewer): row −back, columns back … max_order − 1. Their
    # weights are taken with the others and subtracted from the text's sum.
    _window_hashes: npt.NDArray[np.uint32] = field(init=False, repr=False)
    _padding: str = field(init=False, repr=False)
    _beyond_the_end: tuple[tuple[int, ...], ...] = field(init=False, repr=False)
    _widest: int = field(init=False, repr=False)  # the most characters the first view writes for one

    def __post_init__(self) -> None:
        if not 1 <= self.max_order <= len(_ORDER_MULTIPLIERS) + 1:
            raise ValueError(f"max_order must be 1..{len(_ORDER_MULTIPLIERS) + 1}")
        if not 1 <= len(self.views) <= MAX_VIEWS:
            raise ValueError(f"a model reads 1..{MAX_VIEWS} views")
        if len(self.weights) != 1 << self.bits:
            raise ValueError("weights must hold 2^bits values")
        tables = [self.views[0]]
        for index, table in enumerate(self.views[1:], start=1):
            tables.append([_offset(value, index * VIEW_OFFSET) for value in table])
        object.__setattr__(self, "_tables", tuple(tables))
        batch_tables = []
        for table in tables:
            kept = list(table)
            kept[ord(TEXT_BREAK)] = ord(TEXT_BREAK)
            batch_tables.append(kept)
        object.__setattr__(self, "_batch_tables", tuple(batch_tables))
        single = len(batch_tables) == 1 and all(v is None or isinstance(v, int) for v in batch_tables[0])
        lookup = np.array([_DELETED if v is None else v for v in batch_tables[0]], dtype=np.uint32) if single else None
        object.__setattr__(self, "_batch_codes", lookup)
        object.__setattr__(self, "_marking", tuple([0 if v is None else v for v in t] for t in tables))
        object.__setattr__(self, "_shift", np.uint32(32 - self.bits))
        units = np.rint(np.ldexp(self.weights.astype(np.float64), _WEIGHT_UNIT_BITS)).astype(np.int64)
        object.__setattr__(self, "_units", units)
        prefixes = frozenset(syllable[:stop] for syllable in self.spellings for stop in range(1, len(syllable) + 1))
        object.__setattr__(self, "_spelling_prefixes", prefixes)
        object.__setattr__(self, "_run_cache", {})
        object.__setattr__(self, "_multipliers", tuple(np.uint32(m) for m in _ORDER_MULTIPLIERS))
        object.__setattr__(self, "_window_hashes", _window_hashes(self.max_order))
        object.__setattr__(self, "_padding", VIEW_BREAK * (self.max_order - 1))
        order = self.max_order
        beyond = tuple(
            tuple(column - back * order for back in range(1, rows + 1) for column in range(back, order))
            for rows in range(order)
        )
        object.__setattr__(self, "_beyond_the_end", beyond)
        written = [len(value) for value in self._tables[0] if isinstance(value, str)]
        object.__setattr__(self, "_widest", max([1, *written]))
        object.__setattr__(self, "_first_reading", {code: name[0] for code, name in self.emoji_names.items() if name})
        first_view = self._tables[0]
        name_reads = {
            code: tuple((char, char.translate(first_view)) for char in dict.fromkeys(name))
            for code, name in self.emoji_names.items()
        }
        object.__setattr__(self, "_name_reads", name_reads)
        pairs = [(index, pair.encode("utf-8")) for index, pair in enumerate(self.split_pairs)]
        object.__setattr__(self, "_pairs", compiled(pairs, literal=True))

    def __getstate__(self) -> dict[str, object]:
        # A Hyperscan database does not pickle: it travels serialised, as the pattern databases do
        # (a pack is compiled in a child process).
        state = dict(self.__dict__)
        state["_pairs"] = None if self._pairs is None else hyperscan.dumpb(self._pairs)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        serialised = state["_pairs"]
        if serialised is not None:
            assert isinstance(serialised, bytes)
            state["_pairs"] = loaded(serialised)
        self.__dict__.update(state)

    def joined(self, text: str) -> str:
        """What the n-grams are read from: the text's views joined by VIEW_BREAK."""
        return VIEW_BREAK.join([text.translate(table) for table in self._tables])

    def shortest_text(self, chars: int) -> int:
        """The fewest characters (at least 1) a text must have for `read_length` to reach `chars`:
        the first view writes at most `_widest` characters for one, an emoji reads as one."""
        return max(1, -(-chars // self._widest))

    def read_length(self, text: str) -> int:
        """How many characters of `text` the model reads in its first view (separators and
        punctuation deleted), an emoji with a Chinese name counting as one (it may stand for one)."""
        if self._first_reading and _SYMBOLS.search(text) is not None:
            text = text.translate(self._first_reading)
        return len(text.translate(self._tables[0]))

    # --- scoring

    def score(self, text: str) -> float:
        """The probability-like score in [0, 1] of one text."""
        return _sigmoid(self.margin(text))

    def margin(self, text: str) -> float:
        """bias + Σ weights / sqrt(n-grams): the score before the sigmoid (the highest over the
        emoji readings when the text holds an emoji)."""
        if self._has_readings(text):
            return max(self._margins(self._readings_of(text)))
        return self._margin(text)

    def _has_readings(self, text: str) -> bool:
        if self._has_pair(text):
            return True
        if _MAY_HAVE_READINGS.search(text) is None:  # most texts: one regex search says no
            return False
        if self.readings and _SYMBOLS.search(text) is not None:
            return True
        return bool(self.spellings) and next(self._pinyin_runs(text), None) is not None

    def _readings_of(self, text: str) -> list[str]:
        """`text` as it is, under each emoji reading and with its pinyin read as hanzi (repeats
        left out). Every reading but the one with emoji read as their whole names (`_named`) has
        the text's length, so spans of one are spans of the text."""
        found = [text]
        if self.readings and _SYMBOLS.search(text) is not None:
            for reading in self.readings:
                other = text.translate(reading)
                if other not in found:
                    found.append(other)
            if self.emoji_names:
                fitted = self._fitted(text)
                if fitted not in found:
                    found.append(fitted)
                named = self._named(text)[0]
                if named not in found:
                    found.append(named)
        if self.spellings:
            spelled = self._spelled(text)
            if spelled not in found:
                found.append(spelled)
        if self._pairs is not None:
            whole = self._unsplit(text)
            if whole not in found:
                found.append(whole)
        return found

    def _has_pair(self, text: str) -> bool:
        """Whether `text` holds a split pair: one scan stopped at the first (0.4 µs on a chat line)."""
        if self._pairs is None or text.isascii():
            return False
        try:
            self._pairs.scan(text.encode("utf-8", "replace"), match_event_handler=_stop)
        except hyperscan.ScanTerminated:
            return True
        return False

    def _split_ends(self, data: bytes, limit: int | None = None) -> list[int]:
        """The end byte offsets in `data` (UTF-8) of the split pairs it holds, ascending (the
        first `limit` of them: the scan stops there)."""
        ends: list[int] = []
        if self._pairs is not None and len(data) >= 6:  # two hanzi: 6 bytes at least

            def on_match(_pattern_id: int, _from: int, to: int, _flags: int, _context: object) -> bool:
                ends.append(to)
                return len(ends) == limit

            with contextlib.suppress(hyperscan.ScanTerminated):  # stopped at `limit`
                self._pairs.scan(data, match_event_handler=on_match)
        return ends

    def _unsplit(self, text: str) -> str:
        """`text` with its split pairs (the first MAX_SPLIT_PAIRS, left to right, not
        overlapping) read as their characters, each followed by a space that every view deletes:
        the reading keeps the text's length, so its spans are the text's. Found by the scan, not
        by reading the text in Python: a long hostile text costs what the scan costs."""
        data = text.encode("utf-8", "replace")  # a lone surrogate: one "?", one character still
        pieces: list[str] = []
        taken = 0  # pairs read
        start = 0  # where the text not yet copied starts (characters)
        decoded_bytes = decoded_chars = 0
        # Pairs that overlap end one character apart, so each pair read skips one end at most.
        for end in self._split_ends(data, limit=2 * MAX_SPLIT_PAIRS):
            decoded_chars += len(data[decoded_bytes:end].decode("utf-8"))  # a pair ends on a character
            decoded_bytes = end
            if decoded_chars - 2 < start:  # overlaps the pair read before it
                continue
            pieces.append(text[start : decoded_chars - 2])
            pieces.append(self.split_pairs[text[decoded_chars - 2 : decoded_chars]] + " ")
            start = decoded_chars
            taken += 1
            if taken == MAX_SPLIT_PAIRS:
                break
        if not pieces:
            return text
        pieces.append(text[start:])
        return "".join(pieces)

    def _named(self, text: str) -> tuple[str, list[int]]:
        """`text` with each emoji whose Chinese name has at most MAX_NAMED_CHARS characters read as
        that whole name (the first MAX_FITTED_EMOJI emoji), and for each character of the reading
        the index in `text` it comes from (a name's characters: its emoji's)."""
        names = self.emoji_names
        pieces: list[str] = []
        origins: list[int] = []
        position = 0
        for match in itertools.islice(_SYMBOLS.finditer(text), MAX_FITTED_EMOJI):
            name = names.get(ord(match.group()))
            if not name or len(name) > MAX_NAMED_CHARS:
                continue
            start = match.start()
            pieces.append(text[position:start])
            origins.extend(range(position, start))
            pieces.append(name)
            origins.extend([start] * len(name))
            position = start + 1
        pieces.append(text[position:])
        origins.extend(range(position, len(text)))
        return "".join(pieces), origins

    def _fitted(self, text: str) -> str:
        """`text` with its emoji (the first MAX_FITTED_EMOJI) read in context, left to right: each
        as the character of its name that makes a common two-character word with the character
        before or after it (under the first view, so by sound) and, of those, adds most to the
        margin; an emoji that makes no word stays as it is (the views delete it: decoration). An
        emoji not yet decided reads as its name's first character. Each emoji becomes one
        character, so the reading keeps the text's length."""
        name_reads = self._name_reads
        if _HANZI.search(text) is None:  # no written context: 🐴🐴 alone is read as no word
            return text
        positions = [m.start() for m in _SYMBOLS.finditer(text) if ord(m.group()) in name_reads][:MAX_FITTED_EMOJI]
        if not positions:
            return text
        first_view = self._tables[0]
        current = text.translate(self._first_reading)
        # Only an emoji with another within its window is decided again: the others would read
        # the same neighbours in every pass, and so decide the same.
        together = [
            position
            for here, position in enumerate(positions)
            if (here and position - positions[here - 1] <= _FITTED_WINDOW)
            or (here + 1 < len(positions) and positions[here + 1] - position <= _FITTED_WINDOW)
        ]
        for position in positions + together * (FITTED_PASSES - 1):
            left = current[max(0, position - _FITTED_WINDOW) : position]
            right = current[position + 1 : position + 1 + _FITTED_WINDOW]
            before, after = left.translate(first_view)[-1:], right.translate(first_view)[:1]
            best, best_units = text[position], 0
            context: list[tuple[str, str]] | None = None  # each view's characters before and after
            for char, meant in name_reads[ord(text[position])]:
                if before + meant not in self.emoji_words and meant + after not in self.emoji_words:
                    continue
                if context is None:
                    context = self._context(left, right)
                units = self._units_around(context, char)
                if best == text[position] or units > best_units:
                    best, best_units = char, units
            current = current[:position] + best + current[position + 1 :]
        return current

    def _context(self, left: str, right: str) -> list[tuple[str, str]]:
        """Per view, the characters of `left` and `right` an n-gram holding a character between
        them may reach (max_order − 1 on each side, after the view's deletions)."""
        reach = self.max_order - 1
        if not reach:
            return [("", "")] * len(self._tables)
        return [(left.translate(table)[-reach:], right.translate(table)[:reach]) for table in self._tables]

    def _units_around(self, context: list[tuple[str, str]], middle: str) -> int:
        """The weight units of the n-grams (every view) of before + middle + after that hold a
        character of `middle`: what reading an emoji as `middle` adds, the rest of the text alike."""
        multipliers = _ORDER_MULTIPLIERS
        shift = int(self._shift)
        total = 0
        for table, (before, after) in zip(self._tables, context, strict=True):
            codes = [ord(char) for char in before + middle.translate(table) + after]
            low, high = len(before), len(codes) - len(after)
            for start in range(len(codes)):
                gram = 0
                for order in range(1, min(self.max_order, len(codes) - start) + 1):
                    stop = start + order
                    gram = codes[start] if order == 1 else (gram * multipliers[order - 2] + codes[stop - 1]) & _MASK32
                    if stop > low and start < high:
                        total += self._units.item(((gram * _MIX) & _MASK32) >> shift)
        return total

    def _spelled(self, text: str) -> str:
        """`text` with its runs of pinyin read as hanzi (`_pinyin_runs`; the others as written)."""
        pieces: list[str] = []
        position = 0
        for run, spelled in self._pinyin_runs(text):
            pieces.append(text[position : run.start()])
            pieces.append(self._spell(run, spelled))
            position = run.end()
        if not pieces:
            return text
        pieces.append(text[position:])
        return "".join(pieces)

    def _pinyin_runs(self, text: str) -> Iterator[tuple[re.Match[str], Syllables]]:
        """The runs of Latin words in `text` read as pinyin, with their syllables: of the runs
        within the first MAX_SPELLED_PER_TEXT letters of runs (a long hostile text costs no more
        than a short one), each whose words all split into syllables, when it has two syllables
        at least or touches a hanzi (hei人, 他ma的): one syllable alone is as likely an English
        word or a name."""
        budget = MAX_SPELLED_PER_TEXT
        for run in _LATIN_RUN.finditer(text):
            budget -= run.end() - run.start()
            if budget < 0:
                return
            spelled = self._run_syllables(run.group())
            if spelled is None:
                continue
            if len(spelled) > 1 or len(spelled[0]) > 1 or any(self._touching(run)):
                yield run, spelled

    def _touching(self, run: re.Match[str]) -> tuple[str, str]:
        """The hanzi with a reading right before and right after `run` ("" where there is none)."""
        text, (start, end) = run.string, run.span()
        before = text[start - 1] if start and text[start - 1] in self.hanzi_syllables else ""
        after = text[end] if end < len(text) and text[end] in self.hanzi_syllables else ""
        return before, after

    def _run_syllables(self, run: str) -> Syllables | None:
        """The syllables of each word of a run of Latin words when every word splits into
        pinyin syllables, else None; remembered by run (`_run_cache`)."""
        cache = self._run_cache
        if run in cache:
            return cache[run]
        found = self._split_run(run)
        if len(run) <= MAX_CACHED_RUN_CHARS:
            if len(cache) >= MAX_CACHED_RUNS:
                cache.clear()
            cache[run] = found
        return found

    def _split_run(self, run: str) -> Syllables | None:
        if len(run) > MAX_SPELLED_PER_TEXT or _NOT_PINYIN.search(run) is not None:
            return None
        words = run.lower().split(" ")
        if any(len(word) > MAX_SPELLED_LETTERS for word in words):
            return None
        spelled: list[tuple[str, ...]] = []
        for word in words:
            parts = _syllables(word, self.spellings, self._spelling_prefixes)
            if parts is None:
                return None
            spelled.append(tuple(parts))
        return tuple(spelled)

    def _spell(self, run: re.Match[str], spelled: Syllables) -> str:
        """A run of pinyin (`_pinyin_runs`) as hanzi: each syllable becomes a hanzi and spaces,
        keeping the run's length."""
        syllables = [syllable for parts in spelled for syllable in parts]
        # A hanzi the run touches is read with it (nan人 as 男人, hei人 as 黑人): a word may span
        # it, as long as it is that hanzi there.
        before, after = self._touching(run)
        sounds, fixed = list(syllables), [""] * len(syllables)
        if before:
            sounds, fixed = [self.hanzi_syllables[before], *sounds], [before, *fixed]
        if after:
            sounds, fixed = [*sounds, self.hanzi_syllables[after]], [*fixed, after]
        read = self._words_of(sounds, fixed)
        hanzi = iter(read[1:] if before else read)
        return " ".join("".join(next(hanzi) + " " * (len(syllable) - 1) for syllable in parts) for parts in spelled)

    def _words_of(self, syllables: list[str], fixed: list[str]) -> str:
        """The hanzi `syllables` most likely stand for: split into the words of `pinyin_words` of
        least total cost (a syllable without an entry: its `spellings` hanzi at a high cost); where
        `fixed` names a hanzi, a word must hold that hanzi there (it is written, not spelled)."""
        words = self.pinyin_words
        best: list[tuple[float, int, str]] = [(0.0, 0, "")]  # per prefix: cost, where its last word starts, the word
        for stop in range(1, len(syllables) + 1):
            written = fixed[stop - 1]
            if written:  # a written hanzi alone, at its cost as a word (no choice to make)
                cost = words.get(written, (written, _UNKNOWN_SYLLABLE_COST))[1]
                found = (best[stop - 1][0] + cost, stop - 1, written)
            else:
                found = (best[stop - 1][0] + _UNKNOWN_SYLLABLE_COST, stop - 1, self.spellings[syllables[stop - 1]])
            for start in range(max(0, stop - _MAX_WORD_SYLLABLES), stop):
                entry = words.get("'".join(syllables[start:stop]))
                if entry is None or best[start][0] + entry[1] >= found[0]:
                    continue
                word = entry[0]
                if all(not want or want == char for want, char in zip(fixed[start:stop], word, strict=True)):
                    found = (best[start][0] + entry[1], start, word)
            best.append(found)
        pieces: list[str] = []
        stop = len(syllables)
        while stop > 0:
            _, start, word = best[stop]
            pieces.append(word)
            stop = start
        return "".join(reversed(pieces))

    def _margin(self, text: str) -> float:
        """One text's margin as one small matrix product: row i of `windows` is the text's
        characters i … i + max_order − 1 (past the end: padding), row i times `_window_hashes` is
        the bucket of every n-gram that starts at i (one column per order, Knuth's mix folded in;
        uint32 wraps the same whichever order the terms are added in), and the n-grams that would
        reach into the padding are left out of the sum. Five NumPy calls per chat line whatever
        max_order is: on a few dozen elements a NumPy call costs its overhead, not its work."""
        tables = self._tables
        joined = text.translate(tables[0]) if len(tables) == 1 else VIEW_BREAK.join([text.translate(t) for t in tables])
        size = len(joined)
        if not size:  # one view, nothing left in it: no feature
            return _margin_of(self.bias, 0, 1)
        order = self.max_order
        buffer = (joined + self._padding).encode("utf-32-le")
        # Positional arguments, and dot rather than @: 0.4 µs less per text, on a ~6 µs call.
        windows = np.ndarray((size, order), np.uint32, buffer, 0, (4, 4))
        hashed = windows.dot(self._window_hashes)
        hashed >>= self._shift
        taken = self._units.take(hashed).ravel()
        past = self._beyond_the_end[min(order - 1, size)]  # the n-grams reaching into the padding
        # A chat line's few dozen weights are summed as Python integers (two NumPy calls fewer),
        # a longer text's by NumPy: exact either way, so both give the same margin.
        if size <= _SUMMED_IN_PYTHON:
            weights = taken.tolist()
            units = sum(weights)
            for place in past:
                units -= weights[place]
        else:
            units = int(np.add.reduce(taken))
            for place in past:
                units -= taken.item(place)
        return _margin_of(self.bias, units, _gram_count(size, order))

    def _margins(self, texts: Sequence[str]) -> list[float]:
        """`_margin` of each of a few texts (one text's readings) from one window matrix: the
        texts' views one after another, max_order − 1 padding characters after each; each text's
        sum is its own rows' less the n-grams that reach into the padding, as `_margin` sums. The
        calls are `_margin`'s, made once for all the readings instead of once for each."""
        if len(texts) == 1:
            return [self._margin(texts[0])]
        joined = [self.joined(text) for text in texts]
        empty = _margin_of(self.bias, 0, 1)  # no character left in any view: no feature
        present = [index for index, view in enumerate(joined) if view]
        margins = [empty] * len(texts)
        if not present:
            return margins
        order = self.max_order
        reach = order - 1
        sizes = [len(joined[index]) for index in present]
        rows = sum(sizes) + reach * (len(present) - 1)
        buffer = (self._padding.join([joined[index] for index in present]) + self._padding).encode("utf-32-le")
        windows = np.ndarray((rows, order), np.uint32, buffer, 0, (4, 4))
        hashed = windows.dot(self._window_hashes)
        hashed >>= self._shift
        taken = self._units.take(hashed).ravel()
        if rows <= _SUMMED_IN_PYTHON:  # summed as `_margin` sums a chat line
            weights = taken.tolist()
            row = 0
            for index, size in zip(present, sizes, strict=True):
                end = (row + size) * order
                units = sum(weights[row * order : end])
                for place in self._beyond_the_end[min(reach, size)]:
                    units -= weights[end + place]
                margins[index] = _margin_of(self.bias, units, _gram_count(size, order))
                row += size + reach
            return margins
        bounds: list[int] = []  # each text's first place and end place, one text after another
        row = 0
        for size in sizes:
            bounds += (row * order, (row + size) * order)
            row += size + reach
        # One reduction over every text's own places (the sums between a text's end and the next
        # one's first are the padding's; the last end is the array's, which reduceat must not get).
        sums = np.add.reduceat(taken, bounds[:-1])[::2].tolist()
        for index, size, end, total in zip(present, sizes, bounds[1::2], sums, strict=True):
            units = total
            for place in self._beyond_the_end[min(reach, size)]:
                units -= taken.item(end + place)
            margins[index] = _margin_of(self.bias, units, _gram_count(size, order))
        return margins

    def score_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """`score` of every text, computed over one array for the whole batch; the texts with an
        emoji or a run of pinyin are scored again under their readings, as one more batch."""
        if not texts:
            return np.zeros(0)
        margins = self._batch_margins(texts)
        if self.readings or self.spellings:
            owners: list[int] = []
            variants: list[str] = []
            for index in self._texts_with_readings(texts):
                for reading in self._readings_of(texts[index])[1:]:
                    owners.append(index)
                    variants.append(reading)
            if variants:
                np.maximum.at(margins, np.array(owners), self._batch_margins(variants))
        return np.array([_sigmoid(margin) for margin in margins.tolist()], dtype=np.float64)

    def _texts_with_readings(self, texts: Sequence[str]) -> list[int]:
        """Indices of the texts that hold an emoji, a run that may be pinyin or a split pair: one
        regex pass and one Hyperscan scan over the whole batch, their hits mapped to their texts."""
        batch = TEXT_BREAK.join(texts)
        positions: list[int] = []  # character offsets in `batch`
        if self.readings:
            positions.extend(match.start() for match in _SYMBOLS.finditer(batch))
        if self.spellings:
            positions.extend(
                m.start() for m in _LATIN_RUN.finditer(batch) if self._run_syllables(m.group()) is not None
            )
        found: set[int] = set()
        if positions:
            starts = np.cumsum([0] + [len(text) + 1 for text in texts[:-1]])
            found.update((np.searchsorted(starts, positions, side="right") - 1).tolist())
        if self._pairs is not None:
            found.update(self._texts_with_pairs(texts, batch))
        return sorted(found)

    def _texts_with_pairs(self, texts: Sequence[str], batch: str) -> list[int]:
        """Indices of the texts that hold a split pair, `batch` their join: a pair is two hanzi,
        never a break, so its text is the number of breaks before it."""
        if batch.count(TEXT_BREAK) != len(texts) - 1:  # a text holds the break itself: one by one
            return [index for index, text in enumerate(texts) if self._has_pair(text)]
        data = batch.encode("utf-8", "replace")
        ends = self._split_ends(data)
        if not ends:
            return []
        breaks = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord(TEXT_BREAK))
        texts_of: list[int] = np.searchsorted(breaks, ends).tolist()
        return texts_of

    def _batch_margins(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """The margins of the texts as they are (no reading), per n-gram order: the weight at
        every position (0 where an n-gram would cross a text), summed per text."""
        codes = self._joined_codes(texts)
        size = len(codes)
        breaks = np.flatnonzero(codes == ord(TEXT_BREAK))
        starts = np.concatenate(([0], breaks + 1))
        lengths = np.diff(np.concatenate((starts, [size + 1]))) - 1  # characters per joined text
        totals = np.zeros(len(texts), dtype=np.int64)
        counts = np.zeros(len(texts), dtype=np.int64)
        # One padding zero: an empty last text starts at `size` (reduceat needs a valid index).
        weights = np.zeros(size + 1, dtype=np.int64)
        grams = codes
        for order in range(1, self.max_order + 1):
            if order > 1:
                if len(grams) < 2:
                    break
                grams = grams[:-1] * self._multipliers[order - 2]
                grams += codes[order - 1 :]
            hashed = grams * _MIX32
            hashed >>= self._shift
            weights[: len(hashed)] = self._units.take(hashed)
            weights[len(hashed) :] = 0
            # The n-grams that hold a break start at most order−1 positions before it.
            for back in range(order):
                weights[np.maximum(breaks - back, 0)] = 0
            totals += np.add.reduceat(weights, starts)
            counts += np.maximum(lengths - order + 1, 0)
        # The same operations, in the same order, as `_margin_of` for one text.
        return np.asarray(self.bias + totals * _WEIGHT_UNIT / np.sqrt(np.maximum(counts, 1)), dtype=np.float64)

    def _joined_codes(self, texts: Sequence[str]) -> npt.NDArray[np.uint32]:
        """The code points of `_joined_batch(texts)`."""
        lookup = self._batch_codes
        if lookup is not None:
            batch = TEXT_BREAK.join(texts)
            if batch.count(TEXT_BREAK) == len(texts) - 1:
                codes = np.frombuffer(batch.encode("utf-32-le"), dtype=np.uint32)
                inside = codes < len(lookup)  # beyond the table a character is its own image
                mapped = np.where(inside, lookup.take(np.where(inside, codes, 0)), codes)
                kept: npt.NDArray[np.uint32] = mapped[mapped != _DELETED]
                return kept
        return np.frombuffer(self._joined_batch(texts).encode("utf-32-le"), dtype=np.uint32)

    def _joined_batch(self, texts: Sequence[str]) -> str:
        """The texts' `joined` forms separated by TEXT_BREAK, each view translated for the whole
        batch at once (one C call per view, not one per text)."""
        batch = TEXT_BREAK.join(texts)
        if batch.count(TEXT_BREAK) != len(texts) - 1:  # a text holds the break itself: one by one
            return TEXT_BREAK.join([self.joined(text) for text in texts])
        views = [batch.translate(table) for table in self._batch_tables]
        if len(views) == 1:
            return views[0]
        return TEXT_BREAK.join(map(VIEW_BREAK.join, zip(*(view.split(TEXT_BREAK) for view in views), strict=True)))

    def features(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """Every n-gram's bucket and the index of the text it belongs to, for a batch (also the
        training data of service.training)."""
        codes = self._joined_codes(texts)
        breaks = codes == ord(TEXT_BREAK)
        text_of = np.cumsum(breaks)  # text index of each position (a break belongs to the next)
        size = len(codes)
        buckets: list[npt.NDArray[np.intp]] = []
        owners: list[npt.NDArray[np.intp]] = []
        for order, grams in self._rolling_grams(codes):
            count = size - order + 1
            # An n-gram is a feature when it holds no break: first and last character in one text.
            valid = ~breaks[:count] & (text_of[:count] == text_of[order - 1 :])
            buckets.append((grams[valid] * _MIX32 >> self._shift).astype(np.intp))
            owners.append(text_of[:count][valid].astype(np.intp))
        return np.concatenate(buckets), np.concatenate(owners)

    def _rolling_grams(self, codes: npt.NDArray[np.uint32]) -> Iterator[tuple[int, npt.NDArray[np.uint32]]]:
        """(n, the rolling hash of every n-gram of `codes`) for n = 1 … max_order, as long as there is
        one (the same arithmetic as `score`'s and `score_batch`'s in-place loops)."""
        grams = codes
        for order in range(1, self.max_order + 1):
            if order > 1:
                if len(grams) < 2:
                    return
                grams = grams[:-1] * self._multipliers[order - 2] + codes[order - 1 :]
            yield order, grams

    # --- explanation

    def contributions(self, text: str, limit: int = 3) -> tuple[float, list[Span]]:
        """The score and up to `limit` spans of `text` whose n-grams added most to it: the
        2 × `limit` heaviest positive n-grams, overlapping ones merged, the heaviest spans first."""
        origins: list[int] | None = None  # where each character of the reading read comes from
        written = text
        if self._has_readings(text):
            readings = self._readings_of(text)
            margins = self._margins(readings)
            read = readings[margins.index(max(margins))]  # the first of the highest, as max() picks
            if len(read) != len(text):  # the emoji read as their names: spans mapped back
                read, origins = self._named(text)
            text = read  # the other readings have the text's length: spans stay the text's
        # The joined views as code points, and the original index of each (-1: a view break): each
        # view translated 1:1 with deleted characters as NUL, which the views never hold.
        code_parts: list[npt.NDArray[np.uint32]] = []
        where_parts: list[npt.NDArray[np.intp]] = []
        for index, table in enumerate(self._marking):
            if index:
                code_parts.append(np.array([ord(VIEW_BREAK)], dtype=np.uint32))
                where_parts.append(np.array([-1], dtype=np.intp))
            marked = np.frombuffer(text.translate(table).encode("utf-32-le"), dtype=np.uint32)
            kept = np.flatnonzero(marked != 0)
            code_parts.append(marked[kept])
            where_parts.append(kept)
        codes = np.concatenate(code_parts) if code_parts else np.zeros(0, dtype=np.uint32)
        where = np.concatenate(where_parts) if where_parts else np.zeros(0, dtype=np.intp)
        per_gram: list[tuple[int, int, float]] = []  # (original start, original end, weight)
        total = 0.0
        for order, grams in self._rolling_grams(codes):
            weights = self.weights.take(grams * _MIX32 >> self._shift).astype(np.float64)
            total += float(weights.sum())
            first, last = where[: len(grams)], where[order - 1 :]
            # An n-gram holding a view break names no span of the text.
            inside = (first >= 0) & (last >= 0)
            if order > 2:
                inside &= np.minimum.reduce([where[k : k + len(grams)] for k in range(order)]) >= 0
            heavy = np.flatnonzero(inside & (weights > 0))
            if len(heavy) > 2 * limit:
                heavy = heavy[np.argpartition(-weights[heavy], 2 * limit)[: 2 * limit]]
            per_gram.extend((int(first[i]), int(last[i]) + 1, float(weights[i])) for i in heavy)
        count = _gram_count(len(codes), self.max_order)
        if count == 0:
            return _sigmoid(self.bias), []
        scale = 1.0 / float(np.sqrt(count))
        # The heaviest n-grams, overlapping ones merged: a few focused spans, not the whole text.
        heaviest = sorted(per_gram, key=lambda g: -g[2])[: 2 * limit]
        if origins is not None:  # positions of the reading → of the text (a name's → its emoji's)
            heaviest = [(origins[start], origins[end - 1] + 1, weight) for start, end, weight in heaviest]
        merged: list[list[float]] = []
        for start, end, weight in sorted(heaviest):
            if merged and start < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
                merged[-1][2] += weight * scale
            else:
                merged.append([start, end, weight * scale])
        merged.sort(key=lambda span: -span[2])
        if origins is None and text != written:
            # A spelled syllable's hanzi stands on its first letter, a split character on its
            # first part, spaces on the rest: the span takes what was written there.
            for span in merged:
                end = int(span[1])
                while end < len(text) and text[end] == " " and written[end] != " ":
                    end += 1
                span[1] = end
        return _sigmoid(self.bias + total * scale), [Span(int(s), int(e), w) for s, e, w in merged[:limit]]


def _stop(_pattern_id: int, _from: int, _to: int, _flags: int, _context: object) -> bool:
    return True  # a Hyperscan match handler that ends the scan at the first match


def _window_hashes(max_order: int) -> npt.NDArray[np.uint32]:
    """The matrix of `NgramModel._margin`: entry (j, k−1) is the coefficient of a window's
    character j in the rolling hash of its first k characters (g1 = c0, gk = g(k−1)·M(k−2) + c(k−1):
    the product of M(j) … M(k−2)), times _MIX, mod 2^32; 0 for j ≥ k."""
    matrix = np.zeros((max_order, max_order), dtype=np.uint32)
    for order in range(1, max_order + 1):
        for position in range(order):
            coefficient = _MIX
            for multiplier in _ORDER_MULTIPLIERS[position : order - 1]:
                coefficient = (coefficient * multiplier) & _MASK32
            matrix[position, order - 1] = coefficient
    return matrix


def _syllables(word: str, spellings: dict[str, str], prefixes: frozenset[str]) -> list[str] | None:
    """`word` split into the fewest pinyin syllables (of equal splits, the one whose syllables
    end shortest, last first), or None when it does not split. Forward, a back-pointer per
    position: from each reachable position, only while the letters read so far begin a syllable
    (`prefixes`), so an English word is given up on within a letter or two of each start."""
    unreachable = len(word) + 1
    count = [0] + [unreachable] * len(word)  # fewest syllables up to each position
    back = [0] * (len(word) + 1)  # where the last syllable up to each position starts
    for start in range(len(word)):
        reached = count[start] + 1
        if reached > unreachable:
            continue
        for stop in range(start + 1, len(word) + 1):
            piece = word[start:stop]
            if piece not in prefixes:
                break
            # Starts come in ascending order: a tie goes to the later start (the shorter syllable).
            if reached <= count[stop] and piece in spellings:
                count[stop] = reached
                back[stop] = start
    if count[-1] == unreachable:
        return None
    parts: list[str] = []
    stop = len(word)
    while stop > 0:
        parts.append(word[back[stop] : stop])
        stop = back[stop]
    return parts[::-1]


def _offset(value: int | str | None, offset: int) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value + offset
    return "".join(chr(ord(char) + offset) for char in value)


def _gram_count(size: int, max_order: int) -> int:
    """How many n-grams of 1 … max_order characters a view of `size` characters holds."""
    return max_order * size - max_order * (max_order - 1) // 2 if size >= max_order else size * (size + 1) // 2


def _margin_of(bias: float, units: int, count: int) -> float:
    """bias + Σ weights / sqrt(n-grams), from the sum in weight units (exact below 2^53)."""
    return bias + units * _WEIGHT_UNIT / math.sqrt(count)


def _sigmoid(margin: float) -> float:
    if margin >= 0:
        return 1.0 / (1.0 + math.exp(-margin))
    odds = math.exp(margin)  # exp(-margin) would overflow for a margin below about -709
    return odds / (1.0 + odds)
