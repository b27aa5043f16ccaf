"""C6 active-passive: active-active uses every server; active-passive keeps the backup idle until the active fails."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments import drive, lb, plots
from experiments.lb import settle
from experiments.base import Case, Experiment, say
from experiments.faults import FaultLog, first, read_faults
from experiments.fidelity import window
from experiments.load import parse_wrk
from experiments.registry import register
from experiments.stats import read_probe, rounded, success_rate
from experiments.verdict import INCONCLUSIVE, REFUTED, SUPPORTED, Verdict, combine, decide, inconclusive

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
    key_values = ("active-passive.backup_share_before", "active-passive.backup_share_after",
                  "active-passive.capacity_rps", "active-active.capacity_rps", "capacity_ratio")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        cpu = {ACTIVE: params["cpu"], BACKUP: params["cpu"]}
        return [Case(mode, "distributed", {"params": {"mode": mode}, "cpu": cpu})
                for mode in ("active-passive", "active-active")]

    def rule_text(self, params: dict[str, Any]) -> str:
        p = {**self.params(), **params}
        return (f"active-passive: {BACKUP} (backup) answers 0% of the probe requests before {ACTIVE}'s nginx is killed "
                f"and >= {p['backup_after']:.0%} of those answered from HAProxy marking {ACTIVE} DOWN until the restore; "
                f"capacity (wrk closed loop, /work?ms={p['work_ms']}, every server CPU-limited to {p['cpu']:g} of the machine) of "
                f"active-active >= {p['ratio']:g}x active-passive. Inconclusive when success before the kill < "
                f"{p['healthy']:.0%} or fewer than {p['min_requests']} requests fall in a window")

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
        cap = wrk.requests_per_s * (1 - wrk.failed / max(1, wrk.requests))
        rows = read_probe(raw / "probe.csv")
        events = read_faults(raw / "faults.csv")
        kill, detected, restore, end = (first(events, a) for a in ("kill", "detected", "start", "end"))
        if end is None:
            return inconclusive(rule, "faults.csv has no end mark: the run stopped early")
        servers = [ACTIVE, BACKUP]
        m: dict[str, Any] = {"mode": case.name, "capacity_rps": rounded(cap, 2), "wrk_failed": wrk.failed}
        v = Verdict(INCONCLUSIVE, rule, m)
        if case.name == "active-active":
            ok = [r for r in rows if r.ok]
            m["shares"] = {k: rounded(x, 4) for k, x in lb.shares([r.served_by for r in ok], servers).items()}
            m["success"] = rounded(success_rate(rows))
            v.plots = [str(plots.served_timeline([(r.t_send, r.served_by, r.ok) for r in rows], servers,
                                                 plots_dir / "active-active-served.png",
                                                 "C6 active-active: which server answered each probe request"))]
            if len(rows) < params["min_requests"] or success_rate(rows) < params["healthy"]:
                v.reasons.append(f"the site was not healthy ({len(rows)} requests, success {m['success']})")
                return v
            v.verdict = SUPPORTED
            v.reasons.append(f"active-active: every server answers ({m['shares']}); capacity {cap:.1f} req/s")
            return v
        if kill is None or detected is None or restore is None:
            return inconclusive(rule, "faults.csv lacks the kill, its detection or the restore", m)
        before = [r for r in rows if r.t_recv < kill.t_begin]
        after = [r for r in rows if detected.t_end <= r.t_send < restore.t_begin]
        ok_before, ok_after = [r for r in before if r.ok], [r for r in after if r.ok]
        share_before = lb.shares([r.served_by for r in ok_before], servers)[BACKUP] if ok_before else float("nan")
        share_after = lb.shares([r.served_by for r in ok_after], servers)[BACKUP] if ok_after else float("nan")
        back = [r for r in rows if r.ok and r.t_send >= first(events, "up").t_end + 0.5] if first(events, "up") else []
        m.update({"baseline_success": rounded(success_rate(before)), "before_requests": len(before),
                  "backup_share_before": rounded(share_before, 4), "after_requests": len(after),
                  "after_success": rounded(success_rate(after)), "backup_share_after": rounded(share_after, 4),
                  "takeover_s": rounded(detected.t_end - kill.t_end, 3),
                  "failures_during_takeover": sum(not r.ok for r in rows if kill.t_begin <= r.t_send < detected.t_end),
                  "failback_active_share": rounded(lb.shares([r.served_by for r in back], servers)[ACTIVE], 4) if back else None})
        marks = [(kill.t_begin, "kill"), (detected.t_end, "DOWN"), (restore.t_end, "restored")]
        v.plots = [str(plots.served_timeline([(r.t_send, r.served_by, r.ok) for r in rows], servers,
                                             plots_dir / "active-passive-served.png",
                                             "C6 active-passive: which server answered each probe request",
                                             windows=[(kill.t_begin, restore.t_end, f"{ACTIVE} nginx killed")], marks=marks))]
        if not kill.ok or not restore.ok:
            v.reasons.append("the kill or the restore failed")
            return v
        if len(before) < params["min_requests"] or success_rate(before) < params["healthy"]:
            v.reasons.append(f"the site was not healthy before the kill ({len(before)} requests, {m['baseline_success']})")
            return v
        if len(ok_after) < params["min_requests"]:
            v.reasons.append(f"only {len(ok_after)} answered requests after the takeover")
            return v
        checks = {f"backup serves 0% before the failure ({share_before:.2%})": share_before == 0.0,
                  f"backup serves >= {params['backup_after']:.0%} after it ({share_after:.2%})": share_after >= params["backup_after"]}
        v.verdict = decide(checks)
        v.reasons = [f"{k}: {'yes' if ok else 'NO'}" for k, ok in checks.items()]
        return v

    def conclude(self, parts: list[tuple[str, Verdict]], params: dict[str, Any]) -> Verdict:
        """Per-mode rules, plus active-active capacity >= ratio x active-passive."""
        v = combine(parts)
        by = dict(parts)
        if v.verdict == INCONCLUSIVE or not {"active-passive", "active-active"} <= set(by):
            return v
        aa, ap = by["active-active"].measured.get("capacity_rps"), by["active-passive"].measured.get("capacity_rps")
        if not aa or not ap:
            v.verdict = INCONCLUSIVE
            v.reasons.append("a capacity is missing")
            return v
        ratio = aa / ap
        v.measured["capacity_ratio"] = rounded(ratio, 3)
        ok = ratio >= params["ratio"]
        v.reasons.append(f"active-active capacity {aa:.1f} >= {params['ratio']:g}x active-passive {ap:.1f} "
                         f"({ratio:.2f}x): {'yes' if ok else 'NO'}")
        if not ok:
            v.verdict = REFUTED
        return v
