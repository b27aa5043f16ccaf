"""What the distributed-design claims share: HAProxy's view (state polling, request log), mixed load, capacity.

Raw files written here:
  lbstate.csv      t,server,status,check_status,scur,weight: one line per server whenever any of these
                   changes (admin socket polled every --interval from the root namespace), plus the first poll
  haproxy.log      the HAProxy request log lines written during the case (one per request, `%b/%s`)
  haproxy-log.json how to read its timestamps: the UTC offset of the host's local time
  mix.csv          experiments/tools/mixload.py output (i,kind,source,t_sched,t_send,t_recv,status,ok,served_by,error)
"""
from __future__ import annotations

import csv
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from experiments import drive
from experiments.background import Background
from experiments.load import run_wrk

LB_HOST = "lb1"
STATE_FILE, LOG_FILE, LOG_INFO = "lbstate.csv", "haproxy.log", "haproxy-log.json"
STATE_FIELDS = ["t", "server", "status", "check_status", "scur", "weight"]


def haproxy(lab: Any, host: str = LB_HOST) -> Any:
    """The HAProxy service object of the lab (admin socket, set_state, server_states)."""
    return lab.service(host, "haproxy")


def servers_of(lab: Any) -> list[str]:
    """The web servers of the lab (server1, server2, ...)."""
    return sorted(h for h in lab.hosts() if re.fullmatch(r"server\d+", h))


# --- HAProxy state, polled --------------------------------------------------------------------
class StateWatch(Background):
    """Context manager: a thread polling HAProxy's `show stat` and logging every server change to lbstate.csv."""

    thread_name = "haproxy-state"

    def __init__(self, hap: Any, path: Path, interval: float = 0.05):
        super().__init__()
        self.hap, self.path, self.interval = hap, Path(path), interval
        self.error = ""

    def _loop(self) -> None:
        from hostapps.haproxy import backend_stats
        last: dict[str, tuple] = {}
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(STATE_FIELDS)
            while not self._stop.is_set():
                t = time.time()
                try:
                    stats = backend_stats(self.hap.admin_socket)
                except OSError as exc:  # haproxy restarting: note it, keep polling (bounded by the case)
                    self.error = str(exc)
                    stats = {}
                for name, rec in sorted(stats.items()):
                    row = (rec.get("status", ""), rec.get("check_status", ""), rec.get("scur", ""), rec.get("weight", ""))
                    if last.get(name) != row:
                        w.writerow([f"{t:.6f}", name, *row])
                        last[name] = row
                f.flush()
                self._stop.wait(self.interval)


@dataclass(frozen=True)
class StateRow:
    """One change of one server as HAProxy reported it."""

    t: float
    server: str
    status: str
    check_status: str
    scur: int


def read_states(path: Path) -> list[StateRow]:
    """lbstate.csv rows in time order."""
    with open(path, newline="") as f:
        return sorted((StateRow(float(r["t"]), r["server"], r["status"], r["check_status"], int(r["scur"] or 0))
                       for r in csv.DictReader(f)), key=lambda s: s.t)


def first_state(rows: list[StateRow], server: str, prefix: str, after: float) -> StateRow | None:
    """The first poll at/after `after` where server's status starts with prefix (e.g. 'DOWN')."""
    return next((r for r in rows if r.server == server and r.t >= after and r.status.split(" ")[0] == prefix), None)


def state_at(rows: list[StateRow], server: str, t: float) -> str:
    """server's status as last polled at or before t ('' before the first poll)."""
    st = ""
    for r in rows:
        if r.t > t:
            break
        if r.server == server:
            st = r.status
    return st


def wait_state(hap: Any, server: str, ok: Any, timeout: float, what: str) -> float:
    """Poll the admin socket until ok(status, record) holds for server; seconds waited; RuntimeError on timeout."""
    from hostapps.haproxy import backend_stats
    t0 = time.monotonic()
    last = {}
    while time.monotonic() - t0 < timeout:
        last = backend_stats(hap.admin_socket).get(server, {})
        if last and ok(last.get("status", ""), last):
            return time.monotonic() - t0
        time.sleep(0.05)  # bounded poll of the admin socket; HAProxy has no change notification
    raise RuntimeError(f"haproxy: {server} did not become {what} within {timeout:.0f} s "
                       f"(last status {last.get('status')!r}, check {last.get('check_status')!r}; log {hap.log})")


def is_up(status: str, rec: dict | None = None) -> bool:
    """Fully UP (not 'UP 1/3', going down)."""
    return status == "UP"


def is_down(status: str, rec: dict | None = None) -> bool:
    """Marked DOWN (also 'DOWN 1/2', coming back)."""
    return status.split(" ")[0] == "DOWN"


