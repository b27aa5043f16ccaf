"""Verdict rules of the attack claims (C22 https-integrity, C23 internal-interception, C24 arp-inspection)
on synthetic raw data: what the attack phases would have written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.attacks.proxy import MARKER
from experiments.credentials import FORM
from tests.unit.raw_data import T0, new_case, write_csv

ME = "02:00:0a:00:01:0c"
LB, S1 = ("lb1", "10.0.1.10"), ("server1", "10.0.1.11")
CLIENT, LB_FRONT = ("client", "10.0.0.100"), ("lb1", "10.0.0.10")
ATTACKER_FRONT = "02:00:0a:00:00:c8"
SYSCTLS = {"net/ipv4/ip_forward": "0", "net/ipv4/conf/all/send_redirects": "1"}


def jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def tls(n: int) -> bytes:
    return bytes([23, 3, 3]) + n.to_bytes(2, "big") + b"\x00" * n


def write_pcap(path: Path, mac: str, segments: list[tuple[str, str, int, int, bytes]], t: float) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    pkts, seqs = [], {}
    for i, (src, dst, sport, dport, data) in enumerate(segments):
        seq = seqs.get((src, sport), 1000)
        p = Ether(dst=mac) / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="PA", seq=seq) / data
        p.time = t + 0.01 * i
        seqs[(src, sport)] = seq + len(data)
        pkts.append(p)
    wrpcap(str(path), pkts)


def phase(folder: Path, a=LB, b=S1, mac=ME, poisoned=True, segments=(), events=(), exit_code=0,
          sysctls_after=None, t=T0, attacker="server2", logins=(), probe_ok=1.0, marks=None, lies=12) -> None:
    """One attack phase's raw folder: tool log, cache samples, cleanup, capture, logins, probe."""
    folder.mkdir(parents=True, exist_ok=True)
    rounds = lies // 2
    ev = [{"t": t, "event": "setup", "mac": mac},
          *({"t": t + 0.1 + i * 0.5, "event": "poison", "round": i + 1, "frames": 2 * (i + 1)} for i in range(rounds)),
          *events, {"t": t + 4, "event": "poison_stopped", "frames": lies}, {"t": t + 5.6, "event": "restored"}]
    jsonl(folder / "attack.jsonl", ev)
    rows = []
    for k, ph in enumerate(("before", "during", "during", "during", "after")):
        bad = poisoned and ph == "during"
        for victim, other in ((a, b), (b, a)):
            rows.append({"t": t + k, "phase": ph, "victim": victim[0], "about": other[0], "ip": other[1],
                         "lladdr": mac if bad else "02:00:00:00:00:99", "state": "REACHABLE", "poisoned": bad})
    jsonl(folder / "neigh.jsonl", rows)
    after = [r for r in rows if r["phase"] == "after"]
    (folder / "cleanup.json").write_text(json.dumps({
        "exit_code": exit_code, "attacker_mac": mac,
        "position": {"attacker": attacker, "iface": f"{attacker}-eth0", "address": "x", "victims": [list(a), list(b)],
                     "lab_nets": ["10.0.0.0/24", "10.0.1.0/24"]},
        "sysctls_before": SYSCTLS, "sysctls_after": sysctls_after or SYSCTLS, "nft_tables_after": [],
        "caches_after": after}))
    write_pcap(folder / "attacker.pcap", mac, list(segments), t + 1)
    jsonl(folder / "logins.jsonl", list(logins))
    n = 200
    write_csv(folder / "probe.csv", ["t_send", "t_recv", "status", "ok", "served_by", "error"],
              [[t + i * 0.02, t + i * 0.02 + 0.005, 200, int(i < n * probe_ok), "server1", ""] for i in range(n)])
    (folder / "phase.json").write_text(json.dumps({"attack_start": t, "attack_stop": t + 4,
                                                   "poisoned": poisoned, **(marks or {})}))


def backend_login(t: float, backend: str = "server1", code: str = "200") -> dict:
    return {"t": t, "t_end": t + 0.05, "url": "https://www.foobar.com/login", "code": code, "scheme": "https",
            "effective": "https://www.foobar.com/login", "backend": backend, "curl_exit": 0, "stderr": ""}


