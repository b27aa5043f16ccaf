"""C21 scale-out on synthetic raw data (supported, refuted, inconclusive), and the pool's own rules
(hostapps.pool: the firewall follows, HAProxy commands, bad input refused before anything changes)."""
from __future__ import annotations

from pathlib import Path

import pytest

from experiments.verdict import Verdict
from hostapps import pool
from tests.unit.raw_data import T0, write_csv
from tests.unit.test_experiments_distributed import faults, new_run

FIELDS = ["i", "conn", "t_send", "t_recv", "status", "ok", "served_by", "error"]
ADD, UP, DRAIN, REMOVED, STOP = T0 + 7, T0 + 9, T0 + 16, T0 + 17, T0 + 20


def closed_loop(case_dir: Path, rate_of, latency_of, fail=lambda t: False, served=None) -> None:
    """Requests back to back: at each moment rate_of(t) answers per second, each taking latency_of(t)."""
    rows, t, i = [], T0, 0
    while t < STOP + 0.5:
        bad = fail(t)
        who = (served or (lambda t, i: f"server{1 + i % 2}"))(t, i)
        rows.append([i, i % 24, f"{t:.6f}", f"{t + latency_of(t):.6f}", "" if bad else 200, 0 if bad else 1,
                     "" if bad else who, "ConnectionResetError: reset" if bad else ""])
        t += 1 / rate_of(t)
        i += 1
    write_csv(case_dir / "load.csv", FIELDS, rows)


def three_after_add(t: float, i: int) -> str:
    in_pool = UP <= t < DRAIN
    return f"server{1 + i % 3}" if in_pool else f"server{1 + i % 2}"


def scale_run(tmp: Path, rate_after: float = 60.0, lat_after: float = 0.4, fail=lambda t: False,
              served=three_after_add, add_ok: int = 1):
    exp, raw = new_run(tmp, "scale-out", ["distributed"])
    d = raw / "distributed"
    closed_loop(d, lambda t: rate_after if UP <= t < DRAIN else 40.0,
                lambda t: lat_after if UP + 1 <= t < DRAIN else 0.6, fail, served)
    faults(d, [(ADD, UP, "add", "server3", add_ok, "{'up_s': 0.5}"), (DRAIN, REMOVED, "remove", "server3", 1),
               (STOP, STOP, "load_stop", "", 1)])
    return exp, raw


def test_supported_when_the_third_server_adds_capacity_and_nothing_fails(tmp_path):
    exp, raw = scale_run(tmp_path)
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert v.measured["throughput_ratio"] == pytest.approx(1.5, abs=0.1)
    assert v.measured["failed_requests"] == 0 and v.measured["added_served"] > 0
    assert v.measured["p99_after_ms"] < v.measured["p99_before_ms"]
    assert "raised the pool's throughput 1.5" in v.summary, v.summary and "0 requests failed" in v.summary
    assert len(v.plots) == 3


def test_one_failure_during_the_removal_refutes(tmp_path):
    exp, raw = scale_run(tmp_path, fail=lambda t: DRAIN + 0.2 <= t < DRAIN + 0.2 + 1 / 60)
    v = exp.analyse(raw)
    assert v.verdict == "refuted"
    assert v.measured["failed_requests"] == 1 and v.measured["failed_during_remove"] == 1


def test_too_little_added_capacity_refutes(tmp_path):
    exp, raw = scale_run(tmp_path, rate_after=52.0)
    v = exp.analyse(raw)
    assert v.verdict == "refuted"
    assert v.measured["throughput_ratio"] == pytest.approx(1.3, abs=0.05)


def test_p99_not_lower_refutes(tmp_path):
    exp, raw = scale_run(tmp_path, lat_after=0.7)
    assert exp.analyse(raw).verdict == "refuted"


def test_an_added_server_that_never_served_is_inconclusive(tmp_path):
    exp, raw = scale_run(tmp_path, served=lambda t, i: f"server{1 + i % 2}")
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive" and "never served" in " ".join(v.reasons)


def test_a_failed_add_is_inconclusive(tmp_path):
    exp, raw = scale_run(tmp_path, add_ok=0)
    assert exp.analyse(raw).verdict == "inconclusive"


def test_the_removed_server_serving_afterwards_refutes(tmp_path):
    exp, raw = scale_run(tmp_path, served=lambda t, i: three_after_add(t, i) if t < REMOVED else f"server{1 + i % 3}")
    v = exp.analyse(raw)
    assert v.verdict == "refuted" and v.measured["served_after_removal"] > 0


def test_the_rule_is_the_claims_rule():
    from experiments import registry
    rule = registry.get("scale-out").rule_text({})
    assert "throughput with the third server / before it was added >= 1.4x" in rule
    assert "failed requests from the load's start to its end, through the add and the removal = 0" in rule
    assert "p99 latency after the add < p99 before the add" in rule
    assert isinstance(Verdict, type)


# ---- the pool -------------------------------------------------------------------------------------
RULES = [{"id": "lb-to-web", "src": "lb1", "dst": "role:web", "proto": "tcp", "port": 80, "action": "allow"},
         {"id": "app-to-primary-db", "src": "role:web", "dst": "server1", "proto": "tcp", "port": 3306,
          "action": "allow"},
         {"id": "icmp", "src": "any", "dst": "any", "proto": "icmp", "action": "allow"},
         {"id": "lb-to-web:server3", "src": "lb1", "dst": "server3", "proto": "tcp", "port": 80, "action": "allow"}]


