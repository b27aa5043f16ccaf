"""C3 cannot-scale: one CPU-limited server's throughput plateaus and its latency climbs with offered load;
behind HAProxy, 2 and 3 such servers add capacity (closed-loop wrk per server count + one open-loop check)."""
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
from experiments.verdict import SKIP, Check, Figure, P, Verdict, all_of, gate, inconclusive

SWEEP = "sweep.csv"
CAPACITY_WRK = "wrk-capacity.txt"   # distributed-N: the closed-loop capacity run
CONFIRM = "confirm.csv"             # distributed-N: the open-loop point at a fraction of that capacity


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
                "keepup": 0.95, "gen_accuracy": 0.98, "plateau_growth": 0.10, "overload": 0.8, "knee": 5.0,
                "servers": [1, 2, 3], "dist_cpu": 0.1, "machine_share": 0.5, "confirm_fraction": 0.9, "confirm_s": 5.0,
                "ratio_2": 1.8, "ratio_3": 2.6, "ratio_4": 3.4, "ratio_8": 6.4}
    checks = (
        gate("low_achieved_fraction", ">=", P("keepup"), "throughput / offered load at the lowest load", "%",
             cases=("one-server",), fail="the server did not keep up even at the lowest load"),
        gate("generator_lagging", "==", 0, "offered loads (req/s) at which the generator sent < {gen_accuracy:.0%} "
             "of the rate without having used all its {max_inflight} connections", cases=("one-server",),
             fail="the load generator, not the server, was the limit"),
        gate("early_points", ">=", 1, "offered loads <= 2/3 R", cases=("one-server",)),
        all_of("plateau",
               Check("top_achieved_fraction", "<", P("overload"), "throughput at R / R", "%"),
               Check("top_vs_best_early", "<=", P("plateau_growth", plus=1),
                     "throughput at R / the best throughput at offered loads <= 2/3 R", "%"),
               cases=("one-server",)),
        Check("p99_ratio_top_low", ">=", P("knee"), "latency climbs: p99 at R / p99 at the lowest load", "x",
              cases=("one-server",)),
        gate("confirm_send_fraction", ">=", P("gen_accuracy"), "open-loop confirmation: sent / offered", "%",
             cases=("distributed-*",), fail="the load generator could not send the confirmation load"),
        gate("confirm_achieved_fraction", ">=", P("keepup"), "open-loop confirmation: throughput / offered", "%",
             cases=("distributed-*",), fail="the closed-loop capacity was not confirmed open-loop"),
        gate("capacity_ratios", ">=", 1, "capacity ratios computed (distributed-1 and distributed-2 or -3 ran)",
             across=True, missing=SKIP),
        Check("capacity_ratio_2", ">=", P("ratio_2"), "capacity with 2 servers / with 1", "x", across=True,
              cases=("distributed-1", "distributed-2")),
        Check("capacity_ratio_3", ">=", P("ratio_3"), "capacity with 3 servers / with 1", "x", across=True,
              cases=("distributed-1", "distributed-3")),
        Check("capacity_ratio_4", ">=", P("ratio_4"), "capacity with 4 servers / with 1", "x", across=True,
              cases=("distributed-1", "distributed-4")),
        Check("capacity_ratio_8", ">=", P("ratio_8"), "capacity with 8 servers / with 1", "x", across=True,
              cases=("distributed-1", "distributed-8")),
    )
    figures = {
        "one-server.capacity_rps": Figure("peak throughput of one CPU-limited server", "req/s", rel_tol=0.3),
        "one-server.p99_ratio_top_low": Figure("p99 at the top load / at the lowest, one server", "x", rel_tol=0.5),
        "distributed-1.capacity_rps": Figure("capacity behind HAProxy, 1 server", "req/s", rel_tol=0.3),
        "distributed-2.capacity_rps": Figure("capacity behind HAProxy, 2 servers", "req/s", rel_tol=0.3),
        "distributed-3.capacity_rps": Figure("capacity behind HAProxy, 3 servers", "req/s", rel_tol=0.3),
        "capacity_ratio_2": Figure("capacity with 2 servers / with 1", "x", rel_tol=0.1),
        "capacity_ratio_3": Figure("capacity with 3 servers / with 1", "x", rel_tol=0.1),
        "capacity_ratio_4": Figure("capacity with 4 servers / with 1", "x", rel_tol=0.1),
        "capacity_ratio_8": Figure("capacity with 8 servers / with 1", "x", rel_tol=0.1),
    }
    summary = ("one CPU-limited server's throughput plateaued at {one-server.capacity_rps} while its p99 rose "
               "{one-server.p99_ratio_top_low} from the lowest to the highest offered load",
               "behind the load balancer 2 servers had {capacity_ratio_2} and 3 servers {capacity_ratio_3} the "
               "capacity of one")

    def lab_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"cpu": {"server1": params["cpu"]}}

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case("one-server", "one-server", self.lab_params(params))] + [
            Case(f"distributed-{n}", "distributed",
                 {"params": {"servers": n}, "cpu": {f"server{i}": server_cpu(params) for i in range(1, n + 1)}})
            for n in params["servers"]]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"one-server (server1 CPU-limited to {p['cpu']:g} of the machine): wrk calibrates its capacity of "
                f"/work?ms={p['work_ms']} ({p['calib_s']} s, {p['calib_connections']} connections), then open-loop "
                f"loads at {p['fractions']} of it, {p['point_s']:g} s each (latency from the scheduled send, the "
                f"first {p['warmup_s']:g} s not judged); R = the highest offered load. distributed (every server "
                f"CPU-limited to {server_cpu(p):g} of the machine: {p['dist_cpu']:g}, or less so that the most "
                f"servers together get at most {p['machine_share']:g} of it): "
                f"capacity = wrk closed-loop ok req/s ({p['calib_s']} s, {p['calib_connections']} connections) with "
                f"{', '.join(map(str, p['servers']))} servers, each confirmed open-loop at "
                f"{p['confirm_fraction']:.0%} of it for {p['confirm_s']:g} s")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        url = f"http://www.foobar.com/work?ms={params['work_ms']}"
        if case.design == "distributed":
            self._capacity_case(lab, out, url, params)
            return
        rates = params["rates"]
        if not rates:
            say(f"calibrating capacity with wrk ({params['calib_s']} s, {params['calib_connections']} connections)")
            with window(out, "calibration"):
                cal = run_wrk(lab, "client", url, params["calib_s"], out / "wrk-calibration.txt",
                              connections=params["calib_connections"], timeout=params["timeout"])
            capacity = max(1.0, cal.ok_per_s)
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

    def _capacity_case(self, lab: Any, out: Path, url: str, params: dict[str, Any]) -> None:
        """Closed-loop capacity with wrk, then one open-loop point at a fraction of it that must hold."""
        say(f"capacity with wrk ({params['calib_s']} s, {params['calib_connections']} connections)")
        with window(out, "capacity"):
            cap = run_wrk(lab, "client", url, params["calib_s"], out / CAPACITY_WRK,
                          connections=params["calib_connections"], timeout=params["timeout"])
        capacity = max(1.0, cap.ok_per_s)
        rate = round(params["confirm_fraction"] * capacity, 1)
        with open(out / SWEEP, "w", newline="") as f:
            csv.writer(f).writerows([["k", "offered", "duration", "file"], [0, rate, params["confirm_s"], CONFIRM]])
        self._settle(lab, url, params)
        say(f"confirming open-loop at {rate:g} req/s")
        with window(out, f"confirm-{rate:g}"):
            proc = drive.start_tool(lab, "client", "openloop", [
                "--url", url, "--rate", str(rate), "--duration", str(params["confirm_s"]), "--out", str(out / CONFIRM),
                "--timeout", str(params["timeout"]), "--max-inflight", str(params["max_inflight"]),
                "--seed", str(params["seed"])], out / "confirm.json")
            drive.finish(proc, params["confirm_s"] + params["timeout"] * 2 + 15, f"openloop at {rate:g} req/s")

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
        if case.design == "distributed":
            return self._judge_capacity(case, raw, params, plots_dir)
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
        best_early = max((p["achieved"] for p in early), default=float("nan"))
        growth = top["achieved"] / best_early if best_early else float("nan")
        m.update({"low_achieved_fraction": rounded(low["achieved"] / low["offered"], 4),
                  "generator_lagging": [p["offered"] for p in pts if not p["pool_exhausted"]
                                        and p["send_rate"] < params["gen_accuracy"] * p["offered"]],
                  "early_points": len(early), "top_achieved_fraction": rounded(top["achieved"] / top["offered"], 4),
                  "top_vs_best_early": rounded(growth, 4), "throughput_growth_last_third": rounded(growth - 1, 4),
                  "p99_ratio_top_low": rounded(top["p99"] / low["p99"] if low["p99"] else float("nan"), 2)})
        return self.verdict(case, m, params, [png])

    def _judge_capacity(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        """One distributed-N case: its wrk capacity, confirmed by the open-loop point (else inconclusive)."""
        wrk = parse_wrk((raw / CAPACITY_WRK).read_text())
        cap = wrk.ok_per_s
        with open(raw / SWEEP, newline="") as f:
            s = next(csv.DictReader(f))
        pt = point_metrics(raw / s["file"], float(s["offered"]), float(s["duration"]), params["warmup_s"], params["timeout"])
        n = int(case.lab_params.get("params", {}).get("servers", 1))
        m = {"servers": n, "capacity_rps": rounded(cap, 2), "wrk_failed": wrk.failed,
             "wrk_p50_ms": rounded(wrk.percentiles_s.get("50", float("nan")) * 1000, 2),
             "wrk_p99_ms": rounded(wrk.percentiles_s.get("99", float("nan")) * 1000, 2),
             "confirm_offered_rps": pt["offered"], "confirm_achieved_rps": rounded(pt["achieved"], 2),
             "confirm_p99_ms": rounded(pt["p99"] * 1000, 2), "confirm_failed_fraction": rounded(pt["failed_fraction"], 4)}
        png = capacity_plot(raw.parent, plots_dir / "distributed-capacity.png", params)
        m.update({"confirm_send_fraction": rounded(pt["send_rate"] / pt["offered"], 4),
                  "confirm_achieved_fraction": rounded(pt["achieved"] / pt["offered"], 4)})
        return self.verdict(case, m, params, [png] if png else [], notes=[
            f"{n} server(s): capacity {cap:.1f} req/s; open-loop at {pt['offered']:g} req/s: {pt['achieved']:.1f} "
            f"achieved, p99 {pt['p99'] * 1000:.0f} ms"])

    def across_measured(self, by_case: dict[str, Verdict], params: dict[str, Any]) -> dict[str, Any]:
        """Capacity with 2 and 3 servers over capacity with 1 (when those cases ran)."""
        caps = {int(name.split("-")[1]): v.measured.get("capacity_rps") for name, v in by_case.items()
                if name.startswith("distributed-")}
        if not caps:
            return {}
        ratios = {f"capacity_ratio_{n}": rounded(caps[n] / caps[1], 3) for n in (2, 3, 4, 8)
                  if caps.get(n) is not None and caps.get(1)}
        return {**ratios, "capacity_ratios": len(ratios)}


def capacity_plot(raw_dir: Path, out: Path, params: dict[str, Any]) -> Path | None:
    """Capacity against the number of servers (every distributed-N case present in raw/), with linear scaling."""
    caps: dict[str, float] = {}
    for d in sorted(raw_dir.glob("distributed-*")):
        if (d / CAPACITY_WRK).exists():
            try:
                w = parse_wrk((d / CAPACITY_WRK).read_text())
            except ValueError:
                continue
            caps[d.name.split("-")[1]] = w.ok_per_s
    if not caps:
        return None
    one = caps.get("1")
    return plots.grouped_bars({f"{n} server(s)": {"capacity (ok req/s)": c, **({"linear: n x capacity(1)": one * int(n)} if one else {})}
                               for n, c in sorted(caps.items())}, out,
                              f"C3 cannot-scale: capacity behind HAProxy, /work?ms={params['work_ms']}, "
                              f"cpu {server_cpu(params):g} of the machine per server", "req/s")


def server_cpu(params: dict[str, Any]) -> float:
    """Each distributed server's CPU quota: dist_cpu, lowered so that N x quota <= machine_share for the
    largest N, and the same for every N (the ratios compare servers of one size)."""
    return round(min(float(params["dist_cpu"]), float(params["machine_share"]) / max(params["servers"])), 4)
