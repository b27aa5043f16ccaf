"""Open-loop mixed HTTP load: several request kinds (GET/POST, fast/slow), optional client source addresses.

Run inside a host: python mixload.py --base http://www.foobar.com --rate 50 --duration 5 --out m.csv \
    --request fast=GET:/slow?ms=5:9 --request slow=GET:/slow?ms=400:1 [--source 10.0.0.101 ...]
Request i is due at i/rate; its kind is drawn with a seeded generator from the weights (the same
sequence for the same seed, so two labs get the same mix); it is sent on a fresh connection (as a
new visitor) from --source address i mod N when given. Latency counts from the SCHEDULED time.
CSV: i,kind,source,t_sched,t_send,t_recv,status,ok,served_by,error (wall-clock seconds).
Every wait is bounded: per-request timeout, a worker pool of --max-inflight, a drain deadline.
"""
from __future__ import annotations

import argparse
import http.client
import json
import queue
import random
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

try:
    from target import RowLog, exchange  # run by file path inside a lab host: a sibling module
except ImportError:
    from experiments.tools.target import RowLog, exchange

FIELDS = ["i", "kind", "source", "t_sched", "t_send", "t_recv", "status", "ok", "served_by", "error"]


@dataclass(frozen=True)
class Kind:
    """One request kind of the mix: NAME=METHOD:PATH:WEIGHT."""

    name: str
    method: str
    path: str
    weight: float


def parse_kind(text: str) -> Kind:
    """'slow=GET:/slow?ms=400:1' -> Kind (the path may contain ':' only before the weight)."""
    name, sep, rest = text.partition("=")
    method, sep2, rest = rest.partition(":")
    path, sep3, weight = rest.rpartition(":")
    if not (sep and sep2 and sep3 and name and path.startswith("/")):
        raise ValueError(f"--request {text!r}: use NAME=METHOD:PATH:WEIGHT, e.g. slow=GET:/slow?ms=400:1")
    return Kind(name, method.upper(), path, float(weight))


def schedule(kinds: list[Kind], rate: float, duration: float, seed: int) -> list[tuple[float, Kind]]:
    """(offset, kind) of every request: evenly spaced, kinds drawn by weight from a seeded generator."""
    rng = random.Random(seed)
    n = int(round(rate * duration)) if rate > 0 else 0
    weights = [k.weight for k in kinds]
    return [(i / rate, rng.choices(kinds, weights)[0]) for i in range(n)]


def fetch(ip: str, port: int, host: str, kind: Kind, i: int, seed: int, source: str,
          timeout: float) -> tuple[int | None, str, str]:
    """One request on a new connection: (status, served_by, error)."""
    conn = http.client.HTTPConnection(ip, port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    headers = {"Host": host, "Connection": "close", "User-Agent": "weblab-mixload"}
    body = None
    if kind.method == "POST":
        body = json.dumps({"name": f"{kind.name}-{seed}-{i}"})
        headers["Content-Type"] = "application/json"
    return exchange(conn, kind.method, kind.path, headers, body)


def main(argv: list[str] | None = None) -> int:
    """Send the mix on its timetable, drain (bounded), print a JSON summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="scheme://host[:port] of the site")
    ap.add_argument("--rate", type=float, required=True, help="requests per second")
    ap.add_argument("--duration", type=float, required=True, help="seconds")
    ap.add_argument("--out", required=True)
    ap.add_argument("--request", action="append", default=[], help="NAME=METHOD:PATH:WEIGHT (repeat)")
    ap.add_argument("--source", action="append", default=[], help="client source address (repeat)")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--max-inflight", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    kinds = [parse_kind(k) for k in a.request] or [Kind("get", "GET", "/", 1.0)]
    u = urlsplit(a.base)
    host, port = u.hostname or "localhost", u.port or 80
    ip = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    plan = schedule(kinds, a.rate, a.duration, a.seed)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    due: queue.Queue = queue.Queue()
    mono0, wall0 = time.monotonic(), time.time()

    def wall(mono: float) -> float:
        return wall0 + (mono - mono0)

    with open(a.out, "w", newline="") as f:
        record = RowLog(f, FIELDS)

        expired = threading.Event()

        def worker() -> None:
            while True:
                item = due.get()
                if item is None:
                    return
                i, sched, kind, src = item
                if expired.is_set():
                    record([i, kind.name, src, f"{wall(sched):.6f}", "", "", "", 0, "", "not_sent"])
                    continue
                t_send = time.monotonic()
                status, served, err = fetch(ip, port, host, kind, i, a.seed, src, a.timeout)
                ok = int(status is not None and 200 <= status < 400)
                record([i, kind.name, src, f"{wall(sched):.6f}", f"{wall(t_send):.6f}",
                        f"{wall(time.monotonic()):.6f}", status or "", ok, served, err])

        pool = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, a.max_inflight))]
        for t in pool:
            t.start()
        start = time.monotonic() + 0.05
        handed = 0
        for i, (off, kind) in enumerate(plan):
            at = start + off
            if stop.wait(max(0.0, at - time.monotonic())):
                break
            due.put((i, at, kind, a.source[i % len(a.source)] if a.source else ""))
            handed += 1
        for i in range(handed, len(plan)):
            record([i, plan[i][1].name, "", f"{wall(start + plan[i][0]):.6f}", "", "", "", 0, "", "not_sent"])
        drain_until = start + a.duration + a.timeout + 1.0
        for t in pool:
            due.put(None)
        for t in pool:
            t.join(max(0.0, drain_until - time.monotonic()))
        expired.set()
        while True:  # what the pool never got to within the drain deadline: written as not sent
            try:
                item = due.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                record([item[0], item[2].name, item[3], f"{wall(item[1]):.6f}", "", "", "", 0, "", "not_sent"])
    print(json.dumps({"rate": a.rate, "duration": a.duration, "seed": a.seed, "scheduled": len(plan),
                      "handed": handed, "kinds": [k.__dict__ for k in kinds], "sources": a.source,
                      "start": wall(start)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
