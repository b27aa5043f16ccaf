"""Faults injected through the Lab handle, each timestamped (wall clock, begin and end) in faults.csv."""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from experiments import drive

FIELDS = ["t_begin", "t_end", "action", "target", "ok", "detail"]


@dataclass(frozen=True)
class FaultEvent:
    """One fault action as it was logged."""

    t_begin: float
    t_end: float
    action: str
    target: str
    ok: bool
    detail: str = ""


class FaultLog:
    """Performs faults on a lab and appends one faults.csv line per action (also when it fails)."""

    def __init__(self, lab: Any, path: Path):
        self.lab = lab
        self.path = Path(path)
        if not self.path.exists():
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(FIELDS)

    def _do(self, action: str, target: str, fn: Callable[[], Any]) -> FaultEvent:
        t0 = time.time()
        ok, detail = True, ""
        try:
            result = fn()
            if isinstance(result, (int, float)) and not isinstance(result, bool):
                detail = f"{result:.3f}"
            elif isinstance(result, str):
                detail = result
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            ev = FaultEvent(t0, time.time(), action, target, ok, detail)
            with open(self.path, "a", newline="") as f:
                csv.writer(f).writerow([f"{ev.t_begin:.6f}", f"{ev.t_end:.6f}", action, target, int(ok), detail])
        return ev

    def kill(self, host: str, service: str) -> FaultEvent:
        """Crash a service: SIGKILL its process group now."""
        return self._do("kill", f"{host}/{service}", self.lab.service(host, service).kill)

    def stop(self, host: str, service: str) -> FaultEvent:
        """Stop a service gracefully (TERM, bounded wait, KILL)."""
        return self._do("stop", f"{host}/{service}", self.lab.service(host, service).stop)

    def start(self, host: str, service: str, ready_timeout: float = 20) -> FaultEvent:
        """Start a service and wait (bounded) until it answers."""
        svc = self.lab.service(host, service)

        def go() -> Any:
            svc.start()
            return svc.wait_ready(ready_timeout)
        return self._do("start", f"{host}/{service}", go)

    def restart(self, host: str, service: str, ready_timeout: float = 20) -> FaultEvent:
        """Graceful restart (a redeploy) and wait until it answers."""
        svc = self.lab.service(host, service)

        def go() -> Any:
            svc.restart()
            return svc.wait_ready(ready_timeout)
        return self._do("restart", f"{host}/{service}", go)

    def link_down(self, a: str, b: str) -> FaultEvent:
        """Take the link between nodes a and b down."""
        return self._do("link_down", f"{a}-{b}", lambda: self.lab.link_down(a, b))

    def link_up(self, a: str, b: str) -> FaultEvent:
        """Bring the link between nodes a and b back up."""
        return self._do("link_up", f"{a}-{b}", lambda: self.lab.link_up(a, b))

    def record(self, action: str, target: str, fn: Callable[[], Any]) -> FaultEvent:
        """Perform any lab action fn (e.g. an HAProxy admin command) and log it like a fault."""
        return self._do(action, target, fn)

    def mark_healthy(self, csv_path: Path, proc: Any = None, kinds: tuple[str, ...] = (), consecutive: int = 20,
                     timeout: float = 10.0) -> bool:
        """Wait (bounded) until the tool writing csv_path sees the site healthy, then log the HEALTHY mark
        the baseline starts from (detail 'not reached' after the timeout: the baseline then starts with
        the first request, and its gate says what failed)."""
        ok = drive.wait_healthy(Path(csv_path), consecutive, timeout, kinds, proc)
        self.mark(HEALTHY, Path(csv_path).name, "" if ok else "not reached")
        return ok

    def mark(self, action: str, target: str = "", detail: str = "") -> FaultEvent:
        """Log a named instant (e.g. 'load_start') without touching the lab."""
        return self._do(action, target, lambda: detail)


def read_faults(path: Path) -> list[FaultEvent]:
    """The events of a faults.csv, in order."""
    with open(path, newline="") as f:
        return [FaultEvent(float(r["t_begin"]), float(r["t_end"]), r["action"], r["target"],
                           r["ok"] == "1", r.get("detail") or "") for r in csv.DictReader(f)]


def first(events: list[FaultEvent], action: str) -> FaultEvent | None:
    """The first event of a kind, or None."""
    return next((e for e in events if e.action == action), None)


HEALTHY = "healthy"  # the mark an experiment logs once its probe sees the site healthy (drive.wait_healthy)


def healthy_since(events: list[FaultEvent]) -> float:
    """When the run saw the site healthy before its baseline (the HEALTHY mark), else -inf: the
    baseline then starts with the first request, as runs recorded before the mark existed."""
    mark = first(events, HEALTHY)
    return mark.t_end if mark is not None and mark.detail != "not reached" else float("-inf")
