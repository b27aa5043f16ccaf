"""C19 caching: Nginx's proxy cache in front of the DB-backed home page takes most requests off the app servers,
lowers latency and raises capacity; the cost is that a write shows only once the cached page expires.

Two labs of the distributed design, every web server CPU-limited to the same quota: cache=off and cache=on
(proxy_cache, TTL cache_ttl s, X-Cache-Status). Raw files per case: wrk-capacity.txt (closed-loop capacity
on /), latency.csv (open-loop load on / at a fixed rate), freshness.csv (writes and the reads that looked
for them), app-<phase>-<server>.log (each app server's access log during the capacity and latency phases:
the app-server request counts come from these).
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

from experiments import applog, drive, lb, plots
from experiments.base import Case, Experiment, say
from experiments.claims.cannot_scale import point_metrics
from experiments.fidelity import window
from experiments.load import load_from_capacity, parse_wrk, run_wrk
from experiments.registry import register
from experiments.stats import read_openloop, rounded
from experiments.verdict import Check, Figure, M, P, Verdict, gate

CASES = ("cache-off", "cache-on")
WRK, LATENCY, FRESH = "wrk-capacity.txt", "latency.csv", "freshness.csv"
LOAD = "load.json"     # raw/<case>/load.json: the latency load's rate and where it came from
PAGE = "/"
LOADGEN_AGENT = "weblab-openloop"   # the latency load's User-Agent, which Nginx passes on to the app server


@register
class Caching(Experiment):
    """Capacity, latency and app-server requests with the cache off and on, then how long writes stay hidden."""

    slug = "caching"
    claim = "C19"
    title = "A web-server cache takes load off the app servers"
    statement = ("Web servers can cache frequently accessed content, reducing the load on application servers "
                 "and improving response times.")
    design = "distributed"
    defaults = {"ttl": 1, "cpu": 0.15, "servers": 2, "calib_s": 3, "calib_connections": 16, "rate": None,
                "rate_fraction": 0.8, "latency_s": 4.0, "warmup_s": 1.0, "timeout": 5.0, "max_inflight": 128, "writes": 5,
                "poll_s": 0.02, "deadline_s": 10.0, "gen_accuracy": 0.98, "keepup": 0.95,
                "app_share": 0.10, "p50_ratio": 0.5, "capacity_ratio": 2.0, "stale_slack_s": 1.0}
    checks = (
        gate("same_rate", "==", 1, "both labs got the same latency load (req/s)", across=True, cases=CASES,
             fail="the two labs were not offered the same latency load"),
        gate("wrk_failed_fraction", "<=", 0.01, "capacity run: failed / requests", "%",
             fail="the page was not served during the capacity run"),
        gate("send_fraction", ">=", P("gen_accuracy"), "latency load: sent / offered", "%",
             fail="the load generator could not send the latency load"),
        gate("achieved_fraction", ">=", P("keepup"), "latency load without the cache: answered / offered", "%",
             cases=("cache-off",), fail="the uncached site did not carry the latency load: lower --param rate"),
        gate("writes_acknowledged", "==", P("writes"), "writes acknowledged (201)",
             fail="the writes were not accepted, so their visibility cannot be timed"),
        Check("app_per_client", "<=", P("app_share"), "with the cache: app-server requests for / (their access "
              "logs) / client requests", "%", cases=("cache-on",)),
        Check("writes_visible", "==", P("writes"), "with the cache: writes every web server served within "
              "{deadline_s:g} s", cases=("cache-on",)),
        Check("stale_max_s", "<=", M("stale_limit_s", "cache_ttl + {stale_slack_s:g} s"), "with the cache: the "
              "longest any server still served a page without an acknowledged write", "s", cases=("cache-on",)),
        Check("p50_ratio", "<=", P("p50_ratio"), "p50 latency at the same load: cache on / off", "x",
              across=True, cases=CASES),
        Check("capacity_ratio", ">=", P("capacity_ratio"), "capacity: cache on / off", "x", across=True, cases=CASES),
    )
    figures = {
        "cache-off.capacity_rps": Figure("capacity without the cache", "req/s", rel_tol=0.3),
        "cache-on.capacity_rps": Figure("capacity with the cache", "req/s", rel_tol=0.3),
        "capacity_ratio": Figure("capacity cache on / off", "x", rel_tol=0.3),
        "cache-off.p50_ms": Figure("p50 without the cache", "ms", rel_tol=0.5),
        "cache-on.p50_ms": Figure("p50 with the cache", "ms", rel_tol=0.5),
        "p50_ratio": Figure("p50 cache on / off", "x", rel_tol=0.5),
        "cache-on.app_per_client": Figure("app-server requests per client request, cache on", "%", abs_tol=0.03),
        "cache-off.app_per_client": Figure("app-server requests per client request, cache off", "%", abs_tol=0.03),
        "cache-on.stale_max_s": Figure("longest a write stayed hidden, cache on", "s", abs_tol=0.5),
        "cache-off.stale_max_s": Figure("longest a write stayed hidden, cache off", "s", abs_tol=0.2),
        "cache-on.cache_ttl_s": Figure("cache TTL (a parameter, reported)", "s", abs_tol=0),
    }
    summary = ("with the cache the app servers saw {cache-on.app_per_client} of the client requests (without: "
               "{cache-off.app_per_client}), p50 was {p50_ratio} and capacity {capacity_ratio} of the uncached site",
               "the cost: a write stayed hidden for up to {cache-on.stale_max_s} with a {cache-on.cache_ttl_s} TTL "
               "(without the cache {cache-off.stale_max_s})")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        n = params["servers"]
        cpu = {f"server{i}": params["cpu"] for i in range(1, n + 1)}
        # no mail host: it has no part in the claim, and each lab must stay inside the 60 s
        return [Case("cache-off", "distributed", {"params": {"servers": n, "cache": False, "mail": False}, "cpu": cpu}),
                Case("cache-on", "distributed", {"params": {"servers": n, "cache": True, "cache_ttl": params["ttl"],
                                                            "mail": False}, "cpu": cpu})]

    def params(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        p = super().params(overrides)
        ttl = p["ttl"]
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 60:
            raise ValueError(f"{self.slug}: ttl={ttl!r} must be whole seconds in 1..60 (nginx's cache clock)")
        return p

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"distributed with {p['servers']} web servers, each CPU-limited to {p['cpu']:g} of the machine, once "
                f"with cache=off and once with cache=on (Nginx proxy_cache on each server, cache_ttl={p['ttl']} s; "
                f"nginx counts whole seconds, so a page is kept up to cache_ttl + 1 s): capacity = wrk ok req/s on "
                f"{PAGE} ({p['calib_s']} s, {p['calib_connections']} connections); latency = open-loop {PAGE} at "
                f"{rate_words(p)} for {p['latency_s']:g} s (from the scheduled send, the first "
                f"{p['warmup_s']:g} s not judged); app-server requests for it counted from the app servers' access logs "
                f"(the generator's User-Agent, which Nginx passes on: not the capacity run's tail, not health checks); "
                f"then {p['writes']} writes (POST /api/items), each followed by reads of {PAGE} every "
                f"{p['poll_s']:g} s until every web server served it")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        base = "http://www.foobar.com"
        servers = lb.servers_of(lab)
        say(f"capacity of {PAGE} with wrk ({params['calib_s']} s, {params['calib_connections']} connections)")
        with window(out, "capacity"), applog.AccessSlice(lab, servers, out, "capacity"):
            run_wrk(lab, "client", base + PAGE, params["calib_s"], out / WRK,
                    connections=params["calib_connections"], timeout=params["timeout"])
        if not lb.settle(lab, base + PAGE, 0.5, params["timeout"]):
            say("the site did not settle after the capacity run; continuing (the latency load will show it)")
        rate, source = latency_rate(out, params)
        (out / LOAD).write_text(json.dumps({"rate": rate, "from": source}) + "\n")
        say(f"latency at {rate:g} req/s for {params['latency_s']:g} s ({source})")
        with window(out, "latency"), applog.AccessSlice(lab, servers, out, "latency"):
            proc = drive.start_tool(lab, "client", "openloop", [
                "--url", base + PAGE, "--rate", str(rate), "--duration", str(params["latency_s"]),
                "--out", str(out / LATENCY), "--timeout", str(params["timeout"]),
                "--max-inflight", str(params["max_inflight"]), "--seed", str(params["seed"])], out / "latency.json")
            drive.finish(proc, params["latency_s"] + params["timeout"] * 2 + 15, "openloop latency load")
        say(f"{params['writes']} writes, each read back until all {len(servers)} web servers serve it")
        proc = drive.start_tool(lab, "client", "freshness", [
            "--base", base, "--out", str(out / FRESH), "--writes", str(params["writes"]),
            "--servers", str(len(servers)), "--page", PAGE, "--interval", str(params["poll_s"]),
            "--pause", str(params["ttl"]), "--deadline", str(params["deadline_s"]),
            "--timeout", str(min(params["timeout"], 2.0)), "--seed", str(params["seed"])], out / "freshness.json")
        drive.finish(proc, params["writes"] * (params["ttl"] + 1 + params["deadline_s"] + 2) + 15, "freshness")

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        wrk = parse_wrk((raw / WRK).read_text())
        rate = json.loads((raw / LOAD).read_text())["rate"]
        pt = point_metrics(raw / LATENCY, rate, params["latency_s"], params["warmup_s"], params["timeout"])
        on = case.lab_params["params"].get("cache", False)
        m: dict[str, Any] = {
            "cache": on, "capacity_rps": rounded(wrk.ok_per_s, 2),
            "wrk_failed_fraction": rounded(wrk.failed / max(1, wrk.requests), 4),
            "wrk_p50_ms": rounded(wrk.percentiles_s.get("50", float("nan")) * 1000, 3),
            "p50_ms": rounded(pt["p50"] * 1000, 3), "p99_ms": rounded(pt["p99"] * 1000, 3),
            "rate": rate, "send_fraction": rounded(pt["send_rate"] / rate, 4),
            "achieved_fraction": rounded(pt["achieved"] / rate, 4)}
        with open(raw / LATENCY, newline="") as f:
            client = sum(1 for r in csv.DictReader(f) if r["error"] != "not_sent")
        app = applog.count_all(raw, "latency", "GET", PAGE, agent=LOADGEN_AGENT)
        if app:
            m.update({"client_requests": client, "app_requests": sum(app.values()), "app_requests_by_server": app,
                      "app_per_client": rounded(sum(app.values()) / client, 4) if client else None})
        cap_app = applog.count_all(raw, "capacity", "GET", PAGE)
        if cap_app:
            m["capacity_app_per_client"] = rounded(sum(cap_app.values()) / max(1, wrk.requests), 4)
        fresh = freshness(raw / FRESH)
        m.update({k: v for k, v in fresh.items() if not k.startswith("_")})
        m["stale_limit_s"] = params["ttl"] + params["stale_slack_s"]
        if on:
            m["cache_ttl_s"] = params["ttl"]
        pngs = [latency_plot(raw.parent, plots_dir / "caching-latency.png", params),
                bars_plot(raw.parent, plots_dir / "caching-capacity-app.png", params)]
        if fresh["_per_write"]:
            pngs.append(freshness_plot(raw.parent, plots_dir / "caching-freshness.png", params))
        return self.verdict(case, m, params, pngs)

    def across_measured(self, by_case: dict[str, Verdict], params: dict[str, Any]) -> dict[str, Any]:
        got = {name: v.measured for name, v in by_case.items()}
        if set(CASES) - set(got):
            return {}
        off, on = got["cache-off"], got["cache-on"]
        out: dict[str, Any] = {"same_rate": int(off.get("rate") is not None and off.get("rate") == on.get("rate"))}
        if off.get("p50_ms"):
            out["p50_ratio"] = rounded(on["p50_ms"] / off["p50_ms"], 3)
        if off.get("capacity_rps"):
            out["capacity_ratio"] = rounded(on["capacity_rps"] / off["capacity_rps"], 3)
        return out


def rate_words(p: dict[str, Any]) -> str:
    if p["rate"]:
        return f"{p['rate']:g} req/s"
    return f"{p['rate_fraction']:g} x the uncached capacity (measured in cache-off, the same in both labs)"


def latency_rate(out: Path, params: dict[str, Any]) -> tuple[float, str]:
    """The latency load's rate: --param rate, else rate_fraction x the capacity cache-off (run first) measured, a
    load the uncached site carries, offered to both labs."""
    return load_from_capacity(out, "cache-off", WRK, params["rate_fraction"], params["rate"], "rate")


def freshness(path: Path) -> dict[str, Any]:
    """Per write (acknowledged at t_ack): stale = the last read from any server without it - t_ack (0 when none),
    visible = the first read with it from the last server to show it - t_ack (None when some never did)."""
    rows: list[dict[str, str]] = []
    if path.exists():
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    writes = [r for r in rows if r["kind"] == "write"]
    reads = [r for r in rows if r["kind"] == "read"]
    acked = [w for w in writes if w["status"] == "201"]
    per: list[dict[str, Any]] = []
    servers = sorted({r["server"] for r in reads if r["server"]})
    for w in acked:
        t_ack = float(w["t_recv"])
        mine = [r for r in reads if r["k"] == w["k"] and r["status"] == "200"]
        first_fresh: dict[str, float] = {}
        last_stale: dict[str, float] = {}
        for r in sorted(mine, key=lambda r: float(r["t_send"])):
            s, t = r["server"], float(r["t_recv"])
            if r["fresh"] == "1":
                first_fresh.setdefault(s, t)
            elif s not in first_fresh:
                last_stale[s] = t
        every = bool(servers) and all(s in first_fresh for s in servers)
        per.append({"k": int(w["k"]), "t_ack": t_ack,
                    "stale_s": max([t - t_ack for t in last_stale.values()] + [0.0]),
                    "visible_s": max(first_fresh[s] - t_ack for s in servers) if every else None,
                    "reads": len(mine)})
    status = Counter(r["cache"] or "none" for r in reads)
    visible = [p["visible_s"] for p in per if p["visible_s"] is not None]
    return {"writes_acknowledged": len(acked), "writes_visible": len(visible),
            "stale_max_s": rounded(max(p["stale_s"] for p in per), 3) if per else None,
            "visible_max_s": rounded(max(visible), 3) if visible else None,
            "visible_mean_s": rounded(sum(visible) / len(visible), 3) if visible else None,
            "freshness_reads": len(reads), "cache_status_counts": dict(sorted(status.items())),
            "_per_write": per}


def latency_plot(raw_dir: Path, out: Path, params: dict[str, Any]) -> Path:
    """Latency CDF of the open-loop load, cache off and on."""
    series = {}
    for case in CASES:
        path = raw_dir / case / LATENCY
        if path.exists():
            rows = read_openloop(path)
            start = min((r.t_sched for r in rows), default=0.0)
            series[case] = [r.latency * 1000 for r in rows if r.ok and r.t_sched >= start + params["warmup_s"]]
    return plots.cdf(series, out, f"C19 caching: {PAGE} latency at the same load "
                     f"(cpu {params['cpu']:g} per server)", "latency (ms)", log_x=True)


def bars_plot(raw_dir: Path, out: Path, params: dict[str, Any]) -> Path:
    """Capacity (client) vs the requests the app servers saw during it, cache off and on."""
    bars = {}
    for case in CASES:
        path = raw_dir / case / WRK
        if path.exists():
            w = parse_wrk(path.read_text())
            app = sum(applog.count_all(raw_dir / case, "capacity", "GET", PAGE).values())
            bars[case] = {"client ok req/s (wrk)": w.ok_per_s,
                          "app-server req/s (access logs)": app / max(w.duration_s, 1e-9)}
    return plots.grouped_bars(bars, out, f"C19 caching: capacity of {PAGE} and what reached the app servers",
                              "req/s", log=True)


def freshness_plot(raw_dir: Path, out: Path, params: dict[str, Any]) -> Path:
    """Per write: how long a server still served the page without it, and when every server showed it."""
    bars = {}
    for case in CASES:
        per = freshness(raw_dir / case / FRESH)["_per_write"]
        for p in per:
            bars.setdefault(f"write {p['k'] + 1}", {})[f"{case}: still stale"] = p["stale_s"]
            bars[f"write {p['k'] + 1}"][f"{case}: visible everywhere"] = p["visible_s"] or 0.0
    return plots.grouped_bars(bars, out, f"C19 caching: a write's visibility (TTL {params['ttl']} s; limit "
                              f"{params['ttl'] + params['stale_slack_s']:g} s)", "s after the write's ack",
                              ref=params["ttl"] + params["stale_slack_s"], ref_label="TTL + 1 s")
