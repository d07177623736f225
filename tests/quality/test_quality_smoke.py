"""The quality harness on a small slice: structure of its figures and the benign traps.

Thresholds on the full-data figures do not belong here (docs/quality.md records them); this only
checks that the harness runs, counts consistently, and that no trap is acted on.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from loadtest.quality import perturb
from loadtest.quality.__main__ import evaluate, render
from loadtest.quality.datasets import load_cold, load_swsr
from loadtest.quality.evasion import robustness
from loadtest.quality.layers import Variant, per_rule
from loadtest.quality.model_robustness import decorate
from loadtest.quality.traps import TRAPS, check_traps, violations
from service.engine.classifier import Engine
from service.rules.loader import load_pack
from service.settings import bundled_rules_dir

EVAL_DATA = Path("/work/shared/eval")
needs_data = pytest.mark.skipif(not (EVAL_DATA / "cold").is_dir(), reason="evaluation data not present")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return load_pack(bundled_rules_dir())


def test_traps_stay_clean(engine: Engine) -> None:
    results = check_traps(engine)
    assert len(results) == len(TRAPS)
    assert violations(results) == []
    # The ordinary-gift exception keeps the audit trail: the match is there, lowered to allow.
    wedding = next(v for t, v in results if t.label == "wedding gift between members")
    assert [m.action for m in wedding.matches] == ["allow"]


@pytest.mark.parametrize(
    ("kind", "span", "expected"),
    [
        ("traditional", "机密", "機密"),  # OpenCC s2t, the reverse of the normaliser's t2s
        ("full_width", "idiot", "ｉｄｉｏｔ"),  # + 0xFEE0
        ("leetspeak", "porn", "p0rn"),
        ("pinyin_joined", "红包", "hongbao"),
        ("pinyin_spaced", "红包", "hong bao"),
        ("separators_space", "傻逼", "傻 逼"),
        ("emoji_names", "红包", "🧧"),  # CLDR zh name of U+1F9E7
        ("leetspeak", "红包", "红包"),  # not applicable: unchanged
        # A leet host is another host, not a disguised link: hosts stay, the words around change.
        ("leetspeak", "visit shop.taobao.com now", "v1517 shop.taobao.com n0w"),
    ],
)
def test_perturbations(kind: str, span: str, expected: str) -> None:
    assert perturb.KINDS[kind](span, random.Random(0)) == expected


def test_homophones_keep_the_reading() -> None:
    out = perturb.homophones("红包", random.Random(0))
    assert out != "红包"
    assert len(out) == 2
    assert sum(a != b for a, b in zip(out, "红包", strict=True)) == 1  # one character substituted
    assert perturb.pinyin_joined(out, random.Random(0)) == "hongbao"


def test_zero_width_only_inserts_invisible_characters() -> None:
    out = perturb.zero_width("傻逼", random.Random(0))
    assert out[0] == "傻"
    assert out[-1] == "逼"
    assert all(c in perturb.ZERO_WIDTH for c in out[1:-1])


def test_apply_rewrites_only_the_spans() -> None:
    text = "你个傻逼，会不会干活"
    assert perturb.apply(text, [(2, 4)], perturb.separators_space, random.Random(0)) == "你个傻 逼，会不会干活"


def test_robustness_counts_only_changed_texts(engine: Engine) -> None:
    texts = ["你个傻逼，会不会干活", "今天天气不错"]
    results = robustness(engine, texts, kinds=["traditional", "leetspeak", "zero_width"])
    assert results["leetspeak"].applicable == 0  # no Latin letters in the evidence
    assert results["zero_width"].applicable == 1  # one matched text, one category
    assert 0 <= results["zero_width"].kept <= 1


@needs_data
def test_harness_on_a_slice(engine: Engine) -> None:
    figures = evaluate(EVAL_DATA, bundled_rules_dir(), limit=200, engine=engine)
    cold, swsr = figures.cold, figures.swsr
    assert cold.positives + cold.negatives == 200
    assert swsr.positives + swsr.negatives == 200
    # The slice is spread over the files, so every label group is present.
    assert {"safe", "safe_anti_bias", "attack_person", "attack_group"} <= set(cold.group_sizes)
    assert {"SO", "non_sexist"} <= set(swsr.group_sizes)
    for score in (cold, swsr):
        assert score.flagged_positive["*"] <= score.positives
        assert score.flagged_negative["*"] == len(score.false_positives)
        assert 0.0 <= score.false_positive_rate() <= 1.0
    assert violations(figures.traps) == []
    text = render(figures, fp_limit=5)
    assert "## Evasion robustness" in text
    assert "| traditional |" in text


def test_datasets_read_the_real_columns() -> None:
    if not (EVAL_DATA / "cold").is_dir():
        pytest.skip("evaluation data not present")
    cold = load_cold(EVAL_DATA, limit=50)
    swsr = load_swsr(EVAL_DATA, limit=50)
    assert all(r.text for r in cold + swsr)
    assert any(r.positive for r in cold)
    assert any(not r.positive for r in cold)


def test_layers_counts_per_rule_the_rows_a_layer_adds_through_it() -> None:
    before = Variant("homophones", {"a"}, {"b"}, {}, {"a": {"insult"}, "b": {"insult"}})
    after = Variant("+ near", {"a", "c"}, {"b", "d"}, {},
                    {"a": {"insult", "slur"}, "b": {"insult"}, "c": {"insult"}, "d": {"slur", "insult"}})
    table = per_rule([before, after])
    # insult: c (safe) and d (offensive) are new through it; slur: a (safe) and d (offensive).
    assert "| + near | insult | 1 | 1 |" in table
    assert "| + near | slur | 1 | 1 |" in table
    assert table.count("| + near |") == 2


def test_decoration_inserts_emoji_and_keeps_the_text() -> None:
    text = "今天下午三点在三楼会议室开会，请大家准时参加。"
    decorated = decorate(text)
    assert decorated == decorate(text)  # deterministic: seeded by the text
    assert len(decorated) > len(text)
    assert "".join(c for c in decorated if c in text) == text  # only emoji were added


def test_ordinary_work_chat_of_the_probes_stays_clean(engine: Engine) -> None:
    # The probes' ordinary messages (trash sorting rules, classified ads, security training on
    # classified documents, home-grown oranges given away, an election notice…) next to the
    # red-line terms in both languages: none may be acted on.
    from loadtest.quality.probe import PROBE_FILES, probe_sets
    from loadtest.quality.scoring import acted, classify_texts

    ordinary = [text for path in PROBE_FILES for probe in probe_sets(path).values() for text in probe["ordinary"]]
    assert len(ordinary) >= 90
    verdicts = classify_texts(engine, [(str(i), text) for i, text in enumerate(ordinary)])
    assert [(text, [m.rule for m in acted(v)]) for text, v in zip(ordinary, verdicts, strict=True) if acted(v)] == []
