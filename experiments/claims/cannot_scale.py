"""C3 cannot-scale: one CPU-limited server's throughput plateaus and its latency climbs with offered load."""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from typing import Any

from experiments import drive, plots
from experiments.base import Case, Experiment, say
from experiments.fidelity import window
from experiments.load import parse_wrk, run_wrk
from experiments.registry import register
from experiments.stats import percentile, read_openloop, rounded
from experiments.verdict import Verdict, inconclusive

SWEEP = "sweep.csv"


def point_metrics(path: Path, offered: float, duration: float, warmup: float, timeout: float) -> dict[str, float]:
    """Achieved ok/s, p50/p99 latency (from schedule; failures at their failure time), send rate of one point."""
    rows = read_openloop(path)
    if not rows:
        raise ValueError(f"{path.name} is empty")
    start = min(r.t_sched for r in rows)
    drain_end = start + duration + timeout + 1.0
    rows = read_openloop(path, drain_end)
    a, z = start + warmup, start + duration
    steady = [r for r in rows if a <= r.t_sched < z]
    done_ok = sum(1 for r in rows if r.ok and a <= r.t_recv < z)
    sent = [r for r in rows if r.error != "not_sent" and r.t_send <= z]
    lat = [r.latency for r in steady]
    late = [r.t_send - r.t_sched for r in rows if r.error != "not_sent"]
    return {"offered": offered, "achieved": done_ok / (z - a), "p50": percentile(lat, 50), "p99": percentile(lat, 99),
            "send_rate": len(sent) / duration, "failed_fraction": sum(not r.ok for r in steady) / max(1, len(steady)),
            "late_p99": percentile(late, 99), "requests": len(rows)}


def pool_exhausted(csv_path: Path, params: dict[str, Any]) -> bool:
    """True when openloop used all --max-inflight workers: then late sends are the server's doing, not its own."""
    summary = csv_path.with_suffix(".json")
    try:
        lines = [ln for ln in summary.read_text().splitlines() if ln.startswith("{")]
        return int(json.loads(lines[-1])["workers"]) >= params["max_inflight"]
    except (OSError, IndexError, KeyError, ValueError):
        return False


