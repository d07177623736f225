from __future__ import annotations

from pathlib import Path

import pytest

from service.engine.classifier import Engine
from service.rules.loader import load_pack

PACKS = Path(__file__).resolve().parent.parent / "packs"


@pytest.fixture(scope="session")
def mini_engine() -> Engine:
    return load_pack(PACKS / "mini")
