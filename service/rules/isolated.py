"""Load a rule pack in a child process, under its time and memory budget (service/rules/budget.py).

`serve` compiles every pack this way, at start and on each reload: the child reads, validates,
compiles and self-tests the pack and sends back the compiled engine, pickled (Hyperscan databases
travel serialised: ~0.2 s to load what took ~2 s to compile). `serve` passes the same bytes to its
stream members (`adopt`), so a pack is compiled once per replica, not once per process. The parent watches the child's
resident memory (Linux `/proc`, every 50 ms) and its time, and kills it past either budget; the
pack is then refused with a PackError like any other, and the memory the compile took is the
child's, returned to the system when it exits. A cancelled load (shutdown) kills the child.

    python -m service.rules.isolated DIRECTORY BUDGET_JSON     (the child; pickled result on stdout)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from service.errors import PackError, PackIssue
from service.rules.budget import PackBudget
from service.rules.loader import LoadReport, load_pack_report

_POLL_SECONDS: Final = 0.05
_PAGE: Final = 1024  # VmRSS is in kB


@dataclass(frozen=True)
class IsolatedLoad:
    report: LoadReport
    seconds: float
    peak_memory_bytes: int  # the child's resident memory at its highest reading (0: not measured)
    pickled: bytes  # the report as the child sent it: `serve` hands it to its stream members


def adopt(pickled: bytes) -> LoadReport:
    """A pack another process compiled (`IsolatedLoad.pickled`): ~0.2 s, against ~2 s to compile."""
    report = pickle.loads(pickled)
    assert isinstance(report, LoadReport)
    return report


async def load_isolated(directory: Path, budget: PackBudget) -> IsolatedLoad:
    """The pack compiled in a child process, or PackError (invalid, or over its time or memory)."""
    started = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.rules.isolated", str(directory), json.dumps(asdict(budget)),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    watch = _MemoryWatch(child.pid, budget.max_memory_bytes)
    watcher = asyncio.create_task(watch.run(child))
    try:
        out, err = await asyncio.wait_for(child.communicate(), timeout=budget.compile_timeout_seconds)
    except TimeoutError:
        raise _refused(
            directory, f"compiling the pack took longer than {budget.compile_timeout_seconds:g} s "
            "(REDLINE_PACK_COMPILE_TIMEOUT_SECONDS)"
        ) from None
    finally:
        watcher.cancel()
        with contextlib.suppress(ProcessLookupError):
            child.kill()  # after a timeout or a cancellation; a no-op once it has exited
        await child.wait()
    if watch.exceeded:
        raise _refused(
            directory, f"compiling the pack used more than {budget.max_memory_bytes} bytes of memory "
            "(REDLINE_PACK_COMPILE_MAX_MEMORY_BYTES)"
        )
    if child.returncode != 0 or not out:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise _refused(directory, f"the pack compiler exited with code {child.returncode}: {tail[0][:300]}")
    outcome = await asyncio.to_thread(pickle.loads, out)  # ~0.2 s for the default pack: off the loop
    if isinstance(outcome, PackError):
        raise outcome
    assert isinstance(outcome, LoadReport)
    return IsolatedLoad(outcome, time.perf_counter() - started, watch.peak, out)


def load_isolated_now(directory: Path, budget: PackBudget) -> IsolatedLoad:
    """`load_isolated` for callers without a running event loop (start-up)."""
    return asyncio.run(load_isolated(directory, budget))


def _refused(directory: Path, message: str) -> PackError:
    return PackError(str(directory), [PackIssue(".", 0, message)])


class _MemoryWatch:
    """The child's resident memory, read from /proc; kills it past `limit` bytes."""

    def __init__(self, pid: int, limit: int) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.limit = limit
        self.peak = 0
        self.exceeded = False

    async def run(self, child: asyncio.subprocess.Process) -> None:
        while child.returncode is None:
            resident = self._resident()
            if resident is None:
                return  # no /proc (not Linux) or the child is gone: time is still bounded
            self.peak = max(self.peak, resident)
            if resident > self.limit:
                self.exceeded = True
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                return
            await asyncio.sleep(_POLL_SECONDS)

    def _resident(self) -> int | None:
        try:
            text = self.status.read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * _PAGE
        return None


def _child(argv: list[str]) -> int:
    directory, budget = Path(argv[0]), PackBudget(**json.loads(argv[1]))
    try:
        outcome: LoadReport | PackError = load_pack_report(directory, budget=budget)
    except PackError as exc:
        outcome = exc
    sys.stdout.buffer.write(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