def test_the_firewall_follows_the_pools_role():
    assert pool.follow_rules(RULES, "web", "server4") == [
        {"id": "lb-to-web:server4", "src": "lb1", "dst": "server4", "proto": "tcp", "port": 80},
        {"id": "app-to-primary-db:server4", "src": "server4", "dst": "server1", "proto": "tcp", "port": 3306}]


def test_add_server_takes_the_configured_checks():
    cmd = pool.add_server_command("server3", "10.0.1.13", 80, {"inter": 250, "fall": 3, "rise": 2})
    assert cmd == "add server servers/server3 10.0.1.13:80 check inter 250 fall 3 rise 2"


class Hap:
    def __init__(self, servers):
        self.opts = {"servers": [{"name": s, "address": "x", "port": 80} for s in servers], "backend_tls": False}
        self.admin_socket = "/nonexistent"


class PoolLab:
    design = "distributed"
    ROLES = {"client": "client", "lb1": "lb", "server1": "web", "server2": "web", "server3": "spare"}

    def __init__(self, roles=None, pool_now=("server1", "server2")):
        self.roles = roles or dict(self.ROLES)
        self.pool_now = list(pool_now)
        self.changed: list[str] = []

    def hosts(self):
        return list(self.roles)

    def role(self, h):
        return self.roles[h]

    def services(self, kind=None):
        every = [("lb1", "haproxy"), ("server3", "nginx")]
        return [s for s in every if kind is None or s[1] == kind]

    def service(self, host, kind):
        self.changed.append(f"service {kind}@{host}")  # reading is fine; the tests assert nothing started
        return Hap(self.pool_now)

    def firewall(self, request, timeout=5.0):
        self.changed.append(request["op"])
        return {"rules": RULES}


@pytest.fixture
def stats(monkeypatch):
    def fake(lab):
        return lambda sock: {name: {"status": "UP", "scur": "0"} for name in lab.pool_now}
    return lambda lab: monkeypatch.setattr(pool, "backend_stats", fake(lab))


@pytest.mark.parametrize("server, roles, pool_now, words", [
    ("nosuch", None, ("server1", "server2"), "unknown server 'nosuch'; spares: server3"),
    ("server1", None, ("server1", "server2"), "server1 is already in the pool of lb1"),
    ("server3", None, ("server1", "server2", "server3"), "server3 is already in the pool of lb1"),
    ("server2", {"client": "client", "lb1": "lb", "server1": "web", "server2": "web"}, ("server1",),
     "this lab has no spare server: start it with --param spare=N"),
])
def test_add_refuses_before_anything_changes(stats, server, roles, pool_now, words):
    lab = PoolLab(roles, pool_now)
    stats(lab)
    with pytest.raises(pool.PoolError, match=words.replace("(", r"\(").replace("'", ".")):
        pool.add(lab, server)
    assert not [c for c in lab.changed if not c.startswith("service haproxy")], lab.changed


@pytest.mark.parametrize("server, pool_now, words", [
    ("nosuch", ("server1", "server2"), "unknown server"),
    ("server1", ("server1", "server2"), "one of the design's own servers"),
    ("server3", ("server1", "server2"), "server3 is not in the pool of lb1; add it with: weblab lb add server3"),
])
def test_remove_refuses_before_anything_changes(stats, server, pool_now, words):
    lab = PoolLab(None, pool_now)
    stats(lab)
    with pytest.raises(pool.PoolError, match=words):
        pool.remove(lab, server)
    assert not [c for c in lab.changed if not c.startswith("service haproxy")], lab.changed


def test_spares_are_built_stopped_and_outside_the_pool():
    from topologies.distributed import Distributed
    from topologies.scaled import Scaled
    d = Distributed(spare=1)
    assert d.role("server3") == "spare" and d.addresses_of("server3") == ["10.0.1.13"]
    assert {(s.kind, s.standby) for s in d.services if s.host == "server3"} == {
        ("mariadb", True), ("webapp", True), ("nginx", True)}
    hap = d.service_spec("lb1", "haproxy")
    assert [s["name"] for s in hap.options["servers"]] == ["server1", "server2"]
    assert all(not s.standby for s in d.services if s.host != "server3")
    s = Scaled(spare=2)
    assert [h for h in s.hosts() if s.role(h) == "spare"] == ["web3", "web4"]
    assert s.addresses_of("web4") == ["10.0.1.24"]
    with pytest.raises(ValueError, match="web \\+ spare"):
        Scaled(web=15, spare=2)
    assert Distributed().hosts() == Distributed(spare=0).hosts()  # no spare unless asked for


def test_a_started_service_may_not_wait_for_a_standby_one():
    from topologies.distributed import Distributed
    d = Distributed(spare=1)
    d.add_service("server1", "nginx_exporter", after=["nginx@server3"])
    with pytest.raises(ValueError, match="standby"):
        d.check_services()


def test_closedloop_keeps_its_connections_busy_and_stops_on_sigterm(tmp_path):
    import csv
    import signal
    import subprocess
    import sys
    import time

    from experiments.testing import LocalHttpServer
    srv = LocalHttpServer(name="web-x").start()
    out = tmp_path / "c.csv"
    tool = Path(__file__).resolve().parents[2] / "experiments/tools/closedloop.py"
    proc = subprocess.Popen([sys.executable, str(tool), "--url", srv.url, "--connections", "3", "--duration", "30",
                             "--out", str(out)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 60):
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.stop()
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == FIELDS and len(rows) >= 60
    assert {r["conn"] for r in rows} == {"0", "1", "2"}
    assert all(r["ok"] == "1" and r["served_by"] == "web-x" for r in rows)
    assert '"connections": 3' in proc.stdout.read()
