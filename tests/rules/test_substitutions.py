"""The substitution tables are split in two: the matcher's folds are built from one half, the
robustness suite substitutes only from the other (so its figure measures generalisation)."""

from __future__ import annotations

import random

import pytest

from loadtest.quality import perturb
from service.rules import substitutions, tables

SPLITS = {
    "homophones": substitutions.homophones,
    "near_homophones": substitutions.near_homophones,
    "emoji": substitutions.emoji,
}


@pytest.mark.parametrize("kind", sorted(SPLITS))
def test_halves_are_disjoint_and_both_used(kind: str) -> None:
    split = SPLITS[kind]()
    assert split.fold.isdisjoint(split.held)
    assert len(split.fold) > 1000
    assert len(split.held) > 1000


def test_the_fold_joins_its_own_pairs_and_not_every_held_one() -> None:
    folds = tables.homophone_folds()
    fold, held = substitutions.homophones().fold, substitutions.homophones().held
    assert all(folds[ord(a)] == folds[ord(b)] for a, b in fold)
    # Held pairs join only through the fold half (transitivity): a reading group of two whose
    # one pair is held stays apart.
    apart = [(a, b) for a, b in held if folds[ord(a)] != folds[ord(b)]]
    assert apart
    joined = sum(folds[ord(a)] == folds[ord(b)] for a, b in held)
    assert joined > 0.9 * len(held)


def test_near_homophones_fold_only_when_asked() -> None:
    assert tables.homophone_fold("脑") != tables.homophone_fold("老")
    assert tables.near_homophone_fold("脑") == tables.near_homophone_fold("老")  # n/l
    assert substitutions.fuzzy_syllable("zhang") == "zan"
    assert substitutions.fuzzy_syllable("ling") == "nin"
    assert substitutions.fuzzy_syllable("fen") == "hen"
    assert substitutions.fuzzy_syllable("long") == "nong"  # -ong is no fuzzy final


@pytest.mark.parametrize(
    ("kind", "split"),
    [("homophones", "homophones"), ("near_homophones", "near_homophones"), ("emoji", "emoji")],
)
def test_perturbations_draw_only_from_the_held_half(kind: str, split: str) -> None:
    held = SPLITS[split]().held
    rng = random.Random(3)
    spans = ["傻逼", "你妈的", "红包", "人渣", "机密", "代购", "脑残", "贱人", "废物", "垃圾"]
    changed = 0
    for span in spans * 5:
        out = perturb.KINDS[kind](span, rng)
        for before, after in zip(span, out, strict=True):
            if before == after:
                continue
            changed += 1
            pair = (after, before) if kind == "emoji" else (min(before, after), max(before, after))
            assert pair in held, (span, out)
    assert changed >= 25


def test_multi_character_replaces_every_hanzi_it_can() -> None:
    out = perturb.multi_character("你妈的", random.Random(1))
    assert all(a != b for a, b in zip("你妈的", out, strict=True))
    assert perturb.multi_character("妈", random.Random(1)) == "妈"  # one hanzi: not applicable
