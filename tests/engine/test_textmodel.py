"""The learned model's two scoring paths agree, its features read the normalised views, and its
explanation points into the original text."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine import textmodel
from service.engine.textmodel import TEXT_BREAK, NgramModel
from service.rules.models import text_model


def _model(views: tuple[str, ...] = ("plain", "homophones"), bits: int = 12, max_order: int = 3) -> NgramModel:
    weights = np.random.default_rng(7).standard_normal(1 << bits).astype(np.float32)
    return text_model("t", views, max_order, bits, weights, -0.25)


MODEL = _model()
ONE_VIEW = _model(views=("near_homophones",))
# Every n-gram order a model file may declare: a single text's windows have one column per order.
OTHER_ORDERS = tuple(_model(max_order=order) for order in (1, 2, 4, 5))
ALPHABET = "傻逼沙比你妈的🐴🧧🐊🕖🤲🤢👩恶心视 *，.abihsAB1\x00\x01\u200b機密女表亻尔"
TEXTS = st.text(alphabet=st.sampled_from(ALPHABET), max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXTS, max_size=8))
def test_batch_scores_equal_single_scores(texts: list[str]) -> None:
    for model in (MODEL, ONE_VIEW, *OTHER_ORDERS):
        batch = model.score_batch(texts)
        single = [model.score(text) for text in texts]
        assert batch.tolist() == single  # to the last bit: an engine decides on either
        # A text's score does not depend on the batch it was scored in.
        assert model.score_batch([*reversed(texts), "傻逼"]).tolist()[: len(texts)] == single[::-1]
        # The explanation recomputes the same score in plain Python.
        assert all(abs(model.contributions(t)[0] - s) < 1e-6 for t, s in zip(texts, single, strict=True))


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=6))
def test_a_texts_readings_scored_together_score_as_each_alone(texts: list[str]) -> None:
    # `margin` scores a text's readings from one window matrix; each must be its own margin.
    for model in (MODEL, ONE_VIEW, *OTHER_ORDERS):
        assert model._margins(texts) == [model._margin(text) for text in texts]
        for text in texts:  # a text said to have no reading has none
            assert model._has_readings(text) or model._readings_of(text) == [text]


@settings(max_examples=100, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=6))
def test_chat_lines_sum_their_weights_as_long_texts_do(texts: list[str]) -> None:
    # A short text's weights are summed in Python, a long one's in NumPy: the same integers.
    for model in (MODEL, ONE_VIEW, *OTHER_ORDERS):
        summed_in_python = [model._margin(text) for text in texts], model._margins(texts)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(textmodel, "_SUMMED_IN_PYTHON", -1)
            assert ([model._margin(text) for text in texts], model._margins(texts)) == summed_in_python


def test_a_text_longer_than_a_chat_line_scores_as_the_batch_path_scores_it() -> None:
    long = "你妈的傻逼*" * 30  # over _SUMMED_IN_PYTHON characters in either view
    assert len(MODEL.joined(long)) > textmodel._SUMMED_IN_PYTHON
    for model in (MODEL, ONE_VIEW, *OTHER_ORDERS):
        assert model.score_batch([long, "傻逼"]).tolist() == [model.score(long), model.score("傻逼")]
        assert model._margins([long, long + "🐴"]) == [model._margin(long), model._margin(long + "🐴")]


@settings(max_examples=200, deadline=None)
@given(TEXTS)
def test_shortest_text_bounds_read_length(text: str) -> None:
    # The engine does not score a text shorter than `shortest_text` of a rule's min_chars: a bound.
    for model in (MODEL, ONE_VIEW):
        length = model.read_length(text)
        assert len(text) >= model.shortest_text(length) or length == 0  # min_chars is at least 1


def test_a_text_holding_the_batch_separator_is_scored_alone() -> None:
    texts = ["你妈的", f"a{TEXT_BREAK}b", "傻逼"]
    assert np.allclose(MODEL.score_batch(texts), [MODEL.score(t) for t in texts])


@pytest.mark.parametrize(
    ("text", "same_as"),
    [
        ("傻 逼", "傻逼"),  # separators are not read
        ("傻*逼", "傻逼"),
        ("機密", "机密"),  # traditional → simplified
        ("ＡＢ", "ab"),  # width and case
        ("傻\u200b逼", "傻逼"),  # invisible characters
    ],
)
def test_features_read_the_normalised_text(text: str, same_as: str) -> None:
    assert MODEL.score(text) == pytest.approx(MODEL.score(same_as))


def test_the_homophone_view_reads_homophones_and_emoji_names_alike() -> None:
    folded = _model(views=("homophones",))
    assert folded.score("沙比") == pytest.approx(folded.score("傻逼"))
    assert folded.joined("🐴") == folded.joined("")  # views delete emoji; readings try their names
    assert folded.score("你🐴的") == pytest.approx(
        max(folded.score("你的"), folded.score("你马的"), folded.score("你头的"))
    )
    assert MODEL.score("沙比") != pytest.approx(MODEL.score("傻逼"))  # the plain view tells them apart


def _weighted(words: list[str]) -> NgramModel:
    """A homophone-view model whose only weights are the n-grams of `words` (+4 each)."""
    views = ("homophones",)
    weights = np.zeros(1 << 12, dtype=np.float32)
    weights[_model(views).features(words)[0]] = 4.0
    return text_model("w", views, 3, 12, weights, -0.25)


@pytest.mark.parametrize(
    ("cloaked", "reading"),
    [
        ("种族🕖视", "种族七视"),  # 🕖 七点: 七 qi, as 歧 (its name's first character)
        ("种族🤲视", "种族起视"),  # 🤲 掌心向上托起: 起 qi, its sixth character
    ],
)
def test_an_emoji_is_read_as_the_character_of_its_name_that_makes_a_word(cloaked: str, reading: str) -> None:
    model = _weighted(["歧视"])
    assert model._fitted(cloaked) == reading
    assert model.score(cloaked) == model.score("种族歧视")  # 七, 起 and 歧 fold alike (qi)
    assert model.score(cloaked) > model.score("种族视")


@pytest.mark.parametrize("decorated", ["今天🐊天气", "开会🍉了", "好🎱吃"])
def test_an_emoji_that_makes_no_word_with_its_neighbours_stays_decoration(decorated: str) -> None:
    model = _weighted(["歧视", "恶心"])
    assert model._fitted(decorated) == decorated  # the views delete it, as any emoji


def test_contributions_are_spans_of_the_original_text() -> None:
    text = "你 个 傻*逼，真是的"
    score, spans = MODEL.contributions(text, limit=3)
    assert 0 < score < 1
    assert 1 <= len(spans) <= 3
    assert [s.weight for s in spans] == sorted((s.weight for s in spans), reverse=True)
    for span in spans:
        assert 0 <= span.start < span.end <= len(text)
        assert span.weight > 0


@pytest.mark.parametrize("model", [MODEL, ONE_VIEW], ids=["two views", "one view"])
def test_empty_batches_and_texts(model: NgramModel) -> None:
    assert model.score_batch([]).shape == (0,)
    for text in ("", "😂", " ，"):  # nothing left in the views (emoji alone: its readings are)
        assert 0 < model.score(text) < 1
        assert model.score_batch([text])[0] == pytest.approx(model.score(text))
    assert model.contributions("")[1] == []


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("nvren", "女人"),  # the word, not the most frequent hanzi of each syllable (女 and 人 are those too)
        ("exin", "恶心"),  # syllable by syllable: 额 and 新
        ("huairen", "坏人"),
        ("hao de", "好的"),  # de is 的, the hanzi it stands for most often
        ("这叫hei人", "这叫黑人"),  # one syllable touching a hanzi is read
        ("四川nan人", "四川男人"),  # with the written hanzi beside it: 男人, not 南 (more frequent alone)
        ("他ma的", "他妈的"),
        ("真e心", "真恶心"),  # a one-letter syllable beside a hanzi
        ("可e de nv ren", "可恶的女人"),  # and beginning a run
    ],
)
def test_pinyin_is_read_as_the_words_a_writer_most_likely_meant(text: str, reading: str) -> None:
    model = _model(views=("homophones",))
    assert model._readings_of(text)[-1].replace(" ", "") == reading


@pytest.mark.parametrize(
    ("word", "text", "evidence"),
    [
        # The reading puts 坏 on h and 人 on r; the evidence is the word as written, not "huair".
        ("坏人", "都是huairen", "huairen"),
        # The reading puts 婊 on 女 and a space on 表; the evidence is both parts, not 女.
        ("婊", "你个女表", "女表"),
    ],
)
def test_evidence_of_a_reading_spans_what_was_written(word: str, text: str, evidence: str) -> None:
    # A model that leans only on `word`'s n-grams: the text is read with `word` in it.
    weights = np.full(1 << 12, -0.5, dtype=np.float32)
    buckets, _ = _model(views=("homophones",)).features([word])
    weights[buckets] = 3.0
    model = text_model("t", ("homophones",), 3, 12, weights, -0.25)
    _, spans = model.contributions(text)
    assert [text[s.start : s.end] for s in spans] == [evidence]


@pytest.mark.parametrize("text", ["ban", "ok", "go home", "我们 ban 个卡", "hello world", "Plan A 已通过", "a b c"])
def test_one_syllable_alone_or_english_is_not_read_as_pinyin(text: str) -> None:
    model = _model(views=("homophones",))
    assert model._readings_of(text) == [text]


def test_runs_split_into_syllables_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(views=("homophones",))
    monkeypatch.setattr(textmodel, "MAX_CACHED_RUNS", 2)
    reading = model._readings_of("你个shabi")
    assert model._run_cache == {"shabi": (("sha", "bi"),)}
    assert model._readings_of("你个shabi") == reading  # from the cache, the same
    model._readings_of("Reminder:")  # not pinyin, remembered as such
    assert model._run_cache == {"shabi": (("sha", "bi"),), "Reminder": None}
    model._readings_of("nihao")  # full: emptied first
    assert model._run_cache == {"nihao": (("ni", "hao"),)}
    long_run = " ".join(["ba"] * (textmodel.MAX_CACHED_RUN_CHARS // 3 + 1))  # words of one syllable
    assert model._has_readings(long_run)
    assert long_run not in model._run_cache  # split every time, not remembered
    beyond = "ba " * (textmodel.MAX_SPELLED_PER_TEXT // 3 + 1)
    assert not model._has_readings(beyond.strip())  # past the letters a text may have read as pinyin


def test_a_character_written_as_its_parts_is_also_read_whole() -> None:
    model = _model(views=("homophones",))
    assert model._readings_of("你个女表子") == ["你个女表子", "你个婊 子"]  # the length kept: spans stay the text's
    assert model._readings_of("弓虽女干犯")[-1] == "强 奸 犯"
    assert model._readings_of("女子足球") == ["女子足球"]  # a common word: not read as 好
    assert not model._has_readings("今天开会") and model._has_readings("亻尔妈的")
    texts = ["亻尔妈的", f"a{TEXT_BREAK}女表", "今天开会", "弓虽"]  # a break inside a text: one by one
    assert model.score_batch(texts).tolist() == [model.score(text) for text in texts]
    assert model._texts_with_readings(["今天", "你个女表子", "开会", "弓虽女干"]) == [1, 3]


def test_a_text_of_many_split_pairs_reads_a_bounded_number(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(views=("homophones",))
    monkeypatch.setattr(textmodel, "MAX_SPLIT_PAIRS", 3)
    text = "女表" * 1000
    assert model._unsplit(text) == "婊 " * 3 + "女表" * 997  # the scan stopped, the rest as written
    assert len(model._split_ends(text.encode(), limit=6)) == 6
    assert model._unsplit("女表表女表") == "婊 表婊 "  # not overlapping, left to right


def test_a_model_pickles_with_its_pair_database() -> None:
    # A pack is compiled in a child process and pickled back: the Hyperscan database travels serialised.
    model = _model(views=("homophones",))
    copy = pickle.loads(pickle.dumps(model))
    assert copy._readings_of("你个女表子") == model._readings_of("你个女表子")
    assert copy.score("弓虽女干") == model.score("弓虽女干")


def test_a_run_of_pinyin_is_also_read_as_hanzi() -> None:
    folded = _model(views=("homophones",))
    # The text as it is, or its pinyin read as hanzi (沙比 and 傻逼 fold alike): the higher score.
    assert folded.score("你个shabi") >= folded.score("你个傻逼") - 1e-9
    assert folded.score("你个sha bi") == pytest.approx(folded.score("你个shabi"))
    assert folded._readings_of("hello world") == ["hello world"]  # not pinyin: no other reading
    assert folded._readings_of("ta shi sha bi")[1].split() == ["他", "是", "杀", "比"]  # the most frequent hanzi
    score, spans = folded.contributions("你个shabi")
    assert score == pytest.approx(folded.score("你个shabi"))
    assert all(0 <= s.start < s.end <= len("你个shabi") for s in spans)


def test_an_emoji_is_also_read_as_its_whole_short_name() -> None:
    model = _model(views=("homophones",))
    text = "这种男人很🤢"  # 🤢's Chinese name is 恶心
    assert "这种男人很恶心" in model._readings_of(text)
    assert model._named("好👍")[0] == "好👍"  # 拇指向上: too long a name to be read whole
    assert model.score_batch([text, "今天开会"])[0] == model.score(text)
    score, spans = model.contributions(text)
    assert score == pytest.approx(model.score(text))
    assert all(0 <= s.start < s.end <= len(text) for s in spans)  # spans of the text, not of the reading
    reading, origins = model._named("👨很🤢了")
    assert reading == "男人很恶心了" and origins == [0, 0, 1, 2, 2, 3]
