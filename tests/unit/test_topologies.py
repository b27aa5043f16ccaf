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


def test_distributed_structure_and_two_networks():
    from topologies.distributed import Distributed
    t = Distributed()
    assert sorted(t.hosts()) == ["client", "dns", "lb1", "mail", "server1", "server2"]
    assert sorted(t.switches()) == ["s1", "s2"]
    assert t.addresses["lb1"] == ["10.0.0.10", "10.0.1.10"]
    assert t.address_on("dns", "server2") == "10.0.1.2" and t.address_on("dns", "client") == "10.0.0.2"
    assert t.entry == "lb1"
    kinds = [(s.host, s.kind) for s in t.services]
    assert kinds.index(("server1", "mariadb")) < kinds.index(("server2", "mariadb")) < kinds.index(("lb1", "haproxy"))
    replica = next(s for s in t.services if (s.host, s.kind) == ("server2", "mariadb")).options
    assert replica["read_only"] is True and replica["replicate_from"].host == "server1"
    lb = next(s for s in t.services if s.kind == "haproxy").options
    assert [s["name"] for s in lb["servers"]] == ["server1", "server2"]
    assert not any(s["backup"] for s in lb["servers"])


def test_distributed_parameters():
    from topologies.distributed import Distributed
    t = Distributed(servers=3, mode="active-passive", algorithm="leastconn", retries="false")
    lb = next(s for s in t.services if s.kind == "haproxy").options
    assert [s["backup"] for s in lb["servers"]] == [False, True, True]
    assert lb["algorithm"] == "leastconn" and lb["retries"] == 0
    with pytest.raises(ValueError, match="servers=17 must be one of 1, 2, 3, .*, 16"):
        Distributed.resolve_params({"servers": 17})
    with pytest.raises(ValueError, match="must be true or false"):
        Distributed.resolve_params({"retries": "maybe"})


@pytest.mark.parametrize("design,params", [("one-server", {"static": "app", "cache": "on", "cache_ttl": "3"}),
                                           ("distributed", {"static": "app", "cache": "on", "cache_ttl": "3"}),
                                           ("secured", {"cache": "on", "cache_ttl": "3", "static": "app"}),
                                           ("scaled", {"static": "app"})])
def test_static_and_cache_parameters_reach_every_nginx(design, params):
    t = get(design)(**params)
    nginx = [s.options for s in t.services if s.kind == "nginx"]
    assert nginx and all(o["static"] == "app" for o in nginx)
    if "cache" in params:
        assert all(o["cache"] is True and o["cache_ttl"] == 3 for o in nginx)
    default = [s.options for s in get(design)().services if s.kind == "nginx"]
    assert all(o.get("static", "nginx") == "nginx" and not o.get("cache", False) for o in default)


def test_static_and_cache_parameters_are_checked():
    with pytest.raises(ValueError, match="static='disk' must be one of nginx, app"):
        OneServer.resolve_params({"static": "disk"})
    with pytest.raises(ValueError, match="cache_ttl=0 must be one of 1, 2"):
        OneServer.resolve_params({"cache_ttl": 0})
    with pytest.raises(ValueError, match="cache='sometimes' must be true or false"):
        OneServer.resolve_params({"cache": "sometimes"})


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_every_design_policy_is_accepted_by_the_controller(design):
    from controllers.policy import parse_policy
    from weblab.lab import service_defaults
    policy = parse_policy(DESIGNS[design]().policy_document(service_defaults()))
    assert policy.rules and policy.switches


def test_ports_in_rules_and_targets_come_from_the_services_defaults():
    from hostapps.exporters import NodeExporter
    from hostapps.haproxy import HAProxy
    from topologies.secured import Secured
    from weblab.lab import service_defaults
    t = Secured()
    rules = {r["id"]: r for r in t.policy_document(service_defaults())["rules"]}
    assert rules["monitor-node-server1"]["port"] == NodeExporter.defaults["port"]
    assert rules["monitor-haproxy-lb1"]["port"] == HAProxy.defaults["stats_port"]
    with pytest.raises(ValueError, match="needs the services' defaults"):
        t.policy_document()


def test_facts_live_in_the_graph():
    from topologies.scaled import Scaled
    t = Scaled(monitoring=False)
    assert t.nodeInfo("lb1")["role"] == "lb" and t.nodeInfo("lb1")["vips"] == ["10.0.0.9"]
    assert t.link_names()["lb1-back"] == ("lb1", "s2") and "lb1-link" not in t.link_names()
    assert t.addresses_of("lb2") == ["10.0.0.20", "10.0.1.20"]
    assert t.vips_of("web1") == []


def test_policy_attachments_follow_mininet_ports_and_legs():
    from topologies.distributed import Distributed
    doc = Distributed().policy_document()
    lb = [h for h in doc["hosts"] if h["name"] == "lb1"]
    assert [(h["ips"][0], h["dpid"], h["port"], h["mac"]) for h in lb] == [
        ("10.0.0.10", 1, 3, "02:00:0a:00:00:0a"), ("10.0.1.10", 2, 2, "02:00:0a:00:01:0a")]
    assert doc["firewall"] is False


def test_scaled_policy_puts_the_vip_on_both_load_balancers_front_legs():
    from topologies.scaled import Scaled
    doc = Scaled(monitoring=False).policy_document()
    with_vip = sorted((h["name"], h["ips"][0]) for h in doc["hosts"] if h.get("vips") == ["10.0.0.9"])
    assert with_vip == [("lb1", "10.0.0.10"), ("lb2", "10.0.0.20")]
    assert doc["firewall"] is True


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
def test_designs_of_any_size_up_to_16(n):
    from topologies.distributed import Distributed
    from topologies.scaled import Scaled
    from topologies.secured import Secured
    from weblab.lab import service_defaults
    for t, web in ((Distributed(servers=n), "server"), (Secured(servers=n), "server"), (Scaled(web=n, app=n), "web")):
        addresses = [a for h in t.hosts() for a in t.addresses_of(h)]
        assert len(addresses) == len(set(addresses)), f"{t.design} with {n}: an address is used twice"
        hosts = [h for h in t.hosts() if h.startswith(web)]
        assert len(hosts) == n
        lb = next(s for s in t.services if s.kind == "haproxy").options
        assert [s["name"] for s in lb["servers"]] == hosts
        doc = t.policy_document(service_defaults())
        assert {h["name"] for h in doc["hosts"]} == set(t.hosts())
        if t.design == "secured":
            prom = next(s for s in t.services if s.kind == "prometheus").options
            assert {x["host"] for x in prom["targets"] if x["job"] == "nginx"} == set(hosts)
        t.check_services()
    pools = {s.options["buffer_pool_mb"] for s in Distributed(servers=n).services if s.kind == "mariadb"}
    assert pools == {max(16, min(64, 128 // n))}
