"""The secured design: HTTPS with the run's CA, the SSL-termination gap on the wire, Prometheus QPS."""
from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from pathlib import Path

from experiments.credentials import wait_quiet
from tests.integration.conftest import CLI, in_host

DESIGN = "secured"
UP_ARGS = ["--param", "qps_alert=20"]
# node x 3, nginx x 2, mysqld x 2 (agents), haproxy (API), snmp x 2 (agents polled), mtail (logs)
TARGETS = 11
PASSWORD = "wonderland"


def test_https_is_trusted_inside_the_lab_and_http_redirects(detached_lab):
    ok = in_host("client", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}",
                 "https://www.foobar.com/")
    assert ok.stdout == "200 0"
    redirect = in_host("client", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                       "http://www.foobar.com/api/items")
    assert redirect.stdout == "301 https://www.foobar.com/api/items"
    # The machine itself does not trust the lab CA: nothing leaked into its trust store.
    ca = Path(detached_lab["hosts"] and f"/run/weblab/{detached_lab['run_id']}/pki/ca.crt").read_text()
    assert ca not in Path("/etc/ssl/certs/ca-certificates.crt").read_text()


def test_a_certificate_from_another_ca_is_refused(detached_lab, tmp_path):
    from weblab.pki import LabCA
    other = LabCA(tmp_path / "other", "impostor").create()
    res = in_host("client", "curl", "-s", "-o", "/dev/null", "--cacert", str(other.cert),
                  "https://www.foobar.com/")
    assert res.returncode == 60  # curl: peer certificate cannot be authenticated with given CA