def clear_login() -> list:
    body = b"POST /login HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n" + FORM.encode()
    return [(LB[1], S1[1], 40000, 80, body[:60]), (LB[1], S1[1], 40000, 80, body[60:]),
            (S1[1], LB[1], 80, 40000, b"HTTP/1.1 200 OK\r\n\r\nhi")]


def tls_login() -> list:
    return [(LB[1], S1[1], 40001, 443, bytes([22, 3, 3, 0, 5]) + b"hello"),
            (LB[1], S1[1], 40001, 443, tls(300)), (S1[1], LB[1], 443, 40001, tls(900))]


LOGINS = [backend_login(T0 + 1.5), backend_login(T0 + 1.7, "server2"), backend_login(T0 + 1.9)]


# ---- C23 internal-interception ---------------------------------------------------------------------
@pytest.mark.parametrize("case,kw,expect", [
    ("terminate", {"segments": clear_login()}, "supported"),
    ("reencrypt", {"segments": tls_login()}, "supported"),
    ("reencrypt", {"segments": tls_login() + clear_login()}, "refuted"),     # the password in clear: refuted
    ("terminate", {"segments": tls_login()}, "refuted"),                      # nothing to read: refuted
    ("terminate", {"segments": clear_login(), "probe_ok": 0.95}, "refuted"),  # the site suffered
    ("terminate", {"segments": clear_login(), "poisoned": False}, "inconclusive"),  # a failed attack proves nothing
    ("terminate", {"segments": clear_login(), "sysctls_after": {**SYSCTLS, "net/ipv4/ip_forward": "1"}},
     "inconclusive"),                                                         # the attack outlived its run
    ("terminate", {"segments": clear_login(), "exit_code": 1}, "inconclusive"),
    ("terminate", {"segments": []}, "inconclusive"),                          # poisoned but not on the path
])
def test_internal_interception_rule(tmp_path, case, kw, expect):
    exp, raw, d = new_case(tmp_path, "internal-interception", case)
    phase(d / "attack", logins=LOGINS, **kw)
    v = exp.analyse(raw)
    assert v.verdict == expect, v.reasons
    if expect == "supported" and case == "terminate":
        assert v.measured["password_frames"] == [2] and v.measured["attack_success"] == 1.0
    assert (tmp_path / "run" / "plots" / f"{case}-timeline.png").exists()


def test_internal_interception_needs_logins_through_the_victim(tmp_path):
    exp, raw, d = new_case(tmp_path, "internal-interception", "terminate")
    phase(d / "attack", segments=clear_login(), logins=[backend_login(T0 + 1, "server2")])
    v = exp.analyse(raw)
    assert v.verdict == "inconclusive" and any("logins lb1 sent to server1" in r for r in v.reasons)


# ---- C24 arp-inspection ----------------------------------------------------------------------------
def arp_pcap(path: Path, spoofed: int) -> None:
    from scapy.layers.l2 import ARP, Ether
    from scapy.utils import wrpcap
    frames = [Ether(src="02:00:0a:00:01:0b", dst="02:00:0a:00:01:0a") / ARP(op=2, psrc=S1[1], hwsrc="02:00:0a:00:01:0b", pdst=LB[1])]
    frames += [Ether(src=ME, dst="02:00:0a:00:01:0a") / ARP(op=2, psrc=S1[1], hwsrc=ME, pdst=LB[1])] * spoofed
    wrpcap(str(path), frames)


def inspection_run(tmp_path, control_poisoned=True, delivered=0, report_after=0.3, dropped=22, host="server2",
                   intercepted=()):
    exp, raw, d = new_case(tmp_path, "arp-inspection", "secured")
    phase(d / "control", poisoned=control_poisoned, segments=clear_login(), logins=LOGINS)
    t = T0 + 20
    phase(d / "inspected", poisoned=False, segments=list(intercepted), logins=[backend_login(t + 1.5),
                                                                             backend_login(t + 1.9)], t=t, lies=20)
    arp_pcap(d / "inspected" / "lb1-arp.pcap", delivered)
    arp_pcap(d / "inspected" / "server1-arp.pcap", 0)
    port = {"dpid": 2, "switch": "s2", "port": 3, "host": host, "packets": dropped, "first": t + 0.1 + report_after,
            "last": t + 4}
    (d / "inspected" / "controller.json").write_text(json.dumps({
        "before": {"on": True, "dropped": 0, "ports": []}, "after": {"on": True, "dropped": dropped, "ports": [port]},
        "show": {"on": True, "dropped": dropped, "ports": [port]}}))
    return exp.analyse(raw)


