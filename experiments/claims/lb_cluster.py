"""C14 lb-cluster: one load balancer's crash is an outage until it is restored; a VRRP pair takes over in a bounded time."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from experiments import drive, plots
from experiments.base import Case, Experiment, say
from experiments.faults import FaultLog, healthy_since, read_faults
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import between, failure_summary, percentile, read_probe, rounded, success_rate
from experiments.verdict import REFUTED, Check, Figure, P, Verdict, gate, inconclusive, unhealthy

# case -> (design, lab params, probe URL)
CASES = {"one-lb": ("distributed", {}, "http://www.foobar.com/health"),
         "cluster": ("scaled", {"params": {"monitoring": False}}, "https://www.foobar.com/health")}


def wait_until(check, timeout: float, poll: float = 0.01) -> float | None:
    """Wall-clock time at which check() first held, or None after timeout (bounded poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.time()
        time.sleep(poll)  # bounded poll: keepalived signals nothing we can wait on
    return None


def crashes(events: list) -> list[dict[str, Any]]:
    """Pair each link_down of lb1 with the events that follow it (VIP on lb2, link_up, VIP back on lb1)."""
    out: list[dict[str, Any]] = []
    for e in events:
        if e.action == "link_down":
            out.append({"down": e})
        elif out and e.action in ("vip_lb2", "link_up", "vip_lb1", "vip_lb2_timeout", "vip_lb1_timeout"):
            out[-1].setdefault(e.action, e)
    return out


@register
class LbCluster(Experiment):
    """Probe every 20 ms; crash the active load balancer (its front link down); one LB: hold and restore; pair: many crashes."""

    slug = "lb-cluster"
    claim = "C14"
    title = "A load-balancer cluster takes over"
    statement = ("A single load balancer is a single point of failure; a load-balancer cluster with a virtual IP "
                 "takes over.")
    design = "scaled"
    defaults = {"interval": 0.02, "timeout": 1.0, "before_s": 2.0, "fault_s": 4.0, "after_s": 3.0, "settle_s": 0.1,
                "crashes": 10, "hold_s": 1.5, "between_s": 1.5, "vip_timeout": 5.0, "takeover_target": 1.0,
                "slack_s": 0.1, "healthy": 0.99, "min_fault_requests": 50}
    checks = (
        gate("baseline_success", ">=", P("healthy"), "probe success before the first crash", "%",
             fail=unhealthy("not healthy before the first crash")),
        gate("fault_requests", ">=", P("min_fault_requests"), "requests in the fault window", cases=("one-lb",)),
        gate("crashes_without_takeover", "==", 0, "crashes in which lb2 never held the VIP", cases=("cluster",)),
        Check("fault_success", "==", 0, "success while lb1 is down", "%", cases=("one-lb",)),
        Check("ok_answers_while_down", "==", 0, "successful answers received while lb1 is down", cases=("one-lb",)),
        Check("after_success", ">=", P("healthy"), "success from 1 s after the restore", "%", cases=("one-lb",),
              missing=REFUTED, absent="no request was sent after the restore"),
        Check("crashes", ">=", P("crashes"), "crashes measured", cases=("cluster",)),
        Check("takeover_max_s", "<", P("takeover_target"), "the slowest takeover", "s", cases=("cluster",)),
        Check("crashes_outage_over_bound", "==", 0, "crashes whose client outage exceeds their takeover + 2 probe "
              "intervals + {slack_s:g} s", cases=("cluster",)),
        Check("crashes_not_fully_served", "==", 0, "crashes without >= {healthy:.0%} success from the takeover + "
              "that slack until the restore", cases=("cluster",)),
    )
    figures = {
        "one-lb.fault_success": Figure("success while the only load balancer is down", "%", abs_tol=0.01),
        "cluster.takeover_p50_s": Figure("median takeover by lb2", "s", abs_tol=0.3),
        "cluster.takeover_max_s": Figure("slowest takeover by lb2", "s", abs_tol=0.3),
        "cluster.outage_max_s": Figure("longest client outage per crash, VRRP pair", "s", abs_tol=0.3),
    }
    summary = ("with one load balancer its crash left {one-lb.fault_success} of {one-lb.fault_requests} requests "
               "answered until it was restored",
               "in the VRRP pair lb2 took the VIP over in {cluster.takeover_p50_s} (median; slowest "
               "{cluster.takeover_max_s}) over {cluster.crashes} crashes, the longest client outage "
               "{cluster.outage_max_s}")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(n, d, lab) for n, (d, lab, _) in CASES.items()]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"probe (one request every {p['interval'] * 1000:g} ms, fresh connection, timeout {p['timeout']:g} s); "
                f"crash = lb1's front link down (crash instant = both link ends down). one-lb: one crash of "
                f"{p['fault_s']:g} s; the fault window = requests sent from the crash + {p['settle_s']:g} s until one "
                f"timeout before the restore. cluster (keepalived, advert per the scaled design's vrrp_advert; "
                f"preemption on, so lb1 takes the VIP back after each restore): {p['crashes']} crashes; takeover = "
                f"lb2 holding the VIP (polled); a crash's client outage = crash -> send time of the last request that "
                f"failed, + one interval")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        url = CASES[case.name][2]
        faults = FaultLog(lab, out / "faults.csv")
        per = params["hold_s"] + params["between_s"] + 2 * params["vip_timeout"]
        n = params["crashes"] if case.name == "cluster" else 1
        total = params["before_s"] + params["fault_s"] + params["after_s"] + n * per + 10
        proc, csv_path = drive.start_probe(lab, out, url, total, params["interval"], params["timeout"])
        try:
            drive.wait_rows(csv_path, 1, timeout=10, proc=proc)
            faults.mark_healthy(csv_path, proc)
            with window(out, "probe"):
                drive.pause(params["before_s"])
                if case.name == "one-lb":
                    say("crash: lb1 front link down")
                    faults.link_down("lb1", "s1")
                    drive.pause(params["fault_s"])
                    faults.link_up("lb1", "s1")
                    drive.pause(params["after_s"])
                else:
                    self.crash_loop(lab, faults, params)
        finally:
            drive.finish(proc, params["timeout"] + 5, "probe", terminate=True)

    def crash_loop(self, lab: Any, faults: FaultLog, params: dict[str, Any]) -> None:
        """Crash lb1 `crashes` times: down, wait for lb2 to hold the VIP, hold, restore, wait for lb1 to preempt."""
        lb1, lb2 = lab.service("lb1", "keepalived"), lab.service("lb2", "keepalived")
        for k in range(1, params["crashes"] + 1):
            down = faults.link_down("lb1", "s1")
            t = wait_until(lb2.holds_vip, params["vip_timeout"])
            if t is None:
                faults.mark("vip_lb2_timeout", "lb2")
            else:
                faults.mark("vip_lb2", "lb2", f"{t:.6f}")
            say(f"crash {k}/{params['crashes']}: lb2 holds the VIP after "
                f"{(t - down.t_begin) if t else float('nan'):.3f} s")
            drive.pause(max(0.0, down.t_begin + params["hold_s"] - time.time()))
            faults.link_up("lb1", "s1")
            t = wait_until(lb1.holds_vip, params["vip_timeout"])
            faults.mark("vip_lb1" if t else "vip_lb1_timeout", "lb1", f"{t:.6f}" if t else "")
            drive.pause(params["between_s"])

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        return (self.judge_one if case.name == "one-lb" else self.judge_cluster)(case, raw, params, plots_dir)

    def judge_one(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        rows = read_probe(raw / "probe.csv")
        events = read_faults(raw / "faults.csv")
        cr = crashes(events)
        if not cr or "link_up" not in cr[0]:
            return inconclusive(rule, "faults.csv lacks the crash or the restore")
        down, up = cr[0]["down"], cr[0]["link_up"]
        base = [r for r in rows if healthy_since(events) <= r.t_send and r.t_recv < down.t_begin]
        # sent while down and given up before the restore (a SYN retransmitted after it may still succeed)
        during = between(rows, down.t_end + params["settle_s"], up.t_begin - params["timeout"])
        answered = [r for r in rows if r.ok and down.t_end + params["settle_s"] <= r.t_recv < up.t_begin]
        after = [r for r in rows if r.t_send >= up.t_end + 1.0]
        back = next((r for r in rows if r.t_send >= up.t_begin and r.ok), None)
        m = {"requests": len(rows), "baseline_success": rounded(success_rate(base)),
             "baseline_failures": failure_summary(base),
             "fault_window_s": rounded(up.t_begin - down.t_end - params["settle_s"], 3), "fault_requests": len(during),
             "fault_success": rounded(success_rate(during)), "ok_answers_while_down": len(answered), "after_success": rounded(success_rate(after)),
             "recovery_after_restore_s": rounded(back.t_send - up.t_end, 3) if back else None}
        png = plots.availability(rows, [(down.t_begin, up.t_end, "lb1 front link down")],
                                 plots_dir / f"{case.name}-availability.png",
                                 "C14 one load balancer: crash (front link down) until restored",
                                 marks=[(down.t_begin, "crash"), (up.t_end, "restored")])
        return self.verdict(case, m, params, [png])

    def judge_cluster(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        rows = read_probe(raw / "probe.csv")
        events = read_faults(raw / "faults.csv")
        cr = crashes(events)
        if not cr:
            return inconclusive(rule, "faults.csv holds no crash")
        base = [r for r in rows if healthy_since(events) <= r.t_send and r.t_recv < cr[0]["down"].t_begin]
        slack = 2 * params["interval"] + params["slack_s"]
        table = []
        for i, c in enumerate(cr, 1):
            t_crash = c["down"].t_end  # both ends of the link are down
            vip, up = c.get("vip_lb2"), c.get("link_up")
            t_vip = float(vip.detail) if vip else None
            end = up.t_begin if up else t_crash + params["hold_s"]
            # failures the crash caused: sent before the restore, answered (or timed out) after the crash began;
            # a request can still succeed late (a SYN retransmitted once the VIP moved), so the outage ends
            # after the LAST failure, not at the first success
            failed = [r for r in rows if not r.ok and r.t_send < end and r.t_recv >= c["down"].t_begin]
            outage = max(0.0, max(r.t_send for r in failed) + params["interval"] - t_crash) if failed else 0.0
            served = [r for r in rows if t_vip and t_vip + slack <= r.t_send < end]
            nxt = cr[i]["down"].t_begin if i < len(cr) else up.t_end + params["between_s"] + 1.0 if up else 0.0
            post = [r for r in rows if up and up.t_end <= r.t_send < min(nxt, up.t_end + params["between_s"] + 1.0)]
            post_fail = [r for r in post if not r.ok and r.t_recv < nxt]  # not those the next crash broke
            table.append({"crash": i, "takeover_s": t_vip - t_crash if t_vip else None, "outage_s": outage,
                          "failed": len(failed), "served_success": success_rate(served) if served else None,
                          "preempt_failed": len(post_fail),
                          "preempt_outage_s": max(0.0, max(r.t_send for r in post_fail) + params["interval"]
                                                  - up.t_end) if post_fail else 0.0,
                          "vip_back": "vip_lb1" in c})
        takeovers = [c["takeover_s"] for c in table if c["takeover_s"] is not None]
        outs = [c["outage_s"] for c in table if c["outage_s"] is not None]
        m: dict[str, Any] = {
            "crashes": len(table), "requests": len(rows), "baseline_success": rounded(success_rate(base)),
            "baseline_failures": failure_summary(base),
            "takeover_s": [rounded(x, 3) for x in takeovers], "outage_s": [rounded(x, 3) for x in outs],
            "takeover_p50_s": rounded(percentile(takeovers, 50), 3), "takeover_max_s": rounded(max(takeovers), 3)
            if takeovers else None, "takeover_min_s": rounded(min(takeovers), 3) if takeovers else None,
            "outage_p50_s": rounded(percentile(outs, 50), 3), "outage_max_s": rounded(max(outs), 3) if outs else None,
            "failed_per_crash": [c["failed"] for c in table],
            "served_success_min": rounded(min((c["served_success"] for c in table if c["served_success"] is not None),
                                              default=float("nan")), 4),
            "preempt_failed_per_restore": [c["preempt_failed"] for c in table],
            "preempt_outage_max_s": rounded(max((c["preempt_outage_s"] for c in table), default=0.0), 3),
            "vip_returned_to_lb1": sum(c["vip_back"] for c in table)}
        windows = [(c["down"].t_begin, c["link_up"].t_end if "link_up" in c else c["down"].t_end, "lb1 front link down")
                   for c in cr]
        pngs = [str(plots.availability(rows, windows, plots_dir / f"{case.name}-availability.png",
                                       f"C14 VRRP pair: {len(cr)} crashes of lb1 (shaded until restored)",
                                       marks=[(c["down"].t_begin, f"crash {i}") for i, c in enumerate(cr, 1)][:12]))]
        if cr:  # a zoom on the first crash, where the takeover is visible
            c = cr[0]
            z0, z1 = c["down"].t_begin - 0.5, (c["link_up"].t_end if "link_up" in c else c["down"].t_end) + 2.0
            zoom = [r for r in rows if z0 <= r.t_send <= z1]
            pngs.append(str(plots.availability(zoom, [windows[0]], plots_dir / f"{case.name}-first-crash.png",
                                               "C14 VRRP pair: the first crash, zoomed", bin_s=0.05,
                                               marks=[(c["down"].t_begin, "crash")] +
                                               ([(float(c["vip_lb2"].detail), "lb2 holds VIP")] if "vip_lb2" in c else []))))
        pngs.append(str(plots.cdf({"takeover": takeovers}, plots_dir / f"{case.name}-takeover-cdf.png",
                                  f"C14 takeover (crash -> lb2 holds the VIP), {len(takeovers)} crashes",
                                  "seconds", bounds=[(params["takeover_target"], "target")])))
        pngs.append(str(plots.cdf({"outage": outs}, plots_dir / f"{case.name}-outage-cdf.png",
                                  "C14 client-visible outage per crash (probe)", "seconds",
                                  bounds=[(params["takeover_target"], "target")])))
        m.update({"crashes_without_takeover": [c["crash"] for c in table if c["takeover_s"] is None],
                  "crashes_outage_over_bound": [c["crash"] for c in table if c["takeover_s"] is not None and
                                                (c["outage_s"] is None or c["outage_s"] > c["takeover_s"] + slack)],
                  "crashes_not_fully_served": [c["crash"] for c in table if c["served_success"] is None
                                               or c["served_success"] < params["healthy"]]})
        return self.verdict(case, m, params, pngs, notes=[
            f"on restore lb1 preempts the VIP back (keepalived default): failed requests per restore "
            f"{m['preempt_failed_per_restore']}, outage up to {m['preempt_outage_max_s']} s (reported, not judged)"])
