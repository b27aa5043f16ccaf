"""Closed-loop load with wrk run inside a lab host, and a parser for its text output (incl. --latency)."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
METRIC = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}


@dataclass
class WrkResult:
    """The numbers of one wrk run; times in seconds, sizes in bytes."""

    url: str
    threads: int
    connections: int
    requests: int
    duration_s: float
    read_bytes: float
    requests_per_s: float
    transfer_per_s: float
    latency_avg_s: float
    latency_stdev_s: float
    latency_max_s: float
    percentiles_s: dict[str, float] = field(default_factory=dict)   # "50" -> seconds
    non_2xx_3xx: int = 0
    errors: dict[str, int] = field(default_factory=lambda: {"connect": 0, "read": 0, "write": 0, "timeout": 0})

    @property
    def failed(self) -> int:
        """Requests that did not succeed: non-2xx/3xx answers plus socket errors."""
        return self.non_2xx_3xx + sum(self.errors.values())

    @property
    def ok_per_s(self) -> float:
        """Successful requests per second: the capacity figure the claims use."""
        return self.requests_per_s * (1 - self.failed / max(1, self.requests))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (with the derived failure count)."""
        return {**asdict(self), "failed": self.failed}


def parse_time(text: str) -> float:
    """'506.00us' / '2.11ms' / '1.02s' / '2.00m' -> seconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(m.group(1)) * TIME_UNITS[m.group(2)]


def parse_size(text: str) -> float:
    """'3.52MB' / '361.30B' -> bytes (wrk uses powers of 1024)."""
    m = re.fullmatch(r"([\d.]+)([KMGT]?B)", text.strip())
    if not m:
        raise ValueError(f"not a wrk size: {text!r}")
    return float(m.group(1)) * SIZE_UNITS[m.group(2)]


def parse_metric(text: str) -> float:
    """'6.50k' / '2.00' -> a number (powers of 1000); '-nan' -> nan."""
    text = text.strip().rstrip("%")
    if "nan" in text:
        return math.nan
    m = re.fullmatch(r"([\d.]+)([kMG]?)", text)
    if not m:
        raise ValueError(f"not a wrk number: {text!r}")
    return float(m.group(1)) * METRIC[m.group(2)]


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's report; ValueError (with wrk's own message) when wrk did not run a test."""
    head = re.search(r"Running (\S+) test @ (\S+)\s+(\d+) threads and (\d+) connections", text)
    if not head:
        first = text.strip().splitlines()[0] if text.strip() else "(no output)"
        raise ValueError(f"wrk did not run: {first}")
    lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+", text)
    total = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    tps = re.search(r"Transfer/sec:\s+([\d.]+\w+)", text)
    if not (lat and total and rps and tps):
        raise ValueError("wrk output is incomplete (no summary lines)")
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors = dict(zip(errors, map(int, sock.groups())))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    pct = {m.group(1): parse_time(m.group(2)) for m in re.finditer(r"^\s+(\d+(?:\.\d+)?)%\s+(\S+)\s*$", text, re.M)}
    return WrkResult(
        url=head.group(2), threads=int(head.group(3)), connections=int(head.group(4)),
        requests=int(total.group(1)), duration_s=parse_time(total.group(2)), read_bytes=parse_size(total.group(3)),
        requests_per_s=float(rps.group(1)), transfer_per_s=parse_size(tps.group(1)),
        latency_avg_s=parse_time(lat.group(1)), latency_stdev_s=parse_time(lat.group(2)),
        latency_max_s=parse_time(lat.group(3)), percentiles_s=pct,
        non_2xx_3xx=int(non2xx.group(1)) if non2xx else 0, errors=errors)


def load_from_capacity(out: Path, case: str, wrk_file: str, fraction: float, given: float | None,
                       knob: str) -> tuple[float, str]:
    """The rate a contrast claim offers both of its labs: `given` (--param KNOB), else fraction x the ok req/s
    the first lab (`case`, run before) measured in its wrk run; with the words saying where it came from."""
    if given:
        return float(given), f"--param {knob}"
    ref = out.parent / case / wrk_file
    if not ref.exists():
        raise RuntimeError(f"no {case} capacity to set the load from: run both cases or give --param {knob}")
    cap = parse_wrk(ref.read_text()).ok_per_s
    if cap <= 0:
        raise RuntimeError(f"{case} answered nothing in its capacity run, so there is no load to offer")
    return round(fraction * cap, 1), f"{fraction:g} x {case}'s {cap:.1f} req/s"


def wrk_argv(url: str, duration: float, connections: int = 8, threads: int = 2, timeout: float = 5.0,
             headers: tuple[str, ...] = ()) -> list[str]:
    """The wrk command line (closed loop, latency percentiles on; headers as 'Name: value')."""
    threads = max(1, min(threads, connections))
    extra = [arg for h in headers for arg in ("-H", h)]
    return ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
            "--timeout", f"{max(1, round(timeout))}s", "--latency", *extra, url]


def run_wrk(lab: Any, host: str, url: str, duration: float, out: Path, connections: int = 8,
            threads: int = 2, timeout: float = 5.0, headers: tuple[str, ...] = ()) -> WrkResult:
    """Run wrk in host, save its raw output to out (the analysis re-parses it), return the numbers."""
    res = lab.exec(host, wrk_argv(url, duration, connections, threads, timeout, headers),
                   timeout=duration + timeout + 15)
    Path(out).write_text(res.stdout + (f"\n# stderr:\n{res.stderr}" if res.stderr.strip() else ""))
    return parse_wrk(res.stdout)
