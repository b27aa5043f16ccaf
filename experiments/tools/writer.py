"""Writer client: POST one new item after another (one in flight), one CSV line per attempt with the id acknowledged.

Run inside a host: python writer.py --url https://www.foobar.com/api/items --duration 20 --out w.csv
Each request posts name=<prefix>-<seq>; a 201 answer's JSON "id" is an acknowledged write. Bounded by
--duration and --max-writes; per-request --timeout; clean stop on SIGTERM/SIGINT. HTTPS is verified
against the host's trust store (the run's CA inside a lab host).
CSV: seq,t_send,t_recv,status,id,error (wall-clock seconds).
"""
from __future__ import annotations

import argparse
import csv
import http.client
import json
import signal
import socket
import ssl
import sys
import threading
import time
from urllib.parse import urlencode, urlsplit

FIELDS = ["seq", "t_send", "t_recv", "status", "id", "error"]


class Client:
    """One keep-alive connection to the URL's host, reopened after any error."""

    def __init__(self, url: str, timeout: float):
        u = urlsplit(url)
        self.name, self.tls = u.hostname or "localhost", u.scheme == "https"
        self.port = u.port or (443 if self.tls else 80)
        self.path = u.path or "/"
        self.ip = socket.getaddrinfo(self.name, self.port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        self.timeout = timeout
        self.ctx = ssl.create_default_context() if self.tls else None
        self.conn: http.client.HTTPConnection | None = None

    def connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.ip, self.port, timeout=self.timeout)
        conn.connect()
        if self.ctx is not None:
            conn.sock = self.ctx.wrap_socket(conn.sock, server_hostname=self.name)
        return conn

    def post(self, fields: dict[str, str]) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = self.connect()
        try:
            self.conn.request("POST", self.path, body=urlencode(fields),
                              headers={"Host": self.name, "Content-Type": "application/x-www-form-urlencoded",
                                       "User-Agent": "weblab-writer"})
            resp = self.conn.getresponse()
            body = resp.read()
            if resp.will_close:
                self.close()
            return resp.status, body
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=float, required=True, help="seconds")
    ap.add_argument("--interval", type=float, default=0.02, help="seconds between the starts of writes")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--max-writes", type=int, default=5000)
    ap.add_argument("--prefix", default="w")
    a = ap.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    client = Client(a.url, a.timeout)
    mono0, wall0 = time.monotonic(), time.time()

    def wall() -> float:
        return wall0 + (time.monotonic() - mono0)
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        f.flush()
        last = mono0 - a.interval
        for seq in range(a.max_writes):
            # paced from the previous start: after a slow write, no burst to catch up
            if stop.wait(max(0.0, last + a.interval - time.monotonic())) or time.monotonic() - mono0 > a.duration:
                break
            last = time.monotonic()
            t_send = wall()
            status, item, err = None, "", ""
            try:
                status, body = client.post({"name": f"{a.prefix}-{seq}"})
                if status == 201:
                    item = str(json.loads(body)["id"])
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                err = f"{type(exc).__name__}: {exc}"[:120].replace("\n", " ")
            w.writerow([seq, f"{t_send:.6f}", f"{wall():.6f}", status or "", item, err])
            f.flush()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
