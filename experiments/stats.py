"""Reading the tools' CSVs and the small statistics every claim needs (percentiles, windows, outages)."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable


@dataclass(frozen=True)
class Request:
    """One request of the probe or the open-loop generator (wall-clock seconds)."""

    t_send: float            # actual send time (probe); scheduled time for openloop rows never sent
    t_recv: float
    ok: bool
    status: int | None = None
    served_by: str = ""
    error: str = ""
    t_sched: float | None = None  # openloop only

    @property
    def latency(self) -> float:
        """Seconds from the scheduled (or actual) send to the answer or the failure."""
        return self.t_recv - (self.t_sched if self.t_sched is not None else self.t_send)


def _num(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def read_probe(path: Path) -> list[Request]:
    """Rows of a probe CSV sorted by send time."""
    with open(path, newline="") as f:
        rows = [Request(float(r["t_send"]), float(r["t_recv"]), r["ok"] == "1",
                        int(r["status"]) if r["status"] else None, r.get("served_by") or "", r.get("error") or "")
                for r in csv.DictReader(f)]
    return sorted(rows, key=lambda r: r.t_send)


def read_openloop(path: Path, drain_end: float | None = None) -> list[Request]:
    """Rows of an openloop CSV sorted by schedule; never-sent rows end at drain_end (or their schedule)."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            sched = float(r["t_sched"])
            send = _num(r["t_send"])
            recv = _num(r["t_recv"])
            if recv is None:
                recv = drain_end if drain_end is not None else sched
            out.append(Request(send if send is not None else sched, recv, r["ok"] == "1",
                               int(r["status"]) if r["status"] else None, "", r.get("error") or "", sched))
    return sorted(out, key=lambda r: r.t_sched or 0.0)


def percentile(values: Iterable[float], q: float) -> float:
    """q-th percentile (0..100) with linear interpolation (numpy's default); nan for no values."""
    xs = sorted(values)
    if not xs:
        return math.nan
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def between(rows: list[Request], t0: float, t1: float) -> list[Request]:
    """Requests sent in [t0, t1)."""
    return [r for r in rows if t0 <= r.t_send < t1]


def success_rate(rows: list[Request]) -> float:
    """Fraction of ok requests; nan when there are none."""
    return sum(r.ok for r in rows) / len(rows) if rows else math.nan


@dataclass(frozen=True)
class Outage:
    """A maximal run of consecutive failed requests."""

    start: float     # send time of the first failure
    end: float       # send time of the next success (or of the last failure if none followed)
    failed: int

    @property
    def seconds(self) -> float:
        return self.end - self.start


def failure_summary(rows: Iterable[Any]) -> str:
    """What failed among rows (Request or MixRow) and when, for a gate's reason: '3 of 150 failed
    (2x 502, 1x ConnectionResetError) at +0.0 s..+0.1 s from the first send'; '' when none did."""
    rows = [r for r in rows if r.t_send is not None]
    bad = [r for r in rows if not r.ok]
    if not bad:
        return ""
    counts: dict[str, int] = {}
    for r in bad:
        what = (r.error.split(":")[0] if r.error else "") or (f"HTTP {r.status}" if r.status else "no answer")
        counts[what] = counts.get(what, 0) + 1
    t0 = min(r.t_send for r in rows)
    when = sorted(r.t_send - t0 for r in bad)
    kinds = ", ".join(f"{n}x {what}" for what, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{len(bad)} of {len(rows)} failed ({kinds}) at +{when[0]:.1f} s..+{when[-1]:.1f} s from the first send"


def outages(rows: list[Request]) -> list[Outage]:
    """Runs of consecutive failures in send order; each lasts until the next success is sent."""
    found, start, n = [], None, 0
    last_fail = 0.0
    for r in rows:
        if not r.ok:
            if start is None:
                start, n = r.t_send, 0
            n += 1
            last_fail = r.t_send
        elif start is not None:
            found.append(Outage(start, r.t_send, n))
            start = None
    if start is not None:
        found.append(Outage(start, last_fail, n))
    return found


class Rounded(float):
    """A measured float rounded for verdict.json and reports that keeps the value it was rounded from (`exact`):
    a verdict check compares the measurement, not its display (99.996% shown as 100% still fails "= 100%")."""

    exact: float

    def __new__(cls, value: float, digits: int) -> "Rounded":
        self = super().__new__(cls, round(value, digits))
        self.exact = value
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # copies (dataclasses.asdict deep-copies) keep the exact value
        return _restore_rounded, (float(self), self.exact)


def _restore_rounded(shown: float, value: float) -> Rounded:
    self = float.__new__(Rounded, shown)
    self.exact = value
    return self


def rounded(value: float, digits: int = 4) -> float | None:
    """JSON-friendly rounding (a Rounded: the exact value stays with it for the checks); nan becomes None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return Rounded(value, digits) if isinstance(value, float) else round(value, digits)
