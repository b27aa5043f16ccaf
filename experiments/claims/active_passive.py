"""C6 active-passive: active-active uses every server; active-passive keeps the backup idle until the active fails."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments import drive, lb, plots
from experiments.lb import settle
from experiments.base import Case, Experiment, say
from experiments.faults import FaultLog, first, healthy_since, read_faults
from experiments.fidelity import window
from experiments.load import parse_wrk
from experiments.registry import register
from experiments.stats import failure_summary, read_probe, rounded, success_rate
from experiments.verdict import Check, Figure, P, Verdict, gate, inconclusive, unhealthy

ACTIVE, BACKUP = "server1", "server2"
CAPACITY_WRK = "wrk-capacity.txt"


@register
class ActivePassive(Experiment):
    """Per-server share of probe requests (before/after the active server fails) and wrk capacity of each mode."""

    slug = "active-passive"
    claim = "C6"
    title = "Active-active uses every server; active-passive keeps a backup idle"
    statement = ("Active-active uses every server; active-passive keeps the backup idle until the active one fails.")
    design = "distributed"
    # the probe asks for /health (answered by the app, cheap): the probe must not load the CPU-limited servers
    defaults = {"url": "http://www.foobar.com/health", "interval": 0.02, "timeout": 1.0, "cpu": 0.2, "work_ms": 10,
                "calib_s": 4, "calib_connections": 16, "before_s": 3.0, "after_detect_s": 3.0,
                "detect_timeout": 15.0, "up_timeout": 15.0, "ready_timeout": 20.0, "backup_after": 0.99,
                "ratio": 1.8, "healthy": 0.99, "min_requests": 50, "settle_s": 0.2}
    checks = (
        gate("requests", ">=", P("min_requests"), "probe requests", cases=("active-active",)),
        gate("success", ">=", P("healthy"), "probe success", "%", cases=("active-active",),
             fail="the site was not healthy"),
        gate("faults_ok", "==", True, "the kill and the restore succeeded", cases=("active-passive",)),
        gate("before_requests", ">=", P("min_requests"), "requests before the kill", cases=("active-passive",)),
        gate("baseline_success", ">=", P("healthy"), "success before the kill", "%", cases=("active-passive",),
             fail=unhealthy("the site was not healthy before the kill")),
        gate("after_answered", ">=", P("min_requests"), "answered requests after the takeover",
             cases=("active-passive",)),
        Check("backup_share_before", "==", 0, f"{BACKUP}'s share of the answers before {ACTIVE} fails", "%",
              cases=("active-passive",)),
        Check("backup_share_after", ">=", P("backup_after"), f"{BACKUP}'s share of the answers from HAProxy "
              f"marking {ACTIVE} DOWN until the restore", "%", cases=("active-passive",)),
        Check("capacity_ratio", ">=", P("ratio"), "active-active capacity / active-passive's", "x", across=True,
              cases=("active-passive", "active-active")),
    )
    figures = {
        "active-passive.backup_share_before": Figure(f"{BACKUP}'s share before the failure", "%", abs_tol=0.01),
        "active-passive.backup_share_after": Figure(f"{BACKUP}'s share after the failure", "%", abs_tol=0.01),
        "active-passive.takeover_s": Figure("kill to DOWN in HAProxy", "s", abs_tol=1.0),
        "active-passive.capacity_rps": Figure("capacity, active-passive", "req/s", rel_tol=0.3),
        "active-active.capacity_rps": Figure("capacity, active-active", "req/s", rel_tol=0.3),
        "capacity_ratio": Figure("capacity active-active / active-passive", "x", rel_tol=0.1),
    }
    summary = (f"in active-passive mode {BACKUP} answered {{active-passive.backup_share_before}} of the requests "
               f"before {ACTIVE} failed and {{active-passive.backup_share_after}} after HAProxy marked it DOWN "
               "({active-passive.takeover_s} after the kill)",
               "active-active had {capacity_ratio} the capacity of active-passive")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        cpu = {ACTIVE: params["cpu"], BACKUP: params["cpu"]}
        return [Case(mode, "distributed", {"params": {"mode": mode}, "cpu": cpu})
                for mode in ("active-passive", "active-active")]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"each mode: capacity (wrk closed loop, /work?ms={p['work_ms']}, every server CPU-limited to "
                f"{p['cpu']:g} of the machine), then a probe of {p['url']} every {p['interval'] * 1000:.0f} ms; "
                f"active-passive: {ACTIVE}'s nginx is killed, and restored {p['after_detect_s']:g} s after HAProxy "
                f"marks it DOWN")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        url = f"http://www.foobar.com/work?ms={params['work_ms']}"
        say(f"{case.name}: capacity with wrk ({params['calib_s']} s)")
        with window(out, "capacity"):
            lb.capacity(lab, out, "capacity", url, params["calib_s"], params["calib_connections"])
        settle(lab, params["url"], params["settle_s"], params["timeout"])
        hap = lb.haproxy(lab)
        faults = FaultLog(lab, out / "faults.csv")
        budget = params["before_s"] * 2 + params["detect_timeout"] + params["after_detect_s"] + 40
        with lb.StateWatch(hap, out / lb.STATE_FILE):
            proc, csv_path = drive.start_probe(lab, out, params["url"], budget, params["interval"], params["timeout"])
            try:
                drive.wait_rows(csv_path, 1, timeout=10, proc=proc)
                faults.mark_healthy(csv_path, proc)
                with window(out, "takeover"):
                    drive.pause(params["before_s"])
                    if case.name == "active-passive":
                        say(f"fault: kill {ACTIVE}/nginx")
                        faults.kill(ACTIVE, "nginx")
                        faults.record("detected", ACTIVE, lambda: lb.wait_state(hap, ACTIVE, lb.is_down,
                                                                                params["detect_timeout"], "DOWN"))
                        drive.pause(params["after_detect_s"])
                        faults.start(ACTIVE, "nginx", params["ready_timeout"])
                        faults.record("up", ACTIVE, lambda: lb.wait_state(hap, ACTIVE, lb.is_up, params["up_timeout"], "UP"))
                        drive.pause(1.0)
                    faults.mark("end")
            finally:
                drive.finish(proc, params["timeout"] + 5, "probe", terminate=True)

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        wrk = parse_wrk((raw / CAPACITY_WRK).read_text())
        cap = wrk.ok_per_s
        rows = read_probe(raw / "probe.csv")
        events = read_faults(raw / "faults.csv")
        kill, detected, restore, end = (first(events, a) for a in ("kill", "detected", "start", "end"))
        if end is None:
            return inconclusive(rule, "faults.csv has no end mark: the run stopped early")
        servers = [ACTIVE, BACKUP]
        m: dict[str, Any] = {"mode": case.name, "capacity_rps": rounded(cap, 2), "wrk_failed": wrk.failed}
        if case.name == "active-active":
            ok = [r for r in rows if r.ok]
            m["shares"] = {k: rounded(x, 4) for k, x in lb.shares([r.served_by for r in ok], servers).items()}
            m["success"] = rounded(success_rate(rows))
            m["requests"] = len(rows)
            png = plots.served_timeline([(r.t_send, r.served_by, r.ok) for r in rows], servers,
                                        plots_dir / "active-active-served.png",
                                        "C6 active-active: which server answered each probe request")
            return self.verdict(case, m, params, [png], notes=[
                f"every server answers ({m['shares']}); capacity {cap:.1f} req/s"])
        if kill is None or detected is None or restore is None:
            return inconclusive(rule, "faults.csv lacks the kill, its detection or the restore", m)
        before = [r for r in rows if healthy_since(events) <= r.t_send and r.t_recv < kill.t_begin]
        after = [r for r in rows if detected.t_end <= r.t_send < restore.t_begin]
        ok_before, ok_after = [r for r in before if r.ok], [r for r in after if r.ok]
        share_before = lb.shares([r.served_by for r in ok_before], servers)[BACKUP] if ok_before else float("nan")
        share_after = lb.shares([r.served_by for r in ok_after], servers)[BACKUP] if ok_after else float("nan")
        back = [r for r in rows if r.ok and r.t_send >= first(events, "up").t_end + 0.5] if first(events, "up") else []
        m.update({"baseline_success": rounded(success_rate(before)),
                  "baseline_failures": failure_summary(before), "before_requests": len(before),
                  "backup_share_before": rounded(share_before, 4), "after_requests": len(after),
                  "after_success": rounded(success_rate(after)), "backup_share_after": rounded(share_after, 4),
                  "takeover_s": rounded(detected.t_end - kill.t_end, 3),
                  "failures_during_takeover": sum(not r.ok for r in rows if kill.t_begin <= r.t_send < detected.t_end),
                  "failback_active_share": rounded(lb.shares([r.served_by for r in back], servers)[ACTIVE], 4)
                  if back else None, "faults_ok": kill.ok and restore.ok, "after_answered": len(ok_after)})
        marks = [(kill.t_begin, "kill"), (detected.t_end, "DOWN"), (restore.t_end, "restored")]
        png = plots.served_timeline([(r.t_send, r.served_by, r.ok) for r in rows], servers,
                                    plots_dir / "active-passive-served.png",
                                    "C6 active-passive: which server answered each probe request",
                                    windows=[(kill.t_begin, restore.t_end, f"{ACTIVE} nginx killed")], marks=marks)
        return self.verdict(case, m, params, [png])

    def across_measured(self, by_case: dict[str, Verdict], params: dict[str, Any]) -> dict[str, Any]:
        """active-active capacity over active-passive's."""
        aa, ap = (by_case[mode].measured.get("capacity_rps") for mode in ("active-active", "active-passive"))
        return {"capacity_ratio": rounded(aa / ap, 3)} if aa and ap else {}
