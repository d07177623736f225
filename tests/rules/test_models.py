"""Pack text models: loaded with the pack (digest, reload), validated with file:line, and the
`classifier` condition's evidence (the score, then spans of the original text)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.engine.batch import find_batch
from service.errors import PackError
from service.events import ChatEvent
from service.rules.loader import load_pack
from tests.rules.model_pack import RULES, model_pack, train_model

NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    return model_pack(tmp_path)


def _refusal(pack: Path) -> str:
    with pytest.raises(PackError) as info:
        load_pack(pack)
    return str(info.value)


def test_model_rule_matches_with_score_and_original_spans(pack: Path) -> None:
    engine = load_pack(pack)
    text = "你 就是个废*物，滚"  # separators are not read by the model: spans still index the original
    verdict = engine.classify(ChatEvent(id="e", text=text), NOW)
    (match,) = verdict.matches
    score, *spans = match.evidence
    assert score.field == "classifier.toxic"
    assert 0.5 <= float(score.text) <= 1
    assert spans
    for span in spans:
        assert span.field == "text"
        assert text[span.start : span.end] == span.text
    assert any(char in "".join(span.text for span in spans) for char in "就是个废物滚"), spans
    assert engine.classify(ChatEvent(id="f", text="大家明天开会"), NOW).matches == ()


def test_model_files_count_in_the_digest_and_reload(pack: Path) -> None:
    before = load_pack(pack)
    # Another model in the same files (trained on the opposite labels), and examples to match.
    train_model(pack / "models", flipped=True)
    rules = RULES.replace("match: [你就是个废物，滚]", "match: [大家明天开会]").replace(
        "no_match: [大家明天开会]", "no_match: [你就是个废物，滚]")
    (pack / "rules" / "main.yaml").write_text(rules, encoding="utf-8")
    after = load_pack(pack)
    assert after.ruleset.digest != before.ruleset.digest
    assert after.classify(ChatEvent(id="e", text="大家明天开会"), NOW).action == "review"
    assert before.classify(ChatEvent(id="e", text="大家明天开会"), NOW).action == "allow"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # (manifest change, refusal with the manifest's file:line)
        ({"version": 2}, "models/toxic.yaml:4: model format version 2 is not supported"),
        ({"bits": 11}, "models/toxic.yaml:10: weights file 'models/toxic.weights' holds 1024 float16 values; "
                       "bits 11 needs 2048"),
        ({"weights_sha256": "'" + "0" * 64 + "'"},
         "models/toxic.yaml:12: weights file 'models/toxic.weights' does not match weights_sha256"),
        ({"weights": "missing.weights"}, "models/toxic.yaml:11: weights file 'models/missing.weights' not found"),
        ({"max_order": 9}, "models/toxic.yaml:9: max_order: Expected `int` <= 5"),
        ({"name": "other"}, "models/toxic.yaml:5: model is named 'other' but pack.yaml declares it as 'toxic'"),
        ({"weights": "../../outside.weights"}, "resolves outside the pack directory"),
    ],
)
def test_a_wrong_model_is_refused_with_file_and_line(pack: Path, change: dict[str, object], expected: str) -> None:
    path = pack / "models" / "toxic.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    for key, value in change.items():
        lines = [f"{key}: {value}" if line.startswith(f"{key}:") else line for line in lines]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert expected in _refusal(pack)


def test_unknown_model_and_missing_manifest(pack: Path) -> None:
    (pack / "rules" / "main.yaml").write_text(RULES.replace("model: toxic", "model: nope"), encoding="utf-8")
    assert "rules/main.yaml:7: unknown model 'nope'" in _refusal(pack)
    (pack / "models" / "toxic.yaml").unlink()
    (pack / "rules" / "main.yaml").write_text(RULES, encoding="utf-8")
    message = _refusal(pack)
    assert "pack.yaml:6: model manifest 'models/toxic.yaml' not found" in message
    assert "unknown model" not in message  # a declared model that failed is reported once


def test_below_must_be_above_min_score(pack: Path) -> None:
    (pack / "rules" / "main.yaml").write_text(RULES.replace("min_score: 0.5", "min_score: 0.5, below: 0.4"),
                                              encoding="utf-8")
    assert "below 0.4 must be above min_score 0.5" in _refusal(pack)


def test_min_chars_leaves_texts_too_short_for_the_model(tmp_path: Path) -> None:
    rules = RULES.replace("{model: toxic, min_score: 0.5}", "{model: toxic, min_score: 0.5, min_chars: 6}")
    engine = load_pack(model_pack(tmp_path, rules))
    loose = load_pack(model_pack(tmp_path / "loose"))
    short = "废物，滚！"  # reads 废物滚: three characters (punctuation is not read)
    assert loose.classify(ChatEvent(id="a", text=short), NOW).action == "review"
    assert engine.classify(ChatEvent(id="b", text=short), NOW).matches == ()
    assert engine.classify(ChatEvent(id="c", text="你就是个废物，滚"), NOW).action == "review"  # 7 read
    batch = [ChatEvent(id=f"d{i}", text=short if i % 2 else "你就是个废物，滚") for i in range(40)]  # the batch path
    assert [v.action for v in engine.classify_batch(batch, NOW)] == ["review", "allow"] * 20


def test_a_text_too_short_for_every_model_rule_is_not_scored(tmp_path: Path) -> None:
    # Both paths skip the score of a text shorter than the least min_chars of the rules a score
    # can trigger (a bound from its length: the views write one character for one here).
    rules = RULES.replace("{model: toxic, min_score: 0.5}", "{model: toxic, min_score: 0.5, min_chars: 4}")
    engine = load_pack(model_pack(tmp_path, rules))
    (entry,) = engine.scored
    assert entry.shortest == 4
    scored = {text: engine._scores(ChatEvent(id="a", text=text), set()) for text in ("废物滚", "废物，滚", "")}
    assert scored == {"废物滚": {}, "废物，滚": {entry.key: pytest.approx(entry.model.score("废物，滚"))}, "": {}}
    texts = ["废物滚", "废物，滚", "你就是个废物，滚"] * 10  # a batch: the batch path
    events = [ChatEvent(id=f"b{i}", text=text) for i, text in enumerate(texts)]
    findings = find_batch(events, engine._plan, len(engine.channels), engine.untriggered, engine.scored)
    assert [entry.key in (findings.scores_of(i) or {}) for i in range(3)] == [False, True, True]
    # A pack whose rules ask different lengths skips only what none of them can read.
    second = rules + (
        "  - id: improper_remarks.model_short\n    category: improper_remarks\n    severity: low\n"
        "    action: review\n    when:\n      classifier: {model: toxic, min_score: 0.6, min_chars: 2}\n"
        "    examples: {match: [你就是个废物，滚], no_match: [大家明天开会]}\n")
    (entry,) = load_pack(model_pack(tmp_path / "two", second)).scored
    assert entry.shortest == 2
