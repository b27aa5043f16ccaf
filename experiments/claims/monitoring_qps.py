"""C12 monitoring-qps: Prometheus' QPS follows a known open-loop load within +-5%, and the HighQPS alert fires and clears."""
from __future__ import annotations

import bisect
import json
import time
from pathlib import Path
from typing import Any

from experiments import drive, plots
from experiments.base import Case, Experiment, say
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import read_openloop, rounded
from experiments.verdict import PRESENT, REFUTED, SKIP, Check, Figure, M, P, Verdict, gate

PROM = "prometheus.json"     # the rule, intervals and threshold the lab's Prometheus ran with
SERIES = "series.json"       # raw samples of lab:http_requests:rate and ALERTS, with their evaluation times


def step_file(i: int) -> str:
    return f"openloop-{i:02d}.csv"


def windowed_rate(sends: list[float], t: float, width: float) -> float:
    """What rate([width]) should read at t from the generator's own send times: sends in (t - width, t] / width."""
    return (bisect.bisect_right(sends, t) - bisect.bisect_right(sends, t - width)) / width


def crossing(sends: list[float], threshold: float, width: float, after: float = float("-inf")) -> float | None:
    """First instant > after at which the generator-side windowed rate exceeds threshold (it only rises at a send)."""
    for t in sends:
        if t > after and windowed_rate(sends, t, width) > threshold:
            return t
    return None


def uncrossing(sends: list[float], threshold: float, width: float, after: float) -> float | None:
    """First instant >= after at which the windowed rate is <= threshold again (it only falls when a send leaves)."""
    candidates = sorted({after, *(t + width for t in sends if t + width >= after)})
    for t in candidates:
        if windowed_rate(sends, t, width) <= threshold:
            return t
    return None


def episodes(times: list[float], gap: float) -> list[tuple[float, float]]:
    """Runs of sample times no more than gap apart: [(first, last)]."""
    out: list[tuple[float, float]] = []
    for t in sorted(times):
        if out and t - out[-1][1] <= gap:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


