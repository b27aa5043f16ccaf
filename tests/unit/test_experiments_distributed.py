"""Verdict rules of the distributed-design claims (C1-C8) on synthetic raw data: supported, refuted,
borderline and inconclusive; plus the HAProxy log/state readers and the report's plot links."""
from __future__ import annotations


import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from experiments import lb, registry, report
from experiments.base import record_case
from experiments.verdict import Verdict
from tests.unit.raw_data import T0, write_cpu, write_csv

PROBE = ["t_send", "t_recv", "status", "ok", "served_by", "error"]
MIX = ["i", "kind", "source", "t_sched", "t_send", "t_recv", "status", "ok", "served_by", "error"]
OPENLOOP = ["i", "t_sched", "t_send", "t_recv", "status", "ok", "error"]


# ---- raw-data builders -----------------------------------------------------------------------------
def new_run(tmp: Path, slug: str, cases: list[str], overrides: dict | None = None,
            hosts: tuple[str, ...] = ("client", "dns", "lb1", "server1", "server2")) -> tuple[object, Path]:
    exp = registry.get(slug)
    params = exp.params({**(overrides or {}), "cases": cases})
    raw = tmp / "run" / "raw"
    for c in exp.cases(params):
        record_case(raw, slug, params, c)
        (raw / c.name).mkdir(parents=True, exist_ok=True)
        (raw / c.name / "lab.json").write_text(json.dumps({"design": c.design, "hosts": list(hosts),
                                                           "entry_ip": "10.0.0.10"}))
        write_cpu(raw / c.name, T0 - 5, T0 + 60, 0.3)
    return exp, raw


def faults(case_dir: Path, events: list[tuple[float, float, str, str, int] | tuple]) -> None:
    write_csv(case_dir / "faults.csv", ["t_begin", "t_end", "action", "target", "ok", "detail"],
              [[f"{e[0]:.6f}", f"{e[1]:.6f}", e[2], e[3], e[4], e[5] if len(e) > 5 else ""] for e in events])


def probe(case_dir: Path, n: int, who, ok=lambda t: True, interval: float = 0.02, start: float = T0) -> None:
    rows = []
    for i in range(n):
        t = start + i * interval
        good = ok(t)
        rows.append([f"{t:.6f}", f"{t + 0.003:.6f}", 200 if good else "", int(good), who(t) if good else "",
                     "" if good else "TimeoutError: timed out"])
    write_csv(case_dir / "probe.csv", PROBE, rows)


