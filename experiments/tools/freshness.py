"""How long a write takes to show: POST an item, then read the page until every web server serves it.

Run inside a host: python freshness.py --base http://www.foobar.com --writes 5 --servers 2 --out f.csv
For each write: a seeded random pause (so writes land at any moment of a cache's life), POST /api/items
with a unique name, then GET --page every --interval on a new connection each (so the load balancer
spreads the reads), until --servers distinct web servers (X-Web-Server) have answered with a page that
contains the name, or --deadline seconds passed. Every request is a row.
CSV: kind,k,name,t_send,t_recv,status,server,cache,fresh,error (kind: write | read; wall-clock seconds;
cache: the X-Cache-Status header, empty without a cache). A JSON summary goes to stdout.
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import signal
import sys
import threading
import time

try:
    from target import RowLog, Target  # run by file path inside a lab host: a sibling module
except ImportError:
    from experiments.tools.target import RowLog, Target

FIELDS = ["kind", "k", "name", "t_send", "t_recv", "status", "server", "cache", "fresh", "error"]


def request(target: Target, method: str, path: str, timeout: float, body: str | None = None
            ) -> tuple[int | None, str, str, bytes, str]:
    """One request on a new connection: (status, X-Web-Server, X-Cache-Status, body, error)."""
    conn = target.connection(timeout)
    headers = {"Host": target.host, "Connection": "close", "User-Agent": "weblab-freshness"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return (resp.status, resp.getheader("X-Web-Server") or resp.getheader("X-Served-By") or "",
                resp.getheader("X-Cache-Status") or "", data, "")
    except (OSError, http.client.HTTPException) as exc:
        return None, "", "", b"", f"{type(exc).__name__}: {exc}"[:120].replace("\n", " ")
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="scheme://host[:port] of the site")
    ap.add_argument("--out", required=True)
    ap.add_argument("--writes", type=int, default=5)
    ap.add_argument("--servers", type=int, default=1, help="web servers that must serve the write")
    ap.add_argument("--page", default="/", help="the page that lists the items")
    ap.add_argument("--interval", type=float, default=0.02, help="seconds between reads")
    ap.add_argument("--pause", type=float, default=1.0, help="random pause before each write: 0..this, s")
    ap.add_argument("--deadline", type=float, default=10.0, help="give up on a write after this many s")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prefix", default="fresh")
    a = ap.parse_args(argv)
    target = Target(a.base)
    rng = random.Random(a.seed)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    tag = f"{a.prefix}-{a.seed}-{int(time.time() * 1000)}"
    seen_all = 0
    with open(a.out, "w", newline="") as f:
        log = RowLog(f, FIELDS)
        for k in range(a.writes):
            if stop.wait(rng.uniform(0, a.pause)):
                break
            name = f"{tag}-{k}"
            t0 = time.time()
            status, server, cache, _, err = request(target, "POST", "/api/items", a.timeout, json.dumps({"name": name}))
            log(["write", k, name, f"{t0:.6f}", f"{time.time():.6f}", status or "", server, cache, "", err])
            if status != 201:
                continue
            fresh_on: set[str] = set()
            end = time.monotonic() + a.deadline
            while len(fresh_on) < a.servers and time.monotonic() < end and not stop.is_set():
                t1 = time.time()
                status, server, cache, body, err = request(target, "GET", a.page, a.timeout)
                fresh = status == 200 and name.encode() in body
                if fresh:
                    fresh_on.add(server)
                log(["read", k, name, f"{t1:.6f}", f"{time.time():.6f}", status or "", server, cache, int(fresh), err])
                stop.wait(a.interval)
            seen_all += len(fresh_on) >= a.servers
    print(json.dumps({"writes": a.writes, "servers": a.servers, "visible_everywhere": seen_all, "tag": tag}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
