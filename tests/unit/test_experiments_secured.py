"""Verdict rules of the secured-design claims (C10 https, C11 ssl-termination, C12 monitoring-qps) on synthetic raw data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.claims.monitoring_qps import crossing, uncrossing, windowed_rate
from experiments.credentials import FORM
from tests.unit.raw_data import T0, new_case, write_cpu, write_csv

CLIENT, LB, LB_BACK, WEB = "10.0.0.100", "10.0.0.10", "10.0.1.10", "10.0.1.11"


def pcap(path: Path, segments: list[tuple[str, str, int, int, bytes]]) -> None:
    """A pcap of TCP segments (src, dst, sport, dport, payload), with a handshake-less flow (enough for the search)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    seqs: dict[tuple, int] = {}
    pkts = []
    for i, (src, dst, sport, dport, data) in enumerate(segments):
        key = (src, sport, dst, dport)
        seq = seqs.get(key, 1000)
        p = Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="PA", seq=seq) / data
        p.time = T0 + i * 0.001
        pkts.append(p)
        seqs[key] = seq + len(data)
    wrpcap(str(path), pkts)


def http_login(port: int = 80, split: bool = False, form: bytes = FORM.encode()) -> list:
    head = (b"POST /login HTTP/1.1\r\nHost: www.foobar.com\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % len(form))
    req = [(CLIENT, LB, 40000, port, head + form)] if not split else \
        [(CLIENT, LB, 40000, port, head + form[:25]), (CLIENT, LB, 40000, port, form[25:])]
    return req + [(LB, CLIENT, port, 40000, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>hi</html>")]


def tls_login(src: str = CLIENT, dst: str = LB, app: int = 4) -> list:
    def rec(ctype: int, n: int) -> bytes:
        return bytes([ctype, 3, 3]) + n.to_bytes(2, "big") + b"\x17" * n
    out = [(src, dst, 40001, 443, rec(22, 200)), (dst, src, 443, 40001, rec(22, 900) + rec(20, 1))]
    out += [((src, dst, 40001, 443) if i % 2 == 0 else (dst, src, 443, 40001)) + (rec(23, 120),) for i in range(app)]
    return out


def login_json(case_dir: Path, code: str = "200", url: str = "https://www.foobar.com/login") -> None:
    (case_dir / "login.json").write_text(json.dumps({"url": url, "http_code": code, "curl": f"{code} x https",
                                                     "stderr": "", "t_begin": T0, "t_end": T0 + 0.1}))


# ---- C10 https -------------------------------------------------------------------------------------
@pytest.mark.parametrize("case,segments,expect", [
    ("http", http_login(), "supported"),
    ("http", http_login(split=True), "supported"),       # the form split over two segments is still found
    ("http", http_login(form=b"username=alice&password=xxxxxxxxxx"), "refuted"),
    ("https", tls_login(), "supported"),
    ("https", tls_login() + http_login(port=443)[:1], "refuted"),  # a password in clear on 443: not HTTPS
    ("https", tls_login(app=1), "refuted"),               # borderline: fewer TLS application records than asked
])
def test_https_rule(tmp_path, case, segments, expect):
    exp, raw, d = new_case(tmp_path, "https", case)
    pcap(d / "client-link.pcap", segments)
    login_json(d)
    v = exp.analyse(raw)
    assert v.verdict == expect, v.reasons
    if case == "http" and expect == "supported":
        assert v.measured["password_frames"] == [1]


def test_https_failed_login_or_empty_capture_is_inconclusive(tmp_path):
    exp, raw, d = new_case(tmp_path, "https", "https")
    pcap(d / "client-link.pcap", tls_login())
    login_json(d, code="502")
    assert exp.analyse(raw).verdict == "inconclusive"
    exp, raw, d = new_case(tmp_path / "b", "https", "http")
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    wrpcap(str(d / "client-link.pcap"), [Ether() / IP(src=CLIENT, dst=LB) / TCP(flags="S")])
    login_json(d)
    assert exp.analyse(raw).verdict == "inconclusive"


# ---- C11 ssl-termination -----------------------------------------------------------------------------
WRK = """Running 4s test @ https://www.foobar.com/static/hello.txt
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.00ms  300.00us   5.00ms   80.00%
    Req/Sec     4.00k   100.00     4.20k    70.00%
  Latency Distribution
     50%    0.90ms
     75%    1.10ms
     90%    1.50ms
     99%    3.00ms
  32000 requests in 4.00s, 8.00MB read
Requests/sec:   {rps}
Transfer/sec:      2.00MB
"""


def ssl_case(tmp: Path, mode: str, back: list, client: list, code: str = "200", wrk: bool = True):
    exp, raw, d = new_case(tmp, "ssl-termination", mode)
    pcap(d / "client-link.pcap", client)
    pcap(d / "lb-back.pcap", back)
    login_json(d, code)
    if wrk:
        for name, rps in (("static", 8000.0 if mode == "terminate" else 7000.0), ("app", 1000.0)):
            (d / f"wrk-{name}.txt").write_text(WRK.format(rps=rps))
    return exp, raw


def backend_http() -> list:
    return [(LB_BACK, WEB, 41000, 80, s[4]) if s[0] == CLIENT else (WEB, LB_BACK, 80, 41000, s[4]) for s in http_login()]


@pytest.mark.parametrize("mode,back,expect", [
    ("terminate", backend_http(), "supported"),
    ("terminate", tls_login(LB_BACK, WEB), "refuted"),    # nothing in clear on the backend: the gap not shown
    ("reencrypt", tls_login(LB_BACK, WEB), "supported"),
    ("reencrypt", backend_http(), "refuted"),             # re-encrypt that leaks is refuted
    ("reencrypt", tls_login(LB_BACK, WEB, app=1), "refuted"),  # borderline: too little TLS seen on the back
])
def test_ssl_termination_rule(tmp_path, mode, back, expect):
    exp, raw = ssl_case(tmp_path, mode, back, tls_login())
    v = exp.analyse(raw)
    assert v.verdict == expect, v.reasons
    assert v.measured["static_rps"] in (8000.0, 7000.0)


def test_ssl_termination_password_on_the_client_link_refutes(tmp_path):
    exp, raw = ssl_case(tmp_path, "terminate", backend_http(), http_login(port=443))
    assert exp.analyse(raw).verdict == "refuted"


def test_ssl_termination_without_cost_or_login_is_inconclusive(tmp_path):
    exp, raw = ssl_case(tmp_path, "terminate", backend_http(), tls_login(), wrk=False)
    assert exp.analyse(raw).verdict == "inconclusive"
    exp, raw = ssl_case(tmp_path / "b", "terminate", backend_http(), tls_login(), code="000")
    assert exp.analyse(raw).verdict == "inconclusive"


def test_ssl_termination_both_modes_report_the_cost_ratio(tmp_path):
    exp, raw = ssl_case(tmp_path, "terminate", backend_http(), tls_login())
    ssl_case(tmp_path, "reencrypt", tls_login(LB_BACK, WEB), tls_login())
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert v.measured["reencrypt_static_rps_ratio"] == pytest.approx(7000 / 8000, abs=1e-3)


# ---- C12 monitoring-qps ---------------------------------------------------------------------------
def test_windowed_rate_crossing_and_uncrossing():
    sends = [i / 40 for i in range(400)] + [10 + i / 80 for i in range(800)]   # 40 req/s for 10 s, then 80 for 10 s
    assert windowed_rate(sends, 9.99, 5) == pytest.approx(40, abs=0.5)
    t = crossing(sends, 50, 5)
    assert t == pytest.approx(10 + 1.25, abs=0.05)   # (40 (5 - x) + 80 x) / 5 > 50  <=>  x > 1.25 s
    assert uncrossing(sends, 50, 5, after=t) == pytest.approx(20 + 5 - 50 / 80 * 5, abs=0.05)


def qps_run(tmp: Path, factor: float = 1.0, fire_lag: float = 1.3, clear_lag: float = 0.9, early: bool = False,
            firing_at_end: bool = False, sent_fraction: float = 1.0, rates=(20, 40, 80), busy: float = 0.2,
            stall: float = 0.0):
    """Synthetic C12 raw data: open-loop CSVs back to back, Prometheus' samples = factor x the windowed rate."""
    exp, raw, d = new_case(tmp, "monitoring-qps", "secured", {"rates": list(rates), "step_s": 14.0, "clear_s": 12.0})
    (d / "prometheus.json").write_text(json.dumps({
        "metric": "lab:http_requests:rate", "alert": "HighQPS", "rule": "lab:http_requests:rate > 50.0",
        "alert_for": "0s", "threshold": 50.0, "rate_window_s": 5, "scrape_interval_s": 1, "evaluation_interval_s": 1}))
    sends, t = [], T0
    for i, rate in enumerate(rates):
        n = int(rate * 14)
        rows = []
        for k in range(n):
            ts = t + k / rate
            sent = k < n * sent_fraction
            # a stall of `stall` s two seconds into each step: the sends due in it leave together at its end
            tx = max(ts, t + 2 + stall) if t + 2 <= ts < t + 2 + stall else ts
            rows.append([k, f"{ts:.6f}", f"{tx:.6f}" if sent else "", f"{tx + 0.002:.6f}" if sent else "",
                         200 if sent else "", int(sent), "" if sent else "not_sent"])
            if sent:
                sends.append(tx)
        write_csv(d / f"openloop-{i:02d}.csv", ["i", "t_sched", "t_send", "t_recv", "status", "ok", "error"], rows)
        t += 14.3
    end = t + 12
    evals = [T0 + 0.5 + k for k in range(int(end - T0))]
    qps = [[e, str(factor * windowed_rate(sends, e, 5))] for e in evals]
    t_cross = crossing(sends, 50, 5)
    t_unc = uncrossing(sends, 50, 5, t_cross) if t_cross else None
    firing = [[e, "1"] for e in evals if t_cross and t_cross + fire_lag <= e <= t_unc + clear_lag - 1]
    if early:
        firing.insert(0, [T0 + 3.5, "1"])
    (d / "series.json").write_text(json.dumps({
        "queried_at": end + 1, "firing_at_end": firing_at_end,
        "qps": [{"metric": {}, "values": qps}],
        "alerts": [{"metric": {"alertname": "HighQPS", "alertstate": "firing"}, "values": firing}]}))
    write_csv(d / "windows.csv", ["name", "t_start", "t_end"], [["load", f"{T0:.3f}", f"{end:.3f}"]])
    write_cpu(d, T0, end, busy)
    return exp, raw


def test_qps_supported_when_prometheus_matches_and_the_alert_fires_and_clears(tmp_path):
    exp, raw = qps_run(tmp_path)
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert v.measured["max_qps_error"] < 0.001
    assert 1.0 <= v.measured["fire_delay_s"] <= 2.5


@pytest.mark.parametrize("kw,expect", [
    ({"factor": 1.049}, "supported"),       # borderline: 4.9% off is inside +-5%
    ({"factor": 1.06}, "refuted"),          # 6% off
    ({"factor": 0.94}, "refuted"),
    ({"fire_lag": 4.6}, "refuted"),         # fired later than 2 x (1 s scrape + 1 s eval)
    ({"clear_lag": 5.5}, "refuted"),        # cleared too late
    ({"early": True}, "refuted"),           # fired before the load crossed the threshold
    ({"firing_at_end": True}, "refuted"),
    ({"sent_fraction": 0.9}, "inconclusive"),  # the generator did not hold its rate
    ({"stall": 1.0}, "inconclusive"),          # it stalled for 1 s and caught up in a burst
    ({"stall": 0.2}, "supported"),             # a 0.2 s hiccup is within the schedule's tolerance
    ({"rates": (20, 40)}, "inconclusive"),     # the threshold was never crossed
    ({"busy": 0.99}, "inconclusive"),           # the machine saturated
])
def test_qps_rule_edges(tmp_path, kw, expect):
    exp, raw = qps_run(tmp_path, **kw)
    v = exp.analyse(raw)
    assert v.verdict == expect, (v.reasons, v.measured)


def test_monitoring_alert_a_fraction_of_a_scrape_early_is_on_time():
    """rate() extrapolates from scrape-time samples: a firing < 1 scrape before the crossing is on time,
    and the clearing is measured from the fall after the crossing, not from that early firing."""
    from experiments.claims.monitoring_qps import uncrossing, windowed_rate
    sends = [i / 80 for i in range(0, 800)]  # 80 req/s for 10 s
    t_cross = 0.0 + 50 / 80  # (windowed over 1 s for the arithmetic here)
    fall = uncrossing(sends, 50.0, 1.0, max(t_cross - 0.3, t_cross))
    assert fall is not None and fall > 9.0 and windowed_rate(sends, fall, 1.0) <= 50.0