def login_captured(state: dict, link: str, tmp: Path) -> bytes:
    """Capture `link` (with `weblab capture`) while the client logs in over HTTPS; the pcap's bytes."""
    pcap = tmp / f"{link}.pcap"
    cap = subprocess.Popen([*CLI, "capture", link, "-w", str(pcap)], stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(cap)
        res = in_host("client", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--data",
                      f"username=alice&password={PASSWORD}", "https://www.foobar.com/login")
        assert res.stdout == "200"
        wait_quiet(pcap)
    finally:
        cap.terminate()
        cap.wait(timeout=10)
    return pcap.read_bytes()


def wait_listening(cap: subprocess.Popen, timeout: float = 5) -> None:
    """Until tcpdump says it is listening (its stderr), bounded."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(cap.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = ""
    while "listening on" not in seen:
        left = deadline - time.monotonic()
        assert left > 0 and sel.select(left), f"tcpdump did not start: {seen}"
        seen += cap.stderr.readline()


def test_terminated_tls_leaves_the_password_in_clear_on_the_backend_link_only(detached_lab, tmp_path):
    client_side = login_captured(detached_lab, "client-link", tmp_path)
    backend_side = login_captured(detached_lab, "lb-back", tmp_path)
    assert len(client_side) > 1000 and len(backend_side) > 1000
    assert PASSWORD.encode() not in client_side
    assert f"password={PASSWORD}".encode() in backend_side


def test_prometheus_sees_every_target_and_the_qps_of_a_known_load(detached_lab):
    prom = "http://127.0.0.1:9090"

    def query(expr: str) -> list:
        res = in_host("monitor", "curl", "-s", f"{prom}/api/v1/query?query={urllib.parse.quote(expr)}")
        return json.loads(res.stdout)["data"]["result"]

    deadline = time.monotonic() + 20  # Prometheus hands targets to its scrape loop every 5 s
    while True:
        health = json.loads(in_host("monitor", "curl", "-s", f"{prom}/api/v1/targets").stdout)
        targets = health["data"]["activeTargets"]
        if (len(targets) == TARGETS and all(t["health"] == "up" for t in targets)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(targets) == TARGETS and all(t["health"] == "up" for t in targets), targets
    # 40 req/s for 8 s from the client (bounded: 320 requests), against an alert threshold of 20.
    load = subprocess.Popen([*CLI, "exec", "client", "--", detached_lab["python"], "-m",
                             "experiments.tools.openloop", "--url", "https://www.foobar.com/health",
                             "--rate", "40", "--duration", "8", "--out", "/dev/null"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # The rate window is 5 s: read QPS once the window holds load only (bounded polling).
        start = time.monotonic()
        fired = False
        while time.monotonic() - start < 7:
            time.sleep(0.5)
            fired = fired or bool(query('ALERTS{alertname="HighQPS",alertstate="firing"}'))
        total = query("lab:http_requests:rate")
        qps = float(total[0]["value"][1]) if total else 0.0
        assert fired, f"HighQPS did not fire; lab QPS read {qps}"
        assert 38 <= qps <= 42, qps  # within 5% of the 40 req/s generated
    finally:
        load.wait(timeout=30)
    deadline = time.monotonic() + 15
    while query('ALERTS{alertname="HighQPS",alertstate="firing"}') and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not query('ALERTS{alertname="HighQPS",alertstate="firing"}'), "HighQPS did not clear"


def test_each_agentless_source_is_in_prometheus_and_moves_with_traffic(detached_lab):
    """HAProxy's API, SNMP (snmpd polled through the SNMP exporter) and log analysis (Nginx syslog ->
    rsyslog -> mtail): each one's counter is scraped and grows when the client sends requests."""
    prom = "http://127.0.0.1:9090"
    sources = {"api": 'sum(haproxy_frontend_http_requests_total{proxy!="stats"})',
               "snmp": 'sum(ifHCInOctets{job="snmp",ifName=~"server.-eth0"})',
               "logs": 'sum(nginx_syslog_requests_total{job="mtail"})',
               "agent": 'sum(nginx_http_requests_total{job="nginx"})'}

    def read() -> dict[str, float]:
        out = {}
        for name, expr in sources.items():
            res = in_host("monitor", "curl", "-s", f"{prom}/api/v1/query?query={urllib.parse.quote(expr)}")
            result = json.loads(res.stdout)["data"]["result"]
            out[name] = float(result[0]["value"][1]) if result else None
        return out

    deadline = time.monotonic() + 20  # every source scraped at least once (bounded)
    before = read()
    while None in before.values() and time.monotonic() < deadline:
        time.sleep(0.5)
        before = read()
    assert None not in before.values(), f"not in Prometheus: {[k for k, v in before.items() if v is None]}"
    n = 200  # 40 req/s for 5 s
    res = in_host("client", detached_lab["python"], "-m", "experiments.tools.openloop", "--url",
                  "https://www.foobar.com/static/hello.txt", "--rate", "40", "--duration", "5", "--out", "/dev/null",
                  timeout=60)
    assert res.returncode == 0, res.stderr
    # SNMP's figures may be a few seconds old (Net-SNMP caches the interface table): wait, bounded
    deadline = time.monotonic() + 15
    after = read()
    while time.monotonic() < deadline and not all(after[k] - before[k] >= n * (0.95 if k != "snmp" else 100)
                                                  for k in sources):
        time.sleep(0.5)
        after = read()
    for k in ("api", "logs", "agent"):
        assert after[k] - before[k] >= 0.95 * n, (k, before[k], after[k])
    assert after["snmp"] - before["snmp"] >= 100 * n, ("snmp octets", before["snmp"], after["snmp"])
    # SNMP answers the monitor only: the same request from server2 (a peer on the back network, with the
    # community) is dropped by the firewall (the client has no route to the back network at all)
    server1 = detached_lab["hosts"]["server1"]["ips"][0]
    ask = ["snmpget", "-v2c", "-c", "weblab-monitor", "-t", "1", "-r", "0", "-On", server1, "1.3.6.1.2.1.31.1.1.1.1.1"]
    assert in_host("monitor", *ask, timeout=10).stdout.startswith(".1.3.6.1.2.1.31.1.1.1.1.1 = ")
    peer = in_host("server2", *ask, timeout=10)
    assert peer.returncode != 0 and "Timeout" in peer.stdout + peer.stderr, (peer.stdout, peer.stderr)
