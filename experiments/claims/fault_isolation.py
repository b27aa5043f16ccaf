"""C13 fault-isolation: overloading the database tier slows static pages when tiers share servers, not when they are apart."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments import drive, plots
from experiments.base import Case, Experiment, say
from experiments.faults import FaultEvent, FaultLog, read_faults
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import percentile, read_openloop, rounded, success_rate
from experiments.verdict import Check, Figure, P, Verdict, any_of, gate
from weblab.core import cores

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
    return lab.cgroups.get(host)


def read_cpu_stat(path: Path | None) -> dict[str, int]:
    """nr_periods / nr_throttled / throttled time of a cgroup (v1 or v2 names)."""
    if path is None or not (path / "cpu.stat").exists():
        return {}
    return {k: int(v) for k, v in (ln.split() for ln in (path / "cpu.stat").read_text().splitlines() if ln.strip())}


def throttled_over(readings: list[dict[str, Any]], host: str, round_no: int = 1) -> float | None:
    """Share of CFS periods in which host's cgroup ran out of quota, over every overload window of a round."""
    periods = throttled = 0
    mine = [r for r in readings if r.get("round", 1) == round_no]
    starts = [r for r in mine if r["label"] == "overload_start"]
    ends = [r for r in mine if r["label"] == "overload_end"]
    for a, z in zip(starts, ends):
        before, after = a["stat"].get(host, {}), z["stat"].get(host, {})
        periods += after.get("nr_periods", 0) - before.get("nr_periods", 0)
        throttled += after.get("nr_throttled", 0) - before.get("nr_throttled", 0)
    return throttled / periods if periods > 0 else None


def round_files(case_dir: Path, r: int) -> tuple[Path, Path]:
    """The load CSV and the faults CSV of round r (1: openloop.csv, faults.csv; r: openloop-r.csv, ...)."""
    suffix = "" if r == 1 else f"-{r}"
    return case_dir / f"openloop{suffix}.csv", case_dir / f"faults{suffix}.csv"


def rounds_recorded(case_dir: Path) -> list[int]:
    """The rounds whose load and faults were both written, in order."""
    out, r = [], 1
    while all(p.exists() for p in round_files(case_dir, r)):
        out.append(r)
        r += 1
    return out


def p99_ms(rows: list) -> float:
    return percentile([r.latency for r in rows], 99) * 1000 if rows else float("nan")


def p50_ms(rows: list) -> float:
    return percentile([r.latency for r in rows], 50) * 1000 if rows else float("nan")


@dataclass
class Round:
    """One round of the measurement: its requests split into calm and overload windows."""

    number: int
    rows: list
    events: list[FaultEvent]
    calm_w: list[list]
    during_w: list[list]

    @property
    def calm(self) -> list:
        return [r for w in self.calm_w for r in w]

    @property
    def during(self) -> list:
        return [r for w in self.during_w for r in w]

    @property
    def calm_ratio(self) -> float:
        """p99 of the odd calm windows vs the even ones, the larger over the smaller: the run's own noise."""
        even = [r for w in self.calm_w[0::2] for r in w]
        odd = [r for w in self.calm_w[1::2] for r in w]
        if not even or not odd:
            return float("nan")
        return max(p99_ms(even), p99_ms(odd)) / min(p99_ms(even), p99_ms(odd))


def read_round(case_dir: Path, r: int, params: dict[str, Any]) -> Round:
    """Round r of a case, from its raw files."""
    load, faults_csv = round_files(case_dir, r)
    events = read_faults(faults_csv)
    rows = read_openloop(load)
    if rows:
        rows = read_openloop(load, drain_end=max(r.t_recv for r in rows) + params["timeout"])
    calm_w, during_w = windows(rows, events, params) if rows else ([], [])
    return Round(r, rows, events, calm_w, during_w)


def windows(rows: list, events: list, params: dict[str, Any]) -> tuple[list[list], list[list]]:
    """The requests of each calm window and of each overload window, by scheduled send time."""
    starts, ends = zip(*overloads(events))
    t_load = min(r.t_sched for r in rows)
    calm_bounds = [(t_load + params["warmup_s"], starts[0].t_begin)]
    calm_bounds += [(e.t_end + params["settle_s"], s.t_begin) for e, s in zip(ends, starts[1:])]
    calm_bounds.append((ends[-1].t_end + params["settle_s"], float("inf")))
    during_bounds = [(s.t_end + params["settle_s"], e.t_begin) for s, e in zip(starts, ends)]

    def pick(a: float, z: float) -> list:
        return [r for r in rows if a <= r.t_sched < z]
    return [pick(a, z) for a, z in calm_bounds], [pick(a, z) for a, z in during_bounds]


