"""C1 spof: with one server, when its web tier fails the whole site is down (availability probe + kill)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from experiments import drive, lb, plots
from experiments.base import Case, Experiment, say
from experiments.faults import FaultLog, first, healthy_since, read_faults
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import between, failure_summary, outages, read_probe, rounded, success_rate
from experiments.verdict import REFUTED, Check, Figure, P, Verdict, gate, inconclusive, unhealthy

# case -> (host whose web tier fails, success while it is down: "zero" or "stays")
EXPECT = {"one-server": ("server1", "zero"), "distributed": ("server1", "stays")}
SWITCH = {"one-server": "s1", "distributed": "s2"}  # the switch the failing host hangs off (fault=link)


@register
class Spof(Experiment):
    """Kill the web tier (SIGKILL to nginx) while a client probes every 20 ms; restore it; judge the timeline."""

    slug = "spof"
    claim = "C1"
    title = "One server is a single point of failure"
    statement = "With one server, when it fails the whole site is down."
    design = "one-server"
    defaults = {"url": "http://www.foobar.com/", "interval": 0.02, "timeout": 1.0, "before_s": 3.0,
                "fault_s": 4.0, "after_s": 4.0, "fault": "kill", "service": "nginx", "settle_s": 0.1,
                "min_fault_requests": 50, "healthy": 0.99, "ready_timeout": 20.0}
    checks = (
        gate("faults_ok", "==", True, "the fault and the restore succeeded"),
        gate("baseline_success", ">=", P("healthy"), "success before the fault", "%",
             fail=unhealthy("the site was not healthy before the fault")),
        gate("fault_requests", ">=", P("min_fault_requests"), "requests in the fault window"),
        Check("fault_success", "==", 0, "success while the web tier is down", "%", cases=("one-server",)),
        Check("fault_success", ">=", P("healthy"), "success while the web tier is down", "%", cases=("distributed",)),
        Check("after_success", ">=", P("healthy"), "success from 1 s after the restore completes", "%",
              missing=REFUTED, absent="no request was sent after the restore"),
    )
    figures = {
        "one-server.fault_success": Figure("success while the web tier was down, one server", "%", abs_tol=0.01),
        "one-server.longest_outage_s": Figure("longest outage, one server", "s", rel_tol=0.25),
        "one-server.recovery_s": Figure("restore to the first success, one server", "s", rel_tol=0.5),
        "distributed.fault_success": Figure("success while server1's web tier was down, two servers", "%",
                                            abs_tol=0.01),
        "distributed.fault_requests": Figure("requests while server1's web tier was down, two servers",
                                             rel_tol=0.1),
        "distributed.after_success": Figure("success after the restore, two servers", "%", abs_tol=0.01),
    }
    summary = ("when server1's web tier failed, the one-server site answered {one-server.fault_success} of "
               "{one-server.fault_requests} requests (longest outage {one-server.longest_outage_s})",
               "behind the load balancer {distributed.fault_success} of {distributed.fault_requests} succeeded, "
               "served by {distributed.fault_served_by:names}")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(name, name, {}) for name in EXPECT]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"a probe requests {p['url']} every {p['interval'] * 1000:.0f} ms; server1's web tier fails "
                f"({p['fault']}: {'its link down' if p['fault'] == 'link' else 'SIGKILL of ' + p['service']}) for "
                f"{p['fault_s']:g} s, then is restored. The fault window: requests sent from the {p['fault']} + "
                f"{p['settle_s']:g} s until the restore begins; before the fault: requests sent once 20 in a row had "
                f"succeeded (a wait of at most 10 s after the probe starts) and answered before the fault")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        host = EXPECT[case.name][0]
        faults = FaultLog(lab, out / "faults.csv")
        total = params["before_s"] + params["fault_s"] + params["after_s"] + params["ready_timeout"] + 10
        proc, csv_path = drive.start_probe(lab, out, params["url"], total, params["interval"], params["timeout"])
        evidence = contextlib.ExitStack()
        if case.name != "one-server":  # HAProxy's view: server states and one log line per request
            hap = lb.haproxy(lab)
            evidence.enter_context(lb.StateWatch(hap, out / lb.STATE_FILE))
            evidence.enter_context(lb.LogSlice(hap, out))
        try:
            drive.wait_rows(csv_path, 1, timeout=10, proc=proc)
            faults.mark_healthy(csv_path, proc)
            with evidence, window(out, "probe"):
                drive.pause(params["before_s"])
                say(f"fault: {params['fault']} {host}/{params['service']}")
                if params["fault"] == "link":
                    faults.link_down(host, SWITCH[case.name])
                else:
                    faults.kill(host, params["service"])
                drive.pause(params["fault_s"])
                say("restore")
                if params["fault"] == "link":
                    faults.link_up(host, SWITCH[case.name])
                else:
                    faults.start(host, params["service"], params["ready_timeout"])
                drive.pause(params["after_s"])
        finally:
            evidence.close()  # also when the probe never started: the state thread stops, the log is copied
            drive.finish(proc, params["timeout"] + 5, "probe", terminate=True)

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        rows = read_probe(raw / "probe.csv")
        events = read_faults(raw / "faults.csv")
        fault = first(events, "link_down" if params["fault"] == "link" else "kill")
        restore = first(events, "link_up" if params["fault"] == "link" else "start")
        if fault is None or restore is None:
            return inconclusive(rule, "faults.csv lacks the fault or the restore")
        f0, f1 = fault.t_end + params["settle_s"], restore.t_begin
        # sent once the site was seen healthy, answered before the fault (in-flight ones may die with it)
        base = [r for r in rows if healthy_since(events) <= r.t_send and r.t_recv < fault.t_begin]
        during = between(rows, f0, f1)
        after = [r for r in rows if r.t_send >= restore.t_end + 1.0]
        recovered = next((r for r in rows if r.t_send >= restore.t_begin and r.ok), None)
        longest = max((o.seconds for o in outages(between(rows, fault.t_begin, restore.t_end + 1.0))), default=0.0)
        m = {"faults_ok": fault.ok and restore.ok, "requests": len(rows), "baseline_success": rounded(success_rate(base)),
             "baseline_failures": failure_summary(base),
             "fault_window_s": rounded(f1 - f0, 3), "fault_requests": len(during),
             "fault_success": rounded(success_rate(during)), "after_requests": len(after),
             "after_success": rounded(success_rate(after)), "longest_outage_s": rounded(longest, 3),
             "restore_s": rounded(restore.t_end - restore.t_begin, 3),
             "recovery_s": rounded(recovered.t_send - restore.t_begin, 3) if recovered else None,
             "served_by": sorted({r.served_by for r in rows if r.ok and r.served_by}),
             "fault_served_by": sorted({r.served_by for r in during if r.ok and r.served_by})}
        png = plots.availability(rows, [(fault.t_begin, restore.t_end, f"{fault.action} -> restored")],
                                 plots_dir / f"{case.name}-availability.png",
                                 f"C1 spof ({case.name}): probe every {params['interval'] * 1000:.0f} ms",
                                 marks=[(fault.t_begin, fault.action), (restore.t_end, "restored")])
        return self.verdict(case, m, params, [png])