def test_arp_inspection_supported_when_the_defence_holds_and_the_attack_worked_without_it(tmp_path):
    v = inspection_run(tmp_path)
    assert v.verdict == "supported", v.reasons
    assert v.measured["dropped"] == 22 and v.measured["lies_sent"] == 20
    assert v.measured["report_delay_s"] == pytest.approx(0.3) and v.measured["reported_host"] == "server2"
    assert v.measured["control_password_frames_n"] == 1
    assert {p.name for p in (tmp_path / "run" / "plots").iterdir()} >= {"control-timeline.png",
                                                                       "inspected-timeline.png", "off-vs-on.png"}


@pytest.mark.parametrize("kw,expect,words", [
    ({"control_poisoned": False}, "inconclusive", "did not work even without the defence"),
    ({"delivered": 3}, "refuted", "spoofed ARP replies delivered"),
    ({"report_after": 1.5}, "refuted", "controller's report"),
    ({"dropped": 10}, "refuted", "dropped at the attacker's port"),
    ({"host": "server1"}, "refuted", "the host the controller named"),
    ({"intercepted": clear_login()}, "refuted", "frames that reached the attacker"),
])
def test_arp_inspection_rule_edges(tmp_path, kw, expect, words):
    v = inspection_run(tmp_path, **kw)
    assert v.verdict == expect, v.reasons
    assert any(words in r for r in v.reasons), v.reasons


# ---- C22 https-integrity ---------------------------------------------------------------------------
def page(t: float, tampered: bool, scheme: str = "http", code: str = "200") -> dict:
    return {"t": t, "url": f"{scheme}://www.foobar.com/", "code": code, "effective": f"{scheme}://www.foobar.com/",
            "curl_exit": 0, "scheme": scheme, "bytes": 500, "tampered": tampered, "hsts": scheme == "https"}


def front(folder, t, **kw):
    phase(folder, a=CLIENT, b=LB_FRONT, mac=ATTACKER_FRONT, attacker="attacker", t=t, **kw)


def password(t: float, source: str = "proxy-strip") -> dict:
    return {"t": t, "event": "credential", "kind": "form", "field": "password", "value": "wonderland", "source": source}


def test_https_integrity_http_case(tmp_path):
    exp, raw, d = new_case(tmp_path, "https-integrity", "http")
    front(d / "rewrite", T0)
    jsonl(d / "rewrite" / "pages.jsonl", [page(T0 + 1 + i * 0.1, True) for i in range(5)])
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    assert v.measured["tampered"] == 5 and v.measured["tampered_fraction"] == 1.0
    jsonl(d / "rewrite" / "pages.jsonl", [page(T0 + 1 + i * 0.1, i == 0) for i in range(5)])
    assert exp.analyse(raw).verdict == "refuted"  # 1 of 5: below the share asked for


def https_run(tmp_path, hsts_harvest=False, impersonate_exit=60, impersonate_poisoned=True, forward_tampered=False):
    exp, raw, d = new_case(tmp_path, "https-integrity", "https")
    client_tls = [(CLIENT[1], LB_FRONT[1], 40001, 443, tls(200)), (LB_FRONT[1], CLIENT[1], 443, 40001, tls(900))]
    front(d / "forward", T0, segments=client_tls)
    jsonl(d / "forward" / "pages.jsonl", [page(T0 + 1 + i * 0.1, forward_tampered and i == 2, "https")
                                          for i in range(5)])
    front(d / "impersonate", T0 + 10, poisoned=impersonate_poisoned,
          events=[{"t": T0 + 11, "event": "tls_rejected", "reason": "TLSV1_ALERT_UNKNOWN_CA"}])
    jsonl(d / "impersonate" / "logins.jsonl", [{**backend_login(T0 + 11, ""), "code": "000",
                                                "curl_exit": impersonate_exit}])
    front(d / "strip", T0 + 20, events=[password(T0 + 21.2), password(T0 + 21.2, "wire")])
    jsonl(d / "strip" / "visits.jsonl", [{**page(T0 + 21, False, "http"), "url": "http://www.foobar.com/login"}])
    jsonl(d / "strip" / "logins.jsonl", [{**backend_login(T0 + 21.2, ""), "scheme": "http"}])
    front(d / "hsts", T0 + 30, events=[password(T0 + 31.2)] if hsts_harvest else [],
          segments=client_tls)
    jsonl(d / "hsts" / "visits.jsonl", [{**page(T0 + 29, False, "https"), "hsts": True},
                                       {**page(T0 + 31, False, "https"), "url": "http://www.foobar.com/login"}])
    jsonl(d / "hsts" / "logins.jsonl", [backend_login(T0 + 31.2, "")])
    return exp.analyse(raw)


