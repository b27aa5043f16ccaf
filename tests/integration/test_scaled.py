"""The scaled design: VRRP takeover of the virtual IP, redispatch past a dead web server, DB failover."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

from tests.integration.conftest import CLI, in_host, service_info
from weblab.core.proc import ProcRef

DESIGN = "scaled"
UP_ARGS = ["--param", "monitoring=false"]


def kill(state: dict, host: str, kind: str) -> None:
    s = service_info(state, host, kind)
    ProcRef(kind, s["pid"], s["start"]).signal(signal.SIGKILL)


def holds_vip(host: str) -> bool:
    return " 10.0.0.9/" in in_host(host, "ip", "-o", "-4", "addr", "show", "dev", f"{host}-eth0").stdout


def test_vip_answers_through_the_whole_chain(detached_lab):
    res = in_host("client", "curl", "-s", "-D", "-", "-o", "/dev/null", "https://www.foobar.com/")
    head = res.stdout.lower()
    assert head.startswith("http/1.1 200")
    assert "x-backend-server: web" in head and "x-served-by: app" in head
    assert in_host("client", "dig", "+short", "foobar.com").stdout.split() == ["10.0.0.9"]
    assert holds_vip("lb1") and not holds_vip("lb2")


def test_a_killed_web_server_under_load_costs_no_failed_get(detached_lab):
    # 80 GETs in a row (bounded), web2 is killed once the first responses came back.
    loop = subprocess.Popen(
        [*CLI, "exec", "client", "--", "sh", "-c",
         "for i in $(seq 80); do curl -s -o /dev/null -w '%{http_code}\\n' --max-time 3 "
         "https://www.foobar.com/; done"], stdout=subprocess.PIPE, text=True)
    first = [loop.stdout.readline().strip() for _ in range(10)]
    kill(detached_lab, "web2", "nginx")
    rest, _ = loop.communicate(timeout=120)
    codes = first + rest.split()
    assert len(codes) == 80 and codes == ["200"] * 80, codes


def test_writes_survive_writer_failover(detached_lab):
    acked = []
    for i in range(5):
        res = in_host("client", "curl", "-s", "-d", f"name=before-{i}", "https://www.foobar.com/api/items")
        acked.append(json.loads(res.stdout)["id"])
    kill(detached_lab, "db1", "mariadb")
    events = Path(service_info(detached_lab, "monitor", "dbfailover")["dir"]) / "events.csv"
    deadline = time.monotonic() + 10
    while "dns-updated" not in events.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = list(csv.reader(events.open()))
    assert [r[1] for r in rows if r[1] in ("primary-down", "promoted", "dns-updated")] == \
        ["primary-down", "promoted", "dns-updated"], rows
    assert in_host("client", "dig", "+short", "db-primary.foobar.com").stdout.split() == ["10.0.1.42"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        res = in_host("client", "curl", "-s", "-d", "name=after", "https://www.foobar.com/api/items")
        if res.stdout.startswith("{"):
            acked.append(json.loads(res.stdout)["id"])
            break
        time.sleep(0.1)
    else:
        raise AssertionError("no write succeeded after the failover")
    present = {item["id"] for item in json.loads(
        in_host("client", "curl", "-s", "https://www.foobar.com/api/items?limit=1000").stdout)}
    assert set(acked) <= present


def test_lb1_crash_moves_the_vip_and_service_resumes(detached_lab):
    in_host("lb1", "ip", "link", "set", "lb1-eth0", "down")
    t0 = time.monotonic()
    while True:
        code = in_host("client", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "0.5",
                       "https://www.foobar.com/health").stdout
        if code == "200":
            break
        assert time.monotonic() - t0 < 5, "the VIP did not answer again within 5 s"
    assert holds_vip("lb2")


def test_a_dead_haproxy_gives_up_the_vip(detached_lab):
    # Runs last: after the lb1 crash above, lb2 holds the VIP. keepalived's check (HAProxy's
    # monitor-uri, every second, fall 2) must notice HAProxy is gone and release the VIP.
    assert holds_vip("lb2")
    kill(detached_lab, "lb2", "haproxy")
    t0 = time.monotonic()
    while holds_vip("lb2"):
        assert time.monotonic() - t0 < 6, "lb2 kept the VIP 6 s after its HAProxy died"
        time.sleep(0.2)  # bounded poll of the address list
    log = Path(service_info(detached_lab, "lb2", "keepalived")["log"]).read_text(errors="replace")
    assert "haproxy_alive" in log and "FAULT" in log, log[-2000:]
