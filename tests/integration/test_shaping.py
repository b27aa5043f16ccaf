"""Link shaping on a real lab: the client's link measures its rate both ways; netem is refused where absent."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.conftest import CLI, in_host, leftovers, running_state, weblab
from weblab import doctor
from weblab.core import paths

DESIGN = "one-server"
RATE = 2000  # Mbit/s: above the 1000 Mb/s that Mininet's TCLink leaves unshaped
# The shaper counts frames on the wire; iperf3 counts TCP payload: of a full 1514-byte frame, 66 bytes
# are Ethernet, IPv4 and TCP (with timestamps) headers, so the most a RATE link carries is 95.6% of it.
GOODPUT = RATE * 1448 / 1514  # measured idle here: 1873-1910 Mbit/s both ways
UP_ARGS = ["--param", f"client_bw={RATE}"]


def iperf_mbit(server_ip: str, reverse: bool) -> float:
    """Mbit/s received by one TCP stream client <-> server1 (reverse: server1 sends), 4 s."""
    server = subprocess.Popen([*CLI, "exec", "server1", "--", "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):  # bounded: iperf3 -s listens within a second
            if ":5201 " in in_host("server1", "ss", "-ltn").stdout:
                break
        res = in_host("client", "iperf3", "-c", server_ip, "-t", "4", "-O", "1", "-J",
                      *(["-R"] if reverse else []), timeout=60)
    finally:
        server.wait(timeout=30)
    data = json.loads(res.stdout)
    assert "error" not in data, data.get("error")
    return data["end"]["sum_received"]["bits_per_second"] / 1e6


# Tests that start their own lab come first: the module's detached lab starts at its first user.
def test_delay_is_refused_before_anything_starts_without_netem_or_applied_with_it():
    netem_ok = doctor.shaping_support()["netem"][0]
    res = weblab("up", DESIGN, "--param", "client_delay=20", "--detach", check=netem_ok)
    if not netem_ok:
        assert res.returncode != 0
        assert "client:s1: delay, jitter and loss needs the netem qdisc, which this kernel lacks" in res.stderr
        assert "Traceback" not in res.stderr
        assert not list(paths.RUN_ROOT.glob("*/state.json")), "refused, yet a run was created"
        return
    state = running_state()
    try:
        ping = in_host("client", "ping", "-c", "3", "-i", "0.2", state["hosts"]["server1"]["ips"][0])
        rtts = [float(w.split("=")[1]) for w in ping.stdout.split() if w.startswith("time=")]
        assert rtts and min(rtts) >= 2 * 20 * 0.95, ping.stdout  # 20 ms each way
    finally:
        weblab("down")
        assert leftovers(state) == []


def test_a_rate_above_ten_gigabit_is_refused():
    res = weblab("up", DESIGN, "--param", "client_bw=20000", "--detach", check=False)
    assert res.returncode != 0 and "20000 Mbit/s is out of range" in res.stderr
    assert not list(paths.RUN_ROOT.glob("*/state.json"))


@pytest.mark.parametrize("reverse", [False, True], ids=["client-to-server", "server-to-client"])
def test_the_shaped_link_measures_its_rate_each_way(detached_lab, reverse):
    got = iperf_mbit(detached_lab["hosts"]["server1"]["ips"][0], reverse)
    assert 0.9 * GOODPUT <= got <= 1.1 * GOODPUT, \
        f"{got:.0f} Mbit/s of TCP payload through a {RATE} Mbit/s link (at most {GOODPUT:.0f})"


def test_the_shaping_is_on_the_host_end_egress_and_its_ifb(detached_lab):
    qdiscs = in_host("client", "tc", "qdisc", "show").stdout
    assert "qdisc htb 1: dev client-eth0 root" in qdiscs and "qdisc ingress ffff: dev client-eth0" in qdiscs
    assert "qdisc htb 1: dev ifbeth0 root" in qdiscs
    assert "htb" not in in_host("server1", "tc", "qdisc", "show").stdout  # only the client's link
