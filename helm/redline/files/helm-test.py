"""`helm test`: the release answers /healthz, refuses /check without a key, and checks an event with one.

Runs in the Redline image (its Python, standard library only) as the chart's test hook Pod:
    TARGET_URL   the release's Service, e.g. http://redline.moderation.svc:8080
    API_KEYS     the release's API keys, comma-separated (empty: the release runs without keys)
Exit 0 when every step passed; otherwise one line per failed step on stderr and exit 1.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 10
EVENT = {"id": "helm-test", "type": "text", "chat": {"id": "helm-test"}, "text": "hello from helm test"}


def call(method: str, path: str, body: object = None, key: str | None = None) -> tuple[int, object]:
    """(status, parsed JSON body or None) of one request to the release."""
    headers = {"content-type": "application/json"} if body is not None else {}
    if key:
        headers["authorization"] = "Bearer " + key
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(os.environ["TARGET_URL"].rstrip("/") + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def main() -> int:
    keys = [k.strip() for k in os.environ.get("API_KEYS", "").split(",") if k.strip()]
    failures: list[str] = []

    status, body = call("GET", "/healthz")
    if status != 200:
        failures.append(f"GET /healthz answered {status} {body}")

    if keys:
        status, body = call("POST", "/check", EVENT)
        if status != 401:
            failures.append(f"POST /check without a key answered {status}, expected 401")

    status, body = call("POST", "/check", EVENT, key=keys[0] if keys else None)
    if status != 200:
        failures.append(f"POST /check answered {status} {body}")
    elif not isinstance(body, dict) or body.get("event_id") != EVENT["id"] or body.get("action") not in (
        "allow", "review", "block"
    ):
        failures.append(f"POST /check answered something that is not this event's verdict: {body}")
    else:
        ruleset = body.get("ruleset") or {}
        print(f"verdict {body['action']} from pack {ruleset.get('name')} {ruleset.get('version')}")

    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
