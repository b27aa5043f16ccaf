"""C21 scale-out: under a load above what two CPU-limited servers can serve, a third (a spare built at `up`)
is started and added to HAProxy's pool live through its runtime API, later drained and removed: no request
fails through either change, and the pool's throughput rises and its p99 falls while the third serves.

Raw files (raw/distributed/):
  load.csv     experiments/tools/closedloop.py: i,conn,t_send,t_recv,status,ok,served_by,error, one per request
  faults.csv   the changes, timestamped: add (hostapps.pool.add: firewall, services, add server, UP on every
               load balancer), remove (drain, sessions 0, maint, del server, services stopped), load_stop
  lbstate.csv  HAProxy's view of every server, polled (experiments/lb.py)
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments import drive, lb, plots
from experiments.base import Case, Experiment, say
from experiments.faults import FaultLog, read_faults
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import percentile, rounded
from experiments.verdict import Check, Figure, M, P, Verdict, gate

LOAD = "load.csv"
SPARE = "server3"   # the distributed design's first spare with servers=2


@dataclass(frozen=True)
class Row:
    """One request of closedloop.py."""

    t_send: float
    t_recv: float
    ok: bool
    served_by: str
    error: str

    @property
    def latency(self) -> float:
        return self.t_recv - self.t_send


def read_load(path: Path) -> list[Row]:
    """closedloop.py's CSV, by send time."""
    with open(path, newline="") as f:
        rows = [Row(float(r["t_send"]), float(r["t_recv"]), r["ok"] == "1", r["served_by"], r["error"])
                for r in csv.DictReader(f)]
    return sorted(rows, key=lambda r: r.t_send)


def window_stats(rows: list[Row], a: float, z: float) -> dict[str, float]:
    """Throughput (ok answers received in [a, z) per second) and latency of the requests sent in it."""
    if z <= a:
        raise ValueError(f"an empty window ({a:.3f} .. {z:.3f})")
    sent = [r for r in rows if a <= r.t_send < z]
    lat = [r.latency for r in sent]
    return {"rps": sum(1 for r in rows if r.ok and a <= r.t_recv < z) / (z - a),
            "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
            "requests": len(sent), "seconds": z - a}


