"""C18 static-offload: Nginx serves a static file at several times the rate the app server does on the same
CPU quota, and taking the static files off the app server lowers the dynamic requests' p99 under a mixed load.

Two labs of the one-server design, server1 (Nginx + app server + MariaDB) CPU-limited to the same quota:
static=nginx (Nginx serves /static/ from disk) and static=app (Nginx proxies /static/ to the app server).
Raw files per case: wrk-static.txt (closed-loop capacity on the static file), mix.csv (mixload: dynamic
page + static files, open loop), app-mix-server1.log (the app server's access log during the mix).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from experiments import applog, lb, plots
from experiments.base import Case, Experiment, say
from experiments.fidelity import window
from experiments.load import load_from_capacity, parse_wrk, run_wrk
from experiments.registry import register
from experiments.stats import percentile, rounded
from experiments.verdict import Check, Figure, P, Verdict, gate

CASES = ("static-app", "static-nginx")   # static-app first: the mix's rate is set from its capacity
WRK = "wrk-static.txt"
MIX = "mix"                    # raw/<case>/mix.csv
LOAD = "load.json"             # raw/<case>/load.json: the mix's rate and where it came from
DYN, STATIC = "dynamic", "static"


@register
class StaticOffload(Experiment):
    """Static capacity and p99 of Nginx vs the app server, then a mixed load with and without the offload."""

    slug = "static-offload"
    claim = "C18"
    title = "Nginx offloads static content from the app server"
    statement = ("Nginx handles static content efficiently; offloading static files lets the app server focus on "
                 "dynamic requests.")
    design = "one-server"
    defaults = {"cpu": 0.1, "file": "/static/index.css", "dynamic": "/work?ms=5", "calib_s": 4, "calib_connections": 16,
                "mix_rate": None, "mix_fraction": 0.5, "static_per_page": 4, "mix_s": 6.0, "warmup_s": 1.0, "timeout": 5.0,
                "gen_accuracy": 0.98, "keepup": 0.95, "capacity_ratio": 3.0, "p99_ratio": 0.7}
    checks = (
        gate("wrk_failed_fraction", "<=", 0.01, "static capacity run: failed / requests", "%",
             fail="the static file was not served (wrk saw failures)"),
        gate("same_rate", "==", 1, "both labs got the same mixed load (req/s)", across=True, cases=CASES,
             fail="the two labs were not offered the same mixed load"),
        gate("mix_send_fraction", ">=", P("gen_accuracy"), "mixed load: sent / scheduled", "%",
             fail="the load generator could not send the mixed load"),
        gate("dyn_achieved_fraction", ">=", P("keepup"), "mixed load with the offload: dynamic requests answered "
             "/ sent", "%", cases=("static-nginx",), fail="the offloaded server did not keep up with the mixed load"),
        gate("app_static_requests", "==", 0, "static requests that reached the app server with the offload",
             cases=("static-nginx",), fail="static files reached the app server although Nginx should serve them"),
        gate("app_static_fraction", ">=", 0.99, "static requests of the mix that reached the app server without "
             "the offload / sent", "%", cases=("static-app",), fail="without the offload the app server did not "
             "serve the static files"),
        Check("static_capacity_ratio", ">=", P("capacity_ratio"), "static-file capacity: Nginx / app server", "x",
              across=True, cases=CASES),
        Check("dyn_p99_ratio", "<=", P("p99_ratio"), "dynamic p99 under the mixed load: with the offload / "
              "without", "x", across=True, cases=CASES),
    )
    figures = {
        "static-nginx.static_capacity_rps": Figure("static-file capacity, Nginx", "req/s", rel_tol=0.3),
        "static-app.static_capacity_rps": Figure("static-file capacity, app server", "req/s", rel_tol=0.3),
        "static_capacity_ratio": Figure("static capacity Nginx / app server", "x", rel_tol=0.3),
        "static-nginx.dyn_p99_ms": Figure("dynamic p99 under the mix, offloaded", "ms", rel_tol=0.5),
        "static-app.dyn_p99_ms": Figure("dynamic p99 under the mix, not offloaded", "ms", rel_tol=0.5),
        "dyn_p99_ratio": Figure("dynamic p99 offloaded / not", "x", rel_tol=0.5),
    }
    summary = ("on the same CPU quota Nginx served the static file at {static-nginx.static_capacity_rps}, "
               "{static_capacity_ratio} the app server's {static-app.static_capacity_rps}",
               "with the static files offloaded the dynamic request's p99 under the mixed load was "
               "{static-nginx.dyn_p99_ms} instead of {static-app.dyn_p99_ms} ({dyn_p99_ratio})")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(name, "one-server", {"params": {"static": name.split("-")[1]}, "cpu": {"server1": params["cpu"]}})
                for name in CASES]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"one-server with server1 (Nginx, app server, MariaDB) CPU-limited to {p['cpu']:g} of the machine, "
                f"once with static=nginx (Nginx serves /static/ from disk) and once with static=app (Nginx proxies "
                f"it to the app server): static capacity = wrk ok req/s on {p['file']} ({p['calib_s']} s, "
                f"{p['calib_connections']} connections); then an open-loop mix of page loads at "
                f"{rate_words(p)} for {p['mix_s']:g} s, each page {p['dynamic']} plus {p['static_per_page']} x {p['file']} "
                f"(new connection per request, latency from the scheduled send, the first {p['warmup_s']:g} s not "
                f"judged); static requests reaching the app server counted from its access log")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        base = "http://www.foobar.com"
        say(f"static capacity of {params['file']} with wrk ({params['calib_s']} s, {params['calib_connections']} "
            f"connections)")
        with window(out, "static-capacity"):
            run_wrk(lab, "client", base + params["file"], params["calib_s"], out / WRK,
                    connections=params["calib_connections"], timeout=params["timeout"])
        if not lb.settle(lab, base + params["dynamic"], 0.5, params["timeout"]):
            say("server did not settle after the capacity run; continuing (the mix will show it)")
        rate, source = mix_rate(out, params)
        (out / LOAD).write_text(json.dumps({"rate": rate, "from": source}) + "\n")
        say(f"mixed load: {rate:g} req/s for {params['mix_s']:g} s ({source})")
        with window(out, "mix"), applog.AccessSlice(lab, ["server1"], out, MIX):
            lb.run_mix(lab, "client", out, MIX, base, rate, params["mix_s"],
                       [f"{DYN}=GET:{params['dynamic']}:1", f"{STATIC}=GET:{params['file']}:{params['static_per_page']}"],
                       params["seed"], params["timeout"])

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        wrk = parse_wrk((raw / WRK).read_text())
        m: dict[str, Any] = {
            "static": case.lab_params["params"]["static"],
            "static_capacity_rps": rounded(wrk.ok_per_s, 2),
            "static_wrk_p50_ms": rounded(wrk.percentiles_s.get("50", float("nan")) * 1000, 3),
            "static_wrk_p99_ms": rounded(wrk.percentiles_s.get("99", float("nan")) * 1000, 3),
            "wrk_failed_fraction": rounded(wrk.failed / max(1, wrk.requests), 4)}
        m["mix_rate"] = json.loads((raw / LOAD).read_text())["rate"]
        m.update(mix_metrics(raw / f"{MIX}.csv", params))
        sent_static = m.pop("_static_sent")
        reached = applog.count_all(raw, MIX, "GET", re.compile(re.escape(params["file"]) + r"(\?.*)?")).get("server1")
        if reached is not None:
            m["app_static_requests"] = reached
            m["app_static_fraction"] = rounded(reached / sent_static, 4) if sent_static else None
        return self.verdict(case, m, params, [mix_plot(raw.parent, plots_dir / "mix-latency.png", params),
                                              capacity_plot(raw.parent, plots_dir / "static-capacity.png", params)])

    def across_measured(self, by_case: dict[str, Verdict], params: dict[str, Any]) -> dict[str, Any]:
        got = {name: v.measured for name, v in by_case.items()}
        if set(CASES) - set(got):
            return {}
        off, on = got["static-app"], got["static-nginx"]
        out: dict[str, Any] = {"same_rate": int(off.get("mix_rate") is not None
                                                   and off.get("mix_rate") == on.get("mix_rate"))}
        if off.get("static_capacity_rps"):
            out["static_capacity_ratio"] = rounded(on["static_capacity_rps"] / off["static_capacity_rps"], 3)
        if off.get("dyn_p99_ms"):
            out["dyn_p99_ratio"] = rounded(on["dyn_p99_ms"] / off["dyn_p99_ms"], 3)
        return out


def rate_words(p: dict[str, Any]) -> str:
    if p["mix_rate"]:
        return f"{p['mix_rate']:g} req/s"
    return f"{p['mix_fraction']:g} x the app server's static capacity (measured in static-app, the same in both labs)"


def mix_rate(out: Path, params: dict[str, Any]) -> tuple[float, str]:
    """The mixed load's rate: --param mix_rate, else mix_fraction x the static capacity that static-app (run first)
    measured, so that without the offload the app server is well loaded and both labs get the same load."""
    return load_from_capacity(out, "static-app", WRK, params["mix_fraction"], params["mix_rate"], "mix_rate")


def mix_metrics(path: Path, params: dict[str, Any]) -> dict[str, Any]:
    """p50/p99 (from the scheduled send; unanswered requests count at the timeout) and answered fractions per
    kind, judged after the warm-up; the generator's send fraction over the whole mix."""
    rows = lb.read_mix(path)
    if not rows:
        raise ValueError(f"{path.name} is empty")
    start = min(r.t_sched for r in rows)
    steady = [r for r in rows if r.t_sched >= start + params["warmup_s"]]
    m: dict[str, Any] = {"mix_requests": len(rows),
                         "mix_send_fraction": rounded(sum(r.error != "not_sent" for r in rows) / len(rows), 4)}
    for kind, short in ((DYN, "dyn"), (STATIC, "static")):
        mine = [r for r in steady if r.kind == kind]
        lat = [(r.latency if r.ok and r.latency is not None else params["timeout"]) for r in mine]
        m[f"{short}_requests"] = len(mine)
        m[f"{short}_achieved_fraction"] = rounded(sum(r.ok for r in mine) / len(mine), 4) if mine else None
        m[f"{short}_p50_ms"] = rounded(percentile(lat, 50) * 1000, 2) if lat else None
        m[f"{short}_p99_ms"] = rounded(percentile(lat, 99) * 1000, 2) if lat else None
    m["_static_sent"] = sum(1 for r in rows if r.kind == STATIC and r.error != "not_sent")
    return m


