"""C27 link-throughput judged on synthetic raw data: captures, switch counters, iperf3 and wrk outputs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.base import record_case
from experiments.claims.link_throughput import CASES, COUNTERS_FILE, PHASE_FILE
from tests.unit.pcaps import T0, Conversation, tls_record
from tests.unit.raw_data import new_case, write_cpu, write_csv

CLIENT, LB_FRONT, LB_BACK, SERVER = "10.0.0.100", "10.0.0.10", "10.0.1.10", "10.0.1.11"
MACS = {ip: "02:00:" + ":".join(f"{int(x):02x}" for x in ip.split(".")) for ip in (CLIENT, LB_FRONT, LB_BACK, SERVER)}
LOCAL = {"lb-front": LB_FRONT, "lb-back": LB_BACK}


def front(port: int, t: float) -> Conversation:
    return Conversation(a_ip=CLIENT, b_ip=LB_FRONT, a_mac=MACS[CLIENT], b_mac=MACS[LB_FRONT], dport=port, t=t)


def back(port: int, t: float) -> Conversation:
    return Conversation(a_ip=LB_BACK, b_ip=SERVER, a_mac=MACS[LB_BACK], b_mac=MACS[SERVER], dport=port, t=t,
                        sport=41000)


def bulk_pair(n: int, t: float) -> tuple[Conversation, Conversation, int]:
    f, b = front(5201, t).handshake(), back(5201, t + 0.0005).handshake()
    for i in range(n):
        f.a_sends(bytes(1448))
        b.a_sends(bytes(1448))
        if i % 2:
            f.b_acks()
            b.b_acks()
    return f, b, n * 1448


def http_pair(requests: int, t: float, tls: bool = False) -> tuple[Conversation, Conversation, int]:
    """requests request/response exchanges (kept alive); returns the bytes the client read."""
    port = 443 if tls else 80
    f, b = front(port, t).handshake(), back(port if tls else 80, t + 0.0005).handshake()
    req = b"GET /static/hello.txt HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n" + b"x" * 200
    read = 0
    if tls:
        f.a_sends(tls_record(22, 250))
        f.b_sends(tls_record(22, 120) + tls_record(20, 1) + tls_record(23, 1500))
        f.a_sends(tls_record(20, 1) + tls_record(23, 53))
    for _ in range(requests):
        f.a_sends(tls_record(23, len(req) + 17) if tls else req)
        b.a_sends(req)
        b.b_sends(resp)
        f.b_sends(tls_record(23, len(resp) + 17) if tls else resp)
        read += len(resp)
    return f, b, read


def wrk_text(requests: int, read: int, url: str) -> str:
    return (f"Running 2s test @ {url}\n  2 threads and 8 connections\n"
            "  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.00ms  300.00us   5.00ms   80.00%\n"
            "    Req/Sec     4.00k   100.00     4.20k    70.00%\n  Latency Distribution\n     50%    0.90ms\n"
            "     99%    3.00ms\n"
            f"  {requests} requests in 2.00s, {read / 1024:.2f}KB read\nRequests/sec:   {requests / 2:.2f}\n"
            "Transfer/sec:      2.00MB\n")


def write_phase(case_dir: Path, phase: str, tool: str, convs: dict[str, Conversation], lost: int = 0,
                skew: float = 1.0, t_end: float | None = None) -> Path:
    pdir = case_dir / phase
    pdir.mkdir(parents=True, exist_ok=True)
    begin, end, caps = {}, {}, {}
    t1 = t_end or max(c.t for c in convs.values()) + 0.5
    t0 = min(c.records[0][0] for c in convs.values()) - 0.5
    for link, c in convs.items():
        c.write(pdir / f"{link}.pcap")
        sent = c.sent_by(LOCAL[link])
        got = sum(len(d) for _, d, _ in c.records) - sent
        begin[link] = {"t": t0, "rx_bytes": 1000, "tx_bytes": 2000, "rx_packets": 1, "tx_packets": 2}
        end[link] = {"t": t1, "rx_bytes": 1000 + round(sent * skew), "tx_bytes": 2000 + got, "rx_packets": 9,
                     "tx_packets": 9}
        n = len(c.records)
        caps[link] = {"pcap": f"{link}.pcap", "tcpdump": {"captured": n, "received": n + lost, "dropped": 0,
                                                         "lost": lost}}
    (pdir / PHASE_FILE).write_text(json.dumps({"phase": phase, "tool": tool, "snaplen": 0, "begin": begin,
                                               "end": end, "captures": caps}))
    write_csv(pdir / COUNTERS_FILE, ["t", "link", "rx_bytes", "tx_bytes", "rx_packets", "tx_packets"],
              [[t, link, end[link]["rx_bytes"] * k, end[link]["tx_bytes"] * k, 0, 0]
               for k, t in ((0, t0), (1, t1)) for link in convs])
    return pdir


def iperf_json(pdir: Path, received: int, error: str | None = None) -> None:
    data = {"error": error} if error else {
        "start": {"timestamp": {"timesecs": T0}},
        "intervals": [{"sum": {"start": 0, "end": 0.5, "bits_per_second": 6e8}}],
        "end": {"sum_sent": {"bytes": received, "retransmits": 3},
                "sum_received": {"bytes": received, "bits_per_second": received * 8 / 3}}}
    (pdir / "iperf3.json").write_text(json.dumps(data))


def distributed(tmp: Path, iperf_factor: float = 1.0, skew: float = 1.0, lost: int = 0, wrk_factor: float = 1.0,
                iperf_error: str | None = None, overrides: dict | None = None):
    exp, raw, d = new_case(tmp, "link-throughput", "distributed", overrides)
    (d / "links.json").write_text(json.dumps({"local": LOCAL}))
    t = T0
    f, b, sent = bulk_pair(300, t)
    p = write_phase(d, "bulk", "iperf3", {"lb-front": f, "lb-back": b}, lost=lost, skew=skew)
    iperf_json(p, round(sent * iperf_factor), iperf_error)
    for phase in ("http", "http-close"):
        t += 5
        f, b, read = http_pair(100, t)
        p = write_phase(d, phase, "wrk" if phase == "http" else "wrk-close", {"lb-front": f, "lb-back": b})
        (p / "wrk.txt").write_text(wrk_text(100, round(read * wrk_factor), "http://www.foobar.com/static/hello.txt"))
    write_cpu(d, T0 - 1, t + 3, 0.5)
    return exp, raw


def secured(raw: Path, case: str) -> None:
    exp_params = json.loads((raw / "run.json").read_text())["params"]
    from experiments import registry
    exp = registry.get("link-throughput")
    c = next(c for c in exp.all_cases(exp_params) if c.name == case)
    record_case(raw, "link-throughput", exp_params, c)
    d = raw / case
    d.mkdir(parents=True, exist_ok=True)
    (d / "lab.json").write_text(json.dumps({"design": "secured"}))
    (d / "links.json").write_text(json.dumps({"local": LOCAL}))
    t = T0 + 20
    for phase in ("https", "https-close"):
        t += 5
        f, b, read = http_pair(100, t, tls=True)
        p = write_phase(d, phase, "wrk" if phase == "https" else "wrk-close", {"lb-front": f, "lb-back": b})
        (p / "wrk.txt").write_text(wrk_text(100, read, "https://www.foobar.com/static/hello.txt"))
    write_cpu(d, T0, t + 3, 0.5)


def test_counts_that_agree_are_supported(tmp_path):
    exp, raw = distributed(tmp_path)
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    m = v.measured
    assert m["bulk.front.goodput_to_iperf3"] == 1.0 and m["bulk.back.goodput_to_iperf3"] == 1.0
    assert m["bulk.front.wire_in_to_counter"] == 1.0 and m["bulk.back.wire_out_to_counter"] == 1.0
    assert m["wire_counter_error_max"] == 0 and m["tcpdump_lost"] == 0 and m["tools_not_run"] == []
    assert m["http.front.goodput_to_wrk_read"] == pytest.approx(1.0, abs=0.001)
    assert m["http.front.bytes_per_request"] > 300 and m["bulk.front.tcpdump_lost"] == 0
    assert any(p.endswith("distributed-bulk-throughput.png") for p in v.plots)
    assert any(p.endswith("overhead.png") for p in v.plots)
    assert (raw.parent / "plots" / "overhead.png").exists()


@pytest.mark.parametrize("kw,why", [
    ({"iperf_factor": 1.05}, "from iperf3's received bytes"),   # iperf3 received 5% more than the packets carried
    ({"iperf_factor": 0.96}, "from iperf3's received bytes"),
    ({"skew": 1.04}, "from the switch port counters"),          # the switch counted 4% more than the capture
    ({"wrk_factor": 0.9}, "from wrk's bytes read"),
])
def test_counts_off_by_more_than_the_tolerance_are_refuted(tmp_path, kw, why):
    exp, raw = distributed(tmp_path, **kw)
    v = exp.analyse(raw)
    assert v.verdict == "refuted", v.reasons
    assert any(why in r and ": NO" in r for r in v.reasons), v.reasons


def test_within_the_tolerance_is_supported(tmp_path):
    exp, raw = distributed(tmp_path, iperf_factor=1.02, skew=0.98)
    assert exp.analyse(raw).verdict == "supported"


def test_a_capture_that_lost_packets_is_inconclusive_never_wrong(tmp_path):
    exp, raw = distributed(tmp_path, lost=12, iperf_factor=1.2)
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive"
    assert any("capture is incomplete" in r and "24" in r for r in v.reasons), v.reasons  # 12 on each link


def test_iperf3_that_did_not_run_is_inconclusive(tmp_path):
    exp, raw = distributed(tmp_path, iperf_error="unable to connect to server")
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive" and any("did not run" in r and "bulk" in r for r in v.reasons), v.reasons


def test_an_empty_capture_is_inconclusive(tmp_path):
    exp, raw = distributed(tmp_path)
    from tests.unit.pcaps import write_pcap
    write_pcap(raw / "distributed" / "http" / "lb-back.pcap", [])
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive" and any("no packets" in r for r in v.reasons), v.reasons


def test_https_costs_bytes_and_the_record_overhead_is_reported(tmp_path):
    exp, raw = distributed(tmp_path, overrides={"min_bytes": 1000})  # small synthetic loads: judge them too
    for case in ("terminate", "reencrypt"):
        secured(raw, case)
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    m = v.measured
    assert m["https_to_http_bytes_per_request"] > 1.0
    assert m["terminate.https.front.tls_version"] == "1.3"
    assert m["terminate.https.front.tls_header_bytes"] == 5 * (3 + 3 + 200)
    # what wrk read is inside the ApplicationData records, less 17 bytes of AEAD overhead each
    assert m["terminate.https.front.tls_app_estimate_to_wrk_read"] > 1.0
    assert any("wire bytes per request" in r for r in v.reasons)
    assert set(CASES) == {"distributed", "terminate", "reencrypt"}


def test_cases_and_phases_fit_the_time_budget():
    from experiments import registry
    exp = registry.get("link-throughput")
    p = exp.params()
    seconds = sum(p["bulk_s"] if tool == "iperf3" else p["load_s"] for _, _, phases in CASES.values()
                  for _, tool in phases)
    assert seconds <= 15 and len(exp.all_cases(p)) == 3


def test_directions_too_small_to_judge_leave_the_claim_unjudged(tmp_path):
    exp, raw = distributed(tmp_path)
    secured(raw, "terminate")  # 100 requests: every direction under min_bytes
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive"
    assert any(r.startswith("terminate: largest deviation of wire bytes") and "not measured" in r for r in v.reasons)
