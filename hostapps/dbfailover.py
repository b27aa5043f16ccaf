"""The database failover manager: watches the primary, promotes a replica, moves the writer's name.

A small daemon of the project's (run as `python -m hostapps.dbfailover --config FILE`):
- checks the primary every `interval` s (connect + SELECT 1, short timeouts);
- after `fall` failures in a row, promotes the first replica that answers: stops its receiver,
  waits until every transaction it received is applied (MASTER_GTID_WAIT on Gtid_IO_Pos: with
  semi-synchronous replication every acknowledged commit was received), resets replication and
  makes it writable;
- points `db-primary.<zone>` at it with a DNS UPDATE (nsupdate), which the app servers resolve
  on every new connection;
- writes each step with its time to events.csv, for experiments.
"""
from __future__ import annotations

import argparse
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hostapps.accounts import FAILOVER
from hostapps.base import Service
from weblab.core.errors import WeblabError


class DbFailover(Service):
    """The failover manager daemon in a host (the monitor host in the scaled design)."""

    kind = "dbfailover"
    binaries = {"nsupdate": "bind9-dnsutils"}
    defaults: dict[str, Any] = {"primary": "", "replicas": [], "dns_server": "", "zone": "",
                                "record": "db-primary", "interval": 0.2, "fall": 3, "ttl": 1,
                                "user": FAILOVER.user, "password": FAILOVER.password}

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        for key in ("primary", "dns_server", "zone"):
            if not self.opts[key]:
                raise WeblabError(f"dbfailover on {self.host.name}: option {key} is required")

    @property
    def config(self) -> Path:
        return self.dir / "config.json"

    @property
    def events(self) -> Path:
        return self.dir / "events.csv"

    def render(self) -> None:
        self.config.write_text(json.dumps({**self.opts, "events": str(self.events)}, indent=2))

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "hostapps.dbfailover", "--config", str(self.config)]

    def probe(self) -> bool:
        return self.events.exists() and "watching" in self.events.read_text()


# ---------------------------------------------------------------------------------------- daemon
class Manager:
    """The watch-and-promote loop."""

    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        self.primary: str = cfg["primary"]
        self.replicas: list[str] = list(cfg["replicas"])
        self.events = open(cfg["events"], "a", newline="")
        self.writer = csv.writer(self.events)
        self.stopping = False

    def log(self, event: str, detail: str = "") -> None:
        self.writer.writerow([f"{time.time():.6f}", event, detail])
        self.events.flush()

    def connect(self, host: str, timeout: float = 0.5):
        import pymysql
        return pymysql.connect(host=host, port=3306, user=self.cfg["user"], password=self.cfg["password"],
                               connect_timeout=timeout, read_timeout=max(timeout, 10), write_timeout=5,
                               autocommit=True)

    def alive(self, host: str) -> bool:
        try:
            conn = self.connect(host)
        except Exception:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            return True
        except Exception:
            return False
        finally:
            conn.close()

    def promote(self, host: str) -> None:
        """Make replica host the writable primary without losing what it received."""
        conn = self.connect(host, timeout=1)
        with conn.cursor() as cur:
            cur.execute("STOP SLAVE IO_THREAD")
            cur.execute("SHOW SLAVE STATUS")
            cols = [c[0] for c in cur.description]
            received = dict(zip(cols, cur.fetchone()))["Gtid_IO_Pos"]
            cur.execute("SELECT MASTER_GTID_WAIT(%s, 10)", (received,))
            if cur.fetchone()[0] != 0:
                raise RuntimeError(f"{host} did not apply what it received ({received}) within 10 s")
            self.log("applied", received or "(nothing)")
            cur.execute("STOP SLAVE")
            cur.execute("RESET SLAVE ALL")
            cur.execute("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
            cur.execute("SET GLOBAL read_only = OFF")
        conn.close()

    def move_name(self, ip: str) -> None:
        """DNS UPDATE: db-primary.<zone> A ip."""
        name = f"{self.cfg['record']}.{self.cfg['zone']}"
        script = (f"server {self.cfg['dns_server']}\nzone {self.cfg['zone']}\n"
                  f"update delete {name} A\nupdate add {name} {self.cfg['ttl']} A {ip}\nsend\n")
        res = subprocess.run(["nsupdate", "-t", "3"], input=script, capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            raise RuntimeError(f"nsupdate failed: {res.stderr.strip()}")

    def run(self) -> None:
        self.log("watching", self.primary)
        fails = 0
        while not self.stopping:
            t0 = time.monotonic()
            if self.alive(self.primary):
                fails = 0
            else:
                fails += 1
                self.log("check-failed", f"{self.primary} ({fails}/{self.cfg['fall']})")
                if fails >= self.cfg["fall"]:
                    self.failover()
                    fails = 0
            time.sleep(max(0.0, self.cfg["interval"] - (time.monotonic() - t0)))

    def failover(self) -> None:
        self.log("primary-down", self.primary)
        for candidate in self.replicas:
            if not self.alive(candidate):
                self.log("candidate-down", candidate)
                continue
            try:
                self.promote(candidate)
                self.log("promoted", candidate)
                self.move_name(candidate)
                self.log("dns-updated", candidate)
            except Exception as e:  # keep watching: the experiment reads what happened
                self.log("failover-error", f"{candidate}: {e}")
                return
            self.replicas.remove(candidate)
            self.primary = candidate
            return
        self.log("no-candidate", "no replica left to promote")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hostapps.dbfailover")
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    manager = Manager(json.loads(Path(args.config).read_text()))

    def stop(signum, frame):
        manager.stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    manager.run()
    manager.log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
