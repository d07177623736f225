"""Adversarial texts at any length, and how an engine's cost grows with their length.

    .venv/bin/python -m loadtest.adversarial                      # every kind, 1k to 64k chars
    .venv/bin/python -m loadtest.adversarial --kinds pinyin_run --sizes 4096,65536

Each kind is a shape an attacker would try against a multi-pattern matcher with Python-side checks:
long runs of pinyin-looking letters (every hit sits inside or at the edge of one run), the pack's
own keywords packed end to end (a hit at every position), their prefixes (near misses), their
homophones (candidates for the homophone layer), runs of emoji, separators, spelled-out letters,
alternating scripts, combining marks, zero-width characters and characters written as their parts
(the model's split-pair reading). Texts are built from the pack's
tables and lexicons, deterministically (seeded), for any field (`text`, `file.name`, `link.url`).

The test `tests/engine/test_linear_cost.py` asserts with these that cost grows linearly (ratios
between sizes in one run); this command prints the figures docs/reliability.md quotes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from service.engine.classifier import Engine
from service.events import ChatEvent, File, Link
from service.rules import tables
from service.rules.loader import load_pack
from service.settings import bundled_rules_dir

NOW = datetime(2026, 6, 1, tzinfo=UTC)

Generator = Callable[[int, random.Random], str]


def lexicon_words(pack: Path) -> list[str]:
    """Every term of the pack's lexicon files, in file order."""
    words: list[str] = []
    for path in sorted((pack / "lexicons").glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            term = line.split("#", 1)[0].strip()
            if term:
                words.append(term)
    return words


def _fill(pieces: Iterator[str], size: int) -> str:
    out: list[str] = []
    length = 0
    for piece in pieces:
        out.append(piece)
        length += len(piece)
        if length >= size:
            break
    return "".join(out)[:size]


def _whole(pieces: Iterator[str], size: int) -> str:
    """Whole pieces up to `size` characters: a run of syllables is cut between two of them, so every
    size takes the same path (a cut syllable, like a final `z`, makes the run read as no pinyin)."""
    out: list[str] = []
    length = 0
    for piece in pieces:
        if length + len(piece) > size:
            break
        out.append(piece)
        length += len(piece)
    return "".join(out)


def _cycle(items: list[str], rng: random.Random) -> Iterator[str]:
    while True:
        yield rng.choice(items)


class Kinds:
    """The generators, bound to one pack's words."""

    def __init__(self, pack: Path) -> None:
        self.words = lexicon_words(pack)
        self.hanzi_words = [w for w in self.words if any(tables.is_cjk(c) for c in w)]
        self.latin_words = [w for w in self.words if w.isascii()]
        self.syllables = sorted(tables.pinyin_syllables())
        self.spellings = [
            "".join(r[0] for r in reading) for w in self.hanzi_words if all(reading := tables.readings(w))
        ]
        folds = tables.homophone_groups()
        self.homophones = ["".join(_homophone(c, folds) for c in w) for w in self.hanzi_words]
        self.emoji = sorted({e for chars in tables.emoji_names().values() for e in chars})
        self.split_pairs = sorted(tables.model_split_pairs())

    def table(self) -> dict[str, Generator]:
        return {
            "pinyin_run": lambda n, rng: _whole(_cycle(self.syllables, rng), n),
            "pinyin_keywords_joined": lambda n, rng: _fill(_cycle(self.spellings, rng), n),
            "pinyin_keywords_spaced": lambda n, rng: _fill((s + " " for s in _cycle(self.spellings, rng)), n),
            "keywords_packed": lambda n, rng: _fill(_cycle(self.words, rng), n),
            "keyword_prefixes": lambda n, rng: _fill((w[:-1] or w for w in _cycle(self.words, rng)), n),
            "keyword_homophones": lambda n, rng: _fill(_cycle(self.homophones, rng), n),
            "one_keyword_repeated": lambda n, rng: _fill(iter(lambda: self.hanzi_words[0], None), n),
            "emoji_run": lambda n, rng: _fill(_cycle(self.emoji, rng), n),
            "split_pairs_packed": lambda n, rng: _fill(_cycle(self.split_pairs, rng), n),
            "emoji_between_hanzi": lambda n, rng: _fill(
                (c + rng.choice(self.emoji) for w in _cycle(self.hanzi_words, rng) for c in w), n
            ),
            "separators_between_hanzi": lambda n, rng: _fill(
                (c + rng.choice(" *._-|/~") for w in _cycle(self.hanzi_words, rng) for c in w), n
            ),
            "separator_run": lambda n, rng: _fill(_cycle([" ", "*", ".", "\u3000", "-", "_"], rng), n),
            "spelled_letters": lambda n, rng: _fill(
                (c + rng.choice(" .*-") for w in _cycle(self.latin_words or ["fuck"], rng) for c in w), n
            ),
            "alternating_scripts": lambda n, rng: _fill(_forever(lambda: self._scripts(rng)), n),
            "combining_marks": lambda n, rng: _fill(_forever(lambda: _marked(rng)), n),
            "zero_width_between": lambda n, rng: _fill(
                (c + rng.choice("\u200b\u200c\u200d\ufeff") for w in _cycle(self.words, rng) for c in w), n
            ),
            "digits_and_money": lambda n, rng: _fill(_cycle(["¥", "99", "元", "$", "8.8", "红包", "200"], rng), n),
            "url_like": lambda n, rng: _fill(_cycle(["http://", "a.", "b/", "?q=", "taobao", ".com", "%E5"], rng), n),
        }


    def _scripts(self, rng: random.Random) -> str:
        return rng.choice("abcxyz") + rng.choice(self.hanzi_words)[0] + rng.choice("0123456789")


def _forever(piece: Callable[[], str]) -> Iterator[str]:
    while True:
        yield piece()


def _marked(rng: random.Random) -> str:
    return rng.choice("ab红包") + "".join(rng.choice("\u0301\u0302\u0308\u20dd") for _ in range(3))


def _homophone(char: str, folds: dict[str, str]) -> str:
    reading = tables.char_reading(char)
    group = folds.get(reading or "", "")
    others = [c for c in group if c != char]
    return others[0] if others else char


FIELDS: dict[str, Callable[[str], ChatEvent]] = {
    "text": lambda text: ChatEvent(id="adversarial", text=text),
    "file.name": lambda text: ChatEvent(id="adversarial", type="file", file=File(name=text, size=1)),
    "link.url": lambda text: ChatEvent(id="adversarial", type="link", link=Link(url=text)),
}


def classify_seconds(engine: Engine, event: ChatEvent, repeats: int) -> float:
    """The fastest of `repeats` classifications: the least disturbed by the rest of the machine."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        engine.classify(event, NOW)
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=Path, default=bundled_rules_dir())
    parser.add_argument("--sizes", default="1024,4096,16384,65536")
    parser.add_argument("--kinds", default="", help="comma-separated; default every kind")
    parser.add_argument("--fields", default="text,file.name,link.url")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    engine = load_pack(args.rules)
    kinds = Kinds(args.rules).table()
    chosen = [k for k in args.kinds.split(",") if k] or list(kinds)
    sizes = [int(s) for s in args.sizes.split(",")]
    columns = " | ".join(f"{s:,} chars" for s in sizes)
    print(f"| kind | field | {columns} | µs per char at the largest | growth ×{sizes[-1] // sizes[-2]} size |")
    print("|---|---|" + "---:|" * (len(sizes) + 2))
    ratios: list[float] = []
    for kind in chosen:
        for field in args.fields.split(","):
            seconds = [
                classify_seconds(engine, FIELDS[field](kinds[kind](size, random.Random(size))), args.repeats)
                for size in sizes
            ]
            ratio = seconds[-1] / seconds[-2]
            ratios.append(ratio)
            cells = " | ".join(f"{s * 1000:.2f} ms" for s in seconds)
            print(f"| {kind} | {field} | {cells} | {seconds[-1] / sizes[-1] * 1e6:.3f} | {ratio:.2f} |")
    linear = sizes[-1] / sizes[-2]
    print(f"\nmedian growth {statistics.median(ratios):.2f}, max {max(ratios):.2f} (linear: {linear:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
