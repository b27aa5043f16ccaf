"""Availability probe: one HTTP request every ~20 ms, each on a fresh connection, one CSV line per request.

Run inside a host: python -m experiments.tools.probe --url http://www.foobar.com/ --duration 12 --out p.csv
CSV: t_send,t_recv,status,ok,served_by,error (wall-clock seconds, so faults logged elsewhere line up).
Stops cleanly at --duration or on SIGTERM/SIGINT; concurrency and every wait are bounded.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

try:
    from target import RowLog, Target, exchange  # run by file path inside a lab host: a sibling module
except ImportError:
    from experiments.tools.target import RowLog, Target, exchange

FIELDS = ["t_send", "t_recv", "status", "ok", "served_by", "error"]


class Clock:
    """Monotonic time mapped onto the wall clock once, so timestamps are steady and comparable across hosts."""

    def __init__(self) -> None:
        self.mono0, self.wall0 = time.monotonic(), time.time()

    def wall(self, mono: float | None = None) -> float:
        return self.wall0 + ((time.monotonic() if mono is None else mono) - self.mono0)


def fetch(target: Target, timeout: float) -> tuple[int | None, str, str]:
    """One GET on a new connection: (status, served_by, error)."""
    headers = {"Host": target.host, "Connection": "close", "User-Agent": "weblab-probe"}
    return exchange(target.connection(timeout), "GET", target.path, headers)


def main(argv: list[str] | None = None) -> int:
    """Probe until --duration elapses or a signal arrives."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=float, required=True, help="seconds")
    ap.add_argument("--interval", type=float, default=0.02, help="seconds between sends")
    ap.add_argument("--timeout", type=float, default=1.0, help="per-request timeout, seconds")
    ap.add_argument("--max-inflight", type=int, default=0, help="default: enough for timeout/interval")
    a = ap.parse_args(argv)
    target = Target(a.url)
    limit = threading.BoundedSemaphore(a.max_inflight or int(a.timeout / a.interval) + 8)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    clock = Clock()
    threads: list[threading.Thread] = []
    with open(a.out, "w", newline="") as f:
        record = RowLog(f, FIELDS)

        def one(t_send: float) -> None:
            try:
                status, served, err = fetch(target, a.timeout)
                ok = int(status is not None and 200 <= status < 400)
                record([f"{t_send:.6f}", f"{clock.wall():.6f}", status or "", ok, served, err])
            finally:
                limit.release()

        start = time.monotonic()
        for i in range(int(a.duration / a.interval) + 1):
            due = start + i * a.interval
            if stop.wait(max(0.0, due - time.monotonic())) or due - start > a.duration:
                break
            t_send = clock.wall()
            if not limit.acquire(blocking=False):
                record([f"{t_send:.6f}", f"{t_send:.6f}", "", 0, "", "probe_busy: concurrency limit"])
                continue
            t = threading.Thread(target=one, args=(t_send,), daemon=True)
            t.start()
            threads.append(t)
            threads = [x for x in threads if x.is_alive()] if i % 100 == 0 else threads
        deadline = time.monotonic() + a.timeout + 2
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
