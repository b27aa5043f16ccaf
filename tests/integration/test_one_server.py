"""The one-server design, started as a user would, answering real DNS, HTTP and SQL."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import in_host, service_info, weblab

DESIGN = "one-server"
# On a machine of 2+ CPUs the server gets a CPU of its own and the rest of the lab the others (--cores).
PINNED = len(os.sched_getaffinity(0)) >= 2
UP_ARGS = ["--cores", "server1=1", "--cores", "*=0"] if PINNED else []


def test_dns_answer_chain_is_cname_then_a(detached_lab):
    res = in_host("client", "dig", "+noall", "+answer", "www.foobar.com", "A")
    assert res.returncode == 0, res.stderr
    records = [line.split() for line in res.stdout.splitlines() if line.strip()]
    assert [r[3] for r in records] == ["CNAME", "A"], res.stdout
    assert records[0][0] == "www.foobar.com." and records[0][4] == "foobar.com."
    assert records[1][0] == "foobar.com." and records[1][4] == detached_lab["hosts"]["server1"]["ips"][0]
    short = in_host("client", "dig", "+short", "www.foobar.com")
    assert short.stdout.split() == ["foobar.com.", "10.0.0.11"]


def test_home_page_lists_database_rows(detached_lab):
    res = in_host("client", "curl", "-s", "-i", "http://www.foobar.com/")
    assert res.returncode == 0, res.stderr
    head, _, body = res.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 200"), head
    assert "text/html" in head and "X-Served-By: server1" in head
    assert "Served by server1" in body
    assert "Welcome to foobar.com" in body and "Served from MariaDB" in body


def test_post_then_get_shows_the_new_row(detached_lab):
    name = f"row-{uuid.uuid4().hex[:8]}"
    res = in_host("client", "curl", "-s", "-X", "POST", "-H", "Content-Type: application/json",
                  "-d", json.dumps({"name": name}), "http://www.foobar.com/api/items")
    created = json.loads(res.stdout)
    assert created["name"] == name and created["id"] > 3
    listed = json.loads(in_host("client", "curl", "-s", "http://www.foobar.com/api/items").stdout)
    assert any(item["id"] == created["id"] and item["name"] == name for item in listed)
    # The row is really in MariaDB, read over SQL from the server itself.
    sock = Path(service_info(detached_lab, "server1", "mariadb")["dir"]) / "mysqld.sock"
    sql = in_host("server1", "mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-N", "-B",
                  "-e", f"SELECT name FROM foobar.items WHERE id={created['id']}")
    assert sql.stdout.strip() == name


def test_static_file_is_served_by_nginx(detached_lab):
    res = in_host("client", "curl", "-s", "-i", "http://www.foobar.com/static/hello.txt")
    assert "X-Web-Server: server1" in res.stdout
    assert res.stdout.rstrip().endswith("static from nginx")
    # The app server never saw it: its access log has no /static request.
    applog = Path(service_info(detached_lab, "server1", "webapp")["dir"]) / "access.log"
    assert "/static/hello.txt" not in applog.read_text()


def test_exec_passes_exit_code_and_unknown_host_is_an_error(detached_lab):
    assert in_host("client", "sh", "-c", "exit 7").returncode == 7
    res = in_host("nosuch", "true")
    assert res.returncode == 2 and "unknown host 'nosuch'" in res.stderr and "client" in res.stderr


def test_second_lab_is_refused_naming_the_running_one(detached_lab):
    res = weblab("up", "one-server", "--detach", check=False)
    assert res.returncode == 2
    assert f"lab {detached_lab['run_id']}" in res.stderr and "weblab down" in res.stderr


def test_hosts_resolver_is_private_to_the_lab(detached_lab):
    machine = Path("/etc/resolv.conf").read_text()
    assert "weblab run" not in machine
    inside = in_host("client", "cat", "/etc/resolv.conf").stdout
    assert f"weblab run {detached_lab['run_id']}" in inside and "nameserver 10.0.0.2" in inside


def cpus_of(pid: int) -> set[str]:
    """Cpus_allowed_list of every thread of pid and of its children."""
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = (task / "status").read_text()
        out.add(next(l.split()[1] for l in status.splitlines() if l.startswith("Cpus_allowed_list")))
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in children:
            out |= cpus_of(int(child))
    return out


@pytest.mark.skipif(not PINNED, reason="--cores placement needs a machine with 2 or more CPUs")
def test_cores_put_the_server_on_its_cpu_and_the_rest_of_the_lab_on_the_others(detached_lab):
    assert detached_lab["cores"] == {"server1": "1", "*": "0"}
    for kind in ("mariadb", "webapp", "nginx"):  # every thread and child of each daemon (nginx workers too)
        assert cpus_of(service_info(detached_lab, "server1", kind)["pid"]) == {"1"}, kind
    assert cpus_of(service_info(detached_lab, "dns", "dns")["pid"]) == {"0"}
    assert cpus_of(detached_lab["hosts"]["server1"]["pid"]) == {"1"}  # the host's shell (Mininet's CLI)
    assert cpus_of(detached_lab["hosts"]["client"]["pid"]) == {"0"}
    own = {p["name"]: p["pid"] for p in detached_lab["processes"]}
    for name in ("ovs-vswitchd", "ovsdb-server", "controller"):
        assert cpus_of(own[name]) == {"0"}, name
    for host, cpu in (("server1", "1"), ("client", "0")):  # weblab exec runs on the host's CPUs too
        status = in_host(host, "cat", "/proc/self/status").stdout
        assert f"Cpus_allowed_list:\t{cpu}" in status, host