def mix_plot(raw_dir: Path, out: Path, params: dict[str, Any]) -> Path:
    """Latency CDF of the dynamic requests under the mixed load, with and without the offload."""
    series = {}
    for case in CASES:
        path = raw_dir / case / f"{MIX}.csv"
        if path.exists():
            rows = lb.read_mix(path)
            start = min((r.t_sched for r in rows), default=0.0)
            series[f"{DYN} ({case})"] = [(r.latency if r.ok and r.latency is not None else params["timeout"]) * 1000
                                         for r in rows if r.kind == DYN and r.t_sched >= start + params["warmup_s"]]
    return plots.cdf(series, out, f"C18 static-offload: {params['dynamic']} latency under the mixed load "
                     f"(cpu {params['cpu']:g})", "latency (ms)", log_x=True)


def capacity_plot(raw_dir: Path, out: Path, params: dict[str, Any]) -> Path:
    """Static-file capacity of Nginx and of the app server (every case present in raw/)."""
    bars = {}
    for case in CASES:
        path = raw_dir / case / WRK
        if path.exists():
            w = parse_wrk(path.read_text())
            bars[case] = {"capacity (ok req/s)": w.ok_per_s}
    return plots.grouped_bars(bars, out, f"C18 static-offload: {params['file']} capacity at cpu {params['cpu']:g}",
                              "req/s")
