"""Open-loop HTTP load: hold a requested rate on a fixed timetable, whatever the responses do.

Run inside a host: python -m experiments.tools.openloop --url URL --rate 200 --duration 10 --out o.csv
Requests are due at i/rate (or Poisson arrivals with --seed); a pool of keep-alive workers, grown
on demand up to --max-inflight, sends each as soon as it is due. Latency is measured from the
SCHEDULED time, so a slow server cannot hide its queue (no coordinated omission). A request that
was still waiting when the drain deadline passed is written with error 'not_sent'.
CSV: i,t_sched,t_send,t_recv,status,ok,error (wall-clock seconds). A JSON summary goes to stdout.
"""
from __future__ import annotations

import argparse
import csv
import http.client
import json
import queue
import random
import signal
import sys
import threading
import time

try:
    from target import Target  # run by file path inside a lab host: a sibling module
except ImportError:
    from experiments.tools.target import Target

FIELDS = ["i", "t_sched", "t_send", "t_recv", "status", "ok", "error"]
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def timetable(rate: float, duration: float, arrivals: str = "uniform", seed: int = 1) -> list[float]:
    """Offsets (s) of every request: evenly spaced, or Poisson with a seeded generator."""
    if rate <= 0 or duration <= 0:
        return []
    if arrivals == "uniform":
        return [i / rate for i in range(int(round(rate * duration)))]
    rng, t, out = random.Random(seed), 0.0, []
    while True:
        t += rng.expovariate(rate)
        if t >= duration:
            return out
        out.append(t)


class Worker(threading.Thread):
    """Sends due requests on one keep-alive connection, reconnecting after errors."""

    def __init__(self, gen: "Generator"):
        super().__init__(daemon=True)
        self.gen = gen
        self.conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        g = self.gen
        while True:
            item = g.due.get()
            if item is None:
                break
            with g.lock:
                g.idle -= 1
            i, sched = item
            if g.expired.is_set():
                g.record([i, f"{g.wall(sched):.6f}", "", "", "", 0, "not_sent"])
            else:
                self.send(i, sched)
            with g.lock:
                g.idle += 1
            g.due.task_done()
        if self.conn:
            self.conn.close()

    def send(self, i: int, sched: float) -> None:
        g = self.gen
        t_send = time.monotonic()
        status, err = None, ""
        for attempt in (1, 2):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = g.target.connection(g.timeout)
            try:
                self.conn.request(g.method, g.path, headers=g.headers)
                resp = self.conn.getresponse()
                resp.read()
                status = resp.status
                if resp.will_close:
                    self.conn.close()
                    self.conn = None
                break
            except (OSError, http.client.HTTPException) as exc:
                self.conn.close()
                self.conn = None
                err = f"{type(exc).__name__}: {exc}"[:120].replace("\n", " ")
                if not (reused and attempt == 1 and isinstance(exc, STALE)):
                    break  # only a keep-alive connection the server closed meanwhile is retried, once
        t_recv = time.monotonic()
        ok = int(status is not None and 200 <= status < 400)
        g.record([i, f"{g.wall(sched):.6f}", f"{g.wall(t_send):.6f}", f"{g.wall(t_recv):.6f}",
                  status or "", ok, "" if ok or status else err])


class Generator:
    """The timetable, the worker pool and the CSV writer of one open-loop run."""

    def __init__(self, url: str, timeout: float, max_inflight: int, out, keepalive: bool = True,
                 method: str = "GET"):
        self.target = Target(url)
        self.host, self.port, self.path = self.target.host, self.target.port, self.target.path
        self.headers = {"Host": self.host, "User-Agent": "weblab-openloop"}
        if not keepalive:
            self.headers["Connection"] = "close"
        self.method, self.timeout, self.max_inflight = method, timeout, max_inflight
        self.due: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        self.idle = 0
        self.workers: list[Worker] = []
        self.expired = threading.Event()
        self.stop = threading.Event()
        self.out = out
        self.writer = csv.writer(out)
        self.writer.writerow(FIELDS)
        self.mono0, self.wall0 = time.monotonic(), time.time()
        self.sent_late = 0

    def wall(self, mono: float) -> float:
        return self.wall0 + (mono - self.mono0)

    def record(self, row: list[object]) -> None:
        with self.lock:
            self.writer.writerow(row)
            self.out.flush()

    def _hand_over(self, item: tuple[int, float]) -> None:
        """Queue a due request; grow the pool when nobody is idle (up to max_inflight)."""
        with self.lock:
            grow = self.due.qsize() >= self.idle and len(self.workers) < self.max_inflight
            if grow:
                self.idle += 1
        if grow:
            w = Worker(self)
            self.workers.append(w)
            w.start()
        self.due.put(item)

    def run(self, offsets: list[float], duration: float, prestart: int = 8) -> dict[str, object]:
        """Send on the timetable, drain (bounded), and return a summary."""
        for _ in range(min(prestart, self.max_inflight)):
            with self.lock:
                self.idle += 1
            w = Worker(self)
            self.workers.append(w)
            w.start()
        start = time.monotonic() + 0.05
        self.mono0, self.wall0 = time.monotonic(), time.time()
        handed = 0
        for i, off in enumerate(offsets):
            due = start + off
            delay = due - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                break
            self._hand_over((i, due))
            handed += 1
        for i in range(handed, len(offsets)):  # stopped by a signal: the rest were never sent
            self.record([i, f"{self.wall(start + offsets[i]):.6f}", "", "", "", 0, "not_sent"])
        drain_until = start + duration + self.timeout + 1.0
        while self.due.unfinished_tasks and time.monotonic() < drain_until:
            time.sleep(0.02)  # polling a bounded drain; the queue has no timed join
        self.expired.set()
        for _ in self.workers:
            self.due.put(None)
        for w in self.workers:
            w.join(timeout=self.timeout + 1)
        return {"start": self.wall(start), "scheduled": len(offsets), "handed": handed,
                "workers": len(self.workers)}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the timetable, print the summary as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, required=True, help="requests per second")
    ap.add_argument("--duration", type=float, required=True, help="seconds")
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--max-inflight", type=int, default=256)
    ap.add_argument("--arrivals", choices=("uniform", "poisson"), default="uniform")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-keepalive", action="store_true")
    a = ap.parse_args(argv)
    sys.setswitchinterval(0.0005)  # wake the scheduling thread promptly when workers hold the GIL
    offsets = timetable(a.rate, a.duration, a.arrivals, a.seed)
    with open(a.out, "w", newline="") as out:
        gen = Generator(a.url, a.timeout, a.max_inflight, out, keepalive=not a.no_keepalive)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: gen.stop.set())
        summary = gen.run(offsets, a.duration)
    print(json.dumps({"rate": a.rate, "duration": a.duration, "arrivals": a.arrivals, "seed": a.seed, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
