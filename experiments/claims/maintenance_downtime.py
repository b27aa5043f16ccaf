"""C2 maintenance-downtime: a deploy (restart of the web tier) on a single server causes an outage; a rolling
deploy behind HAProxy (drain through the admin socket, restart, ready) causes none."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from experiments import drive, lb, plots
from experiments.base import Case, Experiment, say
from experiments.faults import FaultLog, healthy_since, read_faults
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import between, failure_summary, outages, read_openloop, read_probe, rounded, success_rate
from experiments.verdict import Check, Figure, P, Verdict, gate, inconclusive, unhealthy

# case -> (host redeployed, expectation: "outage" or "none"); the distributed case redeploys every
# server in turn (rolling), each drained through HAProxy's admin socket first
EXPECT = {"one-server": ("server1", "outage"), "distributed": ("server1", "none")}


@register
class MaintenanceDowntime(Experiment):
    """Restart the web tier under open-loop load while probing; count failed requests and the outage window."""

    slug = "maintenance-downtime"
    claim = "C2"
    title = "Deploying on a single server causes downtime"
    statement = ("Deploying on a single server causes downtime; behind a load balancer a rolling deploy "
                 "causes none.")
    design = "one-server"
    defaults = {"url": "http://www.foobar.com/", "interval": 0.02, "timeout": 1.0, "load_rate": 50.0,
                "before_s": 3.0, "after_s": 4.0, "services": ["webapp"], "healthy": 0.99, "ready_timeout": 30.0,
                "rolling_services": ["webapp", "nginx"], "drain_timeout": 10.0, "up_timeout": 15.0}
    checks = (
        gate("servers_redeployed", ">=", 1, "servers drained and brought back UP", cases=("distributed",),
             absent="none: the rolling deploy did not happen"),
        gate("failed_steps", "==", 0, "deploy steps that failed", fail="the restart itself failed"),
        gate("baseline_success", ">=", P("healthy"), "probe success before the deploy", "%",
             fail=unhealthy("the site was not healthy before the deploy")),
        Check("failed_requests", ">", 0, "failed requests during the deploy", cases=("one-server",)),
        Check("failed_requests", "==", 0, "failed requests during the deploy", cases=("distributed",)),
    )
    figures = {
        "one-server.failed_requests": Figure("failed requests, redeploy of one server", rel_tol=0.5),
        "one-server.outage_s": Figure("outage, redeploy of one server", "s", rel_tol=0.5),
        "one-server.restart_s": Figure("restart time, one server", "s", rel_tol=0.5),
        "distributed.failed_requests": Figure("failed requests, rolling deploy", abs_tol=0),
        "distributed.restart_s": Figure("rolling deploy time, two servers", "s", rel_tol=0.5),
    }
    summary = ("redeploying the one server failed {one-server.failed_requests} requests over "
               "{one-server.outage_s} of outage",
               "a rolling deploy behind the load balancer ({distributed.servers_redeployed:names} in turn) failed "
               "{distributed.failed_requests}")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(name, name, {}) for name in EXPECT]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"under load (a probe every {p['interval'] * 1000:.0f} ms + {p['load_rate']:g} req/s open-loop), "
                f"one-server: restart {'+'.join(p['services'])}; distributed: a rolling deploy (per server: drain "
                f"through HAProxy's admin socket, wait until its sessions are 0, restart "
                f"{'+'.join(p['rolling_services'])}, set ready, wait until UP). Failed requests: those of the probe "
                f"and the load from the deploy's start until the load stops")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        host = EXPECT[case.name][0]
        faults = FaultLog(lab, out / "faults.csv")
        budget = params["before_s"] + params["after_s"] + params["ready_timeout"] * len(params["services"]) + 10
        if EXPECT[case.name][1] == "none":  # every server: drain + restarts + UP, bounded
            per = params["drain_timeout"] + params["up_timeout"] + params["ready_timeout"] * len(params["rolling_services"])
            budget += per * len(lb.servers_of(lab))
        probe, probe_csv = drive.start_probe(lab, out, params["url"], budget, params["interval"], params["timeout"])
        load = drive.start_tool(lab, "client", "openloop", [
            "--url", params["url"], "--rate", str(params["load_rate"]), "--duration", str(budget),
            "--out", str(out / "load.csv"), "--timeout", str(params["timeout"]), "--seed", str(params["seed"])],
            out / "load.json")
        try:
            drive.wait_rows(probe_csv, 1, timeout=10, proc=probe)
            drive.wait_rows(out / "load.csv", 1, timeout=10, proc=load)
            faults.mark_healthy(probe_csv, probe)
            with window(out, "deploy"):
                drive.pause(params["before_s"])
                faults.mark("deploy_begin", host)
                if EXPECT[case.name][1] == "none":
                    self._rolling(lab, faults, out, params)
                else:
                    for svc in params["services"]:
                        say(f"redeploy: restart {host}/{svc}")
                        faults.restart(host, svc, params["ready_timeout"])
                faults.mark("deploy_end", host)
                drive.pause(params["after_s"])
                faults.mark("load_stop", host)
        finally:
            drive.finish(load, params["timeout"] + 10, "openloop", terminate=True)
            drive.finish(probe, params["timeout"] + 5, "probe", terminate=True)

    def _rolling(self, lab: Any, faults: FaultLog, out: Path, params: dict[str, Any]) -> None:
        """Redeploy every server in turn behind HAProxy: drain, sessions 0, restart, ready, UP."""
        hap = lb.haproxy(lab)
        with lb.StateWatch(hap, out / lb.STATE_FILE), lb.LogSlice(hap, out):
            for server in lb.servers_of(lab):
                say(f"rolling deploy: drain {server}")
                faults.record("drain", server, lambda s=server: hap.set_state(s, "drain"))
                faults.record("drained", server, lambda s=server: self._wait_sessions(hap, s, params["drain_timeout"]))
                for svc in params["rolling_services"]:
                    faults.restart(server, svc, params["ready_timeout"])
                faults.record("ready", server, lambda s=server: hap.set_state(s, "ready"))
                faults.record("up", server, lambda s=server: lb.wait_state(hap, s, lb.is_up, params["up_timeout"], "UP"))

    @staticmethod
    def _wait_sessions(hap: Any, server: str, timeout: float) -> float:
        """Bounded wait until HAProxy has no session on server; seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if hap.sessions(server) == 0:
                return time.monotonic() - t0
            time.sleep(0.02)  # bounded poll of the admin socket
        raise RuntimeError(f"{server} still had {hap.sessions(server)} sessions after {timeout:.0f} s of draining")

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        all_events = read_faults(raw / "faults.csv")
        events = {e.action: e for e in all_events}
        if not {"deploy_begin", "deploy_end", "load_stop"} <= set(events):
            return inconclusive(rule, "faults.csv lacks the deploy marks: the run stopped early")
        t_begin, t_end, t_stop = events["deploy_begin"].t_begin, events["deploy_end"].t_end, events["load_stop"].t_begin
        probe = read_probe(raw / "probe.csv")
        load = [r for r in read_openloop(raw / "load.csv") if (r.t_sched or 0) < t_stop]
        base = [r for r in probe if healthy_since(all_events) <= r.t_send and r.t_recv < t_begin]  # answered before the deploy
        window_rows = between(probe, t_begin, t_stop)
        load_window = [r for r in load if t_begin <= (r.t_sched or 0) < t_stop]
        outs = outages(window_rows)
        failed = sum(not r.ok for r in window_rows) + sum(not r.ok for r in load_window)
        m = {"baseline_success": rounded(success_rate(base)), "baseline_failures": failure_summary(base), "restart_s": rounded(t_end - t_begin, 3),
             "probe_requests": len(window_rows), "probe_failed": sum(not r.ok for r in window_rows),
             "load_requests": len(load_window), "load_failed": sum(not r.ok for r in load_window),
             "failed_requests": failed, "outage_s": rounded(sum(o.seconds for o in outs), 3),
             "longest_outage_s": rounded(max((o.seconds for o in outs), default=0.0), 3),
             "outages": len(outs),
             "errors": sorted({(r.error.split(":")[0] or str(r.status)) for r in window_rows + load_window if not r.ok})}
        rolling = [(d.t_begin, u.t_end, f"{d.target}: drain -> UP")
                   for d in all_events if d.action == "drain"
                   for u in [next((u for u in all_events if u.action == "up" and u.target == d.target), None)] if u]
        if rolling:
            m["servers_redeployed"] = [w[2].split(":")[0] for w in rolling]
            m["drain_wait_s"] = {e.target: rounded(float(e.detail or 0), 3) for e in all_events if e.action == "drained" and e.ok}
            m["per_server_s"] = {w[2].split(":")[0]: rounded(w[1] - w[0], 3) for w in rolling}
        png = plots.availability(probe, rolling or [(t_begin, t_end, "restart of " + "+".join(params["services"]))],
                                 plots_dir / f"{case.name}-deploy-availability.png",
                                 f"C2 maintenance-downtime ({case.name}): probe during a "
                                 f"{'rolling deploy' if rolling else 'redeploy'}",
                                 marks=[(t_begin, "deploy"), (t_end, "ready")])
        m["failed_steps"] = [f"{e.action} {e.target}: {e.detail}".rstrip(": ") for e in all_events if not e.ok]
        return self.verdict(case, m, params, [png])
