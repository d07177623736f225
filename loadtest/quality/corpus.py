"""Texts for the evasion figure: the pack's own text examples that must match (every category
is represented there), and the evaluation rows the pack matches."""

from __future__ import annotations

from pathlib import Path

import yaml


def example_texts(pack: Path) -> list[str]:
    """Text-only `match` examples of every rule (expected to be acted on, i.e. not lowered to allow)."""
    pack_file = yaml.safe_load((pack / "pack.yaml").read_text(encoding="utf-8"))
    texts: list[str] = []
    for pattern in pack_file.get("rules", ["rules/*.yaml"]):
        for path in sorted(pack.glob(pattern)):
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for rule in document.get("rules", []):
                for example in rule.get("examples", {}).get("match", []):
                    if isinstance(example, str):
                        texts.append(example)
                    elif isinstance(example, dict) and "event" not in example and example.get("action") != "allow":
                        texts.append(str(example["text"]))
    return list(dict.fromkeys(texts))
