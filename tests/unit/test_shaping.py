"""Link shaping: the tc command lines, validation, and refusing what the kernel cannot do."""
from __future__ import annotations

import subprocess

import pytest

from topologies import get
from weblab import shaping
from weblab.core.errors import WeblabError
from weblab.shaping import Shape

ALL = {"htb": (True, "works"), "netem": (True, "works"), "ifb": (True, "works")}
NO_NETEM = {**ALL, "netem": (False, "unavailable (tc: Specified qdisc kind is unknown.)")}


def test_bandwidth_both_ways_host_egress_and_an_ifb_on_its_ingress():
    ip_lines, tc_lines = shaping.commands("client-eth0", Shape(bw=100))
    assert ip_lines == ["link add ifbeth0 type ifb", "link set ifbeth0 up"]
    burst = shaping.burst_bytes(100)
    assert tc_lines == [
        "qdisc replace dev client-eth0 root handle 1: htb default 1",
        f"class replace dev client-eth0 parent 1: classid 1:1 htb rate 100mbit ceil 100mbit burst {burst} "
        f"cburst {burst} quantum 65536",
        "qdisc replace dev client-eth0 handle ffff: ingress",
        "filter replace dev client-eth0 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred "
        "egress redirect dev ifbeth0",
        "qdisc replace dev ifbeth0 root handle 1: htb default 1",
        f"class replace dev ifbeth0 parent 1: classid 1:1 htb rate 100mbit ceil 100mbit burst {burst} "
        f"cburst {burst} quantum 65536"]


def test_ten_gigabit_is_shaped_with_a_burst_of_a_millisecond_and_above_is_refused():
    _, tc_lines = shaping.commands("server1-eth0", Shape(bw=10000))
    assert "rate 10000mbit ceil 10000mbit burst 1250000 cburst 1250000" in tc_lines[1]
    assert shaping.burst_bytes(1) == 2 * 65536 + 2 * 1514  # never below two TSO super-segments
    with pytest.raises(WeblabError, match="10001 Mbit/s is out of range.*10 Gbit/s"):
        Shape.of({"bw": 10001}, "link client:s1")
    with pytest.raises(WeblabError, match="out of range"):
        Shape.of({"bw": 0}, "link client:s1")


def test_delay_jitter_loss_are_netem_under_the_rate_or_alone():
    _, tc_lines = shaping.commands("client-eth0", Shape(bw=100, delay=20, jitter=5, loss=1))
    assert tc_lines[2] == ("qdisc replace dev client-eth0 parent 1:1 handle 10: netem delay 20ms 5ms "
                           "loss 1% limit 1000")
    assert tc_lines[-1].startswith("qdisc replace dev ifbeth0 parent 1:1 handle 10: netem delay 20ms")
    _, only = shaping.commands("client-eth0", Shape(delay=50))
    # A queue long enough for bandwidth x delay (the datapath's 10 Gbit/s when unshaped).
    assert only[0] == "qdisc replace dev client-eth0 root handle 10: netem delay 50ms limit 83332"
    assert shaping.commands("client-eth0", Shape()) == ([], [])


def test_invalid_values_say_which_link_and_what_is_wrong():
    with pytest.raises(WeblabError, match="link client:s1: jitter 5 ms needs a delay"):
        Shape.of({"jitter": 5}, "link client:s1")
    with pytest.raises(WeblabError, match="loss 101% must be between 0 and 100"):
        Shape.of({"loss": 101}, "link client:s1")
    with pytest.raises(WeblabError, match="bw='fast' is not a number"):
        Shape.of({"bw": "fast"}, "link client:s1")
    with pytest.raises(WeblabError, match="unknown shaping option.*rate"):
        Shape.of({"rate": 5}, "link client:s1")


def test_design_parameters_put_a_shape_on_the_client_link():
    topo = get("distributed")(client_bw="250", client_delay=None)
    assert shaping.link_shapes(topo) == [("client", "s1", "client-eth0", Shape(bw=250))]
    assert shaping.link_shapes(get("distributed")()) == []
    assert "client_bw" in get("scaled").params and "client_loss" in get("one-server").params


def test_check_refuses_netem_where_the_kernel_has_none_before_anything_starts():
    asked = []

    def support():
        asked.append(1)
        return NO_NETEM
    assert shaping.check(get("one-server")(), support) == [] and not asked  # nothing shaped: no probe
    assert shaping.check(get("one-server")(client_bw=100), support)[0][3] == Shape(bw=100)
    with pytest.raises(WeblabError, match="link client:s1: delay, jitter and loss needs the netem qdisc, "
                                          "which this kernel lacks .*Specified qdisc kind is unknown"):
        shaping.check(get("one-server")(client_loss=2), support)
    with pytest.raises(WeblabError, match="ifb device"):
        shaping.check(get("one-server")(client_bw=100), lambda: {**ALL, "ifb": (False, "no module")})


def test_apply_runs_ip_then_tc_in_batches_and_names_the_link_on_failure():
    calls = []

    def run(argv, stdin):
        calls.append((argv, stdin))
        return subprocess.CompletedProcess(argv, 0, "", "")
    shaping.apply(run, "client-eth0", Shape(bw=100), "link client:s1")
    assert [a for a, _ in calls] == [["ip", "-batch", "-"], ["tc", "-batch", "-"]]
    assert calls[1][1].count("\n") == 6

    def failing(argv, stdin):
        return subprocess.CompletedProcess(argv, 1, "", "Error: Exclusivity flag on")
    with pytest.raises(WeblabError, match="shaping link client:s1 \\(client-eth0\\) failed: Error: Excl"):
        shaping.apply(failing, "client-eth0", Shape(bw=100), "link client:s1")
