"""Bounded waits: poll a condition until it holds or a deadline passes, with an error naming the log."""
from __future__ import annotations

import time
from pathlib import Path

from weblab.core.errors import NotReady
from weblab.core.proc import ProcRef


def wait_for(pred, timeout: float, what: str, log: Path | None = None,
             proc: ProcRef | None = None, interval: float = 0.02) -> None:
    """Poll pred until true, at most timeout seconds; a clear error naming the log otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if proc is not None and not proc.alive():
            raise NotReady(f"{what}: the process exited before it was ready (log: {log})")
        if time.monotonic() >= deadline:
            raise NotReady(f"{what} not ready after {timeout:.0f} s (log: {log})")
        time.sleep(interval)