@register
class MonitoringQps(Experiment):
    """Open-loop HTTPS load at a few rates from the client; read Prometheus' QPS series and its HighQPS alert afterwards."""

    slug = "monitoring-qps"
    claim = "C12"
    title = "Monitoring shows QPS and alerts on it"
    statement = "Monitoring agents let you watch a web server's QPS and alert on it."
    design = "secured"
    defaults = {"url": "https://www.foobar.com/health", "rates": [20, 40, 80], "step_s": 14.0, "clear_s": 12.0,
                "threshold": 50.0, "tolerance": 0.05, "settle_s": 2.0, "intervals": 2, "min_samples": 3,
                "gen_accuracy": 0.98, "late_s": 0.25, "max_late": 0.02, "max_failed": 0.01, "timeout": 5.0}
    checks = (
        gate("steps_short_of_schedule", "==", 0, "steps (req/s) in which the generator sent < {gen_accuracy:.0%} of "
             "its schedule"),
        # A generator that stalls and catches up sends a burst the schedule never asked for (seen under a
        # machine stalling for ~1 s): the rate that crossed the threshold is then not the designed load.
        gate("steps_behind_schedule", "==", 0, "steps (req/s) in which more than {max_late:.0%} of the sends left "
             "over {late_s:g} s after their scheduled time"),
        gate("steps_with_failures", "==", 0, "steps (req/s) with > {max_failed:.0%} of requests failed"),
        gate("steps_with_few_samples", "==", 0, "steps (req/s) with < {min_samples} Prometheus samples in their "
             "steady part"),
        gate("t_cross", PRESENT, None, "a crossing of the threshold by the generator-side windowed rate",
             absent="the load never crossed the threshold"),
        Check("max_qps_error", "<=", P("tolerance"), "largest error of Prometheus' QPS against the generator's, over "
              "the rates", "%", missing=REFUTED),
        Check("early_firings", "==", 0, "alert firings more than one scrape interval before the crossing"),
        Check("fire_delay_s", "<=", M("alert_bound_s", "{intervals} x (scrape_interval + evaluation_interval)"),
              "time from the crossing to the first firing evaluation", "s", missing=REFUTED,
              absent="the alert did not fire after the crossing"),
        Check("clear_delay_s", "<=", M("alert_bound_s", "the same bound"), "time from the rate falling to <= the "
              "threshold to the alert's resolution", "s", missing=REFUTED, absent="the alert did not resolve"),
        Check("resolved_before_query", "==", True, "the resolution came before the series were read", missing=SKIP),
        Check("resolved_at_end", "==", True, "the alert is not firing at the end"),
    )
    figures = {
        "max_qps_error": Figure("largest QPS error, Prometheus vs the generator", "%", abs_tol=0.02),
        "fire_delay_s": Figure("threshold crossing to the alert firing", "s", abs_tol=2.0),
        "clear_delay_s": Figure("rate below the threshold to the alert resolving", "s", abs_tol=2.0),
    }
    summary = ("Prometheus' QPS stayed within {max_qps_error} of the generator's own rate at every step",
               "HighQPS fired {fire_delay_s} after the rate crossed the threshold and resolved {clear_delay_s} after "
               "it fell below")

    def lab_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"params": {"monitoring": True, "qps_alert": float(params["threshold"])}}

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"open-loop HTTPS load at {p['rates']} req/s, {p['step_s']:g} s each, then none for {p['clear_s']:g} s. "
                f"QPS: for each rate, the mean of the recorded lab:http_requests:rate samples taken once the rate "
                f"window holds only that step (from first send + window + {p['settle_s']:g} s) against the "
                f"generator's own windowed rate at the same evaluation times (sends in (t - window, t] / window). "
                f"Alert: HighQPS (lab:http_requests:rate > threshold, for 0s); its first firing evaluation after the "
                f"crossing (one up to a scrape interval before it counts as on time); its resolution = the evaluation "
                f"after the last firing sample of that episode")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        prom = lab.service("monitor", "prometheus")
        prom.wait_targets(prom.targets_timeout)  # every exporter and load balancer scraped and up first
        o = prom.opts
        from hostapps.prometheus import ALERT, QPS_TOTAL, seconds
        cfg = {"metric": QPS_TOTAL, "alert": ALERT, "rule": f"{QPS_TOTAL} > {o['qps_alert_threshold']}",
               "alert_for": o["qps_alert_for"], "threshold": float(o["qps_alert_threshold"]),
               "rate_window_s": seconds(o["rate_window"]), "scrape_interval_s": seconds(o["scrape_interval"]),
               "evaluation_interval_s": seconds(o["evaluation_interval"]),
               "counter": "haproxy_frontend_http_requests_total (stats frontend excluded), summed over load balancers"}
        (out / PROM).write_text(json.dumps(cfg, indent=2) + "\n")
        t_start = time.time()
        with window(out, "load"):
            for i, rate in enumerate(params["rates"]):
                say(f"open-loop {rate} req/s for {params['step_s']:g} s over HTTPS")
                csv_path = out / step_file(i)
                proc = drive.start_tool(lab, "client", "openloop", [
                    "--url", params["url"], "--rate", str(rate), "--duration", str(params["step_s"]),
                    "--out", str(csv_path), "--timeout", str(params["timeout"])], csv_path.with_suffix(".json"))
                drive.finish(proc, params["step_s"] + params["timeout"] + 15, f"openloop {rate} req/s")
            say(f"no load for {params['clear_s']:g} s (the alert should clear)")
            drive.pause(params["clear_s"])
        firing_end = prom.firing(ALERT)
        span = int(time.time() - t_start) + 10
        series = {"queried_at": time.time(), "firing_at_end": firing_end,
                  "qps": prom.api("query", query=f"{QPS_TOTAL}[{span}s]")["result"],
                  "alerts": prom.api("query", query=f'ALERTS{{alertname="{ALERT}"}}[{span}s]')["result"]}
        (out / SERIES).write_text(json.dumps(series) + "\n")

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        cfg = json.loads((raw / PROM).read_text())
        series = json.loads((raw / SERIES).read_text())
        width, thr = cfg["rate_window_s"], cfg["threshold"]
        bound = params["intervals"] * (cfg["scrape_interval_s"] + cfg["evaluation_interval_s"])
        qps = sorted((float(t), float(v)) for r in series["qps"] for t, v in r["values"])
        firing = sorted(float(t) for r in series["alerts"] if r["metric"].get("alertstate") == "firing"
                        for t, _ in r["values"])
        steps, sends = [], []
        for i, rate in enumerate(params["rates"]):
            rows = read_openloop(raw / step_file(i))
            sent = sorted(r.t_send for r in rows if r.error != "not_sent")
            late = sum(r.error != "not_sent" and r.t_sched is not None and r.t_send - r.t_sched > params["late_s"]
                       for r in rows)
            steps.append({"rate": rate, "scheduled": len(rows), "sent": len(sent), "late": late,
                          "failed": sum(not r.ok for r in rows), "first": sent[0] if sent else None,
                          "last": sent[-1] if sent else None})
            sends += sent
        sends.sort()
        m: dict[str, Any] = {"rule_used": cfg["rule"], "rate_window_s": width, "threshold": thr,
                             "scrape_interval_s": cfg["scrape_interval_s"],
                             "evaluation_interval_s": cfg["evaluation_interval_s"], "alert_bound_s": bound,
                             "qps_samples": len(qps), "firing_samples": len(firing)}
        for s in steps:
            if not s["sent"]:
                continue
            inside = [(t, v) for t, v in qps if s["first"] + width + params["settle_s"] <= t <= s["last"]]
            s["samples"] = len(inside)
            s["prometheus"] = sum(v for _, v in inside) / len(inside) if inside else None
            s["generator"] = sum(windowed_rate(sends, t, width) for t, _ in inside) / len(inside) if inside else None
            s["error"] = (s["prometheus"] / s["generator"] - 1) if inside and s["generator"] else None
        for s in steps:
            key = f"rate_{s['rate']:g}"
            m[f"{key}_generator"] = rounded(s.get("generator") or float("nan"), 3)
            m[f"{key}_prometheus"] = rounded(s.get("prometheus") or float("nan"), 3)
            m[f"{key}_error"] = rounded(s.get("error") if s.get("error") is not None else float("nan"), 4)
            m[f"{key}_samples"] = s.get("samples", 0)
        errors = [abs(s["error"]) for s in steps if s.get("error") is not None]
        m["max_qps_error"] = rounded(max(errors), 4) if errors else None
        t_cross = crossing(sends, thr, width)
        gap = 1.5 * cfg["evaluation_interval_s"]
        fired = episodes(firing, gap)
        # The crossing instant is known to one scrape interval: rate() extrapolates from samples taken
        # at scrape times, so a firing up to one interval before the generator-side crossing is on time.
        tol = cfg["scrape_interval_s"]
        t_fire = next((a for a, _ in fired if t_cross is not None and a >= t_cross - tol), None)
        early = [a for a, _ in fired if t_cross is None or a < t_cross - tol]
        t_uncross = uncrossing(sends, thr, width, max(t_fire, t_cross)) if t_fire is not None else None
        # the alert resolved at the evaluation after its last firing sample of that episode
        last = next((z for a, z in fired if a == t_fire), None)
        t_clear = last + cfg["evaluation_interval_s"] if last is not None else None
        m.update({"t_cross": t_cross, "t_fire": t_fire, "t_uncross": t_uncross, "t_clear": t_clear,
                  "fire_delay_s": rounded(t_fire - t_cross, 3) if t_fire and t_cross else None,
                  "clear_delay_s": rounded(t_clear - t_uncross, 3) if t_clear and t_uncross else None,
                  "firing_episodes": len(fired), "early_firings": len(early),
                  "firing_at_end": series["firing_at_end"]})
        m.update({"steps_short_of_schedule": [s["rate"] for s in steps if not s["sent"]
                                              or s["sent"] < params["gen_accuracy"] * s["scheduled"]],
                  "steps_behind_schedule": [s["rate"] for s in steps
                                            if s["late"] > params["max_late"] * max(1, s["scheduled"])],
                  "late_sends": {f"{s['rate']:g}": s["late"] for s in steps},
                  "steps_with_failures": [s["rate"] for s in steps
                                          if s["failed"] > params["max_failed"] * max(1, s["scheduled"])],
                  "steps_with_few_samples": [s["rate"] for s in steps if s.get("samples", 0) < params["min_samples"]],
                  "resolved_before_query": t_clear <= series["queried_at"] if t_clear is not None else None,
                  "resolved_at_end": not series["firing_at_end"]})
        pngs = self.draw(case, sends, qps, fired, steps, m, width, thr, plots_dir)
        return self.verdict(case, m, params, pngs, notes=[
            f"{s['rate']} req/s: generator {s['generator']:.2f}, Prometheus {s['prometheus']:.2f} "
            f"({s['error']:+.2%}, {s['samples']} samples)" for s in steps if s.get("error") is not None])

    def draw(self, case: Case, sends: list[float], qps: list[tuple[float, float]], fired: list[tuple[float, float]],
             steps: list[dict[str, Any]], m: dict[str, Any], width: float, thr: float, plots_dir: Path) -> list[str]:
        """QPS timeline (generator-side windowed rate vs Prometheus, alert shaded) and per-rate bars."""
        starts = ([sends[0]] if sends else []) + ([qps[0][0]] if qps else [])
        ends = ([sends[-1] + width + 10] if sends else []) + ([qps[-1][0]] if qps else [])
        t0, end = (min(starts), max(ends)) if starts else (0.0, 1.0)
        grid = [t0 + i * 0.25 for i in range(int((end - t0) / 0.25) + 1)]
        marks = [(m[k], k[2:]) for k in ("t_cross", "t_fire", "t_uncross", "t_clear") if m.get(k)]
        timeline = plots.series_timeline(
            {f"generator, sends in last {width:g} s / {width:g}": (grid, [windowed_rate(sends, t, width) for t in grid]),
             "Prometheus lab:http_requests:rate": ([t for t, _ in qps], [v for _, v in qps])},
            plots_dir / f"{case.name}-qps-timeline.png", f"C12 QPS and HighQPS (> {thr:g}) alert", "req/s", t0,
            windows=[(a, z + m["evaluation_interval_s"], "HighQPS firing") for a, z in fired], marks=marks,
            hlines=[(thr, f"threshold {thr:g}")], styles={"Prometheus lab:http_requests:rate": ".-"})
        bars = plots.grouped_bars({f"{s['rate']} req/s": {"generator": s.get("generator") or 0.0,
                                                           "Prometheus": s.get("prometheus") or 0.0} for s in steps},
                                  plots_dir / f"{case.name}-qps-vs-generated.png",
                                  "C12 steady-state QPS: Prometheus vs the generator's own count", "req/s")
        return [str(timeline), str(bars)]
