"""Replication lag probe: write a row on the primary, time until the replica shows it; try a write on the replica.

Run inside the replica's host: python replag.py --primary 10.0.1.11 --replica 127.0.0.1 --writes 200 \
    --out lag.csv --replica-write replica_write.json
Writes are sequential (one in flight), each INSERT autocommitted on the primary; after its ack the
replica is polled (bounded: --visible-timeout) until the row is there. Both clocks are this
process's, so lag = t_visible - t_ack needs no clock sync. Afterwards every acknowledged id is
looked up once more on the replica (bounded --final-timeout), and one INSERT is attempted on the
replica itself, whose error (read-only) is recorded.
CSV: i,id,t_write,t_ack,t_visible,visible,error (wall-clock seconds).
"""
from __future__ import annotations

import argparse
import csv
import json
import signal
import sys
import threading
import time

import pymysql

from hostapps.accounts import APP, DATABASE


def connect(host: str, port: int, user: str, password: str, db: str, timeout: float):
    """An autocommit connection with bounded connect/read/write timeouts."""
    return pymysql.connect(host=host, port=port, user=user, password=password, database=db,
                           autocommit=True, connect_timeout=timeout, read_timeout=timeout,
                           write_timeout=timeout)


def present(conn, ids: list[int]) -> set[int]:
    """Which of ids the server has."""
    found: set[int] = set()
    for k in range(0, len(ids), 500):
        chunk = ids[k:k + 500]
        with conn.cursor() as cur:
            cur.execute(f"SELECT id FROM items WHERE id IN ({','.join(['%s'] * len(chunk))})", chunk)
            found |= {int(r[0]) for r in cur.fetchall()}
    return found


def main(argv: list[str] | None = None) -> int:
    """Measure, write the CSV and the final check; print a JSON summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--primary", required=True)
    ap.add_argument("--replica", required=True)
    ap.add_argument("--port", type=int, default=3306)
    ap.add_argument("--user", default=APP.user)
    ap.add_argument("--password", default=APP.password)
    ap.add_argument("--db", default=DATABASE)
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--interval", type=float, default=0.02, help="pause between writes, seconds")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="stop writing after this long")
    ap.add_argument("--visible-timeout", type=float, default=5.0)
    ap.add_argument("--final-timeout", type=float, default=10.0)
    ap.add_argument("--poll", type=float, default=0.0005, help="replica poll period, seconds")
    ap.add_argument("--tag", default="lag")
    ap.add_argument("--out", required=True)
    ap.add_argument("--replica-write", required=True, help="JSON file for the write attempted on the replica")
    a = ap.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    primary = connect(a.primary, a.port, a.user, a.password, a.db, 5)
    replica = connect(a.replica, a.port, a.user, a.password, a.db, 5)
    acked: list[int] = []
    began = time.monotonic()
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["i", "id", "t_write", "t_ack", "t_visible", "visible", "error"])
        for i in range(a.writes):
            if stop.is_set() or time.monotonic() - began > a.max_seconds:
                break
            t_write = time.time()
            try:
                with primary.cursor() as cur:
                    cur.execute("INSERT INTO items (name) VALUES (%s)", (f"{a.tag}-{i}",))
                    row_id = int(cur.lastrowid)
            except pymysql.MySQLError as exc:
                w.writerow([i, "", f"{t_write:.6f}", "", "", 0, f"write: {exc}"[:160]])
                continue
            t_ack = time.time()
            acked.append(row_id)
            t_visible, error = None, ""
            deadline = time.monotonic() + a.visible_timeout
            while time.monotonic() < deadline:
                try:
                    with replica.cursor() as cur:
                        cur.execute("SELECT 1 FROM items WHERE id = %s", (row_id,))
                        if cur.fetchone():
                            t_visible = time.time()
                            break
                except pymysql.MySQLError as exc:
                    error = f"read: {exc}"[:160]
                    break
                time.sleep(a.poll)  # the replica has no change notification; a short bounded poll
            w.writerow([i, row_id, f"{t_write:.6f}", f"{t_ack:.6f}",
                        f"{t_visible:.6f}" if t_visible else "", int(t_visible is not None),
                        error or ("" if t_visible else "not visible within timeout")])
            f.flush()
            stop.wait(a.interval)
    missing = set(acked)
    deadline = time.monotonic() + a.final_timeout
    while missing and time.monotonic() < deadline:
        missing -= present(replica, sorted(missing))
        if missing:
            time.sleep(0.1)
    attempt = {"statement": "INSERT INTO items (name) VALUES ('written-on-replica')", "rejected": False,
               "errno": None, "message": ""}
    try:
        with replica.cursor() as cur:
            cur.execute("INSERT INTO items (name) VALUES ('written-on-replica')")
    except pymysql.MySQLError as exc:
        attempt.update(rejected=True, errno=exc.args[0] if exc.args else None,
                       message=str(exc.args[1] if len(exc.args) > 1 else exc))
    with open(a.replica_write, "w") as f:
        json.dump(attempt, f, indent=2)
    summary = {"acked": len(acked), "missing_on_replica": sorted(missing), "final_timeout": a.final_timeout}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
