"""C5 health-checks: HAProxy detects a failed server within its check timers and stops sending it traffic."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments import drive, lb, plots
from experiments.base import Case, Experiment, say
from experiments.faults import FaultLog, first, healthy_since, read_faults
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import failure_summary, read_probe, rounded, success_rate
from experiments.verdict import REFUTED, SKIP, Check, Figure, M, P, Verdict, gate, inconclusive, unhealthy

VICTIM = "server2"   # its nginx is killed; server1 keeps the primary database, untouched


@register
class HealthChecks(Experiment):
    """Kill one server's nginx under a 20 ms probe; poll HAProxy's view of it; read its per-request log."""

    slug = "health-checks"
    claim = "C5"
    title = "Health checks take a failed server out of rotation"
    statement = "The load balancer detects a failed server and stops sending it traffic."
    design = "distributed"
    defaults = {"url": "http://www.foobar.com/", "interval": 0.02, "timeout": 1.0, "before_s": 2.0,
                "after_detect_s": 2.0, "check_inter_ms": 1000, "check_fall": 3, "check_rise": 2,
                "detect_timeout": 15.0, "up_timeout": 15.0, "ready_timeout": 20.0, "healthy": 0.99,
                "poll_s": 0.05}
    checks = (
        gate("faults_ok", "==", True, "the kill and the restore succeeded"),
        gate("baseline_success", ">=", P("healthy"), "probe success before the kill", "%",
             fail=unhealthy("the site was not healthy before the kill")),
        gate("log_requests", ">=", 1, "requests in HAProxy's log", fail="HAProxy logged no request: cannot tell "
             "where requests went"),
        Check("detection_s", "<=", M("detection_bound_s", "inter x fall + one interval"),
              f"time from the kill to HAProxy marking {VICTIM} DOWN", "s", missing=REFUTED,
              absent=f"HAProxy never marked {VICTIM} DOWN"),
        Check("routed_after_detection", "==", 0, f"requests in HAProxy's log routed to {VICTIM} from detection until "
              "the restore", missing=SKIP),
        Check("client_failures", "==", 0, "client-visible failures from the kill until {after_detect_s:g} s after "
              "detection", cases=("retries",), missing=SKIP),
    )
    figures = {
        "retries.detection_s": Figure("kill to DOWN in HAProxy", "s", abs_tol=0.5),
        "retries.routed_after_detection": Figure("requests routed to the failed server after detection", abs_tol=0),
        "retries.client_failures": Figure("client-visible failures with retries", abs_tol=0),
        "no-retries.client_failures": Figure("client-visible failures without retries", rel_tol=0.5, abs_tol=5),
    }
    summary = (f"HAProxy marked the killed {VICTIM} DOWN {{retries.detection_s}} after the kill (bound "
               "{retries.detection_bound_s:s}) and routed {retries.routed_after_detection} requests to it after that",
               "clients saw {retries.client_failures} failures with retries+redispatch and "
               "{no-retries.client_failures} without")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        timers = {"check_inter": params["check_inter_ms"], "check_fall": params["check_fall"],
                  "check_rise": params["check_rise"]}
        return [Case("retries", "distributed", {"params": {**timers, "retries": True}}),
                Case("no-retries", "distributed", {"params": {**timers, "retries": False}})]

    def procedure(self, p: dict[str, Any]) -> str:
        bound = p["check_inter_ms"] * (p["check_fall"] + 1) / 1000
        return (f"both cases: {VICTIM}'s nginx SIGKILLed under a probe every {p['interval'] * 1000:.0f} ms; HAProxy's "
                f"view polled on its admin socket every {p['poll_s'] * 1000:.0f} ms; inter x fall + one interval = "
                f"{p['check_inter_ms']} ms x {p['check_fall']} + {p['check_inter_ms']} ms = {bound:g} s; retries case: "
                f"retries 3 + redispatch; the no-retries case reports its client-visible failures (not judged)")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        hap = lb.haproxy(lab)
        faults = FaultLog(lab, out / "faults.csv")
        budget = params["before_s"] + params["detect_timeout"] + params["after_detect_s"] + params["ready_timeout"] \
            + params["up_timeout"] + 10
        with lb.StateWatch(hap, out / lb.STATE_FILE, params["poll_s"]), lb.LogSlice(hap, out):
            proc, csv_path = drive.start_probe(lab, out, params["url"], budget, params["interval"], params["timeout"])
            try:
                drive.wait_rows(csv_path, 1, timeout=10, proc=proc)
                faults.mark_healthy(csv_path, proc)
                with window(out, "health"):
                    drive.pause(params["before_s"])
                    say(f"fault: kill {VICTIM}/nginx")
                    faults.kill(VICTIM, "nginx")
                    faults.record("detected", VICTIM, lambda: lb.wait_state(hap, VICTIM, lb.is_down,
                                                                            params["detect_timeout"], "DOWN"))
                    drive.pause(params["after_detect_s"])
                    say("restore")
                    faults.start(VICTIM, "nginx", params["ready_timeout"])
                    faults.record("up", VICTIM, lambda: lb.wait_state(hap, VICTIM, lb.is_up, params["up_timeout"], "UP"))
                    drive.pause(0.5)
            finally:
                drive.finish(proc, params["timeout"] + 5, "probe", terminate=True)

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        timers = case.lab_params.get("params", {})
        inter = timers.get("check_inter", params["check_inter_ms"]) / 1000
        fall = timers.get("check_fall", params["check_fall"])
        bound = inter * fall + inter
        events = read_faults(raw / "faults.csv")
        kill, restore = first(events, "kill"), first(events, "start")
        if kill is None:
            return inconclusive(rule, "faults.csv has no kill: the run stopped early")
        states = lb.read_states(raw / lb.STATE_FILE)
        down = lb.first_state(states, VICTIM, "DOWN", kill.t_begin)
        rows = read_probe(raw / "probe.csv")
        log = lb.read_log(raw)
        end = restore.t_begin if restore else (rows[-1].t_send if rows else kill.t_end)
        base = [r for r in rows if healthy_since(events) <= r.t_send and r.t_recv < kill.t_begin]
        m: dict[str, Any] = {"retries": bool(timers.get("retries", True)), "check_inter_s": inter, "check_fall": fall,
                             "detection_bound_s": rounded(bound, 3), "baseline_success": rounded(success_rate(base)),
                             "baseline_failures": failure_summary(base),
                             "faults_ok": kill.ok and (restore is None or restore.ok)}
        t_detect = down.t if down else None
        if t_detect is not None:
            m["detection_s"] = rounded(t_detect - kill.t_end, 3)
            after = [r for r in log if t_detect <= r.t < end and r.server == VICTIM]
            m["routed_after_detection"] = len(after)
            m["routed_after_detection_lines"] = [r.line for r in after[:5]]
            m["routed_to_victim_before_detection"] = sum(1 for r in log if kill.t_end <= r.t < t_detect and r.server == VICTIM)
            judged = [r for r in rows if kill.t_begin <= r.t_send < t_detect + params["after_detect_s"]]
            m["judged_requests"] = len(judged)
            m["client_failures"] = sum(not r.ok for r in judged)
            m["client_failures_whole_run"] = sum(not r.ok for r in rows)
            m["haproxy_5xx_after_kill"] = sum(1 for r in log if r.t >= kill.t_end and r.status >= 500)
        m["log_requests"] = len(log)
        windows = [(kill.t_begin, t_detect or end, "killed, not yet detected")]
        if t_detect is not None:
            windows.append((t_detect, end, "DOWN in HAProxy"))
        marks = [(kill.t_begin, "kill")] + ([(t_detect, "DOWN")] if t_detect else []) + ([(restore.t_end, "restored")] if restore else [])
        pngs = [plots.availability(rows, windows, plots_dir / f"{case.name}-availability.png",
                                   f"C5 health-checks ({case.name}): probe every {params['interval'] * 1000:.0f} ms",
                                   marks=marks),
                plots.served_timeline([(r.t, r.server, r.status < 500) for r in log], ["server1", "server2"],
                                      plots_dir / f"{case.name}-haproxy-routing.png",
                                      f"C5 ({case.name}): every request as HAProxy logged it, by server",
                                      windows=windows, marks=marks)]
        notes = [f"without retries: {m['client_failures']} client-visible failures (reported, not judged)"] \
            if not m["retries"] and "client_failures" in m else []
        return self.verdict(case, m, params, pngs, notes)