def overloads(events: list[FaultEvent]) -> list[tuple[FaultEvent, FaultEvent]]:
    """(overload_start, overload_end) marks of each overload, in order; ValueError if they do not pair up."""
    starts = [e for e in events if e.action == "overload_start"]
    ends = [e for e in events if e.action == "overload_end"]
    if not starts or len(starts) != len(ends):
        raise ValueError(f"faults.csv has {len(starts)} overload_start and {len(ends)} overload_end marks")
    return list(zip(starts, ends))


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
    defaults = {"cpu": 0.1, "rate": 150.0, "calm_s": 8.0, "overload_s": 8.0, "cycles": 3, "warmup_s": 1.0,
                "settle_s": 1.0, "burners": 4, "timeout": 5.0, "p99_ratio": 1.2, "healthy": 0.99,
                "min_throttled": 0.5, "min_requests": 100, "partition": True, "rounds": 3}
    checks = (
        gate("calm_requests", ">=", P("min_requests"), "requests in the calm windows"),
        gate("during_requests", ">=", P("min_requests"), "requests during the overloads"),
        gate("calm_success", ">=", P("healthy"), "success in the calm windows", "%",
             fail="the site was not healthy without the overload"),
        gate("calm_p99_ratio", "<=", P("p99_ratio"), "p99 of the odd calm windows vs the even ones (the larger over "
             "the smaller: the run's own noise), in the round judged", "x", cases=("separated",),
             fail=lambda m, p: f"in each of {m['rounds']} round(s) the p99 of the odd and even calm windows differ by "
             f"more than x{p['p99_ratio']:g} ({m['round_calm_p99_ratios']}): the machine was too noisy to resolve a "
             f"{p['p99_ratio'] - 1:.0%} change"),
        gate("db_throttled_min", ">=", P("min_throttled"), "CFS periods in which the least throttled database "
             "server's cgroup ran out of quota during the overloads", "%",
             fail="the overload did not saturate every database server's CPU quota"),
        any_of("static pages degrade",
               Check("p99_ratio", ">", P("p99_ratio"), "p99 during the overloads / calm", "x"),
               Check("success_drop", ">", 0.01, "success calm - during", "points"), cases=("combined",)),
        Check("p99_ratio", "<=", P("p99_ratio"), "p99 during the overloads / calm", "x", cases=("separated",)),
        Check("during_success", ">=", P("healthy"), "success during the overloads", "%", cases=("separated",)),
    )
    figures = {
        "combined.p99_ratio": Figure("static p99 during / without the overload, tiers combined", "x", rel_tol=0.5),
        "separated.p99_ratio": Figure("static p99 during / without the overload, tiers separated", "x", abs_tol=0.1),
        "combined.during_p99_ms": Figure("static p99 during the overload, tiers combined", "ms", rel_tol=0.5),
        "separated.during_p99_ms": Figure("static p99 during the overload, tiers separated", "ms", rel_tol=0.5),
    }
    summary = ("overloading the database tier raised the static pages' p99 from {combined.baseline_p99_ms} to "
               "{combined.during_p99_ms} ({combined.p99_ratio}) where every server runs every tier",
               "with the tiers on separate servers from {separated.baseline_p99_ms} to {separated.during_p99_ms} "
               "({separated.p99_ratio})")

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

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"static page /static/hello.txt at {p['rate']:g} req/s open loop (latency from the scheduled send); "
                f"{p['cycles']} overloads of {p['overload_s']:g} s between {p['cycles'] + 1} calm windows of "
                f"{p['calm_s']:g} s (alternating, so slow drift of the machine falls on both alike); overload: "
                f"{p['burners']} concurrent CPU-bound queries (SELECT BENCHMARK(.., SHA2(..))) in the MariaDB of "
                f"every database server; every server CPU-limited to {p['cpu']:g} of the machine"
                + (", the database servers on a CPU of their own and the rest of the lab on the others (the "
                   "closest this machine gets to servers of their own)" if p["partition"] else "")
                + f". p99 and success in the calm windows (from {p['warmup_s']:g} s after the load starts and "
                f"{p['settle_s']:g} s after each overload ends) vs during the overloads (from {p['settle_s']:g} s "
                f"after each starts). A round whose calm windows differ by more than the tolerance cannot resolve it "
                f"and another runs, up to {p['rounds']} rounds (separated; the first round that resolves it is "
                f"judged)")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        _, dbs, limited, _, expect = CASES[case.name]
        cgroups: dict[str, Any] = {"hosts": {h: str(cgroup_of(lab, h)) for h in limited}, "readings": [],
                                   "cores": lab.cores}
        try:
            for r in range(1, int(params["rounds"]) + 1):
                self.one_round(lab, case, out, params, r, cgroups)
                noise = read_round(out, r, params).calm_ratio
                # only "unaffected" needs the calm windows to agree: a noisy round is kept, and another runs
                if expect != "unaffected" or noise <= params["p99_ratio"]:
                    break
                say(f"round {r}: the calm windows' p99 differ by x{noise:.2f} > {params['p99_ratio']:g} (the machine "
                    f"was too noisy to resolve a {params['p99_ratio'] - 1:.0%} change)"
                    + (": another round" if r < params["rounds"] else ""))
        finally:
            (out / CGROUPS).write_text(json.dumps(cgroups, indent=2) + "\n")

    def one_round(self, lab: Any, case: Case, out: Path, params: dict[str, Any], r: int,
                  cgroups: dict[str, Any]) -> None:
        """Open-loop load on the static page across alternating calm and overload windows."""
        _, dbs, limited, url, _ = CASES[case.name]
        load, faults_csv = round_files(out, r)
        faults = FaultLog(lab, faults_csv)

        def reading(label: str) -> None:
            cgroups["readings"].append({"label": label, "round": r, "t": time.time(),
                                        "stat": {h: read_cpu_stat(cgroup_of(lab, h)) for h in limited}})
        cycles = int(params["cycles"])
        total = params["calm_s"] * (cycles + 1) + params["overload_s"] * cycles
        proc = drive.start_tool(lab, "client", "openloop", [
            "--url", url, "--rate", str(params["rate"]), "--duration", str(total), "--out", str(load),
            "--timeout", str(params["timeout"])], load.with_suffix(".json"))
        burners: list[Any] = []
        try:
            drive.wait_rows(load, 1, timeout=10, proc=proc)
            with window(out, f"load-{r}"):
                for k in range(cycles):
                    drive.pause(params["calm_s"])
                    reading("overload_start")
                    faults.mark("overload_start", ",".join(dbs), burn_sql(params["overload_s"]))
                    burners = self.burn(lab, dbs, out, f"{r}-{k}", params)
                    say(f"round {r}, overload {k + 1}/{cycles}: {params['burners']} BENCHMARK queries in mariadb "
                        f"on {', '.join(dbs)} for {params['overload_s']:g} s")
                    drive.pause(params["overload_s"])
                    reading("overload_end")
                    faults.mark("overload_end", ",".join(dbs))
                    for p in burners:  # max_statement_time ended the queries; the clients exit with that error
                        drive.finish(p, 10, "mariadb burner client", terminate=p.poll() is None)
                # the last calm window runs until the load ends
        finally:
            for p in burners:
                if p.poll() is None:
                    drive.finish(p, 5, "mariadb burner client", terminate=True)
            drive.finish(proc, total + params["timeout"] + 10, "openloop")

    @staticmethod
    def burn(lab: Any, dbs: list[str], out: Path, k: str, params: dict[str, Any]) -> list[Any]:
        """Start the overload: concurrent BENCHMARK queries in every database server's MariaDB."""
        procs = []
        for db in dbs:
            svc = lab.service(db, "mariadb")
            for n in range(params["burners"]):
                with open(out / f"burn-{db}-{k}-{n}.log", "w") as log:
                    procs.append(lab.popen(db, ["mariadb", "--no-defaults", f"--socket={svc.socket}", "-u", "root",
                                                "-e", burn_sql(params["overload_s"])], stdout=log, stderr=log,
                                           text=True))
        return procs

    @staticmethod
    def chosen_round(case_dir: Path, params: dict[str, Any], expect: str) -> tuple[Round, list[Round]]:
        """The round the verdict rests on: the first whose calm windows resolve the tolerance (the
        only one run where that is not needed), else the last; and every round recorded."""
        rounds = [read_round(case_dir, r, params) for r in rounds_recorded(case_dir)]
        if not rounds:
            raise ValueError(f"no round of load and faults in {case_dir}")
        if expect != "unaffected":
            return rounds[0], rounds
        good = [rd for rd in rounds if rd.calm_ratio <= params["p99_ratio"]]
        return (good[0] if good else rounds[-1]), rounds

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        _, dbs, _, url, expect = CASES[case.name]
        rd, rounds = self.chosen_round(raw, params, expect)
        rows, events, calm_w, during_w, calm, during = rd.rows, rd.events, rd.calm_w, rd.during_w, rd.calm, rd.during
        t_load = min(r.t_sched for r in rows)
        p99, p50 = p99_ms, p50_ms
        cg = json.loads((raw / CGROUPS).read_text())
        throttled = {h: throttled_over(cg["readings"], h, rd.number) for h in cg["hosts"]}
        m: dict[str, Any] = {
            "url": url, "db_hosts": dbs, "rounds": len(rounds), "round_judged": rd.number,
            "round_calm_p99_ratios": [rounded(x.calm_ratio, 3) for x in rounds],
            "requests": len(rows), "overloads": len(during_w),
            "calm_requests": len(calm), "during_requests": len(during),
            "calm_success": rounded(success_rate(calm)), "during_success": rounded(success_rate(during)),
            "calm_p50_ms": rounded(p50(calm), 3), "during_p50_ms": rounded(p50(during), 3),
            "baseline_p99_ms": rounded(p99(calm), 3), "during_p99_ms": rounded(p99(during), 3),
            "window_p99_ms": [[kind, rounded(p99(w), 3)] for pair in zip(calm_w, during_w + [[]])
                              for kind, w in zip(("calm", "overload"), pair) if w],
            "throttled_fraction": {h: rounded(f, 3) if f is not None else None for h, f in throttled.items()},
            "cores": cg.get("cores") or {}}
        ratio = p99(during) / p99(calm) if calm and during and p99(calm) > 0 else float("nan")
        m["p99_ratio"] = rounded(ratio, 3)
        # the measurement's own resolution: calm windows whose p99 differ by more than the tolerance
        # cannot tell a 20% change from noise (a busy spell of the machine, of the generator)
        calm_ratio = rd.calm_ratio
        m["calm_p99_ratio"] = rounded(calm_ratio, 3)
        png = plots.series_timeline(
            {"latency of each request (ms)": ([r.t_sched for r in rows], [r.latency * 1000 for r in rows])},
            plots_dir / f"{case.name}-static-latency.png",
            f"C13 {case.name}: static page latency, database overloaded (shaded)"
            + (f", round {rd.number} of {len(rounds)}" if len(rounds) > 1 else ""), "latency from schedule (ms)",
            t_load, windows=[(s.t_begin, e.t_end, "db CPU overload") for s, e in overloads(events)], log=True,
            styles={"latency of each request (ms)": "."})
        bars = self.bars_plot(raw.parent, params, plots_dir)
        m.update({"db_throttled_min": rounded(min((throttled.get(h) or 0) for h in dbs), 3),
                  "success_drop": rounded(success_rate(calm) - success_rate(during), 4)})
        return self.verdict(case, m, params, [png, bars], notes=[
            f"database cgroups throttled in {m['throttled_fraction']} of CPU periods during the overloads"])

    def bars_plot(self, raw_dir: Path, params: dict[str, Any], plots_dir: Path) -> Path:
        """p50/p99 without and during the overloads for every case that ran (the round each is judged on)."""
        groups: dict[str, dict[str, float]] = {}
        for name, (_, _, _, _, expect) in CASES.items():
            try:
                rd, _ = self.chosen_round(raw_dir / name, params, expect)
            except ValueError:
                continue
            calm = [r.latency * 1000 for r in rd.calm if r.ok]
            during = [r.latency * 1000 for r in rd.during if r.ok]
            if not calm or not during:
                continue
            for q in (50, 99):
                groups[f"{name}\np{q}"] = {"without overload": percentile(calm, q),
                                           "during overload": percentile(during, q)}
        return plots.grouped_bars(groups, plots_dir / "static-latency.png",
                                  "C13 static page latency, without vs during the database overload", "ms", log=True)
