"""Scenarios: each changes exactly its fault in a built design, renders into the daemon's config,
tells readiness what not to wait for, and refuses a design it does not fit."""
from __future__ import annotations

import shutil

import pytest

from hostapps.base import HostHandle
from hostapps.dns import Dns
from hostapps.haproxy import HAProxy
from hostapps.keepalived import Keepalived
from hostapps.mariadb import MariaDB
from topologies import DESIGNS, scenarios
from topologies.base import Cert, Ref
from weblab import cli
from weblab.core.errors import WeblabError
from weblab.lab import build_topo


def built(design: str, scenario: str | None = None, **params):
    return build_topo(DESIGNS[design], DESIGNS[design].resolve_params(params), scenario)


def opts(topo, host, kind):
    return topo.service_spec(host, kind).options


def test_there_are_six_or_more_each_with_a_one_line_symptom():
    assert len(scenarios.SCENARIOS) >= 6
    for sc in scenarios.SCENARIOS.values():
        assert sc.symptom and "\n" not in sc.symptom and len(sc.symptom) < 100
        assert set(sc.designs) <= set(DESIGNS)


@pytest.mark.parametrize("name, design", [(n, d) for n, s in scenarios.SCENARIOS.items() for d in s.designs])
def test_every_scenario_applies_to_its_designs_and_leaves_a_valid_design(name, design):
    plain, broken = built(design), built(design, name)
    broken.check_services()
    assert [s.name for s in broken.services] == [s.name for s in plain.services]  # a change, not a new design
    changed = [s.name for s, t in zip(plain.services, broken.services) if s.options != t.options]
    rules = {r.id for r in plain.rules} ^ {r.id for r in broken.rules}
    assert changed or rules, f"{name} changed nothing in {design}"


def test_www_becomes_an_a_record_to_an_address_nobody_has(tmp_path):
    topo = built("one-server", "www-unreachable")
    o = opts(topo, "dns", "dns")
    assert "www" not in o["cnames"] and o["extra_a"]["www"] == scenarios.WRONG_WWW
    assert not topo.wait_entry and built("one-server").wait_entry
    for design in DESIGNS:
        t = built(design)
        taken = {ip for h in t.hosts() for ip in t.addresses_of(h)} | {t.entry_address}
        assert scenarios.WRONG_WWW not in taken, design
    dns = Dns(HostHandle("dns", 1, ["10.0.0.2"]), tmp_path, **{**o, "apex": "10.0.0.11", "a_records": {}})
    dns.render()
    zone = [l.split() for l in dns.zonefile.read_text().splitlines()]
    assert ["www", "IN", "A", scenarios.WRONG_WWW] in zone and not any(l[:1] == ["www"] and "CNAME" in l for l in zone)


def test_a_backend_on_the_wrong_port_is_all_readiness_stops_waiting_for(tmp_path):
    topo = built("distributed", "one-server-only")
    o = opts(topo, "lb1", "haproxy")
    assert [s["port"] for s in o["servers"]] == [80, 8080] and o["ready_without"] == ["server2"]
    assert topo.wait_entry  # server1 still serves: the lab waits for the site as usual
    assert [s["port"] for s in opts(built("secured", "one-server-only", tls="reencrypt"), "lb1", "haproxy")["servers"]] == [443, 8443]
    servers = [{**s, "address": "10.0.1.1%d" % i} for i, s in enumerate(o["servers"], start=1)]
    hap = HAProxy(HostHandle("lb1", 1, ["10.0.0.10"]), tmp_path, servers=servers, ready_without=o["ready_without"])
    hap.render()
    assert "server server2 10.0.1.12:8080" in hap.conf.read_text()


def test_a_health_check_on_a_missing_page(tmp_path):
    topo = built("distributed", "service-unavailable")
    o = opts(topo, "lb1", "haproxy")
    assert o["check_path"] == "/healthz" and o["ready_without"] == ["server1", "server2"] and not topo.wait_entry
    hap = HAProxy(HostHandle("lb1", 1, ["10.0.0.10"]), tmp_path, check_path="/healthz",
                  servers=[{"name": "server1", "address": "10.0.1.11", "port": 80, "backup": False}])
    hap.render()
    assert "option httpchk GET /healthz" in hap.conf.read_text()
    plain = HAProxy(HostHandle("lb1", 1, ["10.0.0.10"]), tmp_path / "p",
                    servers=[{"name": "server1", "address": "10.0.1.11", "port": 80, "backup": False}])
    plain.dir.mkdir()
    plain.render()
    assert "option httpchk GET /health\n" in plain.conf.read_text()


