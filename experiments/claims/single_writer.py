"""C8 single-writer: with one writable database, stopping it stops every write while reads go on from the replica."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments import drive, lb, plots
from experiments.base import Case, Experiment, say
from experiments.faults import FaultLog, first, healthy_since, read_faults
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import failure_summary, rounded
from experiments.verdict import Check, Figure, P, Verdict, gate, inconclusive, unhealthy

PRIMARY, REPLICA = "server1", "server2"
LOAD = "rw"   # raw/<case>/rw.csv: mixload of reads (GET /api/items) and writes (POST /api/items)


def rate(rows: list[lb.MixRow]) -> float | None:
    """Success fraction, None for no rows."""
    return sum(r.ok for r in rows) / len(rows) if rows else None


@register
class SingleWriter(Experiment):
    """Reads and writes through the load balancer while the primary's MariaDB is stopped, then started again."""

    slug = "single-writer"
    claim = "C8"
    title = "A single writable database: losing it stops writes, reads go on"
    statement = "With one writable database, losing it stops all writes while reads continue."
    design = "distributed"
    defaults = {"base": "http://www.foobar.com", "rate": 40.0, "timeout": 2.0, "before_s": 3.0, "down_s": 5.0,
                "after_s": 4.0, "settle_s": 0.5, "ready_timeout": 30.0, "healthy": 0.99, "min_requests": 30}
    checks = (
        gate("faults_ok", "==", True, "stopping and restarting the primary's MariaDB succeeded"),
        gate("before_write_success", ">=", P("healthy"), "write success before the stop", "%",
             fail=unhealthy("writes were not healthy before the stop", "before_write_failures")),
        gate("before_read_success", ">=", P("healthy"), "read success before the stop", "%",
             fail=unhealthy("reads were not healthy before the stop", "before_read_failures")),
        gate("down_writes", ">=", P("min_requests"), "writes in the window"),
        gate("down_replica_reads", ">=", P("min_requests"), "replica reads in the window"),
        Check("down_write_success", "==", 0, "write success while the primary is down", "%"),
        Check("down_replica_read_success", ">=", P("healthy"), f"success of the reads served by {REPLICA} (its app "
              "reads its local replica) while the primary is down", "%"),
    )
    figures = {
        "down_write_success": Figure("write success while the primary was down", "%", abs_tol=0.01),
        "down_replica_read_success": Figure("replica read success while the primary was down", "%", abs_tol=0.01),
        "down_read_success": Figure("read success (all servers) while the primary was down", "%", abs_tol=0.1),
    }
    summary = ("while the only writable database was stopped {down_write_success} of {down_writes} writes succeeded",
               f"reads answered from the replica ({REPLICA}) succeeded {{down_replica_read_success}} of "
               "{down_replica_reads}")

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"reads (GET /api/items) and writes (POST /api/items) through the load balancer, {p['rate'] / 2:g}/s "
                f"each, while {PRIMARY}'s MariaDB (the only writable one) is stopped for {p['down_s']:g} s. The "
                f"window: requests sent from the stop + {p['settle_s']:g} s and answered before the restart begins; "
                f"reads served by {PRIMARY} (its local database is the stopped one) are reported, not judged; before "
                f"the stop: requests sent once 10 reads and 10 writes in a row had succeeded (a wait of at most 10 s)")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        faults = FaultLog(lab, out / "faults.csv")
        budget = params["before_s"] + params["down_s"] + params["after_s"] + params["ready_timeout"] + 15
        csv_path = out / f"{LOAD}.csv"
        proc = drive.start_tool(lab, "client", "mixload", lb.mix_args(
            params["base"], params["rate"], budget, csv_path,
            ["read=GET:/api/items?limit=5:1", "write=POST:/api/items:1"], params["seed"], params["timeout"]),
            out / f"{LOAD}.json")
        try:
            drive.wait_rows(csv_path, 1, timeout=10, proc=proc)
            faults.mark_healthy(csv_path, proc, kinds=("read", "write"), consecutive=10)
            with window(out, "primary-down"):
                drive.pause(params["before_s"])
                say(f"fault: stop {PRIMARY}/mariadb")
                faults.stop(PRIMARY, "mariadb")
                drive.pause(params["down_s"])
                say("restore")
                faults.start(PRIMARY, "mariadb", params["ready_timeout"])
                drive.pause(params["after_s"])
                faults.mark("load_stop")
        finally:
            drive.finish(proc, params["timeout"] + 10, "mixload", terminate=True)

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        events = read_faults(raw / "faults.csv")
        stop, start, end = first(events, "stop"), first(events, "start"), first(events, "load_stop")
        if stop is None or start is None or end is None:
            return inconclusive(rule, "faults.csv lacks the stop, the restart or the end: the run stopped early")
        rows = [r for r in lb.read_mix(raw / f"{LOAD}.csv") if r.t_sched < end.t_begin and r.error != "not_sent"]
        t0, t1 = stop.t_end + params["settle_s"], start.t_begin
        before = [r for r in rows if healthy_since(events) <= r.t_sched and (r.t_recv or r.t_sched) < stop.t_begin]
        # answered while the primary was still down: a request still waiting when the restart began may have
        # been served by the restarted primary, so it is counted apart (spanning), not judged
        down = [r for r in rows if t0 <= r.t_sched and (r.t_recv or float("inf")) < t1]
        spanning = [r for r in rows if t0 <= r.t_sched < t1 and (r.t_recv or float("inf")) >= t1]
        after = [r for r in rows if r.t_sched >= start.t_end + 1.0]

        def kind(rs: list[lb.MixRow], k: str, by: str | None = None) -> list[lb.MixRow]:
            return [r for r in rs if r.kind == k and (by is None or r.served_by == by)]
        m: dict[str, Any] = {
            "faults_ok": stop.ok and start.ok,
            "before_write_success": rounded(rate(kind(before, "write"))), "before_read_success": rounded(rate(kind(before, "read"))),
            "before_write_failures": failure_summary(kind(before, "write")),
            "before_read_failures": failure_summary(kind(before, "read")),
            "down_window_s": rounded(t1 - t0, 3), "down_writes": len(kind(down, "write")),
            "down_write_success": rounded(rate(kind(down, "write"))),
            "down_reads": len(kind(down, "read")), "down_read_success": rounded(rate(kind(down, "read"))),
            "down_replica_reads": len(kind(down, "read", REPLICA)),
            "down_replica_read_success": rounded(rate(kind(down, "read", REPLICA))),
            "down_primary_host_reads": len(kind(down, "read", PRIMARY)),
            "down_primary_host_read_success": rounded(rate(kind(down, "read", PRIMARY))),
            "down_unattributed": sum(1 for r in down if not r.served_by),
            "spanning_restart": len(spanning), "spanning_restart_ok": sum(r.ok for r in spanning),
            "after_write_success": rounded(rate(kind(after, "write"))),
            "after_read_success": rounded(rate(kind(after, "read"))),
            "down_write_statuses": sorted({str(r.status or r.error.split(':')[0]) for r in kind(down, "write")})}
        win = [(stop.t_begin, start.t_end, f"{PRIMARY} MariaDB stopped")]
        marks = [(stop.t_begin, "stop"), (start.t_end, "started")]
        pngs = [plots.served_timeline([(r.t_sched, r.served_by, r.ok) for r in kind(rows, k)], [PRIMARY, REPLICA],
                                      plots_dir / f"{k}s-timeline.png",
                                      f"C8 single-writer: {k}s (GET/POST /api/items) by answering server",
                                      windows=win, marks=marks) for k in ("read", "write")]
        return self.verdict(case, m, params, pngs, notes=[
            f"reads served by {PRIMARY} while its database was down: {m['down_primary_host_read_success']} success "
            f"(its app reads the local, stopped database; HAProxy's /health check does not look at the database)"])
