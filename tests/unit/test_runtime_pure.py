"""The runtime's pure parts, without root: link names, firewall rule words and display, option
resolution of `up`, the state file's typed records."""
from __future__ import annotations

import argparse

import pytest

from weblab import cli, firewall, links
from weblab.core.errors import WeblabError
from weblab.core.state import RunState


def _state() -> RunState:
    return RunState("r1", {
        "run_id": "r1", "hosts": {"lb1": {"pid": 10, "role": "lb", "ips": ["10.0.0.10", "10.0.1.10"],
                                          "intfs": ["lb1-eth0", "lb1-eth1"]},
                                  "client": {"pid": 11, "role": "client", "ips": ["10.0.0.100"],
                                             "intfs": ["client-eth0"]}},
        "links": [["client", "client-eth0", "s1", "s1-eth1"], ["lb1", "lb1-eth0", "s1", "s1-eth2"],
                  ["s2", "s2-eth1", "lb1", "lb1-eth1"]],
        "link_names": {"lb-front": ["lb1", "s1"], "lb-back": ["lb1", "s2"], "client-link": ["client", "s1"]}})


@pytest.mark.parametrize("spec, want", [
    ("lb-back", ("lb1", "lb1-eth1")),          # an alias, the switch written first in the link
    ("lb-front", ("lb1", "lb1-eth0")),
    ("client:s1", ("client", "client-eth0")),  # HOST:SWITCH
    ("s1:client", ("client", "client-eth0")),
    ("s1-eth2", ("lb1", "lb1-eth0")),          # a switch-side interface: its host end
    ("lb1-eth1", ("lb1", "lb1-eth1")),
])
def test_links_resolve_to_the_host_end(spec, want):
    assert links.resolve(_state(), spec) == want


def test_an_unknown_link_names_the_aliases():
    with pytest.raises(WeblabError, match=r"no link 'lb-side'; .*client-link, lb-back, lb-front"):
        links.resolve(_state(), "lb-side")


def test_link_lines_for_status():
    lines = links.describe(_state())
    assert lines[1].startswith("lb-back") and "capture on lb1:lb1-eth1" in lines[1]


@pytest.mark.parametrize("words, rule", [
    (["client", "lb1", "tcp", "8404"], {"src": "client", "dst": "lb1", "proto": "tcp", "port": 8404}),
    (["any", "role:web", "icmp"], {"src": "any", "dst": "role:web", "proto": "icmp"}),
    (["10.0.0.0/24", "dns", "udp", "53"], {"src": "10.0.0.0/24", "dst": "dns", "proto": "udp", "port": 53}),
])
def test_rule_words(words, rule):
    assert firewall.rule_from_words(words) == rule
    assert firewall.rule_from_words(words, "mine")["id"] == "mine"


@pytest.mark.parametrize("words, error", [
    (["client", "lb1"], "a rule is: SRC DST PROTO"),
    (["client", "lb1", "sctp", "80"], "protocol 'sctp': use one of tcp, udp, icmp, arp, vrrp, ip"),
    (["client", "lb1", "tcp", "http"], "port 'http' is not a number"),
])
def test_bad_rule_words(words, error):
    with pytest.raises(WeblabError, match=error):
        firewall.rule_from_words(words)


def test_firewall_show_table():
    text = firewall.format_show({"firewall": True, "rules": [
        {"id": "lb-https", "action": "allow", "src": "any", "dst": "lb1", "proto": "tcp", "port": 443,
         "packets": 12, "bytes": 3400}], "default_deny": {"packets": 5, "bytes": 300}})
    lines = text.splitlines()
    assert lines[0] == "firewall: ON" and lines[2].split() == ["lb-https", "allow", "any", "lb1", "tcp", "443", "12", "3400"]
    assert lines[-1].split()[-2:] == ["5", "300"]
    assert "OFF (rules kept" in firewall.format_show({"firewall": False})


def _up_args(**kw):
    base = {"design": "distributed", "param": None, "cpu": None, "cores": None, "firewall": None,
            "datapath": "auto", "scenario": None}
    return argparse.Namespace(**{**base, **kw})


def test_up_options_resolve_to_the_labs_keyword_arguments():
    kw = cli.lab_kwargs(_up_args(param=["servers=3", "retries=false"], cpu=["server1=0.25"],
                                 cores=["server1=1", "*=0"], firewall="on"))
    assert kw["params"]["servers"] == 3 and kw["params"]["retries"] is False
    assert kw["params"]["algorithm"] == "roundrobin"  # defaults filled in
    assert kw["cpu"] == {"server1": 0.25} and kw["cores"] == {"server1": "1", "*": "0"}
    assert kw["firewall"] is True and kw["scenario"] is None


@pytest.mark.parametrize("kw, error", [
    ({"param": ["servers=0"]}, "servers=0 must be one of 1, 2"),
    ({"param": ["mode=both"]}, "mode='both' must be one of active-active, active-passive"),
    ({"cpu": ["server1=lots"]}, "--cpu takes HOST=FRACTION"),
    ({"design": "three-tier"}, "unknown design 'three-tier'"),
])
def test_up_options_that_cannot_work(kw, error):
    with pytest.raises(WeblabError, match=error):
        cli.lab_kwargs(_up_args(**kw))


def test_state_records_are_typed():
    s = _state()
    assert s.host("lb1").ips == ["10.0.0.10", "10.0.1.10"] and s.link_names["lb-back"] == ("lb1", "s2")
    assert s.links[2].node1 == "s2" and s.holder is None and s.controller is None and not s.holder_alive()
    with pytest.raises(KeyError, match="unknown host 'web9'; hosts of this lab: lb1, client"):
        s.host("web9")


def test_init_is_never_recorded_nor_signalled(monkeypatch):
    """killpg(1, sig) is kill(-1, sig): every process of the machine. A ProcRef never does it."""
    import os
    from weblab.core.proc import ProcRef, start_time
    with pytest.raises(ValueError, match="not a process weblab may record"):
        ProcRef.of("init", 1)
    sent = []
    monkeypatch.setattr(os, "killpg", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    ProcRef("init", 1, start_time(1), True).signal(15)
    assert sent == []
