"""Verdict rules of the scaled-design claims (C13 fault-isolation, C14 lb-cluster, C17 writer-failover) on synthetic raw data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.raw_data import T0, new_case, write_cpu, write_csv



def faults(case_dir: Path, events: list[tuple[float, float, str, str, int, str]], name: str = "faults.csv") -> None:
    write_csv(case_dir / name, ["t_begin", "t_end", "action", "target", "ok", "detail"],
              [[f"{a:.6f}", f"{b:.6f}", act, tgt, ok, det] for a, b, act, tgt, ok, det in events])


# ---- C13 fault-isolation ---------------------------------------------------------------------------
def fi_case(tmp: Path, case: str, lat_calm: float = 0.002, lat_during: float = 0.002, ok_during: bool = True,
            throttled: float = 0.95, busy: float = 0.4, spike: float | None = None, lat_odd: float | None = None,
            cycles: int = 3, round_no: int = 1):
    """40 req/s; calm 8 s, overload 8 s, alternating (`cycles` overloads); latency lat_calm in calm windows
    (lat_odd in the odd ones, if given), lat_during inside the overloads; a few 2x spikes everywhere."""
    exp, raw, d = new_case(tmp, "fault-isolation", case)
    span = 8 * (2 * cycles + 1)
    t0 = T0 + 100 * (round_no - 1)
    marks = [(t0 + 8 * (2 * k + 1), t0 + 8 * (2 * k + 2)) for k in range(cycles)]
    rows = []
    for i in range(span * 40):
        t = t0 + i / 40
        inside = any(a <= t < z for a, z in marks)
        calm = lat_odd if lat_odd is not None and int((t - t0) // 16) % 2 == 1 else lat_calm
        lat = (lat_during if inside else calm) * (2 if i % 50 == 0 else 1)
        if spike and inside and i % 40 == 0:
            lat = spike
        good = ok_during or not inside
        rows.append([i, f"{t:.6f}", f"{t:.6f}", f"{t + lat:.6f}", 200 if good else "", int(good),
                     "" if good else "timeout"])
    suffix = "" if round_no == 1 else f"-{round_no}"
    write_csv(d / f"openloop{suffix}.csv", ["i", "t_sched", "t_send", "t_recv", "status", "ok", "error"], rows)
    faults(d, [ev for a, z in marks for ev in ((a, a + 0.01, "overload_start", "db", 1, ""),
                                                (z, z + 0.01, "overload_end", "db", 1, ""))], f"faults{suffix}.csv")
    dbs = ["server1", "server2"] if case == "combined" else ["db1", "db2"]
    stat = lambda n, th: {"nr_periods": n, "nr_throttled": th, "throttled_time": 0}  # noqa: E731
    cg = d / "cgroups.json"
    readings = json.loads(cg.read_text())["readings"] if cg.exists() else []
    for k, (a, z) in enumerate(marks):
        readings.append({"label": "overload_start", "round": round_no, "t": a,
                         "stat": {h: stat(200 * k, int(80 * throttled) * k) for h in dbs}})
        readings.append({"label": "overload_end", "round": round_no, "t": z,
                         "stat": {h: stat(200 * k + 80, int(80 * throttled) * (k + 1)) for h in dbs}})
    cg.write_text(json.dumps({"hosts": {h: f"/x/{h}" for h in dbs}, "readings": readings}))
    write_cpu(d, T0, t0 + span, busy)
    return exp, raw


@pytest.mark.parametrize("case,kw,expect", [
    ("combined", {"lat_during": 0.030}, "supported"),
    ("combined", {"lat_during": 0.0021}, "refuted"),              # static pages did not degrade
    ("combined", {"lat_during": 0.002, "ok_during": False}, "supported"),  # degraded by failures, not latency
    ("separated", {"lat_during": 0.0023}, "supported"),           # borderline: p99 +15%
    ("separated", {"lat_during": 0.0025}, "refuted"),             # p99 +25%
    ("separated", {"ok_during": False}, "refuted"),
    ("separated", {"throttled": 0.2}, "inconclusive"),            # the overload did not bite
    ("combined", {"lat_during": 0.030, "busy": 0.99}, "inconclusive"),  # the machine saturated
    ("separated", {"lat_odd": 0.003}, "inconclusive"),            # calm windows 50% apart: 20% not resolvable
    ("separated", {"lat_odd": 0.0023, "lat_during": 0.0022}, "supported"),  # calm windows 15% apart: fine
    ("separated", {"cycles": 1, "lat_during": 0.0023}, "supported"),  # one overload between two calm windows
])
def test_fault_isolation_rule(tmp_path, case, kw, expect):
    exp, raw = fi_case(tmp_path, case, **kw)
    v = exp.analyse(raw)
    assert v.verdict == expect, (v.reasons, v.measured)


def test_fault_isolation_windows_alternate_and_skip_the_transients(tmp_path):
    exp, raw = fi_case(tmp_path, "separated", lat_during=0.006)
    m = exp.analyse(raw).measured
    assert m["overloads"] == 3
    kinds = [k for k, _ in m["window_p99_ms"]]
    assert kinds == ["calm", "overload"] * 3 + ["calm"]
    assert all((p99 > 5) == (k == "overload") for k, p99 in m["window_p99_ms"])
    # calm: 7 s after the warm-up + 3 x 6.99 s from 1 s after each overload_end mark (10 ms long) ends;
    # during: 3 x 6.99 s, from 1 s after each overload_start mark ends, to the overload_end mark
    assert (m["calm_requests"], m["during_requests"]) == (280 + 3 * 279, 3 * 279)
    assert m["throttled_fraction"] == {"db1": 0.95, "db2": 0.95}


def test_fault_isolation_judges_the_first_round_quiet_enough_to_resolve_the_tolerance(tmp_path):
    fi_case(tmp_path, "separated", lat_odd=0.003, lat_during=0.0029)          # round 1: calm windows 50% apart
    exp, raw = fi_case(tmp_path, "separated", lat_during=0.0021, round_no=2)  # round 2: quiet, +5%
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert (v.measured["rounds"], v.measured["round_judged"]) == (2, 2)
    assert v.measured["round_calm_p99_ratios"][0] > 1.2 >= v.measured["round_calm_p99_ratios"][1]
    fi_case(tmp_path, "separated", lat_odd=0.003, round_no=2)                 # both rounds noisy: no verdict
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive" and "each of 2 round(s)" in v.reasons[0], v.reasons


def test_fault_isolation_gives_the_database_tier_a_cpu_of_its_own():
    from experiments.claims.fault_isolation import CASES, partition
    assert partition(["db1", "db2"], {0, 1}) == {"db1": "1", "db2": "1", "*": "0"}
    assert partition(["server1"], {0, 1, 2, 3}) == {"server1": "3", "*": "0,1,2"}
    assert partition(["db1"], {0}) == {}  # one CPU: nothing to partition
    from experiments import registry
    exp = registry.get("fault-isolation")
    for case in exp.cases(exp.params()):  # both designs alike: their database servers apart from the rest
        assert case.lab_params["cores"] == partition(CASES[case.name][1])
    assert all("cores" not in c.lab_params for c in exp.cases(exp.params({"partition": False})))


# ---- C14 lb-cluster -------------------------------------------------------------------------------
def probe_rows(start: float, end: float, ok, interval: float = 0.02) -> list[list[object]]:
    rows = []
    for i in range(int((end - start) / interval)):
        t = start + i * interval
        good = ok(t)
        rows.append([f"{t:.6f}", f"{t + 0.004:.6f}", 200 if good else "", int(good), "", "" if good else "timeout"])
    return rows


def one_lb(tmp: Path, ok_during: float = 0.0, after_ok: bool = True):
    exp, raw, d = new_case(tmp, "lb-cluster", "one-lb")
    down, up = T0 + 2, T0 + 6

    def ok(t: float) -> bool:
        if down <= t < up:
            return (t - down) / 0.02 % 100 < ok_during * 100
        return after_ok or t < down
    write_csv(d / "probe.csv", ["t_send", "t_recv", "status", "ok", "served_by", "error"], probe_rows(T0, T0 + 9, ok))
    faults(d, [(down, down + 0.01, "link_down", "lb1-s1", 1, ""), (up, up + 0.01, "link_up", "lb1-s1", 1, "")])
    write_cpu(d, T0, T0 + 9, 0.2)
    return exp, raw


@pytest.mark.parametrize("kw,expect", [({}, "supported"), ({"ok_during": 0.02}, "refuted"),
                                       ({"after_ok": False}, "refuted")])
def test_one_lb_rule(tmp_path, kw, expect):
    exp, raw = one_lb(tmp_path, **kw)
    assert exp.analyse(raw).verdict == expect


def cluster(tmp: Path, takeovers: list[float], outages: list[float] | None = None, vip_missing: int | None = None,
            flaky: int | None = None, n_expected: int | None = None):
    over = {"crashes": n_expected} if n_expected else None
    exp, raw, d = new_case(tmp, "lb-cluster", "cluster", over)
    outages = outages or [t + 0.02 for t in takeovers]
    ev, bad = [], []
    t = T0 + 2
    for k, (tk, out) in enumerate(zip(takeovers, outages)):
        ev.append((t, t + 0.005, "link_down", "lb1-s1", 1, ""))
        if k != vip_missing:
            ev.append((t + tk, t + tk, "vip_lb2", "lb2", 1, f"{t + tk:.6f}"))
        ev.append((t + 1.5, t + 1.51, "link_up", "lb1-s1", 1, ""))
        ev.append((t + 1.8, t + 1.8, "vip_lb1", "lb1", 1, f"{t + 1.8:.6f}"))
        bad.append((t, t + out))
        if k == flaky:
            bad.append((t + 1.0, t + 1.1))
        t += 3.5

    def ok(x: float) -> bool:
        return not any(a <= x < b for a, b in bad)
    write_csv(d / "probe.csv", ["t_send", "t_recv", "status", "ok", "served_by", "error"], probe_rows(T0, t + 1, ok))
    faults(d, ev)
    write_cpu(d, T0, t + 1, 0.3)
    return exp, raw


def test_cluster_supported_with_ten_fast_takeovers(tmp_path):
    exp, raw = cluster(tmp_path, [0.35 + 0.01 * k for k in range(10)])
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert v.measured["crashes"] == 10 and v.measured["takeover_max_s"] == pytest.approx(0.44, abs=0.01)


@pytest.mark.parametrize("kw,expect", [
    ({"takeovers": [0.4] * 9 + [0.99]}, "supported"),                     # borderline: just under 1 s
    ({"takeovers": [0.4] * 9 + [1.2]}, "refuted"),                        # one takeover over the 1 s target
    ({"takeovers": [0.4] * 10, "outages": [0.4] * 9 + [0.9]}, "refuted"),  # outage beyond the takeover
    ({"takeovers": [0.4] * 10, "flaky": 3}, "refuted"),                   # not full service after takeover
    ({"takeovers": [0.4] * 5}, "refuted"),                                # fewer crashes than asked
    ({"takeovers": [0.4] * 10, "vip_missing": 2}, "inconclusive"),        # the VIP never moved once
])
def test_cluster_rule_edges(tmp_path, kw, expect):
    exp, raw = cluster(tmp_path, **kw)
    v = exp.analyse(raw)
    assert v.verdict == expect, v.reasons


# ---- C17 writer-failover ----------------------------------------------------------------------------
def failover(raw_tmp: Path, name: str, lose: int = 0, resume: bool = True, before_ok: bool = True, n_cases: int = 1):
    exp, raw, d = new_case(raw_tmp, "writer-failover", name, {"count": n_cases})
    kill = T0 + 3
    rows, present, nid = [], [], 1
    for seq in range(400):
        t = T0 + seq * 0.02
        down = kill <= t < kill + 1.2
        acked = not down and (resume or t < kill) and (before_ok or t >= kill)
        rows.append([seq, f"{t:.6f}", f"{t + 0.01:.6f}", 201 if acked else "", nid if acked else "",
                     "" if acked else "HTTP 502"])
        if acked:
            present.append(nid)
            nid += 1
    write_csv(d / "writes.csv", ["seq", "t_send", "t_recv", "status", "id", "error"], rows)
    (d / "present-ids.txt").write_text("\n".join(map(str, present[lose:])) + "\n")
    faults(d, [(kill, kill + 0.01, "kill", "db1/mariadb", 1, "")])
    (d / "failover-events.csv").write_text(f"{T0:.6f},watching,10.0.1.41\n{kill + 0.6:.6f},primary-down,x\n"
                                           f"{kill + 0.7:.6f},promoted,10.0.1.42\n{kill + 0.8:.6f},dns-updated,x\n")
    write_cpu(d, T0, T0 + 8, 0.3)
    return exp, raw


@pytest.mark.parametrize("kw,expect", [({}, "supported"), ({"lose": 1}, "refuted"), ({"resume": False}, "refuted"),
                                       ({"before_ok": False}, "inconclusive")])
def test_writer_failover_rule(tmp_path, kw, expect):
    exp, raw = failover(tmp_path, "failover-01", **kw)
    v = exp.analyse(raw)
    assert v.verdict == expect, v.reasons
    if expect == "supported":
        assert v.measured["write_outage_s"] == pytest.approx(1.22, abs=0.03)
        assert v.measured["lost"] == 0


def test_writer_failover_aggregates_over_failovers(tmp_path):
    for i in (1, 2, 3):
        exp, raw = failover(tmp_path, f"failover-0{i}", n_cases=3)
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert v.measured["failovers"] == 3 and v.measured["lost"] == 0 and len(v.measured["write_outages_s"]) == 3
    failover(tmp_path, "failover-02", lose=2, n_cases=3)
    v = exp.analyse(raw)
    assert v.verdict == "refuted" and v.measured["lost"] == 2
