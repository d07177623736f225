"""What the two doors (stream, api) share in one process: the serving engine, readiness, and the
registry `/metrics` renders.

`runtime.engine` is one reference; a reload compiles the new pack in a child process (off the
event loop and the hot path), runs its examples, then swaps the reference in one assignment.
A refused pack raises `PackError` and the old engine keeps serving. What triggers a reload besides
`POST /rules/reload` (SIGHUP, a watched directory): reload_triggers.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from service import metrics
from service.engine.classifier import Engine
from service.errors import PackError
from service.readiness import Readiness
from service.rules.budget import PackBudget
from service.rules.isolated import adopt, load_isolated, load_isolated_now
from service.rules.loader import load_pack
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    # The stream, the counter owner and `serve` report here; a consumer-group member with zero
    # partitions (more replicas than partitions) is ready: it still serves HTTP.
    readiness: Readiness = field(default_factory=Readiness)
    # Called after a reload swapped a new pack in (stream members load it too: members.py).
    reload_listeners: list[Callable[[], None]] = field(default_factory=list)
    # What `/metrics` renders: this process's registry, or with stream members one that adds theirs.
    metrics_registry: CollectorRegistry = REGISTRY
    # The serving pack compiled and pickled by the compile child, when it was loaded so: what the
    # stream members adopt instead of compiling it again (members.py).
    pack_bytes: bytes | None = field(default=None, repr=False)
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @classmethod
    def load(cls, settings: Settings, *, isolated: bool = False) -> Runtime:
        """The runtime with the pack of `settings`; `isolated` compiles it in a child process
        under its time and memory budget (serve does), else in this process (a stream member,
        whose parent has already loaded the same pack within budget)."""
        budget = PackBudget.from_settings(settings)
        extra: dict[str, object] = {}
        pack_bytes = None
        if isolated:
            loaded = load_isolated_now(settings.rules, budget)
            engine, pack_bytes = loaded.report.engine, loaded.pickled
            extra = {"seconds": round(loaded.seconds, 3), "peak_memory_bytes": loaded.peak_memory_bytes}
        else:
            engine = load_pack(settings.rules, budget)
        return cls._started(settings, engine, pack_bytes, extra)

    @classmethod
    def adopting(cls, settings: Settings, pack_bytes: bytes) -> Runtime:
        """The runtime of a stream member, serving the pack its parent compiled (no compile here)."""
        return cls._started(settings, adopt(pack_bytes).engine, pack_bytes, {"adopted": True})

    @classmethod
    def _started(
        cls, settings: Settings, engine: Engine, pack_bytes: bytes | None, extra: dict[str, object]
    ) -> Runtime:
        install_metrics(engine)
        log.info(
            "rule pack loaded",
            extra={"pack": engine.ruleset.name, "version": engine.ruleset.version,
                   "digest": engine.ruleset.digest, "rules": len(engine.rules), **extra},
        )
        return cls(settings=settings, engine=engine, pack_bytes=pack_bytes)

    def adopt(self, pack_bytes: bytes) -> Engine:
        """Swap in the pack the parent reloaded (a stream member's reload: nothing compiled here)."""
        engine = self.engine = adopt(pack_bytes).engine
        self.pack_bytes = pack_bytes
        install_metrics(engine)
        log.info("rule pack reloaded",
                 extra={"pack": engine.ruleset.name, "version": engine.ruleset.version,
                        "digest": engine.ruleset.digest, "adopted": True})
        return engine

    @property
    def rules_dir(self) -> Path:
        return self.settings.rules

    async def reload(self) -> Engine:
        """Load the pack from its source again and swap it in; PackError leaves the old one serving."""
        async with self._reload_lock:
            started = time.perf_counter()
            try:
                # In a child process: a pack over its time or memory budget is killed there, and
                # a cancelled reload (shutdown) kills it too, so nothing here can hang on a pack.
                loaded = await load_isolated(self.settings.rules, PackBudget.from_settings(self.settings))
            except PackError as exc:
                metrics.rule_pack_reloads_total.labels("failure").inc()
                log.warning("rule pack reload refused", extra={"errors": len(exc.issues)})
                raise
            engine = self.engine = loaded.report.engine
            self.pack_bytes = loaded.pickled
            install_metrics(engine)
            metrics.rule_pack_reloads_total.labels("success").inc()
            for listener in self.reload_listeners:
                listener()
            log.info(
                "rule pack reloaded",
                extra={"pack": engine.ruleset.name, "version": engine.ruleset.version,
                       "digest": engine.ruleset.digest,
                       "seconds": round(time.perf_counter() - started, 3),
                       "peak_memory_bytes": loaded.peak_memory_bytes},
            )
            return engine


def install_metrics(engine: Engine) -> None:
    metrics.observe_pack(
        engine.ruleset.name,
        engine.ruleset.version,
        engine.ruleset.digest,
        ((rule.id, rule.category) for rule in engine.rules),
    )
    metrics.rule_pack_loaded_timestamp_seconds.set(time.time())


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run a serving process's main coroutine: on uvloop when it is installed (it is with
    uvicorn[standard]), else asyncio. `serve` and its stream members run so."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
