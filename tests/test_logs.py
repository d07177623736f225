"""JSON-lines logging: one object per line, extra fields at the top level, no ANSI duplicates."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from service.logs import JsonFormatter, configure_logging


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("DEBUG")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_extra_fields(captured: io.StringIO) -> None:
    logging.getLogger("service.test").info("pack loaded", extra={"pack": "redlines", "rules": 42})
    (line,) = _lines(captured)
    assert line["level"] == "info"
    assert line["logger"] == "service.test"
    assert line["msg"] == "pack loaded"
    assert line["pack"] == "redlines"
    assert line["rules"] == 42
    assert str(line["ts"]).endswith("+00:00")


def test_uvicorn_colour_copy_is_dropped(captured: io.StringIO) -> None:
    # uvicorn passes an ANSI-coloured duplicate of the message as `color_message`
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 7,
                                            extra={"color_message": "Started \x1b[36m%d\x1b[0m"})
    (line,) = _lines(captured)
    assert line["msg"] == "Started server process [7]"
    assert "color_message" not in line


def test_exceptions_and_non_ascii_stay_on_one_line(captured: io.StringIO) -> None:
    try:
        raise ValueError("机密")
    except ValueError:
        logging.getLogger("service.test").exception("failed")
    (line,) = _lines(captured)
    assert "ValueError: 机密" in str(line["exc"])
    assert "机密" in captured.getvalue()  # ensure_ascii=False: readable, still one line


def test_formatter_survives_unserialisable_extra() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "m", None, None)
    record.path = object()
    assert json.loads(JsonFormatter().format(record))["path"].startswith("<object")


def test_a_retried_refused_connection_is_a_warning_not_an_error(captured: io.StringIO) -> None:
    # With the broker down, aiokafka logs every refused connection at ERROR while Redline's loop
    # retries and says so itself: the line stays, as a warning. Other aiokafka errors stay errors.
    kafka = logging.getLogger("aiokafka")
    kafka.error('Unable connect to "%s": %s', "127.0.0.1:9092", "[Errno 111] Connection refused")
    kafka.error("[Error 58] SaslAuthenticationFailed: invalid credentials")
    first, second = _lines(captured)
    assert first["level"] == "warning"
    assert first["msg"] == 'Unable connect to "127.0.0.1:9092": [Errno 111] Connection refused'  # the cause stays
    assert second["level"] == "error"
