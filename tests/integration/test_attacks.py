"""Attacks from a real position in a running lab, as a user drives them: `weblab attack`, ARP inspection
on and off live, and nothing of an attack outliving it (caches, sysctls, nftables, processes)."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.integration.conftest import CLI, in_host, weblab

DESIGN = "secured"
UP_ARGS = ["--param", "attacker=back", "--param", "monitoring=false"]
ATTACKER_MAC = "02:00:0a:00:01:c8"  # 10.0.1.200, the rogue host on the back network
FORM = "username=alice&password=wonderland"


def lb1_entry_for_server1() -> str:
    res = in_host("lb1", "ip", "-j", "neigh", "show", "to", "10.0.1.11")
    entries = json.loads(res.stdout or "[]")
    return entries[0].get("lladdr", "") if entries else ""


def attacker_state() -> tuple[str, str]:
    forward = in_host("attacker", "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip()
    tables = in_host("attacker", "nft", "list", "tables").stdout.strip()
    return forward, tables


def login(n: int = 4) -> None:
    for _ in range(n):  # round robin: some of them go to server1
        in_host("client", "curl", "-s", "-o", "/dev/null", "--max-time", "5", "--data", FORM,
                "https://www.foobar.com/login")


def start_attack(*extra: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "attack", "mitm", "--from", "attacker", "--between", "lb1,server1", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_entry(mac: str, timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lb1_entry_for_server1() == mac:
            return True
        time.sleep(0.1)  # bounded poll of lb1's ARP cache
    return False


@pytest.fixture(scope="module")
def lab(detached_lab):
    return detached_lab


def test_inspection_is_on_by_default_and_stops_the_attack_naming_the_port(lab):
    assert "ARP inspection: ON, no spoofed ARP seen" in weblab("firewall", "show").stdout
    true_mac = lb1_entry_for_server1() or "02:00:0a:00:01:0b"
    proc = start_attack("--duration", "4")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert lb1_entry_for_server1() != ATTACKER_MAC and true_mac
    show = weblab("firewall", "show").stdout
    assert "ARP inspection: ON," in show and "port" in show and "(attacker):" in show, show
    status = weblab("status").stdout
    assert "(attacker):" in status and "dropped since" in status, status
    log = (lab["controller"]["log"])
    lines = [l for l in open(log).read().splitlines() if "ARP inspection: switch s2 port" in l]
    assert len(lines) == 1 and "host attacker" in lines[0] and ATTACKER_MAC in lines[0], lines


def test_inspection_sends_nothing_to_the_controller_in_steady_state(lab):
    from controllers.client import request
    sock = lab["controller"]["control"]

    def packet_ins() -> dict:
        return {s["dpid"]: s["packet_ins"] for s in request(sock, {"op": "status"})["switches"]}
    before = packet_ins()
    in_host("lb1", "ip", "neigh", "flush", "dev", "lb1-eth1")  # fresh ARP through the inspection flows
    assert in_host("lb1", "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.0.1.11").returncode == 0
    login(2)
    assert packet_ins() == before


def test_with_inspection_off_the_attacker_reads_logins_and_undoes_everything(lab):
    weblab("firewall", "arp-inspection", "off")
    try:
        before = attacker_state()
        proc = start_attack("--grep", "wonderland", "--duration", "60")
        try:
            assert wait_for_entry(ATTACKER_MAC), "lb1 was not poisoned"
            assert "attack: attack-mitm-attacker-" in weblab("status").stdout
            login()
        finally:
            stopped = weblab("attack", "stop").stdout
            out, _ = proc.communicate(timeout=30)
        assert "stopped attack-mitm-attacker-" in stopped
        assert "!! FORM password='wonderland'" in out, out[-3000:]
        assert "-> 10.0.1.11:80  HTTP POST /login" in out
        assert "stopped: caches restored" in out
        assert lb1_entry_for_server1() != ATTACKER_MAC
        assert attacker_state() == before == ("0", "")
        assert "no attack is running" in weblab("attack", "stop").stdout
    finally:
        weblab("firewall", "arp-inspection", "on")


def test_attack_refuses_bad_positions_before_anything_starts(lab):
    res = weblab("attack", "mitm", "--from", "client", "--between", "lb1,server1", check=False)
    assert res.returncode == 2 and "shares no network" in res.stderr
    res = weblab("attack", "mitm", "--from", "attacker", "--between", "lb1,nobody", check=False)
    assert res.returncode == 2 and "unknown host 'nobody'" in res.stderr


def test_down_stops_a_running_attack_first(lab):  # last: it takes the lab down
    weblab("firewall", "arp-inspection", "off")
    proc = start_attack("--duration", "120")
    assert wait_for_entry(ATTACKER_MAC)
    down = weblab("down").stdout
    out, _ = proc.communicate(timeout=30)
    assert "*** stopped attack-mitm-attacker-" in down and proc.returncode == 0
    assert "stopped: caches restored" in out  # it undid itself while the lab was still up
