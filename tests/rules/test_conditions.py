"""Every condition key of the pack format has a compile function."""

from __future__ import annotations

from service.rules import schema as s
from service.rules.conditions import CONDITION_COMPILERS


def test_every_condition_key_has_a_compile_function() -> None:
    keys = {"not" if name == "not_" else name for name in s.ConditionSpec.__struct_fields__}
    assert set(CONDITION_COMPILERS) == keys
