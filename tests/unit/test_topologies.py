"""Designs are pure data: structure, roles, services in order, entry point, policy, parameters."""
from __future__ import annotations

import pytest

from topologies import DESIGNS, get
from topologies.base import HostTable, Ref, mac_for
from topologies.one_server import OneServer


def test_one_server_structure():
    t = OneServer()
    assert sorted(t.hosts()) == ["client", "dns", "server1"]
    assert t.switches() == ["s1"]
    assert sorted(tuple(sorted(l)) for l in t.links()) == [("client", "s1"), ("dns", "s1"), ("s1", "server1")]
    assert t.roles == {"client": "client", "dns": "dns", "server1": "server"}
    assert t.entry == "server1"
    assert t.nodeInfo("server1")["ip"] == "10.0.0.11/24"
    assert t.nodeInfo("server1")["mac"] == "02:00:0a:00:00:0b"


def test_one_server_services_start_in_dependency_order():
    t = OneServer()
    assert [(s.host, s.kind) for s in t.services] == [
        ("dns", "dns"), ("server1", "mariadb"), ("server1", "webapp"), ("server1", "nginx")]
    dns = t.services[0].options
    assert dns["apex"] == Ref("server1") and isinstance(dns["a_records"], HostTable)
    assert dns["cnames"] == {"www": "foobar.com."}


def test_policy_has_explicit_control_rules_and_web_ports():
    rules = {r.id: r for r in OneServer().rules}
    assert {"arp", "icmp", "dns-udp", "dns-tcp", "web-http", "web-https"} <= set(rules)
    assert rules["web-http"].to_json() == {"id": "web-http", "src": "any", "dst": "server1",
                                           "proto": "tcp", "port": 80, "action": "allow"}
    assert "port" not in rules["arp"].to_json()


def test_registry_and_unknown_design():
    assert get("one-server") is OneServer
    assert "one-server" in DESIGNS
    with pytest.raises(ValueError, match="unknown design 'two-servers'; known: .*one-server"):
        get("two-servers")


def test_unknown_parameter_is_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown parameter"):
        OneServer.resolve_params({"servers": 3})


def test_mininet_custom_entry_point():
    from topologies import one_server
    assert one_server.topos == {"one-server": OneServer}


def test_mac_is_locally_administered_and_stable():
    assert mac_for("10.0.1.12") == "02:00:0a:00:01:0c"
    assert int(mac_for("10.0.0.1").split(":")[0], 16) & 0b10
