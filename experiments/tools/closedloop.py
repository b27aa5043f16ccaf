"""Closed-loop HTTP load with one CSV line per request: N keep-alive connections, each sending its next
request as soon as the last one is answered, for a duration (or until SIGTERM).

Run inside a host: python closedloop.py --url URL --connections 16 --duration 20 --out c.csv
With more connections than the servers have workers, demand stays above whatever the pool can serve:
the throughput is the pool's capacity at every moment, and the latency is its queue (connections /
throughput). Which server answered is read from the response (X-Backend-Server).
CSV: i,conn,t_send,t_recv,status,ok,served_by,error (wall-clock seconds). A JSON summary goes to stdout.
"""
from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import threading
import time

try:
    from target import SERVED_BY, RowLog, Target  # run by file path inside a lab host: a sibling module
except ImportError:
    from experiments.tools.target import SERVED_BY, RowLog, Target

FIELDS = ["i", "conn", "t_send", "t_recv", "status", "ok", "served_by", "error"]


class Loop:
    """The connections of one run and the CSV they share."""

    def __init__(self, url: str, connections: int, timeout: float, out):
        self.target = Target(url)
        self.headers = {"Host": self.target.host, "User-Agent": "weblab-closedloop"}
        self.connections, self.timeout = connections, timeout
        self.log = RowLog(out, FIELDS)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.n = 0

    def _next(self) -> int:
        with self.lock:
            self.n += 1
            return self.n - 1

    def _conn(self, k: int) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            i, t_send = self._next(), time.time()
            status, served, err = None, "", ""
            try:
                if conn is None:
                    conn = self.target.connection(self.timeout)
                conn.request("GET", self.target.path, headers=self.headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                served = next((resp.getheader(h) for h in SERVED_BY if resp.getheader(h)), "") or ""
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                err = f"{type(exc).__name__}: {exc}"[:120].replace("\n", " ")
                if conn is not None:
                    conn.close()
                conn = None
            ok = int(status is not None and 200 <= status < 400)
            self.log([i, k, f"{t_send:.6f}", f"{time.time():.6f}", status or "", ok, served,
                             "" if ok or status else err])
        if conn is not None:
            conn.close()

    def run(self, duration: float) -> dict[str, object]:
        start = time.time()
        threads = [threading.Thread(target=self._conn, args=(k,), daemon=True) for k in range(self.connections)]
        for t in threads:
            t.start()
        self.stop.wait(duration)
        self.stop.set()
        for t in threads:
            t.join(timeout=self.timeout + 1)
        return {"start": start, "end": time.time(), "requests": self.n, "connections": self.connections}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the loop, print the summary as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--duration", type=float, required=True, help="seconds (SIGTERM ends it earlier)")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if not 1 <= a.connections <= 1024 or a.duration <= 0:
        print("closedloop: --connections must be 1..1024 and --duration > 0", file=sys.stderr)
        return 2
    with open(a.out, "w", newline="") as out:
        loop = Loop(a.url, a.connections, a.timeout, out)
        signal.signal(signal.SIGTERM, lambda *_: loop.stop.set())
        summary = loop.run(a.duration)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
