"""The editors' JSON Schema of the rule-pack format."""

from __future__ import annotations

import json

from service.rules.schema import json_schemas


def test_descriptions_do_not_depend_on_the_msgspec_release() -> None:
    # msgspec 0.22 keeps a docstring's indentation in a description, 0.23 strips it: the schema
    # cleans descriptions itself, so the committed file is the same under either release.
    text = json.dumps(json_schemas(), ensure_ascii=False)
    assert "\\n    " not in text
    seen = json_schemas()["rules"]["$defs"]["SeenSpec"]["description"]
    assert "\n\nCounts the events" in seen