def log_line(t: float, server: str, status: int = 200, path: str = "/") -> str:
    ts = datetime.fromtimestamp(t, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S.%f")[:-3]
    return f'10.0.0.100:40000 [{ts}] web servers/{server} 0/0/0/2/2 {status} 769 ---- 1/1/0/0/0 "GET {path} HTTP/1.1"'


def haproxy_log(case_dir: Path, lines: list[str]) -> None:
    (case_dir / lb.LOG_FILE).write_text("\n".join(["[WARNING] (1) : Server servers/server2 is DOWN."] + lines) + "\n")
    (case_dir / lb.LOG_INFO).write_text(json.dumps({"utc_offset_s": 0}))


def states(case_dir: Path, rows: list[tuple[float, str, str]]) -> None:
    write_csv(case_dir / lb.STATE_FILE, lb.STATE_FIELDS, [[f"{t:.6f}", s, st, "L7OK", 0, 1] for t, s, st in rows])


WRK = """Running 4s test @ http://www.foobar.com/work?ms=10
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   352.34ms  125.18ms 602.26ms   58.38%
    Req/Sec    22.24     11.40    50.00     54.17%
  Latency Distribution
     50%  322.15ms
     75%  449.43ms
     90%  505.42ms
     99%  598.18ms
  {n} requests in 4.00s, 41.31KB read
Requests/sec:     {rps:.2f}
Transfer/sec:     10.30KB
"""


def wrk(path: Path, rps: float) -> None:
    path.write_text(WRK.format(n=int(rps * 4), rps=rps))


def openloop(path: Path, rate: float, duration: float, keep: float = 1.0, start: float = T0) -> None:
    rows, n = [], int(rate * duration)
    for i in range(n):
        t = start + i / rate
        served = i < keep * n or i % 2  # the first `keep` share all answered, then every other one
        rows.append([i, f"{t:.6f}", f"{t:.6f}", f"{t + 0.05:.6f}" if served else "", 200 if served else "",
                     int(bool(served)), "" if served else "TimeoutError"])
    write_csv(path, OPENLOOP, rows)


def analyse(exp, raw: Path) -> Verdict:
    return exp.analyse(raw)


# ---- helpers --------------------------------------------------------------------------------------
def test_log_reader_parses_time_server_status_and_request(tmp_path: Path) -> None:
    haproxy_log(tmp_path, [log_line(T0 + 1.5, "server2", 503, "/slow?ms=5")])
    (r,) = lb.read_log(tmp_path)
    assert (r.server, r.backend, r.status, r.request) == ("server2", "servers", 503, "GET /slow?ms=5 HTTP/1.1")
    assert r.t == pytest.approx(T0 + 1.5, abs=0.001)


def test_log_reader_applies_the_hosts_utc_offset(tmp_path: Path) -> None:
    haproxy_log(tmp_path, [log_line(T0, "server1")])  # written as UTC wall time ...
    (tmp_path / lb.LOG_INFO).write_text(json.dumps({"utc_offset_s": 3600}))  # ... but read as UTC+1
    assert lb.read_log(tmp_path)[0].t == pytest.approx(T0 - 3600, abs=0.001)


def test_state_helpers(tmp_path: Path) -> None:
    states(tmp_path, [(T0, "server2", "UP"), (T0 + 1, "server2", "UP 1/3"), (T0 + 2, "server2", "DOWN"),
                      (T0 + 3, "server2", "DOWN 1/2")])
    rows = lb.read_states(tmp_path / lb.STATE_FILE)
    assert lb.first_state(rows, "server2", "DOWN", T0).t == T0 + 2
    assert lb.state_at(rows, "server2", T0 + 1.5) == "UP 1/3"
    assert lb.is_up("UP") and not lb.is_up("UP 1/3") and lb.is_down("DOWN 1/2")
    assert lb.shares(["server1", "server1", "server2", "x"], ["server1", "server2"]) == {"server1": 0.5, "server2": 0.25}


# ---- C1 spof, distributed half ------------------------------------------------------------------
def spof_dist(tmp: Path, failures: int) -> Verdict:
    exp, raw = new_run(tmp, "spof", ["distributed"])
    case = raw / "distributed"
    k, r = T0 + 3, T0 + 7
    bad = {round(k + 0.2 + 0.02 * i, 2) for i in range(failures)}  # failures early in the fault window
    probe(case, 550, lambda t: "server2" if k <= t < r else ("server1", "server2")[int(t * 50) % 2],
          ok=lambda t: round(t, 2) not in bad)
    faults(case, [(k, k + 0.001, "kill", "server1/nginx", 1), (r, r + 0.05, "start", "server1/nginx", 1)])
    return exp.analyse(raw)


def test_spof_distributed_supported_when_the_site_stays_up(tmp_path: Path) -> None:
    v = spof_dist(tmp_path, 0)
    assert v.verdict == "supported", v.reasons
    assert v.measured["fault_success"] == 1.0 and v.measured["fault_served_by"] == ["server2"]


def test_spof_distributed_borderline_around_99_percent(tmp_path: Path) -> None:
    v = spof_dist(tmp_path, 2)  # 2 of ~195 failed: just under 99%
    assert 190 <= v.measured["fault_requests"] <= 196 and v.measured["fault_success"] < 0.99
    assert v.verdict == "refuted", v.reasons
    v = spof_dist(tmp_path / "b", 1)  # 1 of ~195: just over 99%
    assert v.verdict == "supported", v.reasons


# ---- C2 maintenance-downtime, rolling deploy -----------------------------------------------------
def rolling(tmp: Path, fail_at: float | None = None, with_drain: bool = True) -> Verdict:
    exp, raw = new_run(tmp, "maintenance-downtime", ["distributed"])
    case = raw / "distributed"
    probe(case, 600, lambda t: "server2", ok=lambda t: fail_at is None or abs(t - fail_at) > 0.005)
    openloop(case / "load.csv", 50, 12)
    ev = [(T0 + 3, T0 + 3, "deploy_begin", "server1", 1)]
    t = T0 + 3
    for s in ("server1", "server2") if with_drain else ():
        ev += [(t, t, "drain", s, 1), (t, t + 0.01, "drained", s, 1, "0.010"),
               (t + 0.01, t + 1.5, "restart", f"{s}/webapp", 1), (t + 1.5, t + 1.6, "restart", f"{s}/nginx", 1),
               (t + 1.6, t + 1.6, "ready", s, 1), (t + 1.6, t + 1.7, "up", s, 1, "0.1")]
        t += 1.7
    ev += [(t, t, "deploy_end", "server1", 1), (t + 4, t + 4, "load_stop", "server1", 1)]
    faults(case, ev)
    return exp.analyse(raw)


def test_rolling_deploy_supported_with_zero_failures(tmp_path: Path) -> None:
    v = rolling(tmp_path)
    assert v.verdict == "supported", v.reasons
    assert v.measured["failed_requests"] == 0 and v.measured["servers_redeployed"] == ["server1", "server2"]


def test_rolling_deploy_refuted_by_a_single_failure(tmp_path: Path) -> None:
    v = rolling(tmp_path, fail_at=T0 + 4.0)
    assert v.verdict == "refuted" and v.measured["failed_requests"] == 1


def test_rolling_deploy_inconclusive_without_a_drain(tmp_path: Path) -> None:
    assert rolling(tmp_path, with_drain=False).verdict == "inconclusive"


# ---- C3 cannot-scale, distributed capacity ratios -----------------------------------------------
def scale(tmp: Path, caps: dict[int, float], keep: float = 1.0) -> Verdict:
    names = [f"distributed-{n}" for n in caps]
    exp, raw = new_run(tmp, "cannot-scale", names, {"servers": list(caps)})
    for n, cap in caps.items():
        case = raw / f"distributed-{n}"
        wrk(case / "wrk-capacity.txt", cap)
        rate = round(0.9 * cap, 1)
        openloop(case / "confirm.csv", rate, 5, keep=keep if n == max(caps) else 1.0)
        write_csv(case / "sweep.csv", ["k", "offered", "duration", "file"], [[0, rate, 5, "confirm.csv"]])
    return exp.analyse(raw)


def test_cannot_scale_distributed_supported_when_capacity_scales(tmp_path: Path) -> None:
    v = scale(tmp_path, {1: 40, 2: 78, 3: 115})
    assert v.verdict == "supported", v.reasons
    assert v.measured["capacity_ratio_2"] == pytest.approx(1.95) and v.measured["capacity_ratio_3"] == pytest.approx(2.875)
    assert any(p.endswith("distributed-capacity.png") for p in v.plots)


def test_cannot_scale_ratio_borderlines(tmp_path: Path) -> None:
    assert scale(tmp_path / "a", {1: 40, 2: 72, 3: 104}).verdict == "supported"  # exactly 1.8x and 2.6x
    v = scale(tmp_path / "b", {1: 40, 2: 71.6, 3: 104})                           # 1.79x
    assert v.verdict == "refuted" and any("NO" in r for r in v.reasons)


def test_cannot_scale_with_4_and_8_servers_judges_their_ratios(tmp_path: Path) -> None:
    v = scale(tmp_path / "a", {1: 10, 2: 19, 4: 34, 8: 64})           # exactly 3.4x and 6.4x
    assert v.verdict == "supported", v.reasons
    assert (v.measured["capacity_ratio_4"], v.measured["capacity_ratio_8"]) == (3.4, 6.4)
    assert "capacity_ratio_3" not in v.measured                         # no 3-server case, nothing judged
    v = scale(tmp_path / "b", {1: 10, 2: 19, 4: 34, 8: 60})            # 6.0x with 8
    assert v.verdict == "refuted" and any("8 servers" in r and "NO" in r for r in v.reasons), v.reasons


def test_cannot_scale_quota_keeps_the_largest_pool_within_half_the_machine() -> None:
    from experiments.claims.cannot_scale import server_cpu
    exp = registry.get("cannot-scale")
    assert server_cpu(exp.params()) == 0.1                              # 3 x 0.1 <= 0.5: the default stays
    big = exp.params({"servers": [1, 2, 4, 8]})
    assert server_cpu(big) == 0.0625                                    # 8 x 0.0625 = 0.5
    cases = exp.all_cases(big)
    assert [c.name for c in cases] == ["one-server", "distributed-1", "distributed-2", "distributed-4", "distributed-8"]
    assert {q for c in cases[1:] for q in c.lab_params["cpu"].values()} == {0.0625}  # one size for every N


def test_cannot_scale_inconclusive_when_capacity_not_confirmed_open_loop(tmp_path: Path) -> None:
    v = scale(tmp_path, {1: 40, 2: 80, 3: 120}, keep=0.5)  # 3 servers: a quarter of the confirm point unanswered
    assert v.verdict == "inconclusive", v.reasons


def test_cannot_scale_inconclusive_without_the_one_server_baseline(tmp_path: Path) -> None:
    assert scale(tmp_path, {2: 80, 3: 120}).verdict == "inconclusive"


# ---- C4 lb-algorithms ------------------------------------------------------------------------------
def mixrows(n: int, kind_of, served_of, lat_of, start: float = T0, rate: float = 50.0, source_of=lambda i: "") -> list[list]:
    rows = []
    for i in range(n):
        t = start + i / rate
        rows.append([i, kind_of(i), source_of(i), f"{t:.6f}", f"{t:.6f}", f"{t + lat_of(i):.6f}", 200, 1, served_of(i), ""])
    return rows


def lb_case(raw: Path, name: str, split: tuple[int, int], fast_p99: float = 0.05, sources_bad: int = 0) -> None:
    case = raw / name
    n = sum(split)
    who = ["server1"] * split[0] + ["server2"] * split[1]
    write_csv(case / "shares.csv", MIX, mixrows(n, lambda i: "page", lambda i: who[i], lambda i: 0.01))
    haproxy_log(case, [log_line(T0 + i / 50 + 0.001, who[i]) for i in range(n)]
                + [log_line(T0 + 0.5, "server1", 200, "/slow?ms=5")])  # a mix request: not counted
    if name in ("roundrobin", "leastconn"):
        write_csv(case / "mix.csv", MIX, mixrows(400, lambda i: "slow" if i % 4 == 0 else "fast",
                                                  lambda i: ("server1", "server2")[i % 2],
                                                  lambda i: 0.5 if i % 4 == 0 else (fast_p99 if i % 4 == 1 else 0.01),
                                                  start=T0 + 10, rate=100))
    if name == "source":
        srcs = [f"10.0.0.{100 + k}" for k in range(8)]
        write_csv(case / "sources.csv", MIX, mixrows(
            96, lambda i: "page", lambda i: ("server1", "server2")[(i % 8) % 2 if not (i % 8 < sources_bad and i % 16 >= 8) else 1 - (i % 8) % 2],
            lambda i: 0.01, start=T0 + 20, source_of=lambda i: srcs[i % 8]))


def lb_run(tmp: Path, rr=(100, 100), lc=(100, 100), rr_p99=0.6, lc_p99=0.3, sources_bad=0) -> Verdict:
    exp, raw = new_run(tmp, "lb-algorithms", ["roundrobin", "leastconn", "source"])
    lb_case(raw, "roundrobin", rr, rr_p99)
    lb_case(raw, "leastconn", lc, lc_p99)
    lb_case(raw, "source", (180, 20), sources_bad=sources_bad)
    return exp.analyse(raw)


def test_lb_algorithms_supported(tmp_path: Path) -> None:
    v = lb_run(tmp_path)
    assert v.verdict == "supported", v.reasons
    assert v.measured["roundrobin.logged_requests"] == 200  # the /slow line is not a shares request
    assert v.measured["source.sources_on_one_backend"] == 8


def test_lb_algorithms_roundrobin_share_borderline(tmp_path: Path) -> None:
    assert lb_run(tmp_path / "a", rr=(110, 90)).verdict == "supported"   # 55%: exactly +5 points
    v = lb_run(tmp_path / "b", rr=(111, 89))                               # 55.5%
    assert v.verdict == "refuted" and v.measured["roundrobin.share_max_deviation"] == pytest.approx(0.055)


def test_lb_algorithms_refuted_when_leastconn_p99_not_lower(tmp_path: Path) -> None:
    v = lb_run(tmp_path, rr_p99=0.3, lc_p99=0.3)  # equal is not lower
    assert v.verdict == "refuted" and any("leastconn fast-request p99" in r and "NO" in r for r in v.reasons)


def test_lb_algorithms_refuted_when_a_source_sees_two_backends(tmp_path: Path) -> None:
    v = lb_run(tmp_path, sources_bad=1)
    assert v.verdict == "refuted" and v.measured["source.sources_on_one_backend"] == 7


def test_lb_algorithms_inconclusive_with_too_few_logged_requests(tmp_path: Path) -> None:
    assert lb_run(tmp_path, rr=(40, 40)).verdict == "inconclusive"


# ---- C5 health-checks --------------------------------------------------------------------------
def hc_run(tmp: Path, detect_after: float | None = 2.3, routed_after: int = 0, failures: int = 0,
           baseline_ok: bool = True) -> Verdict:
    exp, raw = new_run(tmp, "health-checks", ["retries"])
    case = raw / "retries"
    k = T0 + 2
    bad = {round(k + 0.5 + 0.02 * i, 2) for i in range(failures)} | ({round(T0 + 0.5 + 0.02 * i, 2) for i in range(10)}
                                                                     if not baseline_ok else set())
    probe(case, 400, lambda t: "server1", ok=lambda t: round(t, 2) not in bad)
    restore = k + (detect_after or 5) + 2
    faults(case, [(k, k + 0.01, "kill", "server2/nginx", 1), (restore, restore + 0.1, "start", "server2/nginx", 1),
                  (restore + 0.1, restore + 2.1, "up", "server2", 1)])
    st = [(T0, "server1", "UP"), (T0, "server2", "UP")]
    if detect_after is not None:
        st.append((k + 0.01 + detect_after, "server2", "DOWN"))
    states(case, st)
    lines = [log_line(T0 + i * 0.02, "server1" if i % 2 or T0 + i * 0.02 >= k else "server2") for i in range(400)]
    lines += [log_line(k + 0.01 + (detect_after or 0) + 0.5 + 0.1 * j, "server2", 503) for j in range(routed_after)]
    haproxy_log(case, lines)
    return exp.analyse(raw)


def test_health_checks_supported(tmp_path: Path) -> None:
    v = hc_run(tmp_path)
    assert v.verdict == "supported", v.reasons
    assert v.measured["detection_s"] == pytest.approx(2.3) and v.measured["detection_bound_s"] == 4.0


def test_health_checks_detection_borderline(tmp_path: Path) -> None:
    assert hc_run(tmp_path / "a", detect_after=4.0).verdict == "supported"   # = inter x fall + inter
    assert hc_run(tmp_path / "b", detect_after=4.06).verdict == "refuted"


def test_health_checks_refuted_by_one_request_routed_after_detection(tmp_path: Path) -> None:
    v = hc_run(tmp_path, routed_after=1)
    assert v.verdict == "refuted" and v.measured["routed_after_detection"] == 1


def test_health_checks_refuted_by_one_client_failure_with_retries(tmp_path: Path) -> None:
    v = hc_run(tmp_path, failures=1)
    assert v.verdict == "refuted" and v.measured["client_failures"] == 1


def test_health_checks_refuted_when_never_detected(tmp_path: Path) -> None:
    assert hc_run(tmp_path, detect_after=None).verdict == "refuted"


def test_health_checks_inconclusive_when_unhealthy_before(tmp_path: Path) -> None:
    assert hc_run(tmp_path, baseline_ok=False).verdict == "inconclusive"


# ---- C6 active-passive ----------------------------------------------------------------------------
def ap_run(tmp: Path, backup_before: int = 0, active_after: int = 0, caps=(40.0, 80.0)) -> Verdict:
    exp, raw = new_run(tmp, "active-passive", ["active-passive", "active-active"])
    ap, aa = raw / "active-passive", raw / "active-active"
    wrk(ap / "wrk-capacity.txt", caps[0])
    wrk(aa / "wrk-capacity.txt", caps[1])
    k, d, r = T0 + 3, T0 + 5.5, T0 + 8.5
    early = {round(T0 + 0.1 + 0.02 * i, 2) for i in range(backup_before)}
    late = {round(d + 0.1 + 0.02 * i, 2) for i in range(active_after)}  # answered by the failed active server

    def who(t: float) -> str:
        if round(t, 2) in early:
            return "server2"
        if d <= t < r:
            return "server1" if round(t, 2) in late else "server2"
        return "server1"
    probe(ap, 550, who, ok=lambda t: not (k <= t < d))
    faults(ap, [(k, k + 0.01, "kill", "server1/nginx", 1), (k + 0.01, d, "detected", "server1", 1),
                (r, r + 0.1, "start", "server1/nginx", 1), (r + 0.1, r + 2, "up", "server1", 1),
                (r + 3, r + 3, "end", "", 1)])
    probe(aa, 150, lambda t: ("server1", "server2")[int(round((t - T0) / 0.02)) % 2])
    faults(aa, [(T0 + 3, T0 + 3, "end", "", 1)])
    return exp.analyse(raw)


def test_active_passive_supported(tmp_path: Path) -> None:
    v = ap_run(tmp_path)
    assert v.verdict == "supported", v.reasons
    assert v.measured["active-passive.backup_share_before"] == 0.0 and v.measured["capacity_ratio"] == 2.0


def test_active_passive_refuted_by_one_backup_answer_before_failure(tmp_path: Path) -> None:
    assert ap_run(tmp_path, backup_before=1).verdict == "refuted"


def test_active_passive_takeover_borderline(tmp_path: Path) -> None:
    v = ap_run(tmp_path / "a", active_after=1)   # 1 of 150 after the takeover: backup 99.3%
    assert v.measured["active-passive.after_requests"] == 150 and v.verdict == "supported", v.reasons
    assert ap_run(tmp_path / "b", active_after=2).verdict == "refuted"   # 98.7%


def test_active_passive_capacity_ratio_borderline(tmp_path: Path) -> None:
    assert ap_run(tmp_path / "a", caps=(40.0, 72.0)).verdict == "supported"   # 1.8x
    v = ap_run(tmp_path / "b", caps=(40.0, 71.9))
    assert v.verdict == "refuted" and any("capacity" in r and "NO" in r for r in v.reasons)


# ---- C7 primary-replica --------------------------------------------------------------------------
def pr_run(tmp: Path, n: int = 300, missing: int = 0, rejected: bool = True, errno: int = 1290) -> Verdict:
    exp, raw = new_run(tmp, "primary-replica", ["distributed"])
    case = raw / "distributed"
    rows = []
    for i in range(n):
        t = T0 + i * 0.02
        lag = 0.0005 + (i % 100) * 0.00005
        rows.append([i, 1000 + i, f"{t:.6f}", f"{t + 0.001:.6f}", f"{t + 0.001 + lag:.6f}", 1, ""])
    write_csv(case / "lag.csv", ["i", "id", "t_write", "t_ack", "t_visible", "visible", "error"], rows)
    (case / "lag.json").write_text(json.dumps({"acked": n, "missing_on_replica": list(range(missing))}) + "\n")
    (case / "replica_write.json").write_text(json.dumps({"rejected": rejected, "errno": errno if rejected else None,
                                                         "message": "read-only" if rejected else ""}))
    return exp.analyse(raw)


def test_primary_replica_supported(tmp_path: Path) -> None:
    v = pr_run(tmp_path)
    assert v.verdict == "supported", v.reasons
    assert 0.5 < v.measured["lag_p50_ms"] < v.measured["lag_p99_ms"] < 6


def test_primary_replica_refuted_by_one_missing_write(tmp_path: Path) -> None:
    assert pr_run(tmp_path, missing=1).verdict == "refuted"


def test_primary_replica_refuted_when_replica_accepts_a_write(tmp_path: Path) -> None:
    assert pr_run(tmp_path / "a", rejected=False).verdict == "refuted"
    assert pr_run(tmp_path / "b", errno=1045).verdict == "refuted"  # rejected, but not for being read-only


def test_primary_replica_inconclusive_with_too_few_writes(tmp_path: Path) -> None:
    assert pr_run(tmp_path, n=99).verdict == "inconclusive"
    assert pr_run(tmp_path / "b", n=100).verdict == "supported"


# ---- C8 single-writer ----------------------------------------------------------------------------
def sw_run(tmp: Path, write_ok_during: int = 0, replica_fail: int = 0, spanning_ok: bool = True) -> Verdict:
    exp, raw = new_run(tmp, "single-writer", ["distributed"])
    case = raw / "distributed"
    s, r, end = T0 + 3, T0 + 8, T0 + 12
    rows = []
    for i in range(480):
        t = T0 + i / 40
        kind = "write" if i % 2 else "read"
        who = ("server1", "server2")[(i // 2) % 2]
        down = s + 0.5 <= t < r
        ok = not down or (kind == "read" and who == "server2")
        lat = 0.01
        if down and kind == "write" and write_ok_during > 0 and t > s + 1:
            ok, write_ok_during = True, write_ok_during - 1
        if down and kind == "read" and who == "server2" and replica_fail > 0 and t > s + 1:
            ok, replica_fail = False, replica_fail - 1
        if spanning_ok and down and r - 0.3 < t and kind == "write":
            ok, lat = True, 0.6   # waited in the app's queue, answered after the restart began: not judged
        rows.append([i, kind, "", f"{t:.6f}", f"{t:.6f}", f"{t + lat:.6f}", 201 if ok and kind == "write" else (200 if ok else 503),
                     int(ok), who, ""])
    write_csv(case / "rw.csv", MIX, rows)
    faults(case, [(s, s + 0.05, "stop", "server1/mariadb", 1), (r, r + 0.3, "start", "server1/mariadb", 1),
                  (end, end, "load_stop", "", 1)])
    return exp.analyse(raw)


def test_single_writer_supported_and_spanning_requests_not_judged(tmp_path: Path) -> None:
    v = sw_run(tmp_path)
    assert v.verdict == "supported", v.reasons
    assert v.measured["down_write_success"] == 0.0 and v.measured["spanning_restart_ok"] >= 1
    assert v.measured["down_primary_host_read_success"] == 0.0


def test_single_writer_refuted_by_one_write_while_down(tmp_path: Path) -> None:
    assert sw_run(tmp_path, write_ok_during=1).verdict == "refuted"


def test_single_writer_replica_reads_borderline(tmp_path: Path) -> None:
    v = sw_run(tmp_path, replica_fail=1)   # 1 of 45 replica reads failed: 97.8%
    assert v.measured["down_replica_reads"] == 45 and v.verdict == "refuted"


def test_single_writer_inconclusive_when_run_stopped_early(tmp_path: Path) -> None:
    exp, raw = new_run(tmp_path, "single-writer", ["distributed"])
    write_csv(raw / "distributed" / "rw.csv", MIX, [])
    faults(raw / "distributed", [(T0, T0 + 0.1, "stop", "server1/mariadb", 1)])
    assert exp.analyse(raw).verdict == "inconclusive"


# ---- every new claim registers with the contract ---------------------------------------------------
def test_distributed_claims_are_registered_in_claim_order() -> None:
    slugs = registry.all_slugs()
    mine = ["spof", "maintenance-downtime", "cannot-scale", "lb-algorithms", "health-checks", "active-passive",
            "primary-replica", "single-writer", "firewall"]
    assert [s for s in slugs if s in mine] == mine
    assert [c.name for c in registry.get("spof").all_cases(registry.get("spof").params())] == ["one-server", "distributed"]
    scale_cases = registry.get("cannot-scale").all_cases(registry.get("cannot-scale").params())
    assert scale_cases[3].lab_params == {"params": {"servers": 3}, "cpu": {"server1": 0.1, "server2": 0.1, "server3": 0.1}}


# ---- report: plot links --------------------------------------------------------------------------
@pytest.mark.parametrize("stored", ["plots/a.png", "results/spof/20260101-000000-000/plots/a.png"])
def test_report_links_plots_once_relative_to_results(tmp_path: Path, monkeypatch, stored: str) -> None:
    monkeypatch.chdir(tmp_path)
    results = Path("results")
    run = results / "spof" / "20260101-000000-000"
    (run / "plots").mkdir(parents=True)
    (run / "plots" / "a.png").write_bytes(b"\x89PNG")
    Verdict("supported", "rule", {}, plots=[stored], slug="spof", claim="C1").save(run / "verdict.json")
    html_path, md_path = report.build(results)
    md = md_path.read_text()
    assert "(spof/20260101-000000-000/plots/a.png)" in md
    assert md.count("20260101-000000-000/plots") == 1 + 0 and "results/spof" not in md.split("## C1")[1].split("Run ")[0]
    assert "missing plot" not in html_path.read_text()


# ---- the mixed-load tool ---------------------------------------------------------------------------
def test_mixload_kinds_and_seeded_schedule() -> None:
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments" / "tools"))
    import mixload
    k = mixload.parse_kind("slow=GET:/slow?ms=400:1")
    assert (k.name, k.method, k.path, k.weight) == ("slow", "GET", "/slow?ms=400", 1.0)
    with pytest.raises(ValueError):
        mixload.parse_kind("slow=GET/slow")
    kinds = [mixload.parse_kind("fast=GET:/slow?ms=5:3"), k]
    a, b = mixload.schedule(kinds, 100, 8, seed=1), mixload.schedule(kinds, 100, 8, seed=1)
    assert [x[1].name for x in a] == [x[1].name for x in b] and len(a) == 800  # same mix for both algorithms
    assert a[1][0] == pytest.approx(0.01)
    assert 0.18 < sum(x[1].name == "slow" for x in a) / len(a) < 0.32
