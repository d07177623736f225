"""The default pack with its evasion layers (homophones on): evasions of its own terms are caught
with exact evidence, and ordinary text that merely sounds like them is left alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.engine.classifier import Engine
from service.events import ChatEvent
from service.rules.loader import load_pack
from service.settings import bundled_rules_dir

NOW = datetime(2025, 1, 1, tzinfo=UTC)  # outside every election window


@pytest.fixture(scope="module")
def engine() -> Engine:
    return load_pack(bundled_rules_dir())


def _acted(engine: Engine, text: str) -> dict[str, list[str]]:
    """Category → evidence of every match an officer would see."""
    verdict = engine.classify(ChatEvent(id="e", text=text), NOW)
    found: dict[str, list[str]] = {}
    for match in verdict.matches:
        if match.action != "allow" and not match.shadow:
            found.setdefault(match.category, []).extend(e.text for e in match.evidence)
    return found


CAUGHT = [
    # (text, category, evidence)
    ("你个沙比，会不会干活", "improper_remarks", "沙比"),  # homophones of 傻逼
    ("这种人渣真恶心", "improper_remarks", "人渣"),
    ("那种人就是壬扎", "improper_remarks", "壬扎"),
    ("那种男人是畜🥧牲", "improper_remarks", "畜🥧牲"),  # an emoji that stands in elsewhere, as a separator
    ("整个一l o w 逼", "improper_remarks", "l o w 逼"),  # spelled-out Latin next to hanzi
    ("整个一l0w逼", "improper_remarks", "l0w逼"),  # leet in a mixed keyword
    ("整个一lowbi", "improper_remarks", "lowbi"),  # pinyin of a mixed keyword
    ("nigeshabi，会不会干活", "improper_remarks", "shabi"),  # pinyin inside a run of pinyin
    ("秘密★启用前 关于干部调整的通知", "secret_leak", "秘密★"),  # the regex's ★ is kept
    ("密/级_：^秘~密，请在内网处理", "secret_leak", "密/级_：^秘~密"),
    ("This file is T*O_P S/E=C/R·E~T", "secret_leak", "T*O_P S/E=C/R·E~T"),  # words of a spelled phrase
    # issue 17: emoji read as their name, English forms, the learned signal
    ("你🐴的，闭嘴", "improper_remarks", "你🐴的"),  # 🐴 马 reads ma: 你妈的
    ("Strictly confidential: the reshuffle list, not for distribution", "secret_leak", "strictly confidential"),
    ("Vote for me and get a red packet, 200 each", "vote_buying", "Vote for me"),
    ("Fresh dates 39 yuan a pack, dm me to order", "side_business", "dm me"),
    ("黑人都是懒鬼", "improper_remarks", "0.962"),  # the model's score is the first evidence
    ("兄弟们帮我那票，这次就看大家了", "vote_buying", "帮我那票"),  # near-homophone: 那 na for 拉 la
    ("nbzl发你了，看完删", "secret_leak", "nbzl"),  # pinyin initials of 内部资料
    # two emoji read at different places of their names, in context: 🔠 输入大写拉丁字母 (拉, its
    # 5th character) and 🐞 瓢虫 (瓢 piao, for 票)
    ("兄弟们帮我🔠🐞", "vote_buying", "🔠🐞"),
]


@pytest.mark.parametrize(("text", "category", "evidence"), CAUGHT, ids=[c[0] for c in CAUGHT])
def test_evasions_of_the_pack_are_caught(engine: Engine, text: str, category: str, evidence: str) -> None:
    assert evidence.lower() in [e.lower() for e in _acted(engine, text).get(category, [])]


def test_a_folded_reading_alone_asks_for_review(engine: Engine) -> None:
    exact = engine.classify(ChatEvent(id="e", text="你妈的，闭嘴"), NOW)
    folded = engine.classify(ChatEvent(id="f", text="你🐴的，闭嘴"), NOW)
    assert exact.action == "block"
    assert folded.action == "review"
    family = next(m for m in folded.matches if m.rule == "improper_remarks.family_abuse")
    assert "folded reading" in family.reason


CLEAN = [
    # ordinary text whose sound matches a term of the pack
    "My God，黄焖鸡米饭居然是山东的",  # 鸡米 sounds like 机密 (a regex: no twin, 羁縻/吉米/几米)
    "评论里全是你只看到片面",  # 全是 sounds like 拳师
    "我觉得女权是，女人按照自己的心意选择",  # 女权是 sounds like 女拳师
    "我女友今天生日",  # 女友 sounds like 女优
    "发现我的黑人脸盲不太好治……长达一个星期",  # 治……长 sounds like 智障; the ellipsis ends a clause
    "大厦比较高",
    "我可是最讨厌看繁体字的，zhichishiri我分得清",  # chishi mid-run of pinyin
    "我🐴上到，大家稍等",  # a stand-in emoji that reads as no term
    "Can someone share the slides from this morning?",
    "Confidentiality training on Friday afternoon",
    "每天看CNN新闻，PPT发群里了",  # acronyms next to hanzi are no initials of a term
    "中国人总是喜😤欢嘲笑印🔈度人",  # decoration: 🔈 inside the word 印度 is no character of a term
    "🐴🐴",  # emoji alone have no written context to be read in (the model would read 马头)
    "码头",  # a word or two is too short for the model (min_chars 3): it scored 0.948 alone
    "女人",
]


@pytest.mark.parametrize("text", CLEAN)
def test_ordinary_text_that_sounds_like_a_term_is_left_alone(engine: Engine, text: str) -> None:
    assert _acted(engine, text) == {}
