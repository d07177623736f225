# syntax=docker/dockerfile:1
# Redline: `redline serve` (HTTP API + Kafka stream) in a slim, non-root, read-only-root-friendly image.
#
#   docker build -t redline:dev .
#   docker run --rm -p 8080:8080 --read-only --tmpfs /tmp --env-file redline.env redline:dev
#       (redline.env holds REDLINE_API_KEYS=… and REDLINE_ADMIN_KEYS=…: without API keys, serve on
#       0.0.0.0 refuses to start unless REDLINE_ALLOW_UNAUTHENTICATED=true; docs/api.md)
#   docker run --rm -v "$PWD/mypack:/etc/redline/rules:ro" redline:dev       # your own rule pack
#   docker run --rm -i redline:dev check < events.jsonl                       # any other subcommand
#
# BASE_IMAGE must provide python3.11 with venv (Debian bookworm layout). Offline builds with buildah
# pass a locally assembled base instead of pulling one (docs/deploy.md, helm/build-image.sh).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# Optional, for builds that reach no package index (docs/deploy.md, helm/build-image.sh): a wheelhouse
# mounted at build time, e.g. `-v "$PWD/wheelhouse:/wheels:ro" --build-arg PIP_NO_INDEX=1
# --build-arg PIP_FIND_LINKS=/wheels`. Unset by default: pip uses its index as usual.
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS

# The virtualenv is copied whole into the final stage; same base, so its interpreter links hold.
RUN python3 -m venv /opt/redline

WORKDIR /src

# Two runtime dependencies are published as source only: pdqhash (C++ and Cython) and jieba (pure
# Python, setup.py). This stage alone gets a C++ compiler, plus Python's headers where the base's
# interpreter has none (Debian's python3; the python:3.11 images ship them); the final stage never does.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && { [ -f "$(python3 -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" ] \
         || apt-get install -y --no-install-recommends python3-dev; } \
    && rm -rf /var/lib/apt/lists/*

# Dependencies in their own layer: rebuilt only when pyproject.toml changes, not on every source edit.
# Wheels only, except the two sdists named in --no-binary, which must come after --only-binary=:all:
# (pip's :all: clears the other list). Their build dependencies (setuptools, wheel, Cython, numpy)
# come from wheels: pip hands both lists to each isolated build environment, --only-binary=:all: last.
# --use-pep517: jieba has only a setup.py; build it in isolation as newer pips always do, not with
# the base's pip's deprecated `setup.py install` (bookworm's venv has pip 23.0).
# helm/build-image.sh reads the --no-binary list below to fill its wheelhouse: keep it on one line.
# The versions are the ones the test suite last passed with (.ci/constraints.txt, refreshed by
# `.ci/run --latest`), so an image is built from what was tested, not from whatever is newest.
COPY pyproject.toml ./
COPY .ci/constraints.txt /tmp/constraints.txt
RUN python3 -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write(chr(10).join(deps) + chr(10))" \
    && /opt/redline/bin/pip install --no-cache-dir --use-pep517 --only-binary=:all: --no-binary=pdqhash,jieba -c /tmp/constraints.txt -r /tmp/requirements.txt

# The project itself (pure Python; the default pack travels inside the wheel as well).
COPY README.md ./
COPY service ./service
COPY rules ./rules
# Then: refuse to build an image whose default pack fails its own examples, and byte-compile now,
# because the running container may have a read-only root filesystem.
RUN /opt/redline/bin/pip install --no-cache-dir --no-deps . \
    && /opt/redline/bin/redline rules test rules/redlines \
    && /opt/redline/bin/python -m compileall -q /opt/redline/lib

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="redline" \
      org.opencontainers.image.description="Moderation microservice for group chats: Kafka events in, red-line verdicts out, same engine over HTTP." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="docs/deploy.md"

# A fixed numeric uid/gid so Kubernetes `runAsNonRoot` can verify it without /etc/passwd lookups.
RUN groupadd --gid 10001 redline \
    && useradd --no-log-init --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin redline

COPY --from=builder /opt/redline /opt/redline
# The default pack, owned by root and read-only for the service; mount a directory here to replace it.
COPY rules/redlines /etc/redline/rules

ENV PATH="/opt/redline/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REDLINE_RULES=/etc/redline/rules \
    REDLINE_HTTP_HOST=0.0.0.0 \
    REDLINE_HTTP_PORT=8080

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
STOPSIGNAL SIGTERM
# Docker-only: Kubernetes uses the chart's probes on /healthz and /readyz instead.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('REDLINE_HTTP_PORT', '8080'), timeout=2)"]

# Exec form: the interpreter is PID 1 and receives SIGTERM itself (the stream drains, then HTTP stops).
ENTRYPOINT ["redline"]
CMD ["serve"]