def test_the_replica_points_at_the_load_balancer_and_start_up_does_not_wait_for_it():
    o = opts(built("distributed", "stale-replica"), "server2", "mariadb")
    assert o["replicate_from"] == Ref("lb1", on="server2") and o["ready_without_replication"] is True
    assert opts(built("distributed"), "server2", "mariadb")["replicate_from"] == Ref("server1")
    assert MariaDB.defaults["ready_without_replication"] is False


def test_firewall_scenarios_drop_exactly_one_rule():
    plain = {r.id for r in built("secured").rules}
    assert plain - {r.id for r in built("secured", "https-timeout").rules} == {"lb-https"}
    missing = built("secured", "missing-metrics")
    assert plain - {r.id for r in missing.rules} == {"monitor-nginx-server2"}
    assert opts(missing, "monitor", "prometheus")["wait_targets"] is False


def test_the_wrong_certificate_and_the_right_one_beside_it():
    topo = built("secured", "certificate-error")
    assert opts(topo, "lb1", "haproxy")["tls_cert"] == Cert("old-site", ("foobar.com",))
    assert topo.certs == [Cert("site", ("www.foobar.com", "foobar.com"))]
    assert built("secured").certs == []


def test_vrrp_weight_that_never_fails_over(tmp_path):
    topo = built("scaled", "no-failover")
    for lb in ("lb1", "lb2"):
        assert opts(topo, lb, "keepalived")["track_weight"] == -20
    assert opts(topo, "lb1", "keepalived")["priority"] - 20 > opts(topo, "lb2", "keepalived")["priority"]
    ka = Keepalived(HostHandle("lb1", 1, ["10.0.0.10"]), tmp_path, vip="10.0.0.9", interface="lb1-eth0",
                    src_ip="10.0.0.10", track_weight=-20)
    ka.render()
    assert "    weight -20\n" in ka.conf.read_text()
    plain = Keepalived(HostHandle("lb1", 1, ["10.0.0.10"]), tmp_path / "p", vip="10.0.0.9",
                       interface="lb1-eth0", src_ip="10.0.0.10")
    plain.dir.mkdir()
    plain.render()
    assert "    weight " not in plain.conf.read_text()


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="needs keepalived")
def test_the_weighted_keepalived_config_passes_its_own_check(tmp_path):
    import subprocess
    ka = Keepalived(HostHandle("lb1", 1, ["10.0.0.10"]), tmp_path, vip="10.0.0.9", interface="lo",
                    src_ip="10.0.0.10", track_weight=-20)
    ka.render()
    out = subprocess.run(ka.check_argv(), capture_output=True, text=True).stdout
    assert "Unknown keyword" not in out and "out of range" not in out and "outside range" not in out


def test_writer_name_and_web_tier_scenarios():
    dns = opts(built("scaled", "writes-fail"), "dns", "dns")
    assert dns["extra_a"]["db-primary"] == dns["extra_a"]["db-replica"] == "10.0.1.42"
    idle = built("scaled", "idle-web-server")
    assert all(a.endswith(":8001") for a in opts(idle, "web2", "nginx")["app"])
    assert all(a.endswith(":8000") for a in opts(idle, "web1", "nginx")["app"])
    assert opts(idle, "lb1", "haproxy")["ready_without"] == opts(idle, "lb2", "haproxy")["ready_without"] == ["web2"]


@pytest.mark.parametrize("design, name, params, words", [
    ("distributed", "nope", {}, "unknown scenario 'nope'; known: bad-gateway"),
    ("one-server", "no-failover", {}, "scenario no-failover is for scaled, not one-server"),
    ("distributed", "one-server-only", {"servers": 1}, "scenario one-server-only: this scenario needs at least 2 servers"),
    ("distributed", "stale-replica", {"servers": 1}, "scenario stale-replica: distributed has no mariadb on server2"),
    ("secured", "missing-metrics", {"monitoring": False}, "needs monitoring"),
])
def test_a_scenario_that_does_not_fit_is_one_clear_error(design, name, params, words):
    with pytest.raises(WeblabError) as err:
        built(design, name, **params)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_list_shows_scenarios_with_their_symptoms_and_the_exercises(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "\nscenarios:" in out and "\nexercises:" in out
    for name, sc in scenarios.SCENARIOS.items():
        assert f"  {name:22} {sc.symptom}" in out


def test_up_refuses_an_unknown_scenario_before_anything_starts(tmp_path, monkeypatch, capsys):
    import os
    from weblab.core import paths
    monkeypatch.setattr(paths, "RUN_ROOT", tmp_path / "run")
    monkeypatch.setattr(paths, "LOCK_FILE", tmp_path / "weblab.lock")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["up", "one-server", "--scenario", "nope", "--detach"]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'nope'" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
