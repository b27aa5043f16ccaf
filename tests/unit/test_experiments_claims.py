"""Verdict rules of the one-server claims on recorded raw data: supported, refuted, borderline, inconclusive."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from experiments import registry
from experiments.base import Case
from experiments.claims.cannot_scale import point_metrics
from tests.unit.raw_data import T0, new_case, write_cpu, write_csv


def new_run(tmp: Path, slug: str, overrides: dict | None = None, case: str = "one-server"):
    return new_case(tmp, slug, case, overrides, entry_ip="10.0.0.10")


def probe_rows(n: int, interval: float, ok, start: float = T0) -> list[list[object]]:
    rows = []
    for i in range(n):
        t = start + i * interval
        good = ok(t)
        rows.append([f"{t:.6f}", f"{t + 0.003:.6f}", 200 if good else "", int(good), "server1" if good else "",
                     "" if good else "ConnectionRefusedError: [Errno 111] Connection refused"])
    return rows


def faults(case_dir: Path, events: list[tuple[float, float, str, str, int]]) -> None:
    write_csv(case_dir / "faults.csv", ["t_begin", "t_end", "action", "target", "ok", "detail"],
              [[f"{a:.6f}", f"{b:.6f}", act, tgt, ok, ""] for a, b, act, tgt, ok in events])


# ---- C1 spof -------------------------------------------------------------------------------------
def spof_run(tmp: Path, ok_during=lambda t: False, ok_after=lambda t: True, busy: float = 0.3,
             kill_at: float = 3.0, restore_at: float = 7.0, baseline_ok=lambda t: True):
    exp, raw, case = new_run(tmp, "spof")
    k, r = T0 + kill_at, T0 + restore_at

    def ok(t: float) -> bool:
        if t < k:
            return baseline_ok(t)
        if t < r + 0.3:
            return ok_during(t) if t >= k + 0.001 else False
        return ok_after(t)
    write_csv(case / "probe.csv", ["t_send", "t_recv", "status", "ok", "served_by", "error"], probe_rows(550, 0.02, ok))
    faults(case, [(k, k + 0.001, "kill", "server1/nginx", 1), (r, r + 0.3, "start", "server1/nginx", 1)])
    write_cpu(case, T0, T0 + 11, busy)
    return exp, raw


def test_spof_supported_when_nothing_answers_during_the_fault(tmp_path: Path) -> None:
    exp, raw = spof_run(tmp_path)
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert v.measured["fault_success"] == 0.0
    assert v.measured["fault_requests"] >= 190
    assert v.measured["after_success"] == 1.0
    assert v.plots == ["plots/one-server-availability.png"]


def test_spof_refuted_by_a_single_success_during_the_fault(tmp_path: Path) -> None:
    exp, raw = spof_run(tmp_path, ok_during=lambda t: abs(t - (T0 + 5.0)) < 0.01)
    v = exp.analyse(raw)
    assert v.verdict == "refuted"
    assert 0 < v.measured["fault_success"] < 0.01


def test_spof_refuted_without_recovery(tmp_path: Path) -> None:
    exp, raw = spof_run(tmp_path, ok_after=lambda t: False)
    assert exp.analyse(raw).verdict == "refuted"


def test_spof_recovery_borderline_at_99_percent(tmp_path: Path) -> None:
    # after = sends from restore end + 1 s to the end: (11 - 8.3) / 0.02 = 135 rows -> 1 failure is 99.26%
    exp, raw = spof_run(tmp_path, ok_after=lambda t: abs(t - (T0 + 9.0)) > 0.005)
    v = exp.analyse(raw)
    assert v.measured["after_success"] >= 0.99 and v.measured["after_success"] < 1
    assert v.verdict == "supported"
    exp, raw = spof_run(tmp_path / "b", ok_after=lambda t: not (T0 + 9.0 <= t < T0 + 9.03))
    v = exp.analyse(raw)
    assert v.measured["after_success"] < 0.99
    assert v.verdict == "refuted"


def test_spof_inconclusive_when_site_was_unhealthy_before(tmp_path: Path) -> None:
    exp, raw = spof_run(tmp_path, baseline_ok=lambda t: t > T0 + 1.0)
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive"
    assert "not healthy" in v.reasons[0]


def test_spof_unhealthy_reason_says_what_failed_and_when(tmp_path: Path) -> None:
    exp, raw = spof_run(tmp_path, baseline_ok=lambda t: not (T0 + 1.0 <= t < T0 + 1.1))
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive"
    assert "5 of 150 failed (5x ConnectionRefusedError) at +1.0 s..+1.1 s" in v.reasons[0], v.reasons


def test_spof_baseline_starts_where_the_site_was_seen_healthy(tmp_path: Path) -> None:
    # a cold first second (every request refused) followed by the healthy mark: the baseline starts there
    exp, raw = spof_run(tmp_path, baseline_ok=lambda t: t > T0 + 1.0)
    case = raw / "one-server"
    with open(case / "faults.csv", "a", newline="") as f:
        csv.writer(f).writerow([f"{T0 + 1.4:.6f}", f"{T0 + 1.4:.6f}", "healthy", "probe.csv", 1, ""])
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert v.measured["baseline_success"] == 1.0
    # a mark logged after its wait timed out does not move the baseline: the cold second is judged
    (case / "faults.csv").write_text((case / "faults.csv").read_text().replace("probe.csv,1,", "probe.csv,1,not reached"))
    assert exp.analyse(raw).verdict == "inconclusive"


def test_spof_inconclusive_when_too_few_requests_in_fault_window(tmp_path: Path) -> None:
    exp, raw = spof_run(tmp_path, kill_at=3.0, restore_at=3.5)
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive"
    assert "fault window" in v.reasons[0]


def test_spof_inconclusive_when_machine_saturated(tmp_path: Path) -> None:
    exp, raw = spof_run(tmp_path, busy=0.99)
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive"
    assert "busy" in v.reasons[0] and "would have been supported" in v.reasons
    assert v.measured["machine_cpu_saturated_fraction"] == 1.0


def test_spof_saturation_rule_borderline(tmp_path: Path) -> None:
    exp, raw = spof_run(tmp_path)
    case = raw / "one-server"
    samples = [[f"{T0 + i * 0.25:.3f}", 0.99 if i % 2 else 0.5] for i in range(44)]  # exactly half hot
    write_csv(case / "cpu.csv", ["t", "busy"], samples)
    assert exp.analyse(raw).verdict == "supported"
    samples[0][1] = 0.99  # one more hot sample: more than half
    write_csv(case / "cpu.csv", ["t", "busy"], samples)
    assert exp.analyse(raw).verdict == "inconclusive"


def test_spof_inconclusive_without_cpu_samples(tmp_path: Path) -> None:
    exp, raw = spof_run(tmp_path)
    (raw / "one-server" / "cpu.csv").unlink()
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive" and "CPU samples" in v.reasons[0]


def test_run_error_makes_case_inconclusive(tmp_path: Path) -> None:
    exp, raw, case = new_run(tmp_path, "spof")
    (case / "error.txt").write_text("NotReady: nginx@server1 did not become ready within 15 s\n")
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive" and "did not complete" in v.reasons[0] and v.error


# ---- C2 maintenance-downtime ---------------------------------------------------------------------
def deploy_run(tmp: Path, down: tuple[float, float] | None):
    exp, raw, case = new_run(tmp, "maintenance-downtime")
    ok = (lambda t: not (down[0] <= t < down[1])) if down else (lambda t: True)
    write_csv(case / "probe.csv", ["t_send", "t_recv", "status", "ok", "served_by", "error"], probe_rows(500, 0.02, ok))
    load = []
    for i in range(500):
        s = T0 + i * 0.02
        good = ok(s)
        load.append([i, f"{s:.6f}", f"{s + 0.0001:.6f}", f"{s + 0.004:.6f}", 200 if good else 502, int(good), ""])
    write_csv(case / "load.csv", ["i", "t_sched", "t_send", "t_recv", "status", "ok", "error"], load)
    faults(case, [(T0 + 3, T0 + 3, "deploy_begin", "server1", 1), (T0 + 3, T0 + 4.2, "restart", "server1/webapp", 1),
                  (T0 + 4.2, T0 + 4.2, "deploy_end", "server1", 1), (T0 + 9.5, T0 + 9.5, "load_stop", "server1", 1)])
    write_cpu(case, T0, T0 + 10, 0.2)
    return exp, raw


def test_maintenance_supported_with_an_outage(tmp_path: Path) -> None:
    exp, raw = deploy_run(tmp_path, (T0 + 3.1, T0 + 3.9))
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert v.measured["outage_s"] == pytest.approx(0.8, abs=0.03)
    assert v.measured["probe_failed"] == 40 and v.measured["load_failed"] == 40


def test_maintenance_borderline_single_failure_is_an_outage(tmp_path: Path) -> None:
    exp, raw = deploy_run(tmp_path, (T0 + 3.5, T0 + 3.51))
    v = exp.analyse(raw)
    assert v.measured["failed_requests"] == 2
    assert v.verdict == "supported"


def test_maintenance_refuted_without_failures(tmp_path: Path) -> None:
    exp, raw = deploy_run(tmp_path, None)
    v = exp.analyse(raw)
    assert v.verdict == "refuted" and v.measured["failed_requests"] == 0


def test_maintenance_inconclusive_when_run_stopped_early(tmp_path: Path) -> None:
    exp, raw = deploy_run(tmp_path, None)
    case = raw / "one-server"
    rows = list(csv.reader(open(case / "faults.csv")))[:-1]
    write_csv(case / "faults.csv", rows[0], rows[1:])
    assert exp.analyse(raw).verdict == "inconclusive"


# ---- C3 cannot-scale -----------------------------------------------------------------------------
def openloop_csv(path: Path, rate: float, duration: float, capacity: float, base_lat: float = 0.012,
                 send_fraction: float = 1.0, start: float = T0) -> None:
    """A queue model: a server of fixed capacity (req/s); latency from the schedule grows when rate > capacity."""
    rows, free_at = [], start
    n = int(rate * duration)
    for i in range(n):
        sched = start + i / rate
        if i >= n * send_fraction:
            rows.append([i, f"{sched:.6f}", "", "", "", 0, "not_sent"])
            continue
        begin = max(sched, free_at)
        done = begin + 1 / capacity
        free_at = done
        lat = done - sched + base_lat
        if lat > 5.0:
            rows.append([i, f"{sched:.6f}", f"{sched:.6f}", f"{sched + 5.0:.6f}", "", 0, "TimeoutError: timed out"])
        else:
            rows.append([i, f"{sched:.6f}", f"{sched:.6f}", f"{sched + lat:.6f}", 200, 1, ""])
    write_csv(path, ["i", "t_sched", "t_send", "t_recv", "status", "ok", "error"], rows)


def scale_run(tmp: Path, rates: list[float], capacity_of, duration: float = 8.0, send_fraction=lambda r: 1.0):
    exp, raw, case = new_run(tmp, "cannot-scale")
    sweep = []
    for k, r in enumerate(rates):
        name = f"openloop-{k:02d}.csv"
        openloop_csv(case / name, r, duration, capacity_of(r), send_fraction=send_fraction(r), start=T0 + 20 * k)
        sweep.append([k, r, duration, name])
    write_csv(case / "sweep.csv", ["k", "offered", "duration", "file"], sweep)
    write_cpu(case, T0, T0 + 20 * len(rates), 0.4)
    return exp, raw


RATES = [10, 20, 30, 36, 44, 52, 64, 80]


def test_cannot_scale_supported_on_a_plateau(tmp_path: Path) -> None:
    exp, raw = scale_run(tmp_path, RATES, lambda r: 40.0)
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert v.measured["capacity_rps"] == pytest.approx(40, rel=0.05)
    assert v.measured["p99_top_ms"] > 5 * v.measured["p99_low_ms"]
    assert v.measured["knee_offered_rps"] == 44
    assert v.plots == ["plots/one-server-load.png"]


def test_cannot_scale_refuted_when_capacity_follows_load(tmp_path: Path) -> None:
    exp, raw = scale_run(tmp_path, RATES, lambda r: r * 1.5)
    v = exp.analyse(raw)
    assert v.verdict == "refuted"  # it kept up with every offered load: no plateau in the range
    assert "plateau: NO" in v.reasons[0]
    exp, raw = scale_run(tmp_path / "a", [60, 70, 80], lambda r: 40.0)
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive"  # (and the server could not keep up at its lowest point)
    exp, raw = scale_run(tmp_path / "b", [10, 20, 40, 80], lambda r: 40.0 if r < 80 else 70.0)
    v = exp.analyse(raw)  # throughput still grows 75% in the last third of the sweep: no plateau
    assert v.verdict == "refuted", v.reasons
    assert "plateau: NO" in v.reasons[0]


def test_cannot_scale_plateau_growth_borderline(tmp_path: Path) -> None:
    # best throughput at <= 2/3 of the top load is 40; the top point achieves 43.9 (9.75% more) -> still a plateau
    exp, raw = scale_run(tmp_path, [10, 20, 40, 80], lambda r: 40.0 if r < 80 else 43.9)
    assert exp.analyse(raw).verdict == "supported"
    exp, raw = scale_run(tmp_path / "b", [10, 20, 40, 80], lambda r: 40.0 if r < 80 else 44.6)
    assert exp.analyse(raw).verdict == "refuted"


def test_cannot_scale_inconclusive_when_generator_lagged(tmp_path: Path) -> None:
    exp, raw = scale_run(tmp_path, RATES, lambda r: 40.0, send_fraction=lambda r: 0.9 if r == 20 else 1.0)
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive" and "load generator" in v.reasons[0]


def test_cannot_scale_inconclusive_when_server_broken_at_low_load(tmp_path: Path) -> None:
    exp, raw = scale_run(tmp_path, RATES, lambda r: 5.0)
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive" and "lowest load" in v.reasons[0]


def test_point_metrics_measures_from_the_schedule(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    openloop_csv(path, 100, 4, 50, base_lat=0.0)
    m = point_metrics(path, 100, 4, 1.0, 5.0)
    assert m["achieved"] == pytest.approx(50, rel=0.03)
    assert m["send_rate"] == pytest.approx(100, rel=0.01)
    assert m["p99"] > 1.5  # a queue growing by 50 req/s for 4 s: late requests wait seconds, not 20 ms


# ---- C15 dns-cname / C16 http-exchange (pcaps built with Scapy) -------------------------------------
def dns_pcap(path: Path, answers: list[tuple[str, str, str]], respond: bool = True) -> None:
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    q = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000, dport=53) / DNS(id=7, rd=1, qd=DNSQR(qname="www.foobar.com"))
    pkts = [q]
    if respond:
        rrs = [DNSRR(rrname=n, type=t, rdata=v, ttl=300) for n, t, v in answers]
        an = rrs
        r = Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=53, dport=40000) / DNS(
            id=7, qr=1, aa=1, rd=1, ra=1, qd=DNSQR(qname="www.foobar.com"), an=an)
        pkts.append(r)
    wrpcap(str(path), pkts)


def test_dns_cname_supported(tmp_path: Path) -> None:
    exp, raw, case = new_run(tmp_path, "dns-cname")
    dns_pcap(case / "dns.pcap", [("www.foobar.com.", "CNAME", "foobar.com."), ("foobar.com.", "A", "10.0.0.10")])
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert v.measured["answer_chain"] == ["www.foobar.com CNAME foobar.com", "foobar.com A 10.0.0.10"]
    assert v.measured["frame"] == 2


def test_dns_cname_refuted_by_a_direct_a_record_or_wrong_address(tmp_path: Path) -> None:
    exp, raw, case = new_run(tmp_path, "dns-cname")
    dns_pcap(case / "dns.pcap", [("www.foobar.com.", "A", "10.0.0.10")])
    assert exp.analyse(raw).verdict == "refuted"
    dns_pcap(case / "dns.pcap", [("www.foobar.com.", "CNAME", "foobar.com."), ("foobar.com.", "A", "10.0.0.99")])
    assert exp.analyse(raw).verdict == "refuted"


def test_dns_cname_inconclusive_without_a_response_even_on_a_busy_machine(tmp_path: Path) -> None:
    exp, raw, case = new_run(tmp_path, "dns-cname")
    dns_pcap(case / "dns.pcap", [], respond=False)
    assert exp.analyse(raw).verdict == "inconclusive"
    dns_pcap(case / "dns.pcap", [("www.foobar.com.", "CNAME", "foobar.com."), ("foobar.com.", "A", "10.0.0.10")])
    write_cpu(case, T0, T0 + 5, 1.0)  # content claims are not voided by a saturated machine
    v = exp.analyse(raw)
    assert v.verdict == "supported" and v.measured["machine_cpu_saturated_fraction"] == 1.0


def page_pcap(path: Path, status: str = "200 OK", ctype: str = "text/html; charset=utf-8", order: str = "normal") -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap
    c, s = "10.0.0.1", "10.0.0.10"

    def seg(src: str, flags: str, seq: int, ack: int, data: bytes = b"", t: float = 0.0):
        sp, dp = (51000, 80) if src == c else (80, 51000)
        p = Ether() / IP(src=src, dst=s if src == c else c) / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack)
        if data:
            p = p / Raw(data)
        p.time = T0 + t
        return p
    get = b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
    resp = f"HTTP/1.1 {status}\r\nServer: nginx\r\nContent-Type: {ctype}\r\nContent-Length: 20\r\n\r\n<html>hello</html>\r\n".encode()
    pkts = [seg(c, "S", 100, 0, t=0.0), seg(s, "SA", 500, 101, t=0.0001), seg(c, "A", 101, 501, t=0.0002),
            seg(c, "PA", 101, 501, get, 0.0003), seg(s, "A", 501, 101 + len(get), t=0.0004),
            seg(s, "PA", 501, 101 + len(get), resp, 0.003), seg(c, "FA", 101 + len(get), 501 + len(resp), t=0.004)]
    if order == "response-first":
        pkts[3], pkts[5] = pkts[5], pkts[3]
    wrpcap(str(path), pkts)


def test_http_exchange_supported(tmp_path: Path) -> None:
    exp, raw, case = new_run(tmp_path, "http-exchange")
    page_pcap(case / "page.pcap")
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert [v.measured[k] for k in ("frame_syn", "frame_syn_ack", "frame_ack", "frame_get", "frame_200")] == [1, 2, 3, 4, 6]
    assert v.measured["response_ms"] == pytest.approx(2.7, abs=0.01)
    assert (raw.parent / v.plots[0]).stat().st_size > 1000


@pytest.mark.parametrize("kw", [{"status": "404 Not Found"}, {"ctype": "application/json"}, {"order": "response-first"}])
def test_http_exchange_refuted(tmp_path: Path, kw: dict) -> None:
    exp, raw, case = new_run(tmp_path, "http-exchange")
    page_pcap(case / "page.pcap", **kw)
    v = exp.analyse(raw)
    assert v.verdict == "refuted", kw
    assert any("NOT FOUND" in r for r in v.reasons)


def test_every_registered_claim_has_the_contract() -> None:
    slugs = registry.all_slugs()
    numbers = [int(registry.get(s).claim[1:]) for s in slugs]
    assert numbers == sorted(set(numbers)) and set(range(1, 18)) <= set(numbers)  # every claim, in order, once
    assert {"spof", "maintenance-downtime", "cannot-scale", "dns-cname", "http-exchange"} <= set(slugs)
    for slug in slugs:
        exp = registry.get(slug)
        assert exp.claim.startswith("C") and exp.title and exp.statement and exp.design
        params = exp.params()
        assert exp.cases(params) and all(isinstance(c, Case) for c in exp.cases(params))
        assert exp.rule_text(params)
    assert registry.get("cannot-scale").cases(registry.get("cannot-scale").params())[0].lab_params == {"cpu": {"server1": 0.25}}
    with pytest.raises(ValueError):
        registry.get("spof").params({"no_such_param": 1})
    with pytest.raises(KeyError):
        registry.get("nope")
