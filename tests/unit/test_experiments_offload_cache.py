"""C18 static-offload and C19 caching judged from synthetic raw data (what run_case() writes), no lab."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import applog
from experiments.claims.caching import freshness
from experiments.verdict import INCONCLUSIVE, REFUTED, SUPPORTED
from tests.unit.raw_data import T0, new_case, write_cpu, write_csv

MIX_FIELDS = ["i", "kind", "source", "t_sched", "t_send", "t_recv", "status", "ok", "served_by", "error"]
OPENLOOP = ["i", "t_sched", "t_send", "t_recv", "status", "ok", "error"]
FRESH = ["kind", "k", "name", "t_send", "t_recv", "status", "server", "cache", "fresh", "error"]

WRK = """Running 4s test @ http://www.foobar.com{path}
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.34ms    1.18ms  20.26ms   78.38%
    Req/Sec    22.24     11.40    50.00     54.17%
  Latency Distribution
     50%    4.15ms
     75%    6.43ms
     90%    8.42ms
     99%   12.18ms
  {n} requests in 4.00s, 41.31KB read
{errors}Requests/sec:     {rps:.2f}
Transfer/sec:     10.30KB
"""


def wrk(path: Path, url_path: str, rps: float, non2xx: int = 0) -> None:
    errors = f"  Non-2xx or 3xx responses: {non2xx}\n" if non2xx else ""
    path.write_text(WRK.format(path=url_path, n=int(rps * 4), rps=rps, errors=errors))


def access_line(target: str, status: int = 200, agent: str = "weblab-openloop") -> str:
    return f'127.0.0.1 - - [01/Dec/2026:23:50:00 +0000] "GET {target} HTTP/1.0" {status} 513 "-" "{agent}"\n'


# ---- C18 static-offload ---------------------------------------------------------------------------
def offload_case(tmp: Path, name: str, capacity: float, dyn_ms: float, reached: bool, busy: float = 0.4,
                 rate: float = 150.0, seconds: float = 6.0):
    exp, raw, case = new_case(tmp, "static-offload", name)
    wrk(case / "wrk-static.txt", "/static/index.css", capacity)
    (case / "load.json").write_text(json.dumps({"rate": rate, "from": "test"}))
    rows, lines = [], []
    for i in range(int(rate * seconds)):
        t = T0 + i / rate
        kind = "dynamic" if i % 5 == 0 else "static"
        # a spread of dynamic latencies up to dyn_ms at the top percent
        lat = (dyn_ms if i % 100 == 0 else dyn_ms / 4) / 1000 if kind == "dynamic" else 0.002
        rows.append([i, kind, "", f"{t:.6f}", f"{t:.6f}", f"{t + lat:.6f}", 200, 1, "server1", ""])
        lines.append(access_line("/" if kind == "dynamic" else "/static/index.css"))
    write_csv(case / "mix.csv", MIX_FIELDS, rows)
    kept = [ln for ln in lines if reached or "/static/" not in ln]
    (case / applog.slice_name("mix", "server1")).write_text("".join(kept))
    write_cpu(case, T0 - 5, T0 + seconds + 1, busy)
    return exp, raw


def offload_run(tmp: Path, nginx_cap=3000.0, app_cap=200.0, dyn_on=20.0, dyn_off=80.0, reached_on=False, busy=0.4,
                nginx_rate=150.0):
    exp, raw = offload_case(tmp, "static-app", app_cap, dyn_off, True, busy)
    offload_case(tmp, "static-nginx", nginx_cap, dyn_on, reached_on, busy, rate=nginx_rate)
    return exp.analyse(raw)


def test_static_offload_supported(tmp_path: Path) -> None:
    v = offload_run(tmp_path)
    assert v.verdict == SUPPORTED, v.reasons
    assert v.measured["static_capacity_ratio"] == 15.0 and v.measured["dyn_p99_ratio"] == 0.25
    assert v.measured["static-nginx.app_static_requests"] == 0
    assert v.measured["static-app.app_static_fraction"] == 1.0
    assert "15x the app server's 200 req/s" in v.summary and "p99" in v.summary
    assert all((tmp_path / "run" / p).exists() for p in v.plots) and len(v.plots) == 2


def test_static_offload_capacity_ratio_borderline_and_refuted(tmp_path: Path) -> None:
    assert offload_run(tmp_path / "a", nginx_cap=600.0).verdict == SUPPORTED  # exactly 3x
    v = offload_run(tmp_path / "b", nginx_cap=590.0)
    assert v.verdict == REFUTED and any("capacity: Nginx / app server: NO" in r for r in v.reasons)


def test_static_offload_refuted_when_offload_does_not_lower_dynamic_p99(tmp_path: Path) -> None:
    v = offload_run(tmp_path, dyn_on=60.0, dyn_off=80.0)
    assert v.verdict == REFUTED and any("dynamic p99" in r and "NO" in r for r in v.reasons)


def test_static_offload_inconclusive_when_static_files_reached_the_app_with_the_offload(tmp_path: Path) -> None:
    v = offload_run(tmp_path, reached_on=True)
    assert v.verdict == INCONCLUSIVE and any("reached the app server although" in r for r in v.reasons)


def test_static_offload_inconclusive_when_the_labs_got_different_loads(tmp_path: Path) -> None:
    v = offload_run(tmp_path, nginx_rate=120.0)
    assert v.verdict == INCONCLUSIVE and any("not offered the same mixed load" in r for r in v.reasons)


def test_static_offload_mix_rate_comes_from_the_app_servers_capacity(tmp_path: Path) -> None:
    from experiments.claims.static_offload import mix_rate
    (tmp_path / "static-app").mkdir()
    (tmp_path / "static-nginx").mkdir()
    wrk(tmp_path / "static-app" / "wrk-static.txt", "/static/index.css", 301.0)
    exp = __import__("experiments.registry", fromlist=["get"]).get("static-offload")
    assert mix_rate(tmp_path / "static-nginx", exp.params())[0] == 150.5
    assert mix_rate(tmp_path / "static-nginx", exp.params({"mix_rate": 90}))[0] == 90.0
    with pytest.raises(RuntimeError, match="no static-app capacity"):
        mix_rate(tmp_path / "x" / "static-nginx", exp.params())


def test_static_offload_inconclusive_on_a_saturated_machine(tmp_path: Path) -> None:
    v = offload_run(tmp_path, busy=0.99)
    assert v.verdict == INCONCLUSIVE and any("busy" in r for r in v.reasons)


# ---- C19 caching ----------------------------------------------------------------------------------
def fresh_rows(stale_for: float, servers=("server1", "server2"), writes: int = 5, poll: float = 0.02,
               cache: str = "HIT") -> list[list[object]]:
    """Writes acknowledged 3 s apart; each server serves the old page for stale_for s, then the new one."""
    rows: list[list[object]] = []
    for k in range(writes):
        ack = T0 + 100 + 3 * k
        rows.append(["write", k, f"n-{k}", f"{ack - 0.01:.6f}", f"{ack:.6f}", 201, "server1", "", "", ""])
        t, j = ack, 0
        seen: set[str] = set()
        while len(seen) < len(servers):
            s = servers[j % len(servers)]
            fresh = t - ack > stale_for
            if fresh:
                seen.add(s)
            rows.append(["read", k, f"n-{k}", f"{t:.6f}", f"{t + 0.002:.6f}", 200, s,
                         "MISS" if fresh and cache else cache, int(fresh), ""])
            t += poll
            j += 1
    return rows


def cache_case(tmp: Path, name: str, capacity: float, lat_ms: float, app_share: float, stale_for: float,
               rate: float = 40.0, seconds: float = 5.0, keep: float = 1.0, busy: float = 0.4, overrides=None):
    exp, raw, case = new_case(tmp, "caching", name, overrides)
    wrk(case / "wrk-capacity.txt", "/", capacity)
    (case / "load.json").write_text(json.dumps({"rate": rate, "from": "test"}))
    rows = []
    n = int(rate * seconds)
    for i in range(n):
        t = T0 + i / rate
        ok = i < keep * n
        rows.append([i, f"{t:.6f}", f"{t:.6f}", f"{t + lat_ms / 1000:.6f}" if ok else f"{t + 5:.6f}",
                     200 if ok else "", int(ok), "" if ok else "TimeoutError"])
    write_csv(case / "latency.csv", OPENLOOP, rows)
    app = int(round(app_share * n))
    for i, s in enumerate(("server1", "server2")):
        share = app // 2 + (app % 2 if i == 0 else 0)
        # the previous load's tail (wrk sends no User-Agent) and a health check are not the latency load's
        (case / applog.slice_name("latency", s)).write_text(access_line("/", agent="-") * 7 + access_line("/") * share
                                                            + access_line("/health", agent="-"))
        (case / applog.slice_name("capacity", s)).write_text(access_line("/") * int(capacity * 2 * app_share))
    write_csv(case / "freshness.csv", FRESH, fresh_rows(stale_for, cache="HIT" if name == "cache-on" else ""))
    write_cpu(case, T0 - 5, T0 + seconds + 1, busy)
    return exp, raw


def cache_run(tmp: Path, on_cap=2000.0, off_cap=100.0, on_lat=2.0, off_lat=10.0, on_share=0.05, stale_on=1.5,
              keep_off=1.0, busy=0.4, on_rate=40.0):
    exp, raw = cache_case(tmp, "cache-off", off_cap, off_lat, 1.0, 0.01, keep=keep_off, busy=busy)
    cache_case(tmp, "cache-on", on_cap, on_lat, on_share, stale_on, busy=busy, rate=on_rate)
    return exp.analyse(raw)


def test_caching_supported(tmp_path: Path) -> None:
    v = cache_run(tmp_path)
    assert v.verdict == SUPPORTED, v.reasons
    m = v.measured
    assert m["cache-on.app_per_client"] == 0.05 and m["cache-off.app_per_client"] == 1.0
    assert m["p50_ratio"] == 0.2 and m["capacity_ratio"] == 20.0
    assert 1.48 <= m["cache-on.stale_max_s"] <= 1.51 and m["cache-on.writes_visible"] == 5
    assert m["cache-on.cache_status_counts"]["HIT"] > 0
    assert "app servers saw 5% of the client requests" in v.summary and "hidden for up to" in v.summary


def test_caching_app_share_borderline_and_refuted(tmp_path: Path) -> None:
    assert cache_run(tmp_path / "a", on_share=0.10).verdict == SUPPORTED
    v = cache_run(tmp_path / "b", on_share=0.11)
    assert v.verdict == REFUTED and any("app-server requests" in r and "NO" in r for r in v.reasons)


def test_caching_refuted_when_a_write_stays_hidden_longer_than_ttl_plus_one(tmp_path: Path) -> None:
    v = cache_run(tmp_path, stale_on=2.1)
    assert v.verdict == REFUTED and any("without an acknowledged write: NO" in r for r in v.reasons)


def test_caching_refuted_when_the_cache_does_not_help_latency_or_capacity(tmp_path: Path) -> None:
    v = cache_run(tmp_path, on_lat=6.0, on_cap=150.0)
    assert v.verdict == REFUTED
    assert any("p50 latency" in r and "NO" in r for r in v.reasons) and any("capacity: cache" in r and "NO" in r
                                                                           for r in v.reasons)


def test_caching_inconclusive_when_the_uncached_site_cannot_carry_the_load(tmp_path: Path) -> None:
    v = cache_run(tmp_path, keep_off=0.5)
    assert v.verdict == INCONCLUSIVE and any("lower --param rate" in r for r in v.reasons)


def test_caching_inconclusive_when_the_labs_got_different_loads(tmp_path: Path) -> None:
    v = cache_run(tmp_path, on_rate=30.0)
    assert v.verdict == INCONCLUSIVE and any("not offered the same latency load" in r for r in v.reasons)


def test_caching_inconclusive_on_a_saturated_machine(tmp_path: Path) -> None:
    assert cache_run(tmp_path, busy=0.99).verdict == INCONCLUSIVE


def test_freshness_bounds_each_write_between_last_stale_and_first_fresh_read(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    write_csv(path, FRESH, fresh_rows(0.5, writes=2, poll=0.1))
    f = freshness(path)
    assert f["writes_acknowledged"] == 2 and f["writes_visible"] == 2
    # reads every 0.1 s alternating servers: last stale at 0.5 s (+2 ms), both fresh by 0.7 s
    assert f["stale_max_s"] == pytest.approx(0.502, abs=1e-3) and f["visible_max_s"] == pytest.approx(0.702, abs=1e-3)


def test_freshness_counts_a_write_one_server_never_showed(tmp_path: Path) -> None:
    rows = fresh_rows(0.1, writes=1)
    rows = [r for r in rows if not (r[0] == "read" and r[6] == "server2" and r[8] == 1)]
    rows.append(["read", 0, "n-0", f"{T0 + 200:.6f}", f"{T0 + 200.1:.6f}", 200, "server2", "HIT", 0, ""])
    path = tmp_path / "f.csv"
    write_csv(path, FRESH, rows)
    f = freshness(path)
    assert f["writes_visible"] == 0 and f["visible_max_s"] is None and f["stale_max_s"] > 90


def test_caching_refuses_a_fractional_ttl() -> None:
    from experiments import registry
    with pytest.raises(ValueError, match="ttl=0.5 must be whole seconds"):
        registry.get("caching").params({"ttl": 0.5})


def test_access_log_counts_method_and_target(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_text(access_line("/") * 3 + access_line("/?x=1") + access_line("/static/index.css")
                 + 'garbage line\n' + access_line("/").replace("GET", "POST"))
    assert applog.count(p, "GET", "/") == 3 and applog.count(p, "POST", "/") == 1
    import re
    assert applog.count(p, "GET", re.compile(r"/(\?.*)?")) == 4
    assert applog.count(p, "GET", "/", agent="weblab-openloop") == 3 and applog.count(p, "GET", "/", agent="-") == 0
