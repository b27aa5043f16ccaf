"""The in-host tools and the wrk parser, against real local servers on 127.0.0.1 (no root, no lab)."""
from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.load import parse_wrk, wrk_argv
from experiments.stats import percentile
from experiments.testing import LocalHttpServer
from experiments.tools.openloop import timetable

REPO = Path(__file__).resolve().parents[2]
SERVER = """
import sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536
    disable_nagle_algorithm = True
    def do_GET(self):
        body = b"ok\\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
ThreadingHTTPServer.daemon_threads = True
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


@pytest.fixture
def server_port():
    """A threaded HTTP server in its own process (so it does not share the generator's GIL)."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        port = int(proc.stdout.readline())  # the server prints its port once it listens
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_openloop_holds_500_per_second_within_2_percent(tmp_path: Path, server_port: int) -> None:
    out = tmp_path / "o.csv"
    res = subprocess.run([sys.executable, str(REPO / "experiments/tools/openloop.py"), "--url",
                          f"http://127.0.0.1:{server_port}/", "--rate", "500", "--duration", "2", "--out", str(out)],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 1000 == summary["scheduled"]
    start = min(float(r["t_sched"]) for r in rows)
    sent = [float(r["t_send"]) for r in rows if r["t_send"]]
    send_rate = sum(1 for t in sent if t - start <= 2.0) / 2.0
    assert abs(send_rate - 500) / 500 <= 0.02, send_rate
    lateness = [float(r["t_send"]) - float(r["t_sched"]) for r in rows if r["t_send"]]
    assert percentile(lateness, 50) < 0.005, "sends should leave within 5 ms of their schedule"
    assert sum(r["ok"] == "1" for r in rows) >= 990
    assert summary["workers"] < 256, "the pool should not need its whole bound against a fast server"


def test_openloop_measures_latency_from_the_schedule_when_the_server_is_slow(tmp_path: Path) -> None:
    srv = LocalHttpServer().start()
    try:
        out = tmp_path / "o.csv"
        # 4 connections, 100 ms per request -> capacity 40 req/s; offered 80 req/s queues in the generator
        res = subprocess.run([sys.executable, "-m", "experiments.tools.openloop", "--url", srv.url + "slow?ms=100",
                              "--rate", "80", "--duration", "1.5", "--max-inflight", "4", "--out", str(out)],
                             capture_output=True, text=True, timeout=30, cwd=REPO)
        assert res.returncode == 0, res.stderr
        rows = [r for r in csv.DictReader(open(out)) if r["ok"] == "1"]
        from_sched = [float(r["t_recv"]) - float(r["t_sched"]) for r in rows]
        from_send = [float(r["t_recv"]) - float(r["t_send"]) for r in rows]
        assert max(from_send) < 0.5
        assert percentile(from_sched, 99) > 0.5, "queueing delay in the generator must count (no coordinated omission)"
    finally:
        srv.stop()


def test_timetable_uniform_and_seeded_poisson() -> None:
    assert timetable(4, 1) == [0, 0.25, 0.5, 0.75]
    a, b = timetable(100, 5, "poisson", 7), timetable(100, 5, "poisson", 7)
    assert a == b and all(x < y for x, y in zip(a, a[1:])) and 400 < len(a) < 600
    assert timetable(0, 5) == []


def test_probe_writes_each_request_and_stops_on_sigterm(tmp_path: Path) -> None:
    srv = LocalHttpServer(name="web-x").start()
    out = tmp_path / "p.csv"
    proc = subprocess.Popen([sys.executable, str(REPO / "experiments/tools/probe.py"), "--url", srv.url,
                             "--duration", "30", "--out", str(out)], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 30):
            time.sleep(0.02)
        srv.stop()  # the site goes away: the probe records failures, it does not stop
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "Refused" not in out.read_text():
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.stop()
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["t_send", "t_recv", "status", "ok", "served_by", "error"]
    good = [r for r in rows if r["ok"] == "1"]
    bad = [r for r in rows if r["ok"] == "0"]
    assert len(good) >= 29 and good[0]["served_by"] == "web-x" and good[0]["status"] == "200"
    assert bad and "ConnectionRefused" in bad[-1]["error"]
    sends = sorted(float(r["t_send"]) for r in rows)
    gaps = [b - a for a, b in zip(sends, sends[1:])]
    assert 0.015 < percentile(gaps, 50) < 0.03, "one request about every 20 ms"


# ---- wrk output recorded from `wrk ... --latency` against local test servers (wrk debian/4.1.0) ----
WRK_OK = """Running 2s test @ http://127.0.0.1:43481/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   609.01us  393.17us   7.25ms   83.91%
    Req/Sec     6.50k     1.49k    8.96k    45.24%
  Latency Distribution
     50%  506.00us
     75%  702.00us
     90%    1.01ms
     99%    2.11ms
  27159 requests in 2.10s, 3.52MB read
Requests/sec:  12930.94
Transfer/sec:      1.68MB
"""
WRK_NON2XX = """Running 1s test @ http://127.0.0.1:46443/err
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   370.30us  513.32us   6.43ms   95.19%
    Req/Sec    13.85k     3.11k   17.46k    40.00%
  Latency Distribution
     50%  257.00us
     75%  344.00us
     90%  528.00us
     99%    3.29ms
  13774 requests in 1.00s, 2.04MB read
  Non-2xx or 3xx responses: 13774
Requests/sec:  13761.55
Transfer/sec:      2.03MB
"""
WRK_TIMEOUTS = """Running 3s test @ http://127.0.0.1:46443/vslow
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     2.00      0.00     2.00    100.00%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  8 requests in 3.01s, 1.06KB read
  Socket errors: connect 0, read 0, write 0, timeout 8
Requests/sec:      2.66
Transfer/sec:     361.30B
"""
WRK_SLOW = """Running 2s test @ http://127.0.0.1:46155/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    43.13ms    6.66ms  48.17ms   97.49%
    Req/Sec    79.93     22.41   120.00     80.00%
  Latency Distribution
     50%   43.98ms
     75%   44.04ms
     90%   44.12ms
     99%   48.04ms
  319 requests in 2.00s, 43.38KB read
Requests/sec:    159.40
Transfer/sec:     21.68KB
"""
WRK_REFUSED = "unable to connect to 127.0.0.1:1 Connection refused\n"


def test_wrk_parser_on_recorded_output() -> None:
    r = parse_wrk(WRK_OK)
    assert (r.threads, r.connections, r.requests) == (2, 8, 27159)
    assert r.duration_s == pytest.approx(2.10) and r.requests_per_s == pytest.approx(12930.94)
    assert r.read_bytes == pytest.approx(3.52 * 1024**2) and r.transfer_per_s == pytest.approx(1.68 * 1024**2)
    assert r.latency_avg_s == pytest.approx(609.01e-6) and r.latency_max_s == pytest.approx(7.25e-3)
    assert r.percentiles_s == pytest.approx({"50": 506e-6, "75": 702e-6, "90": 1.01e-3, "99": 2.11e-3})
    assert r.failed == 0
    s = parse_wrk(WRK_SLOW)
    assert s.percentiles_s["99"] == pytest.approx(0.04804) and s.transfer_per_s == pytest.approx(21.68 * 1024)


def test_wrk_parser_counts_failures() -> None:
    assert parse_wrk(WRK_NON2XX).non_2xx_3xx == 13774 and parse_wrk(WRK_NON2XX).failed == 13774
    t = parse_wrk(WRK_TIMEOUTS)
    assert t.errors == {"connect": 0, "read": 0, "write": 0, "timeout": 8} and t.failed == 8
    assert t.transfer_per_s == pytest.approx(361.30) and t.latency_avg_s == 0.0
    with pytest.raises(ValueError, match="unable to connect"):
        parse_wrk(WRK_REFUSED)
    with pytest.raises(ValueError):
        parse_wrk(WRK_OK.split("  27159")[0])


def test_wrk_argv_and_live_run(server_port: int) -> None:
    argv = wrk_argv(f"http://127.0.0.1:{server_port}/", 1, connections=4, threads=8, timeout=2)
    assert argv[:5] == ["wrk", "-t4", "-c4", "-d1s", "--timeout"] and "--latency" in argv
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    r = parse_wrk(res.stdout)
    assert r.requests > 0 and r.failed == 0 and not math.isnan(r.percentiles_s["99"])


def test_tools_speak_https_verified_for_the_url_name(tmp_path):
    """probe/openloop over HTTPS: TLS to the resolved address, certificate checked for the URL's name."""
    import http.server
    import ssl
    import threading
    import subprocess
    import sys
    from pathlib import Path
    from weblab.pki import LabCA
    ca = LabCA(tmp_path / "pki", "t").create()
    pem = ca.issue("localhost", ["localhost"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pem)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tools = Path(__file__).resolve().parents[2] / "experiments" / "tools"
    url = f"https://localhost:{server.server_address[1]}/"
    try:
        env = {"SSL_CERT_FILE": str(ca.cert), "PATH": "/usr/bin:/bin"}
        out = tmp_path / "probe.csv"
        res = subprocess.run([sys.executable, str(tools / "probe.py"), "--url", url, "--out", str(out),
                              "--duration", "0.3", "--interval", "0.1"], env=env, capture_output=True,
                             text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        rows = out.read_text().splitlines()[1:]
        assert rows and all(",200," in r for r in rows), rows
        # Without the CA the same URL fails verification: the tools really check certificates.
        subprocess.run([sys.executable, str(tools / "probe.py"), "--url", url, "--out", str(out),
                              "--duration", "0.2", "--interval", "0.1"], env={"PATH": "/usr/bin:/bin",
                             "SSL_CERT_FILE": "/nonexistent"}, capture_output=True, text=True, timeout=30)
        assert "CERTIFICATE_VERIFY_FAILED" in out.read_text() or ",200," not in out.read_text()
    finally:
        server.shutdown()


def test_wait_healthy_wants_the_latest_requests_ok_of_every_kind(tmp_path: Path) -> None:
    from experiments.drive import wait_healthy
    path = tmp_path / "mix.csv"
    header = "i,kind,source,t_sched,t_send,t_recv,status,ok,served_by,error\n"

    def rows(kinds_ok: list[tuple[str, int]], t0: float = 100.0) -> str:
        return "".join(f"{i},{k},,{t0 + i:.1f},{t0 + i:.1f},{t0 + i + 0.5:.1f},{200 if ok else ''},{ok},s1,\n"
                       for i, (k, ok) in enumerate(kinds_ok))
    path.write_text(header + rows([("read", 0)] + [("read", 1)] * 3 + [("write", 1)] * 2))
    assert wait_healthy(path, 3, 0.0, ("read",)) is False   # a timeout of 0: one look, no wait
    assert wait_healthy(path, 3, 0.2, ("read",)) is True    # the latest three reads succeeded
    assert wait_healthy(path, 3, 0.2, ("read", "write")) is False  # only two writes so far
    assert wait_healthy(path, 4, 0.2, ("read",)) is False  # the fourth-latest read failed
    # rows are written when answered: order by send time, so a late failure still counts as recent
    path.write_text(header + rows([("read", 1)] * 3) + "9,read,,99.0,99.0,104.0,,0,,timeout\n")
    assert wait_healthy(path, 3, 0.2, ("read",)) is True
    assert wait_healthy(path, 4, 0.2, ("read",)) is False
    assert wait_healthy(tmp_path / "absent.csv", 1, 0.1) is False


def test_failure_summary_counts_kinds_and_times() -> None:
    from experiments.stats import Request, failure_summary
    rows = [Request(10.0 + i * 0.1, 10.05 + i * 0.1, i not in (3, 4, 7), 502 if i == 7 else None, "",
                    "" if i == 7 else "ConnectionResetError: [Errno 104]") for i in range(10)]
    assert failure_summary(rows) == "3 of 10 failed (2x ConnectionResetError, 1x HTTP 502) at +0.3 s..+0.7 s from the first send"
    assert failure_summary([r for r in rows if r.ok]) == ""