# --- HAProxy request log ------------------------------------------------------------------------
class LogSlice:
    """Context manager: copy the HAProxy log lines written while it is open into raw/haproxy.log."""

    def __init__(self, hap: Any, out: Path):
        self.src, self.out = Path(hap.log), Path(out)
        self.offset = 0

    def __enter__(self) -> "LogSlice":
        self.offset = self.src.stat().st_size if self.src.exists() else 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def flush(self) -> None:
        """Write what was logged since entering (HAProxy writes each line when its request ends)."""
        data = b""
        if self.src.exists():
            with open(self.src, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        (self.out / LOG_FILE).write_bytes(data)
        offset = datetime.now().astimezone().utcoffset() or timedelta(0)
        (self.out / LOG_INFO).write_text(json.dumps({"utc_offset_s": offset.total_seconds(),
                                                     "source": str(self.src)}) + "\n")


# 10.0.0.100:35880 [29/Nov/2026:20:53:11.330] web servers/server2 0/0/0/62/62 200 769 ---- 1/1/0/0/0 "GET / HTTP/1.1"
LOG_LINE = re.compile(r"^(?P<client>[\d.]+):(?P<port>\d+) \[(?P<tr>[^\]]+)\] (?P<frontend>\S+) "
                      r"(?P<backend>[^/\s]+)/(?P<server>\S+) (?P<timers>\S+) (?P<status>-?\d+) ")


@dataclass(frozen=True)
class LogRequest:
    """One request as HAProxy logged it: when it was received, by which backend/server, what status."""

    t: float
    client: str
    backend: str
    server: str
    status: int
    line: str
    request: str = ""   # the quoted request line, e.g. 'GET / HTTP/1.1'


def parse_log_time(text: str, utc_offset_s: float) -> float:
    """'29/Nov/2026:20:53:11.330' (the host's local time) -> wall-clock seconds."""
    dt = datetime.strptime(text, "%d/%b/%Y:%H:%M:%S.%f")
    return dt.replace(tzinfo=timezone(timedelta(seconds=utc_offset_s))).timestamp()


def read_log(raw: Path) -> list[LogRequest]:
    """The request lines of raw/haproxy.log (other lines: state changes, warnings, are skipped)."""
    info = json.loads((Path(raw) / LOG_INFO).read_text())
    out = []
    for line in (Path(raw) / LOG_FILE).read_text(errors="replace").splitlines():
        m = LOG_LINE.match(line)
        if m:
            quoted = line.rsplit(' "', 1)
            out.append(LogRequest(parse_log_time(m["tr"], info["utc_offset_s"]), m["client"], m["backend"],
                                  m["server"], int(m["status"]), line,
                                  quoted[1].rstrip('"') if len(quoted) == 2 else ""))
    return sorted(out, key=lambda r: r.t)


# --- mixed load ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MixRow:
    """One request of mixload.py."""

    i: int
    kind: str
    source: str
    t_sched: float
    t_send: float | None
    t_recv: float | None
    status: int | None
    ok: bool
    served_by: str
    error: str

    @property
    def latency(self) -> float | None:
        """Seconds from the scheduled send to the answer (None when never answered)."""
        return None if self.t_recv is None else self.t_recv - self.t_sched


def read_mix(path: Path) -> list[MixRow]:
    """mixload.py CSV rows by schedule."""
    def num(x: str) -> float | None:
        return float(x) if x else None
    with open(path, newline="") as f:
        rows = [MixRow(int(r["i"]), r["kind"], r["source"], float(r["t_sched"]), num(r["t_send"]), num(r["t_recv"]),
                       int(r["status"]) if r["status"] else None, r["ok"] == "1", r["served_by"], r["error"])
                for r in csv.DictReader(f)]
    return sorted(rows, key=lambda r: r.t_sched)


def mix_args(base: str, rate: float, duration: float, out: Path, requests: list[str], seed: int,
             timeout: float = 5.0, sources: list[str] | None = None, max_inflight: int = 128) -> list[str]:
    """Arguments of experiments/tools/mixload.py."""
    args = ["--base", base, "--rate", str(rate), "--duration", str(duration), "--out", str(out),
            "--timeout", str(timeout), "--seed", str(seed), "--max-inflight", str(max_inflight)]
    for r in requests:
        args += ["--request", r]
    for s in sources or []:
        args += ["--source", s]
    return args


def run_mix(lab: Any, host: str, out: Path, name: str, base: str, rate: float, duration: float,
            requests: list[str], seed: int, timeout: float = 5.0, sources: list[str] | None = None) -> Path:
    """Run mixload to completion in host (bounded), raw CSV to out/<name>.csv; returns its path."""
    csv_path = out / f"{name}.csv"
    proc = drive.start_tool(lab, host, "mixload", mix_args(base, rate, duration, csv_path, requests, seed, timeout,
                                                           sources), out / f"{name}.json")
    drive.finish(proc, duration + timeout + 20, f"mixload {name}")
    return csv_path


def capacity(lab: Any, out: Path, name: str, url: str, seconds: float, connections: int,
             timeout: float = 5.0) -> float:
    """Closed-loop capacity (ok req/s) with wrk from client; raw output in out/wrk-<name>.txt."""
    res = run_wrk(lab, "client", url, seconds, out / f"wrk-{name}.txt", connections=connections, timeout=timeout)
    return res.ok_per_s


def settle(lab: Any, url: str, fast_s: float, timeout: float, tries: int = 30) -> bool:
    """Bounded wait until the site answers url within fast_s (the queue a closed-loop run left has drained)."""
    for _ in range(tries):
        res = lab.exec("client", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                                  "--max-time", str(timeout), url], timeout=timeout + 5)
        code, _, total = res.stdout.strip().partition(" ")
        if code == "200" and float(total or "inf") < fast_s:
            return True
    return False


def shares(names: list[str], servers: list[str]) -> dict[str, float]:
    """Fraction of names equal to each server (0 for a server never named)."""
    n = len(names)
    return {s: (sum(1 for x in names if x == s) / n if n else 0.0) for s in servers}
