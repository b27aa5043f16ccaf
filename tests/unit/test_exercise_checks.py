"""Each kind of exercise check against a fake lab: what it runs in which host, how it reads the
answer, and that it can fail (a check that cannot fail is a defect)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from exercises import checks
from exercises.model import Fields, YMap
from weblab.core.errors import WeblabError


def done(argv, out="", err="", rc=0):
    return subprocess.CompletedProcess(argv, rc, out, err)


class FakeLive:
    """A lab double: `answer(host, argv)` decides what a command prints; every command is recorded."""

    design, scenario, params = "distributed", "", {}

    def __init__(self, answer, dirs=None):
        self.answer, self.dirs = answer, dirs or {}
        self.ran: list[tuple[str, list[str]]] = []
        self.started: list[list[str]] = []

    def hosts(self):
        return ["client", "lb1", "server1", "server2", "monitor"]

    def ip(self, host):
        return {"lb1": "10.0.0.10", "server1": "10.0.1.11", "server2": "10.0.1.12"}[host]

    def exec(self, host, argv, timeout=30, input=None):
        self.ran.append((host, argv))
        return self.answer(host, argv)

    def popen(self, host, argv, **kw):
        self.started.append(argv)
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True, **kw)

    def service_dir(self, host, kind):
        if (host, kind) not in self.dirs:
            raise WeblabError(f"no service {kind} on {host}")
        return self.dirs[(host, kind)]

    def service_action(self, host, kind, action):
        pass


def read(kind: str, data: dict):
    m = YMap(data)
    m.line, m.lines = 5, {k: 5 for k in data}
    return checks.KINDS[kind].read(Fields(m, "x.yaml", f"checks[0].{kind}", 5))


# --- dns --------------------------------------------------------------------------------------------
DIG = """\
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1234
;; flags: qr aa rd; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1
www.foobar.com.		60	IN	CNAME	foobar.com.
foobar.com.		60	IN	A	10.0.0.11
"""


def test_dns_compares_the_answer_chain_in_order():
    spec = read("dns", {"from": "client", "name": "www.foobar.com", "answer": ["CNAME foobar.com.", "A 10.0.0.11"]})
    live = FakeLive(lambda h, a: done(a, DIG))
    out = checks.KINDS["dns"].attempt(live, spec)
    assert out.ok and out.seen == "NOERROR: CNAME foobar.com., A 10.0.0.11"
    assert live.ran[0][0] == "client" and live.ran[0][1][0] == "dig" and live.ran[0][1][-2:] == ["www.foobar.com", "A"]
    wrong = DIG.replace("www.foobar.com.\t\t60\tIN\tCNAME\tfoobar.com.", "www.foobar.com.\t\t60\tIN\tA\t10.0.0.21")
    out = checks.KINDS["dns"].attempt(FakeLive(lambda h, a: done(a, wrong)), spec)
    assert not out.ok and "A 10.0.0.21" in out.seen


def test_dns_nxdomain_and_a_dig_that_failed():
    spec = read("dns", {"from": "client", "name": "shop.foobar.com", "nxdomain": True})
    nx = ";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1\n"
    assert checks.KINDS["dns"].attempt(FakeLive(lambda h, a: done(a, nx)), spec).ok
    assert not checks.KINDS["dns"].attempt(FakeLive(lambda h, a: done(a, DIG)), spec).ok
    broken = checks.KINDS["dns"].attempt(FakeLive(lambda h, a: done(a, ";; connection timed out", rc=9)), spec)
    assert not broken.ok and "dig failed" in broken.seen


# --- http and backends -----------------------------------------------------------------------------
PAGE = "HTTP/1.1 301 Moved\r\nLocation: https://x/\r\n\r\nHTTP/1.1 200 OK\r\nX-Served-By: server1\r\n" \
       "Cache-Control: max-age=3600\r\n\r\n<html>Welcome to foobar.com</html>"


def test_http_checks_status_body_and_headers_of_the_last_response():
    spec = read("http", {"url": "https://www.foobar.com/", "status": 200, "body": "Welcome",
                         "headers": {"cache-control": "max-age=3600"}, "follow": True})
    live = FakeLive(lambda h, a: done(a, PAGE))
    assert checks.KINDS["http"].attempt(live, spec).ok
    host, argv = live.ran[0]
    assert host == "client" and "-L" in argv and argv[-1] == "https://www.foobar.com/" and "-k" not in argv
    spec["status"] = 503
    out = checks.KINDS["http"].attempt(live, spec)
    assert not out.ok and "status 200, expected 503" in out.seen


def test_http_without_an_answer_says_what_curl_said():
    spec = read("http", {"url": "https://www.foobar.com/", "status": 200, "method": "post", "data": "name=x"})
    err = "curl: (60) SSL: no alternative certificate subject name matches target host name 'www.foobar.com'"
    live = FakeLive(lambda h, a: done(a, "", err, rc=60))
    out = checks.KINDS["http"].attempt(live, spec)
    assert not out.ok and "no alternative certificate subject name" in out.seen
    assert ["-X", "POST"] == live.ran[0][1][live.ran[0][1].index("-X"):][:2]
    assert "--data-raw" in live.ran[0][1]


def test_backends_needs_every_request_answered_by_exactly_the_servers_named():
    spec = read("backends", {"url": "http://www.foobar.com/", "requests": 4, "served_by": ["server1", "server2"]})
    both = "".join(f"HTTP/1.1 200 OK\r\nX-Served-By: server{i % 2 + 1}\r\n\r\n" for i in range(4))
    live = FakeLive(lambda h, a: done(a, both))
    out = checks.KINDS["backends"].attempt(live, spec)
    assert out.ok and "server1 x2, server2 x2" in out.seen
    assert live.ran[0][1].count("-o") == 4  # one curl, four requests, Connection: close each
    one = "".join("HTTP/1.1 200 OK\r\nX-Served-By: server1\r\n\r\n" for _ in range(4))
    assert not checks.KINDS["backends"].attempt(FakeLive(lambda h, a: done(a, one)), spec).ok
    half = "".join("HTTP/1.1 200 OK\r\nX-Served-By: server1\r\n\r\n" for _ in range(2))
    out = checks.KINDS["backends"].attempt(FakeLive(lambda h, a: done(a, half, "curl: (7) refused", 7)),
                                           {**spec, "served_by": ["server1"]})
    assert not out.ok and "2 of 4 requests unanswered" in out.seen


# --- ports ------------------------------------------------------------------------------------------
def test_port_open_or_closed_from_a_host_by_name_or_address():
    spec = read("port", {"from": "client", "to": "server1", "port": 3306, "state": "closed"})
    live = FakeLive(lambda h, a: done(a, rc=1))
    out = checks.KINDS["port"].attempt(live, spec)
    assert out.ok and out.seen == "tcp 10.0.1.11:3306 from client: closed"
    assert live.ran[0][1] == ["nc", "-z", "-w", "2", "10.0.1.11", "3306"]
    assert not checks.KINDS["port"].attempt(FakeLive(lambda h, a: done(a)), spec).ok
    udp = read("port", {"from": "client", "to": "10.0.0.2", "port": 53, "proto": "udp", "state": "open"})
    live = FakeLive(lambda h, a: done(a))
    assert checks.KINDS["port"].attempt(live, udp).ok and "-u" in live.ran[0][1] and "10.0.0.2" in live.ran[0][1]


# --- haproxy (a fake admin socket) -------------------------------------------------------------------
STAT = ("# pxname,svname,status,check_status\nservers,server1,UP,L7OK\nservers,server2,DOWN,L4CON\n"
        "servers,BACKEND,UP,\n")


@pytest.fixture
def admin_socket():
    folder = Path(tempfile.mkdtemp(prefix="wl-hap-"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(folder / "admin.sock"))
    sock.listen(4)
    answers = {"text": STAT}

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(answers["text"].encode())
    threading.Thread(target=serve, daemon=True).start()
    yield folder, answers
    sock.close()
    (folder / "admin.sock").unlink()
    folder.rmdir()


def test_haproxy_states_from_its_admin_socket(admin_socket):
    folder, answers = admin_socket
    spec = read("haproxy", {"host": "lb1", "servers": {"server1": "UP", "server2": "UP"}})
    live = FakeLive(None, {("lb1", "haproxy"): folder})
    out = checks.KINDS["haproxy"].attempt(live, spec)
    assert not out.ok and out.seen == "server1 UP, server2 DOWN"
    answers["text"] = STAT.replace("server2,DOWN", "server2,UP 1/2")
    assert checks.KINDS["haproxy"].attempt(live, spec).ok


def test_haproxy_without_a_socket_is_a_failure_not_a_crash(tmp_path):
    spec = read("haproxy", {"servers": {"server1": "UP"}})
    out = checks.KINDS["haproxy"].attempt(FakeLive(None, {("lb1", "haproxy"): tmp_path}), spec)
    assert not out.ok and "did not answer on its admin socket" in out.seen


# --- replication ------------------------------------------------------------------------------------
def test_replication_writes_a_marked_row_and_reads_it_on_the_replica(tmp_path):
    spec = read("replication", {"primary": "server1", "replica": "server2"})
    written = []

    def answer(host, argv):
        statement = argv[-1]
        if statement.startswith("INSERT"):
            written.append(statement.split("'")[1])
            return done(argv)
        return done(argv, "1\n" if host == "server2" and written[0] in statement else "0\n")
    dirs = {("server1", "mariadb"): tmp_path / "a", ("server2", "mariadb"): tmp_path / "b"}
    live = FakeLive(answer, dirs)
    out = checks.KINDS["replication"].run(live, spec, deadline=0)
    assert out.ok and "was on server2" in out.seen
    assert live.ran[0][0] == "server1" and f"--socket={tmp_path / 'a' / 'mysqld.sock'}" in live.ran[0][1]


def test_replication_that_does_not_arrive_says_what_the_replica_reports(tmp_path):
    spec = read("replication", {"primary": "server1", "replica": "server2"})
    status = ("*** 1. row ***\n  Master_Host: 10.0.1.10\n  Slave_IO_Running: Connecting\n  Slave_SQL_Running: Yes\n"
              "  Last_IO_Error: error connecting to master 'repl@10.0.1.10:3306'\n  Last_SQL_Error: \n")

    def answer(host, argv):
        if "SHOW SLAVE STATUS" in argv[-1]:
            return done(argv, status)
        return done(argv, "0\n")
    dirs = {("server1", "mariadb"): tmp_path, ("server2", "mariadb"): tmp_path}
    out = checks.KINDS["replication"].run(FakeLive(answer, dirs), spec, deadline=0)
    assert not out.ok and "replica of 10.0.1.10, IO thread Connecting" in out.seen
    assert "error connecting to master" in out.seen
    failed = checks.KINDS["replication"].run(FakeLive(lambda h, a: done(a, "", "ERROR 1290 read-only", 1), dirs),
                                             spec, deadline=0)
    assert not failed.ok and "the write on server1 failed" in failed.seen


# --- prometheus and alerts --------------------------------------------------------------------------
def prometheus(alerts=(), value="24.5"):
    def answer(host, argv):
        url = next(a for a in argv if a.startswith("http://"))
        if url.endswith("/alerts"):
            data = {"alerts": [{"labels": {"alertname": n}, "state": s} for n, s in alerts]}
        else:
            data = {"result": [{"metric": {}, "value": [0, value]}] if value is not None else []}
        return done(argv, json.dumps({"status": "success", "data": data}))
    return answer


def test_prometheus_query_compares_the_first_value():
    spec = read("prometheus", {"query": 'up{job="nginx",server="server2"}', "equals": 1})
    assert checks.KINDS["prometheus"].attempt(FakeLive(prometheus(value="1")), spec).ok
    out = checks.KINDS["prometheus"].attempt(FakeLive(prometheus(value="0")), spec)
    assert not out.ok and "= 0, expected equals 1" in out.seen
    assert "no series" in checks.KINDS["prometheus"].attempt(FakeLive(prometheus(value=None)), spec).seen
    garbage = checks.KINDS["prometheus"].attempt(FakeLive(lambda h, a: done(a, "<html>")), spec)
    assert not garbage.ok and "did not answer" in garbage.seen


def test_alert_state_with_a_bounded_load_that_is_always_stopped():
    spec = read("alert", {"name": "HighQPS", "load": {"url": "https://www.foobar.com/health", "rate": 25, "seconds": 10}})
    live = FakeLive(prometheus(alerts=[("HighQPS", "firing")]))
    out = checks.KINDS["alert"].run(live, spec, deadline=0)
    assert out.ok and out.seen == "HighQPS firing (lab:http_requests:rate = 24.5)"
    assert live.started == [["curl", "-s", "--max-time", "3", "--rate", "25/s", "https://www.foobar.com/health?n=[1-250]"]]
    quiet = checks.KINDS["alert"].run(FakeLive(prometheus(alerts=[("HighQPS", "pending")])), spec, deadline=0)
    assert not quiet.ok and "HighQPS pending" in quiet.seen
    idle = read("alert", {"firing": False})
    assert checks.KINDS["alert"].run(FakeLive(prometheus()), idle, deadline=0).ok


def test_the_load_is_stopped_even_when_prometheus_fails():
    spec = read("alert", {"load": {"url": "http://x/"}})
    live = FakeLive(lambda h, a: done(a, "not json"))
    out = checks.KINDS["alert"].run(live, spec, deadline=0)
    assert not out.ok and "did not answer" in out.seen


def test_stop_ends_the_process_group():
    p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    checks.stop(p)
    assert p.poll() is not None


# --- vip and command ---------------------------------------------------------------------------------
def test_vip_is_on_the_host_named():
    spec = read("vip", {"address": "10.0.0.9", "host": "lb2"})
    addr = "2: lb2-eth0    inet 10.0.0.20/24 brd 10.0.0.255 scope global lb2-eth0\n"
    assert not checks.KINDS["vip"].attempt(FakeLive(lambda h, a: done(a, addr)), spec).ok
    held = addr + "2: lb2-eth0    inet 10.0.0.9/24 scope global secondary lb2-eth0\n"
    assert checks.KINDS["vip"].attempt(FakeLive(lambda h, a: done(a, held)), spec).ok


def test_command_exit_and_output():
    spec = read("command", {"host": "server1", "argv": ["ss", "-ltn"], "output": r"127\.0\.0\.1:3306"})
    live = FakeLive(lambda h, a: done(a, "LISTEN 0 80 127.0.0.1:3306 0.0.0.0:*\n"))
    assert checks.KINDS["command"].attempt(live, spec).ok and live.ran == [("server1", ["ss", "-ltn"])]
    out = checks.KINDS["command"].attempt(FakeLive(lambda h, a: done(a, "LISTEN 0.0.0.0:3306\n")), spec)
    assert not out.ok and "does not match" in out.seen
    out = checks.KINDS["command"].attempt(FakeLive(lambda h, a: done(a, "", "nope", rc=3)), spec)
    assert not out.ok and "exit 3, expected 0" in out.seen


def test_a_command_that_hangs_is_an_answer_not_a_crash():
    def hang(host, argv):
        raise subprocess.TimeoutExpired(argv, 15)
    spec = read("command", {"host": "server1", "argv": ["sleep", "99"]})
    out = checks.KINDS["command"].attempt(FakeLive(hang), spec)
    assert not out.ok and "exit 124" in out.seen
