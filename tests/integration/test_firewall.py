"""The SDN firewall on a real lab: allowed, denied, stateful return traffic, live changes, counters."""
from __future__ import annotations

import subprocess
import time

from tests.integration.conftest import in_host, weblab

DESIGN = "secured"
UP_ARGS = ["--param", "monitoring=false"]


def can_connect(src: str, ip: str, port: int, source_port: int | None = None) -> bool:
    argv = ["nc", "-z", "-w", "1"]
    if source_port:
        argv += ["-p", str(source_port)]
    return in_host(src, *argv, ip, str(port)).returncode == 0


def show() -> dict[str, int]:
    out = weblab("firewall", "show").stdout
    lines = out.splitlines()[2:]  # the rules' rows end with the default deny; ARP inspection's lines follow
    rows = [l.split() for l in lines[:next(i for i, l in enumerate(lines) if l.startswith("(default deny)"))]]
    return {r[0]: int(r[-2]) for r in rows}


def test_allowed_paths_work_and_others_get_no_answer(detached_lab):
    assert in_host("client", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                   "https://www.foobar.com/").stdout == "200"
    assert can_connect("client", "10.0.0.10", 443)
    assert not can_connect("client", "10.0.0.10", 8404)        # HAProxy stats: not for the internet
    assert can_connect("server2", "10.0.1.11", 3306)           # the replica/app to the primary DB
    assert not can_connect("lb1", "10.0.1.11", 3306)           # lateral: lb1 has no rule for the DB
    assert not can_connect("server1", "10.0.1.12", 8000)       # app server port: no rule at all


def test_only_connections_opened_in_the_allowed_direction_get_return_traffic(detached_lab):
    listener = subprocess.Popen(["mnexec", "-a", str(detached_lab["hosts"]["client"]["pid"]),
                                 "nc", "-l", "-k", "5555"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while "5555" not in in_host("client", "ss", "-ltn").stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        # lb1 may answer the client (replies of the client's connections) but not open one to it,
        assert not can_connect("lb1", "10.0.0.100", 5555)
        # not even with a source port that a stateless "allow tcp_src=443 back" rule would let through.
        assert not can_connect("lb1", "10.0.0.100", 5555, source_port=443)
        assert not can_connect("lb1", "10.0.0.100", 5555, source_port=80)
    finally:
        listener.terminate()
        listener.wait(timeout=5)


def test_live_allow_opens_within_a_second_and_remove_closes(detached_lab):
    assert not can_connect("client", "10.0.0.10", 8404)
    t0 = time.monotonic()
    out = weblab("firewall", "allow", "client", "lb1", "tcp", "8404", "--id", "stats-demo").stdout
    assert "rule stats-demo added" in out
    while not can_connect("client", "10.0.0.10", 8404):
        assert time.monotonic() - t0 < 1.5, "the new rule was not in force within a second"
    weblab("firewall", "remove", "stats-demo")
    assert not can_connect("client", "10.0.0.10", 8404)


def test_counters_grow_with_traffic(detached_lab):
    before = show()["lb-https"]
    for _ in range(3):
        in_host("client", "curl", "-s", "-o", "/dev/null", "https://www.foobar.com/")
    # The switch refreshes flow statistics about once a second: poll, bounded.
    deadline = time.monotonic() + 5
    while show()["lb-https"] < before + 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert show()["lb-https"] >= before + 3


def test_firewall_off_exposes_the_database_then_on_closes_it(detached_lab):
    weblab("firewall", "off")
    try:
        assert can_connect("lb1", "10.0.1.11", 3306)
    finally:
        weblab("firewall", "on")
    assert not can_connect("lb1", "10.0.1.11", 3306)


def test_bad_rule_is_a_clear_error(detached_lab):
    res = weblab("firewall", "allow", "client", "lb1", "tcp", "99999", check=False)
    assert res.returncode == 2 and "1-65535" in res.stderr
    res = weblab("firewall", "allow", "client", "lb1", "gre", check=False)
    assert res.returncode == 2 and "protocol 'gre'" in res.stderr
