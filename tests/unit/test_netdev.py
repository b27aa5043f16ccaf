"""Tap ports of the userspace datapath: names, OpenFlow port numbers and the ovs-vsctl transaction."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mininet.topo import Topo

from topologies import get
from topologies.base import dpid_of
from weblab import netdev
from weblab.core.errors import WeblabError


def test_every_host_link_is_a_tap_named_as_mininet_names_it_with_the_topology_port():
    topo = get("distributed")()
    ports = netdev.tap_ports(topo)
    assert set(ports) == {"s1", "s2"}
    # The controller's flows use the topology's port numbers: the taps must get exactly those.
    want = {(a["name"], a["dpid"], a["port"]) for a in topo.attachments()}
    got = set()
    for sw, taps in ports.items():
        for tap, ofport in taps:
            host, _, n = tap.rpartition("-eth")
            got.add((host, dpid_of(sw), ofport))
            assert n.isdigit()
    assert got == want
    assert ("lb1-eth0", 3) in ports["s1"] and ("lb1-eth1", 2) in ports["s2"]
    assert [p for _, p in ports["s2"]] == sorted(p for _, p in ports["s2"])


def test_a_switch_to_switch_link_is_refused_with_taps():
    t = Topo()
    t.addSwitch("s1")
    t.addSwitch("s2")
    t.addLink("s1", "s2")
    with pytest.raises(WeblabError, match="switch-to-switch"):
        netdev.tap_ports(t)


def test_bridge_and_tap_arguments():
    assert netdev.bridge_args("s2", 2) == [
        "--", "--may-exist", "add-br", "s2", "--", "set", "bridge", "s2", "datapath_type=netdev",
        "fail_mode=secure", "protocols=OpenFlow13", "other-config:datapath-id=0000000000000002",
        "other-config:disable-in-band=true", "other-config:dp-desc=s2"]
    assert netdev.tap_args("s2", "server1-eth0", 4) == [
        "--", "add-port", "s2", "server1-eth0", "--", "set", "interface", "server1-eth0", "type=tap",
        "ofport_request=4"]


def test_create_taps_is_one_transaction_and_checks_every_port(monkeypatch):
    topo = get("one-server")()
    calls = []
    listing = 's1,65534,""\nclient-eth0,1,""\ndns-eth0,2,""\nserver1-eth0,3,""\n'

    def vsctl(*args):
        calls.append(args)
        return listing if "list" in args else ""
    monkeypatch.setattr(netdev.Path, "exists", lambda self: False)
    ports = netdev.create_taps(topo, vsctl)
    assert ports == {"s1": [("client-eth0", 1), ("dns-eth0", 2), ("server1-eth0", 3)]}
    assert len(calls) == 2 and calls[0][0] == "--may-exist" and calls[0].count("add-port") == 3
    # A port that did not get its number is an error, not a silently wrong flow table.
    listing = 's1,65534,""\nclient-eth0,1,""\ndns-eth0,5,""\nserver1-eth0,3,""\n'
    with pytest.raises(WeblabError, match="dns-eth0: OpenFlow port 5 instead of 2"):
        netdev.create_taps(topo, vsctl)
    listing = 'client-eth0,-1,"could not open network device client-eth0 (File exists)"\n'
    with pytest.raises(WeblabError, match="File exists"):
        netdev.create_taps(topo, vsctl)


def test_a_leftover_interface_of_the_same_name_is_named_before_anything_is_made(monkeypatch):
    monkeypatch.setattr(netdev.Path, "exists", lambda self: self.name == "dns-eth0")
    with pytest.raises(WeblabError, match="dns-eth0 already exists.*weblab clean"):
        netdev.create_taps(get("one-server")(), lambda *a: "")


def test_parse_interfaces():
    assert netdev.parse_interfaces('a-eth0,7,""\nb-eth0,[],"boom"\n') == {
        "a-eth0": (7, ""), "b-eth0": (None, "boom")}


def test_a_tap_link_is_recorded_with_no_interface_at_its_switch_end():
    class Node:
        def __init__(self, name):
            self.name = name
    tap = netdev.TapPort.__new__(netdev.TapPort)
    tap.node, tap.name = Node("s2"), "server1-eth0"
    host = SimpleNamespace(node=Node("server1"), name="server1-eth0")
    assert netdev.link_record(SimpleNamespace(intf1=host, intf2=tap)) == ("server1", "server1-eth0", "s2", "")
    veth = SimpleNamespace(node=Node("s2"), name="s2-eth4")
    assert netdev.link_record(SimpleNamespace(intf1=host, intf2=veth)) == ("server1", "server1-eth0", "s2", "s2-eth4")