def test_https_integrity_https_case_supported(tmp_path):
    v = https_run(tmp_path)
    assert v.verdict == "supported", v.reasons
    m = v.measured
    assert (m["forward_tampered"], m["impersonate_curl_exit"], m["strip_scheme"], m["hsts_scheme"]) == (0, 60, "http",
                                                                                                     "https")
    assert m["strip_passwords"] == 2 and m["hsts_passwords"] == 0 and m["hsts_header"] is True
    assert (tmp_path / "run" / "plots" / "https-phases.png").exists()


@pytest.mark.parametrize("kw,expect,words", [
    ({"hsts_harvest": True}, "refuted", "passwords harvested from the client with HSTS"),
    ({"impersonate_exit": 0}, "refuted", "curl's exit status"),
    ({"forward_tampered": True}, "refuted", "HTTPS pages with the attacker's marker"),
    ({"impersonate_poisoned": False}, "inconclusive", "impersonate attack did not poison"),
])
def test_https_integrity_https_rule_edges(tmp_path, kw, expect, words):
    v = https_run(tmp_path, **kw)
    assert v.verdict == expect, v.reasons
    assert any(words in r for r in v.reasons), v.reasons


def test_the_marker_is_what_the_pages_are_searched_for():
    assert MARKER == "TAMPERED-BY-WEBLAB-ATTACKER"


def test_the_attack_position_and_command_come_from_the_design():
    from types import SimpleNamespace

    from experiments import attacking
    lab = SimpleNamespace(design="secured", params={"attacker": "front"}, python="/venv/python",
                          link_intfs=lambda a, b: (f"{a}-eth0", f"{b}-eth9"))
    pos = attacking.position(lab, "attacker", ["client", "lb1"])
    assert (pos.iface, pos.address) == ("attacker-eth0", "10.0.0.200")
    assert pos.victims == (("client", "10.0.0.100"), ("lb1", "10.0.0.10"))
    argv = attacking.mitm_argv(lab, pos, Path("/raw/a.jsonl"), 30, 2, proxy="strip")
    assert argv[:3] == ["/venv/python", "-m", "experiments.attacks.mitm"] and "--quiet" in argv
    assert argv.count("--lab-net") == 2 and argv[argv.index("--proxy") + 1] == "strip"
    with pytest.raises(ValueError, match="shares no network"):
        attacking.position(SimpleNamespace(design="secured", params={}, link_intfs=None), "client",
                           ["lb1", "server1"])


def test_leftovers_name_what_outlived_the_attack():
    from experiments.attacking import leftovers
    clean = {"exit_code": 0, "sysctls_before": SYSCTLS, "sysctls_after": SYSCTLS, "nft_tables_after": [],
             "caches_after": [{"victim": "lb1", "about": "server1", "poisoned": False}]}
    assert leftovers(clean) == []
    dirty = {**clean, "exit_code": -9, "sysctls_after": {**SYSCTLS, "net/ipv4/ip_forward": "1"},
             "nft_tables_after": ["table ip weblab_attack_42"],
             "caches_after": [{"victim": "lb1", "about": "server1", "poisoned": True}]}
    assert leftovers(dirty) == ["the tool exited with -9", "sysctl net/ipv4/ip_forward is 1 (was 0)",
                                "nftables table ip weblab_attack_42", "lb1 still maps server1 to the attacker"]
