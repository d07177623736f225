"""schemathesis hooks for the API tests (loaded via SCHEMATHESIS_HOOKS).

JSON Schema counts 576.0 as an integer; msgspec (and so both of Redline's doors) wants integers
written without a fraction, as every JSON encoder writes them. Generated bodies are rewritten to
that spelling; the value, and so whether the body is valid, does not change.
"""

from __future__ import annotations

from typing import Any

import schemathesis


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    return _integral(body)