@register
class CannotScale(Experiment):
    """Calibrate capacity with wrk, then sweep open-loop offered load around it on a CPU-limited server1."""

    slug = "cannot-scale"
    claim = "C3"
    title = "One server cannot scale with traffic"
    statement = ("One server cannot scale with traffic: throughput plateaus and latency climbs; more servers "
                 "behind the load balancer add capacity.")
    design = "one-server"
    defaults = {"work_ms": 10, "cpu": 0.25, "calib_s": 4, "calib_connections": 16,
                "fractions": [0.25, 0.5, 0.75, 0.9, 1.1, 1.3, 1.6, 2.0], "rates": None,
                "point_s": 8.0, "warmup_s": 1.0, "timeout": 5.0, "max_inflight": 256,
                "keepup": 0.95, "gen_accuracy": 0.98, "plateau_growth": 0.10, "overload": 0.8, "knee": 5.0}
    key_values = ("capacity_rps", "achieved_top_rps", "p99_low_ms", "p99_top_ms")

    def lab_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"cpu": {"server1": params["cpu"]}}

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        # distributed halves: Case("distributed-2", "distributed", {"web_servers": 2, "cpu": {...}}) + conclude()
        return [Case("one-server", "one-server", self.lab_params(params))]

    def rule_text(self, params: dict[str, Any]) -> str:
        p = {**self.params(), **params}
        return (f"one-server: plateau - at the highest offered load R achieved "
                f"< {p['overload']:.0%} of R and <= {1 + p['plateau_growth']:.0%} of the best throughput at "
                f"offered loads <= 2/3 R; latency knee - p99 at R >= {p['knee']:g}x p99 at the lowest load. "
                f"Inconclusive when the server cannot keep up at the lowest load (< {p['keepup']:.0%}), the "
                f"generator sent < {p['gen_accuracy']:.0%} of the requested rate without having used all its "
                f"{p['max_inflight']} connections (so it, not the server, was the limit), "
                f"or no offered load was <= 2/3 R")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        url = f"http://www.foobar.com/work?ms={params['work_ms']}"
        rates = params["rates"]
        if not rates:
            say(f"calibrating capacity with wrk ({params['calib_s']} s, {params['calib_connections']} connections)")
            with window(out, "calibration"):
                cal = run_wrk(lab, "client", url, params["calib_s"], out / "wrk-calibration.txt",
                              connections=params["calib_connections"], timeout=params["timeout"])
            capacity = max(1.0, cal.requests_per_s * (1 - cal.failed / max(1, cal.requests)))
            rates = [round(f * capacity, 1) for f in params["fractions"]]
        with open(out / SWEEP, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["k", "offered", "duration", "file"])
            for k, rate in enumerate(rates):
                w.writerow([k, rate, params["point_s"], f"openloop-{k:02d}.csv"])
        for k, rate in enumerate(rates):
            self._settle(lab, url, params)
            say(f"offered load {rate:g} req/s ({k + 1}/{len(rates)})")
            with window(out, f"rate-{rate:g}"):
                proc = drive.start_tool(lab, "client", "openloop", [
                    "--url", url, "--rate", str(rate), "--duration", str(params["point_s"]),
                    "--out", str(out / f"openloop-{k:02d}.csv"), "--timeout", str(params["timeout"]),
                    "--max-inflight", str(params["max_inflight"]), "--seed", str(params["seed"])],
                    out / f"openloop-{k:02d}.json")
                drive.finish(proc, params["point_s"] + params["timeout"] * 2 + 15, f"openloop at {rate:g} req/s")

    def _settle(self, lab: Any, url: str, params: dict[str, Any], tries: int = 30) -> None:
        """Wait (bounded) until one request is answered within 10x its CPU time: the last point's queue drained."""
        limit = max(0.2, 10 * params["work_ms"] / 1000)
        for _ in range(tries):
            try:
                res = lab.exec("client", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                                          "--max-time", str(params["timeout"]), url], timeout=params["timeout"] + 5)
            except subprocess.TimeoutExpired:
                continue
            code, _, total = res.stdout.strip().partition(" ")
            if code == "200" and float(total or "inf") < limit:
                return
        say("server did not settle between points; continuing (the point will show it)")

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        with open(raw / SWEEP, newline="") as f:
            sweep = list(csv.DictReader(f))
        pts = [{**point_metrics(raw / s["file"], float(s["offered"]), float(s["duration"]), params["warmup_s"],
                                params["timeout"]), "pool_exhausted": pool_exhausted(raw / s["file"], params)}
               for s in sweep if (raw / s["file"]).exists()]
        if len(pts) < 3:
            return inconclusive(rule, f"only {len(pts)} load points were measured (need 3)")
        pts.sort(key=lambda p: p["offered"])
        low, top = pts[0], pts[-1]
        peak = max(p["achieved"] for p in pts)
        early = [p for p in pts if p["offered"] <= top["offered"] * 2 / 3]
        knee = next((p["offered"] for p in pts if p["p99"] > 3 * low["p99"]), None)
        m: dict[str, Any] = {
            "capacity_rps": rounded(peak, 2), "offered_top_rps": top["offered"], "achieved_top_rps": rounded(top["achieved"], 2),
            "p50_low_ms": rounded(low["p50"] * 1000, 2), "p99_low_ms": rounded(low["p99"] * 1000, 2),
            "p50_top_ms": rounded(top["p50"] * 1000, 2), "p99_top_ms": rounded(top["p99"] * 1000, 2),
            "knee_offered_rps": knee, "points": [{k: rounded(v, 4) if isinstance(v, float) else v for k, v in p.items()} for p in pts]}
        cal = raw / "wrk-calibration.txt"
        if cal.exists():
            m["wrk_calibration_rps"] = parse_wrk(cal.read_text()).requests_per_s
        png = plots.load_curves(pts, plots_dir / f"{case.name}-load.png",
                                f"C3 cannot-scale ({case.name}): /work?ms={params['work_ms']}, cpu {params['cpu']}")
        v = Verdict("inconclusive", rule, m, plots=[str(png)])
        if low["achieved"] < params["keepup"] * low["offered"]:
            v.reasons.append(f"the server did not keep up even at the lowest load ({low['achieved']:.1f} of {low['offered']:g} req/s)")
            return v
        lagging = [p for p in pts if p["send_rate"] < params["gen_accuracy"] * p["offered"] and not p["pool_exhausted"]]
        if lagging:
            v.reasons.append(f"the load generator could not hold {lagging[0]['offered']:g} req/s "
                             f"(sent {lagging[0]['send_rate']:.1f}/s): it, not the server, was the limit")
            return v
        if not early:
            v.reasons.append(f"the sweep spans too little: no offered load <= 2/3 of the top {top['offered']:g} req/s")
            return v
        best_early = max(p["achieved"] for p in early)
        plateau = top["achieved"] < params["overload"] * top["offered"] and \
            top["achieved"] <= (1 + params["plateau_growth"]) * best_early
        climbs = top["p99"] >= params["knee"] * low["p99"]
        m["throughput_growth_last_third"] = rounded(top["achieved"] / best_early - 1 if best_early else float("nan"), 4)
        m["p99_ratio_top_low"] = rounded(top["p99"] / low["p99"] if low["p99"] else float("nan"), 2)
        v.verdict = "supported" if plateau and climbs else "refuted"
        v.reasons = [f"plateau: {'yes' if plateau else 'NO'} (achieved {top['achieved']:.1f} req/s at offered "
                     f"{top['offered']:g}; best at <= 2/3 of that {best_early:.1f})",
                     f"latency climbs: {'yes' if climbs else 'NO'} (p99 {low['p99'] * 1000:.1f} -> {top['p99'] * 1000:.1f} ms)"]
        return v
