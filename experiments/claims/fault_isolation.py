"""C13 fault-isolation: overloading the database tier slows static pages when tiers share servers, not when they are apart."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from experiments import drive, plots
from experiments.base import Case, Experiment, say
from experiments.faults import FaultLog, first, read_faults
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import percentile, read_openloop, rounded, success_rate
from experiments.verdict import Verdict
from weblab import cores

LOAD = "openloop.csv"
CGROUPS = "cgroups.json"   # cpu.stat of every CPU-limited host at each phase boundary
# case -> (design, database hosts, CPU-limited hosts, static URL, expectation while the db is overloaded)
CASES = {
    "combined": ("distributed", ["server1", "server2"], ["server1", "server2"],
                 "http://www.foobar.com/static/hello.txt", "degrades"),
    "separated": ("scaled", ["db1", "db2"], ["web1", "web2", "app1", "app2", "db1", "db2"],
                  "https://www.foobar.com/static/hello.txt", "unaffected"),
}


def burn_sql(seconds: float) -> str:
    """A CPU-bound query inside mariadbd that the server itself aborts after `seconds` (max_statement_time)."""
    return (f"SET STATEMENT max_statement_time={seconds:g} FOR "
            "SELECT BENCHMARK(1000000000000, SHA2(RAND(), 512))")


def cgroup_of(lab: Any, host: str) -> Path | None:
    """The CPU cgroup directory the lab made for host, if any."""
    for path in lab.state.data.get("cgroups", []):
        if Path(path).name == host:
            return Path(path)
    return None


def read_cpu_stat(path: Path | None) -> dict[str, int]:
    """nr_periods / nr_throttled / throttled time of a cgroup (v1 or v2 names)."""
    if path is None or not (path / "cpu.stat").exists():
        return {}
    return {k: int(v) for k, v in (ln.split() for ln in (path / "cpu.stat").read_text().splitlines() if ln.strip())}


def throttled_fraction(before: dict[str, int], after: dict[str, int]) -> float | None:
    """Share of CFS periods in which the cgroup ran out of quota, between two cpu.stat readings."""
    periods = after.get("nr_periods", 0) - before.get("nr_periods", 0)
    if periods <= 0:
        return None
    return (after.get("nr_throttled", 0) - before.get("nr_throttled", 0)) / periods


def partition(dbs: list[str], available: set[int] | None = None) -> dict[str, str]:
    """The lab's `cores`: the database servers on the machine's last CPU, the rest of the lab on the others.

    Why: a CPU quota caps a saturated database, but it still burns its quota on every core at once, in
    bursts at the start of each CFS period, delaying every other host's wake-ups - a coupling that real
    separate servers do not have. A core of its own is the closest this machine gets to a server of its
    own. The same placement is used in both designs: in the combined one the database servers are the
    web servers too, and that sharing is the coupling under test. {} (no placement) on a 1-CPU machine.
    """
    cpus = sorted(os.sched_getaffinity(0) if available is None else available)
    if len(cpus) < 2:
        return {}
    return {**{h: str(cpus[-1]) for h in dbs}, cores.REST: ",".join(map(str, cpus[:-1]))}


@register
class FaultIsolation(Experiment):
    """Open-loop static-page load; overload the database servers' CPU with heavy queries; compare latency."""

    slug = "fault-isolation"
    claim = "C13"
    title = "Separate tiers isolate failures"
    statement = "Putting every component on every server couples their failures; separate servers isolate them."
    design = "distributed"
    defaults = {"cpu": 0.1, "rate": 150.0, "before_s": 15.0, "overload_s": 15.0, "after_s": 15.0, "warmup_s": 1.0,
                "settle_s": 1.0, "burners": 4, "timeout": 5.0, "p99_ratio": 1.2, "healthy": 0.99,
                "min_throttled": 0.5, "min_requests": 100, "partition": True}
    key_values = ("combined.p99_ratio", "separated.p99_ratio", "combined.during_p99_ms", "separated.during_p99_ms")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        out = []
        for name, (design, dbs, limited, _, _) in CASES.items():
            lab: dict[str, Any] = {"cpu": {h: params["cpu"] for h in limited}}
            if params["partition"]:
                lab["cores"] = partition(dbs)
            if design == "scaled":  # a db busy for seconds must not trigger a writer failover mid-run
                lab["params"] = {"monitoring": False, "db_failover": False}
            out.append(Case(name, design, lab))
        return out

    def rule_text(self, params: dict[str, Any]) -> str:
        p = {**self.params(), **params}
        return (f"static page /static/hello.txt at {p['rate']:g} req/s open loop (latency from the scheduled send); "
                f"overload: {p['burners']} concurrent CPU-bound queries (SELECT BENCHMARK(.., SHA2(..))) in the "
                f"MariaDB of every database server for {p['overload_s']:g} s, every server CPU-limited to "
                f"{p['cpu']:g} of the machine"
                + (", the database servers on a CPU of their own and the rest of the lab on the others (the "
                   "closest this machine gets to servers of their own)" if p["partition"] else "")
                + f". p99 and success without overload (before it, from {p['warmup_s']:g} s after the "
                f"load starts, and after it, from {p['settle_s']:g} s after it ends: more samples, and drift shows) vs "
                f"during the overload (from {p['settle_s']:g} s after it starts). combined: degrades - "
                f"p99 during > {p['p99_ratio']:g}x without, or success drops by > 1 point; separated: unaffected - "
                f"p99 during <= {p['p99_ratio']:g}x without and success >= {p['healthy']:.0%}, provided the p99 of "
                f"the calm phases before and after differ by <= {p['p99_ratio']:g}x (else the run cannot resolve the "
                f"tolerance: inconclusive). Inconclusive when success "
                f"without overload < {p['healthy']:.0%}, < {p['min_requests']} requests in a phase, or the database servers' "
                f"cgroups were throttled in < {p['min_throttled']:.0%} of CPU periods during the overload (it did "
                f"not bite)")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        _, dbs, limited, url, _ = CASES[case.name]
        faults = FaultLog(lab, out / "faults.csv")
        cgroups: dict[str, Any] = {"hosts": {h: str(cgroup_of(lab, h)) for h in limited}, "readings": [],
                                   "cores": lab.cores}

        def reading(label: str) -> None:
            cgroups["readings"].append({"label": label, "t": time.time(),
                                        "stat": {h: read_cpu_stat(cgroup_of(lab, h)) for h in limited}})
        total = params["before_s"] + params["overload_s"] + params["after_s"]
        csv_path = out / LOAD
        proc = drive.start_tool(lab, "client", "openloop", [
            "--url", url, "--rate", str(params["rate"]), "--duration", str(total), "--out", str(csv_path),
            "--timeout", str(params["timeout"])], out / "openloop.json")
        burners = []
        try:
            drive.wait_rows(csv_path, 1, timeout=10, proc=proc)
            with window(out, "load"):
                drive.pause(params["before_s"])
                reading("overload_start")
                faults.mark("overload_start", ",".join(dbs), burn_sql(params["overload_s"]))
                for db in dbs:
                    svc = lab.service(db, "mariadb")
                    for k in range(params["burners"]):
                        log = open(out / f"burn-{db}-{k}.log", "w")
                        try:
                            burners.append(lab.popen(db, ["mariadb", "--no-defaults", f"--socket={svc.socket}",
                                                          "-u", "root", "-e", burn_sql(params["overload_s"])],
                                                     stdout=log, stderr=log, text=True))
                        finally:
                            log.close()
                say(f"overload: {params['burners']} BENCHMARK queries in mariadb on {', '.join(dbs)} "
                    f"for {params['overload_s']:g} s")
                drive.pause(params["overload_s"])
                reading("overload_end")
                faults.mark("overload_end", ",".join(dbs))
                for p in burners:  # max_statement_time ended the queries; the clients exit with that error
                    drive.finish(p, 10, "mariadb burner client", terminate=p.poll() is None)
                drive.pause(params["after_s"])
                reading("end")
        finally:
            for p in burners:
                if p.poll() is None:
                    drive.finish(p, 5, "mariadb burner client", terminate=True)
            drive.finish(proc, params["timeout"] + 10, "openloop")
            (out / CGROUPS).write_text(json.dumps(cgroups, indent=2) + "\n")

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        _, dbs, _, url, expect = CASES[case.name]
        events = read_faults(raw / "faults.csv")
        start, end = first(events, "overload_start"), first(events, "overload_end")
        if start is None or end is None:
            raise ValueError("faults.csv lacks overload_start/overload_end")
        rows = read_openloop(raw / LOAD)
        t_load = min(r.t_sched for r in rows)
        rows = read_openloop(raw / LOAD, drain_end=max(r.t_recv for r in rows) + params["timeout"])
        before = [r for r in rows if t_load + params["warmup_s"] <= r.t_sched < start.t_begin]
        during = [r for r in rows if start.t_end + params["settle_s"] <= r.t_sched < end.t_begin]
        after = [r for r in rows if r.t_sched >= end.t_end + params["settle_s"]]
        calm = before + after  # the baseline: the same load without the overload, on both sides of it

        def p99(rs: list) -> float:
            return percentile([r.latency for r in rs], 99) * 1000

        def p50(rs: list) -> float:
            return percentile([r.latency for r in rs], 50) * 1000
        cg = json.loads((raw / CGROUPS).read_text())
        marks = {r["label"]: r["stat"] for r in cg["readings"]}
        throttled = {h: throttled_fraction(marks.get("overload_start", {}).get(h, {}), marks.get("overload_end", {}).get(h, {}))
                     for h in cg["hosts"]}
        m: dict[str, Any] = {
            "url": url, "db_hosts": dbs, "requests": len(rows),
            "before_requests": len(before), "during_requests": len(during), "after_requests": len(after),
            "before_success": rounded(success_rate(before)), "during_success": rounded(success_rate(during)),
            "after_success": rounded(success_rate(after)),
            "before_p50_ms": rounded(p50(before), 3), "during_p50_ms": rounded(p50(during), 3),
            "before_p99_ms": rounded(p99(before), 3), "during_p99_ms": rounded(p99(during), 3),
            "after_p99_ms": rounded(p99(after), 3), "baseline_p99_ms": rounded(p99(calm), 3),
            "baseline_success": rounded(success_rate(calm)),
            "throttled_fraction": {h: rounded(f, 3) if f is not None else None for h, f in throttled.items()},
            "cores": cg.get("cores") or {}}
        ratio = p99(during) / p99(calm) if calm and during and p99(calm) > 0 else float("nan")
        m["p99_ratio"] = rounded(ratio, 3)
        png = plots.series_timeline(
            {"latency of each request (ms)": ([r.t_sched for r in rows], [r.latency * 1000 for r in rows])},
            plots_dir / f"{case.name}-static-latency.png",
            f"C13 {case.name}: static page latency, database overloaded (shaded)", "latency from schedule (ms)",
            t_load, windows=[(start.t_begin, end.t_end, "db CPU overload")], log=True,
            styles={"latency of each request (ms)": "."})
        bars = self.bars_plot(raw.parent, params, plots_dir)
        v = Verdict("inconclusive", rule, m, plots=[str(png), str(bars)])
        if len(calm) < params["min_requests"] or len(during) < params["min_requests"]:
            v.reasons.append(f"too few requests (without overload {len(calm)}, during {len(during)})")
            return v
        if success_rate(calm) < params["healthy"]:
            v.reasons.append(f"the site was not healthy before the overload ({m['before_success']})")
            return v
        # the measurement's own resolution: two calm phases whose p99 differ by more than the tolerance
        # cannot tell a 20% change from noise (a run of a busy machine, a slow spell of the generator)
        calm_ratio = max(p99(before), p99(after)) / min(p99(before), p99(after)) if before and after else float("nan")
        m["calm_p99_ratio"] = rounded(calm_ratio, 3)
        if expect == "unaffected" and not calm_ratio <= params["p99_ratio"]:
            v.reasons.append(f"p99 before ({m['before_p99_ms']} ms) and after ({m['after_p99_ms']} ms) the overload "
                             f"differ by x{m['calm_p99_ratio']} > {params['p99_ratio']:g}: the run cannot resolve a "
                             f"{params['p99_ratio'] - 1:.0%} change")
            return v
        bit = [h for h in dbs if (throttled.get(h) or 0) >= params["min_throttled"]]
        if len(bit) < len(dbs):
            v.reasons.append(f"the overload did not saturate every database server's CPU quota: {m['throttled_fraction']}")
            return v
        dropped = success_rate(calm) - success_rate(during) > 0.01
        if expect == "degrades":
            checks = {f"static pages degrade (p99 {m['baseline_p99_ms']} -> {m['during_p99_ms']} ms, x{m['p99_ratio']}"
                      f" > {params['p99_ratio']:g}, or success drops)": ratio > params["p99_ratio"] or dropped}
        else:
            checks = {f"p99 within {params['p99_ratio'] - 1:.0%} ({m['baseline_p99_ms']} -> {m['during_p99_ms']} ms, "
                      f"x{m['p99_ratio']})": ratio <= params["p99_ratio"],
                      f"success >= {params['healthy']:.0%} during ({m['during_success']})":
                      success_rate(during) >= params["healthy"]}
        v.verdict = "supported" if all(checks.values()) else "refuted"
        v.reasons = [f"{k}: {'yes' if ok else 'NO'}" for k, ok in checks.items()]
        v.reasons.append(f"database cgroups throttled in {m['throttled_fraction']} of CPU periods during the overload")
        return v

    def bars_plot(self, raw_dir: Path, params: dict[str, Any], plots_dir: Path) -> Path:
        """p50/p99 before and during the overload for every case that ran (from each case's raw data)."""
        groups: dict[str, dict[str, float]] = {}
        for name in CASES:
            path = raw_dir / name / LOAD
            if not path.exists() or not (raw_dir / name / "faults.csv").exists():
                continue
            ev = read_faults(raw_dir / name / "faults.csv")
            s, e = first(ev, "overload_start"), first(ev, "overload_end")
            rows = read_openloop(path)
            if s is None or e is None or not rows:
                continue
            t0 = min(r.t_sched for r in rows)
            b = [r.latency * 1000 for r in rows if r.ok and (t0 + params["warmup_s"] <= r.t_sched < s.t_begin
                                                              or r.t_sched >= e.t_end + params["settle_s"])]
            d = [r.latency * 1000 for r in rows if s.t_end + params["settle_s"] <= r.t_sched < e.t_begin and r.ok]
            groups[f"{name}\np50"] = {"without overload": percentile(b, 50), "during overload": percentile(d, 50)}
            groups[f"{name}\np99"] = {"without overload": percentile(b, 99), "during overload": percentile(d, 99)}
        return plots.grouped_bars(groups, plots_dir / "static-latency.png",
                                  "C13 static page latency, without vs during the database overload", "ms", log=True)