@register
class ScaleOut(Experiment):
    """Closed-loop load on 2 CPU-limited servers; `pool.add` a third live, then `pool.remove` it (drained)."""

    slug = "scale-out"
    claim = "C21"
    title = "Servers can be added to the pool without downtime"
    statement = "Servers can be added to the load balancer's pool as traffic grows, without downtime."
    design = "distributed"
    # 12 connections keep every server's CPU quota busy (one request in flight already does) while a health
    # check waits behind at most ~6 requests: with 24 connections and 250 ms checks, HAProxy's checks timed out
    # on the saturated servers and it marked both DOWN (a second of 503s before any change was made)
    defaults = {"work_ms": 10, "cpu": 0.1, "connections": 12, "timeout": 10.0, "check_inter": 1000,
                "warmup_s": 2.0, "before_s": 5.0, "settle_s": 1.0, "after_s": 6.0, "removed_s": 3.0,
                "ready_timeout": 20.0, "drain_timeout": 15.0, "ratio": 1.4}
    checks = (
        gate("changes_failed", "==", 0, "pool changes (add, remove) that failed", fail="a pool change itself failed"),
        gate("added_served", ">=", 1, "requests the added server answered while in the pool",
             fail="the added server never served: it was not really in rotation"),
        Check("failed_requests", "==", 0, "failed requests from the load's start to its end, through the add and the "
              "removal"),
        Check("throughput_ratio", ">=", P("ratio"), "throughput with the third server / before it was added", "x"),
        Check("p99_after_ms", "<", M("p99_before_ms", "p99 before the add"), "p99 latency after the add", "ms"),
        Check("served_after_removal", "==", 0, "requests the removed server answered after its removal"),
    )
    figures = {
        "throughput_before_rps": Figure("throughput with 2 servers (saturated)", "req/s", rel_tol=0.3),
        "throughput_after_rps": Figure("throughput after the add", "req/s", rel_tol=0.3),
        "throughput_ratio": Figure("throughput after / before the add", "x", abs_tol=0.15),
        "p99_before_ms": Figure("p99 before the add", "ms", rel_tol=0.5),
        "p99_after_ms": Figure("p99 after the add", "ms", rel_tol=0.5),
        "failed_requests": Figure("failed requests through both changes", abs_tol=0),
        "add_s": Figure("time to add the server (start to UP)", "s", rel_tol=0.5),
        "remove_s": Figure("time to drain and remove it", "s", rel_tol=0.5),
    }
    summary = ("adding a third server under load took {add_s} and raised the pool's throughput {throughput_ratio} "
               "(from {throughput_before_rps} to {throughput_after_rps}) while p99 fell from {p99_before_ms} to "
               "{p99_after_ms}",
               "{failed_requests} requests failed through the add and the drained removal")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        cpu = {f"server{i}": params["cpu"] for i in (1, 2, 3)}
        return [Case("distributed", "distributed",
                     {"params": {"servers": 2, "spare": 1, "check_inter": params["check_inter"]}, "cpu": cpu})]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"distributed, 2 servers + 1 spare, each CPU-limited to {p['cpu']:g} of the machine; a closed loop of "
                f"{p['connections']} connections asks /work?ms={p['work_ms']} (demand above what any pool here can "
                f"serve: the throughput is its capacity, the latency its queue). After {p['before_s']:g} s (the first "
                f"{p['warmup_s']:g} s not judged) `weblab lb add {SPARE}` in-process: firewall rules, its services, "
                f"HAProxy runtime API `add server` + `enable health` + `state ready`, until UP; {p['after_s']:g} s later "
                f"`weblab lb remove {SPARE}`: drain, sessions 0, maint, `del server`, services stopped; "
                f"{p['removed_s']:g} s more. Windows: before = warm-up end to the add; after = {p['settle_s']:g} s "
                f"after UP to the removal")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        from hostapps import pool
        faults = FaultLog(lab, out / "faults.csv")
        budget = (params["warmup_s"] + params["before_s"] + params["ready_timeout"] + 10 + params["after_s"]
                  + params["drain_timeout"] + 15 + params["removed_s"])
        url = f"http://www.foobar.com/work?ms={params['work_ms']}"
        say(f"closed-loop load, {params['connections']} connections, on 2 servers")
        load = drive.start_tool(lab, "client", "closedloop", [
            "--url", url, "--connections", str(params["connections"]), "--duration", str(budget),
            "--timeout", str(params["timeout"]), "--out", str(out / LOAD)], out / "load.json")
        hap = lb.haproxy(lab)
        try:
            with lb.StateWatch(hap, out / lb.STATE_FILE), window(out, "scale-out"):
                drive.wait_rows(out / LOAD, 1, timeout=10, proc=load)
                drive.pause(params["warmup_s"] + params["before_s"])
                say(f"adding {SPARE} to the pool (its services, then HAProxy's runtime API)")
                faults.record("add", SPARE, lambda: str(pool.add(lab, SPARE, params["ready_timeout"])["steps"]))
                drive.pause(params["after_s"])
                say(f"draining and removing {SPARE}")
                faults.record("remove", SPARE, lambda: str(pool.remove(lab, SPARE, params["drain_timeout"])["steps"]))
                drive.pause(params["removed_s"])
                faults.mark("load_stop")
        finally:
            drive.finish(load, params["timeout"] + 10, "closedloop", terminate=True)

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        events = read_faults(raw / "faults.csv")
        ev = {e.action: e for e in events}
        failed_steps = [f"{e.action} {e.target}: {e.detail}" for e in events if not e.ok]
        rows = read_load(raw / LOAD)
        if not rows:
            raise ValueError(f"{LOAD} is empty")
        if failed_steps or not {"add", "remove", "load_stop"} <= set(ev):
            return self.verdict(case, {"changes_failed": failed_steps or ["the run stopped before both changes"],
                                       "requests": len(rows)}, params)
        add, rem, stop = ev["add"], ev["remove"], ev["load_stop"]
        start = rows[0].t_send
        before = window_stats(rows, start + params["warmup_s"], add.t_begin)
        after = window_stats(rows, add.t_end + params["settle_s"], rem.t_begin)
        removed = window_stats(rows, rem.t_end + params["settle_s"], stop.t_begin)
        run = [r for r in rows if r.t_send < stop.t_begin]
        failed = [r for r in run if not r.ok]
        in_pool = [r for r in rows if add.t_begin <= r.t_send < rem.t_end]
        m: dict[str, Any] = {
            "changes_failed": [], "requests": len(run), "failed_requests": len(failed),
            "failed_during_add": sum(1 for r in failed if add.t_begin <= r.t_send < add.t_end + params["settle_s"]),
            "failed_during_remove": sum(1 for r in failed if rem.t_begin <= r.t_send < rem.t_end + params["settle_s"]),
            "errors": sorted({r.error.split(":")[0] or "HTTP error" for r in failed}),
            "add_s": rounded(add.t_end - add.t_begin, 3), "remove_s": rounded(rem.t_end - rem.t_begin, 3),
            "add_steps": add.detail, "remove_steps": rem.detail,
            "throughput_before_rps": rounded(before["rps"], 2), "throughput_after_rps": rounded(after["rps"], 2),
            "throughput_removed_rps": rounded(removed["rps"], 2),
            "throughput_ratio": rounded(after["rps"] / before["rps"], 3) if before["rps"] else None,
            "p50_before_ms": rounded(before["p50_ms"], 1), "p99_before_ms": rounded(before["p99_ms"], 1),
            "p50_after_ms": rounded(after["p50_ms"], 1), "p99_after_ms": rounded(after["p99_ms"], 1),
            "p99_removed_ms": rounded(removed["p99_ms"], 1),
            "window_s": {"before": rounded(before["seconds"], 2), "after": rounded(after["seconds"], 2),
                         "removed": rounded(removed["seconds"], 2)},
            "added_served": sum(1 for r in in_pool if r.ok and r.served_by == SPARE),
            "added_share_after": rounded(sum(1 for r in rows if r.ok and r.served_by == SPARE
                                             and add.t_end + params["settle_s"] <= r.t_send < rem.t_begin)
                                         / max(1, after["requests"]), 3),
            "served_after_removal": sum(1 for r in rows if r.served_by == SPARE and r.t_send >= rem.t_end)}
        t0 = start
        marks = [(add.t_begin, "add"), (add.t_end, f"{SPARE} UP"), (rem.t_begin, "drain"), (rem.t_end, "removed")]
        wins = [(start + params["warmup_s"], add.t_begin, "before"), (add.t_end + params["settle_s"], rem.t_begin, "after")]
        xs, counts = plots.binned([r.t_recv for r in rows if r.ok], t0, rows[-1].t_recv, 0.5)
        fx, fails = plots.binned([r.t_recv for r in failed], t0, rows[-1].t_recv, 0.5)
        png1 = plots.series_timeline({"ok answers/s": (xs, [c / 0.5 for c in counts]),
                                      "failed/s": (fx, [c / 0.5 for c in fails])},
                                     plots_dir / "scale-out-throughput.png",
                                     f"C21 scale-out: throughput, /work?ms={params['work_ms']}, "
                                     f"{params['connections']} connections, cpu {params['cpu']:g} per server",
                                     "req/s", t0, windows=wins, marks=marks)
        png2 = plots.series_timeline({"latency (s)": ([r.t_send for r in rows], [r.latency for r in rows])},
                                     plots_dir / "scale-out-latency.png", "C21 scale-out: latency of each request",
                                     "s", t0, windows=wins, marks=marks, styles={"latency (s)": "."})
        png3 = plots.served_timeline([(r.t_send, r.served_by, r.ok) for r in rows], ["server1", "server2", SPARE],
                                     plots_dir / "scale-out-served.png", "C21 scale-out: who answered each request",
                                     windows=wins, marks=marks, t0=t0)
        return self.verdict(case, m, params, [png1, png2, png3], notes=[
            f"before: {before['rps']:.1f} req/s, p99 {before['p99_ms']:.0f} ms; after the add: {after['rps']:.1f} "
            f"req/s, p99 {after['p99_ms']:.0f} ms; after the removal: {removed['rps']:.1f} req/s"])
