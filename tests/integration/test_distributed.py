"""The distributed design: HAProxy balancing two servers, MariaDB primary-replica, health checks."""
from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

from hostapps.haproxy import backend_stats
from tests.integration.conftest import in_host, served_by, service_info
from weblab.core.proc import ProcRef

DESIGN = "distributed"
UP_ARGS = ["--param", "check_inter=200", "--param", "check_fall=2"]


def sql(state: dict, host: str, statement: str) -> str:
    sock = Path(service_info(state, host, "mariadb")["dir"]) / "mysqld.sock"
    res = in_host(host, "mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-N", "-B",
                  "-e", statement)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_dns_points_at_the_load_balancer(detached_lab):
    assert in_host("client", "dig", "+short", "www.foobar.com").stdout.split() == ["foobar.com.", "10.0.0.10"]


def test_round_robin_alternates_between_both_servers(detached_lab):
    seen = served_by(n=6)
    assert len(seen) == 6
    assert set(seen) == {"server1", "server2"}
    assert all(a != b for a, b in zip(seen, seen[1:])), seen


def test_write_through_lb_is_read_from_the_replica(detached_lab):
    name = f"repl-{uuid.uuid4().hex[:8]}"
    res = in_host("client", "curl", "-s", "-d", f"name={name}", "http://www.foobar.com/api/items")
    new_id = json.loads(res.stdout)["id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if sql(detached_lab, "server2", f"SELECT name FROM foobar.items WHERE id={new_id}") == name:
            break
        time.sleep(0.05)
    assert sql(detached_lab, "server2", f"SELECT name FROM foobar.items WHERE id={new_id}") == name
    assert sql(detached_lab, "server2", "SELECT @@read_only") == "1"
    assert sql(detached_lab, "server1", "SELECT @@read_only") == "0"


def test_write_sent_straight_to_the_replica_is_refused(detached_lab):
    res = in_host("server2", "mariadb", "--no-defaults", "-h", "10.0.1.12", "-u", "app", "-papp-secret",
                  "-e", "INSERT INTO foobar.items (name) VALUES ('sneaky')")
    assert res.returncode != 0 and "read-only" in res.stderr
    assert sql(detached_lab, "server2", "SELECT COUNT(*) FROM foobar.items WHERE name='sneaky'") == "0"


def test_haproxy_exposes_prometheus_metrics(detached_lab):
    res = in_host("client", "curl", "-s", "http://10.0.0.10:8404/metrics")
    assert "haproxy_backend_http_responses_total" in res.stdout


def test_killed_nginx_is_marked_down_and_requests_keep_succeeding(detached_lab):
    sock = Path(service_info(detached_lab, "lb1", "haproxy")["dir"]) / "admin.sock"
    assert {k: v["status"] for k, v in backend_stats(sock).items()} == {"server1": "UP", "server2": "UP"}
    nginx = service_info(detached_lab, "server2", "nginx")
    ProcRef("nginx", nginx["pid"], nginx["start"]).signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while backend_stats(sock)["server2"]["status"].split()[0] != "DOWN" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend_stats(sock)["server2"]["status"].startswith("DOWN")
    codes = in_host("client", "sh", "-c", "for i in $(seq 20); do curl -s -o /dev/null -w '%{http_code} ' "
                    "--max-time 3 http://www.foobar.com/; done").stdout.split()
    assert codes == ["200"] * 20
    assert set(served_by(n=4)) == {"server1"}


def test_every_leg_carries_the_mac_the_design_gives_it(detached_lab):
    """The controller's proactive flows and ARP inspection know hosts by these MACs (a tap comes with a random one)."""
    from topologies.base import mac_for
    for host, info in detached_lab["hosts"].items():
        links = in_host(host, "ip", "-br", "-4", "addr").stdout.split()
        macs = in_host(host, "ip", "-br", "link").stdout.split()
        for ip in info["ips"]:
            intf = links[links.index(next(w for w in links if w.startswith(ip + "/"))) - 2]
            assert macs[macs.index(intf) + 2] == mac_for(ip), f"{host} {intf}"
