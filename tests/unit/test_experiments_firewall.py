"""C9 firewall: its verdict rules on synthetic scans (off/on, borderline and inconclusive cases), the policy
matcher, the ss parser, the controller counters, and the Scapy scan's answer classification."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


from experiments import registry
from experiments.base import record_case
from experiments.claims.firewall import allowed, listening, loopback, read_nmap, rule_counters

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments" / "tools"))
import synscan  # noqa: E402  (a tool script, imported by path)

from topologies.base import mac_for  # noqa: E402

T0 = 1_700_000_000.0
IPS = {"client": ["10.0.0.100"], "dns": ["10.0.0.2", "10.0.1.2"], "lb1": ["10.0.0.10", "10.0.1.10"],
       "server1": ["10.0.1.11"], "server2": ["10.0.1.12"], "mail": ["10.0.0.25"]}
ROLES = {"client": "client", "dns": "dns", "lb1": "lb", "server1": "web", "server2": "web", "mail": "mail"}
RULES = [{"id": "arp", "src": "any", "dst": "any", "proto": "arp", "action": "allow"},
         {"id": "icmp", "src": "any", "dst": "any", "proto": "icmp", "action": "allow"},
         {"id": "dns-udp", "src": "any", "dst": "role:dns", "proto": "udp", "port": 53, "action": "allow"},
         {"id": "dns-tcp", "src": "any", "dst": "role:dns", "proto": "tcp", "port": 53, "action": "allow"},
         {"id": "lb-http", "src": "any", "dst": "lb1", "proto": "tcp", "port": 80, "action": "allow"},
         {"id": "lb-https", "src": "any", "dst": "lb1", "proto": "tcp", "port": 443, "action": "allow"},
         {"id": "lb-to-web", "src": "lb1", "dst": "role:web", "proto": "tcp", "port": 80, "action": "allow"},
         {"id": "app-to-primary-db", "src": "role:web", "dst": "server1", "proto": "tcp", "port": 3306, "action": "allow"},
         {"id": "mail-smtp", "src": "10.0.0.0/24", "dst": "mail", "proto": "tcp", "port": 25, "action": "allow"}]
# a whole policy document, as the lab hands the controller one (the claim judges with the controller's model)
POLICY = {"firewall": True,
          "hosts": [{"name": h, "role": ROLES[h], "ips": [ip], "mac": mac_for(ip), "dpid": 1 if ip.startswith("10.0.0.") else 2,
                     "port": n} for n, (h, ip) in enumerate(((h, ip) for h, ips in IPS.items() for ip in ips), start=1)],
          "switches": [{"dpid": 1, "name": "s1"}, {"dpid": 2, "name": "s2"}], "rules": RULES}
LISTEN = {"client": [], "lb1": [80, 443, 8404], "server1": [80, 3306], "server2": [80, 3306], "dns": [53], "mail": [25]}
TCP_PORTS = [22, 25, 53, 80, 443, 3306, 8000, 8080, 8404]
TARGETS = {"client": {"lb1": "10.0.0.10", "server1": "10.0.1.11", "server2": "10.0.1.12", "mail": "10.0.0.25"},
           "server1": {"lb1": "10.0.1.10", "server2": "10.0.1.12", "dns": "10.0.1.2"}}


def expected(src: str, target: str, port: int, on: bool) -> str:
    """What a correct lab answers."""
    if src == "client" and target not in ("lb1", "mail"):
        return "no-route"
    if port not in LISTEN[target]:
        return "filtered" if on else "closed"
    if on and not allowed(POLICY, src, target, "tcp", port):
        return "filtered"
    return "open"


def c9_run(tmp: Path, on: bool, override: dict | None = None, nmap_override: dict | None = None):
    exp = registry.get("firewall")
    params = exp.params({"cases": [f"firewall-{'on' if on else 'off'}"]})
    raw = tmp / "run" / "raw"
    (case,) = exp.cases(params)
    record_case(raw, "firewall", params, case)
    d = raw / case.name
    d.mkdir(parents=True)
    (d / "lab.json").write_text(json.dumps({"design": "secured", "hosts": list(IPS), "entry_ip": "10.0.0.10"}))
    listeners = {h: [{"proto": "tcp", "addr": "0.0.0.0", "port": p} for p in ps] for h, ps in LISTEN.items()}
    listeners["server1"].append({"proto": "tcp", "addr": "127.0.0.1", "port": 8000})
    listeners["dns"].append({"proto": "udp", "addr": "10.0.1.2", "port": 53})
    (d / "listeners.json").write_text(json.dumps(listeners))
    (d / "policy.json").write_text(json.dumps({**POLICY, "firewall": on}))
    override, nmap_override = override or {}, nmap_override or {}
    for src, targets in TARGETS.items():
        rows, xml = [], ["<nmaprun>"]
        for t, addr in targets.items():
            xml.append(f'<host><address addr="{addr}" addrtype="ipv4"/><ports>')
            for p in TCP_PORTS:
                st = override.get((src, t, p), expected(src, t, p, on))
                rows.append([src, t, addr, "tcp", p, st, ""])
                nst = nmap_override.get((src, t, p), "filtered" if st == "no-route" else st)
                xml.append(f'<port protocol="tcp" portid="{p}"><state state="{nst}"/></port>')
            if src == "server1" and t == "dns":
                rows.append([src, t, addr, "udp", 53, "open", "UDP answer"])
            xml.append("</ports></host>")
        with open(d / f"scapy-{src}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["source", "target", "address", "proto", "port", "state", "detail"])
            w.writerows(rows)
        (d / f"nmap-{src}.xml").write_text("".join(xml) + "</nmaprun>")
    (d / "firewall-before.json").write_text(json.dumps({"rules": [{"id": "lb-http", "packets": 10}], "default_deny": {"packets": 5}}))
    (d / "firewall-after.json").write_text(json.dumps({"rules": [{"id": "lb-http", "packets": 16}], "default_deny": {"packets": 105}}))
    return exp.analyse(raw)


def test_firewall_off_supported_every_listening_port_reachable(tmp_path: Path) -> None:
    v = c9_run(tmp_path, on=False)
    assert v.verdict == "supported", v.reasons
    assert "lb1:8404" in v.measured["open_from_client"] and "server2:3306" in v.measured["open_from_server1"]
    assert v.measured["rule_packets_during_scans"] == {"lb-http": 6, "(default deny)": 100}


def test_firewall_off_refuted_when_a_listening_port_is_not_reachable(tmp_path: Path) -> None:
    v = c9_run(tmp_path, on=False, override={("server1", "server2", 3306): "filtered"},
               nmap_override={("server1", "server2", 3306): "filtered"})
    assert v.verdict == "refuted"
    assert v.measured["listening_not_open"] == ["server1->server2:3306"]


def test_firewall_on_supported_only_80_443_from_client_and_no_lateral_reach(tmp_path: Path) -> None:
    v = c9_run(tmp_path, on=True)
    assert v.verdict == "supported", v.reasons
    assert v.measured["open_from_client"] == ["lb1:443", "lb1:80", "mail:25"]
    assert "server2:3306" in v.measured["server1_listening_without_rule"]
    assert v.measured["server1_open_with_rule"] == ["dns:53", "lb1:443", "lb1:80"]


def test_firewall_on_refuted_when_the_admin_port_answers_the_client(tmp_path: Path) -> None:
    v = c9_run(tmp_path, on=True, override={("client", "lb1", 8404): "open"},
               nmap_override={("client", "lb1", 8404): "open"})
    assert v.verdict == "refuted"


def test_firewall_on_refuted_by_one_lateral_port_without_a_rule(tmp_path: Path) -> None:
    v = c9_run(tmp_path, on=True, override={("server1", "server2", 3306): "open"},
               nmap_override={("server1", "server2", 3306): "open"})
    assert v.verdict == "refuted" and v.measured["server1_open_without_rule"] == ["server2:3306"]


def test_firewall_on_a_closed_port_without_rule_is_still_not_reachable(tmp_path: Path) -> None:
    # borderline: a RST (closed) instead of silence (filtered) is no lateral reach either
    v = c9_run(tmp_path, on=True, override={("server1", "server2", 22): "closed"},
               nmap_override={("server1", "server2", 22): "closed"})
    assert v.verdict == "supported", v.reasons


def test_firewall_inconclusive_when_nmap_disagrees(tmp_path: Path) -> None:
    v = c9_run(tmp_path, on=True, nmap_override={("server1", "lb1", 80): "filtered"})
    assert v.verdict == "inconclusive" and v.measured["scapy_nmap_disagreements"]


def test_firewall_inconclusive_without_scans(tmp_path: Path) -> None:
    exp = registry.get("firewall")
    params = exp.params({"cases": ["firewall-on"]})
    raw = tmp_path / "raw"
    record_case(raw, "firewall", params, exp.cases(params)[0])
    (raw / "firewall-on").mkdir()
    (raw / "firewall-on" / "listeners.json").write_text("{}")
    (raw / "firewall-on" / "policy.json").write_text("{}")
    assert exp.analyse(raw).verdict == "inconclusive"


# ---- helpers --------------------------------------------------------------------------------------
def test_listening_parses_ss_and_keeps_loopback_binds_apart() -> None:
    out = ("tcp   LISTEN 0      2048       127.0.0.1:8000      0.0.0.0:*\n"
           "tcp   LISTEN 0      110          0.0.0.0:3306      0.0.0.0:*\n"
           "udp   UNCONN 0      0           10.0.1.2:53        0.0.0.0:*\n"
           "tcp   LISTEN 0      511             [::]:80           [::]:*\n")
    assert listening(out) == [{"proto": "tcp", "addr": "127.0.0.1", "port": 8000},
                              {"proto": "tcp", "addr": "0.0.0.0", "port": 3306},
                              {"proto": "udp", "addr": "10.0.1.2", "port": 53},
                              {"proto": "tcp", "addr": "::", "port": 80}]
    assert loopback("127.0.0.1") and loopback("::1") and not loopback("0.0.0.0") and not loopback("*")


def test_allowed_matches_any_host_role_cidr_and_deny() -> None:
    assert allowed(POLICY, "server2", "server1", "tcp", 3306)          # role:web -> server1
    assert not allowed(POLICY, "server1", "server2", "tcp", 3306)      # only the primary takes 3306
    assert not allowed(POLICY, "server1", "server2", "tcp", 80)        # only lb1 reaches the web tier
    assert allowed(POLICY, "client", "lb1", "tcp", 443)
    cidr = {**POLICY, "rules": [{"id": "r", "src": "10.0.1.0/24", "dst": "any", "proto": "tcp", "action": "allow"}]}
    assert allowed(cidr, "server1", "dns", "tcp", 22) and not allowed(cidr, "client", "dns", "tcp", 22)
    denied = {**cidr, "rules": cidr["rules"] + [{"id": "d", "src": "server1", "dst": "dns", "proto": "tcp", "port": 22,
                                                 "action": "deny"}]}
    assert not allowed(denied, "server1", "dns", "tcp", 22)


def test_read_nmap_and_rule_counters(tmp_path: Path) -> None:
    (tmp_path / "nmap-client.xml").write_text('<nmaprun><host><address addr="10.0.0.10" addrtype="ipv4"/><ports>'
                                              '<port protocol="tcp" portid="80"><state state="open"/></port>'
                                              '</ports></host></nmaprun>')
    (tmp_path / "nmap-server1.xml").write_text("<nmaprun")  # a torn file is skipped, not fatal
    assert read_nmap(tmp_path) == {("client", "10.0.0.10", 80): "open"}
    assert rule_counters(tmp_path) == {}


def test_synscan_classifies_answers() -> None:
    from scapy.all import ICMP, IP, TCP, UDP
    assert synscan.classify_tcp(IP() / TCP(flags="SA"))[0] == "open"
    assert synscan.classify_tcp(IP() / TCP(flags="RA"))[0] == "closed"
    assert synscan.classify_tcp(IP() / ICMP(type=3, code=13))[0] == "filtered"
    assert synscan.classify_tcp(None)[0] == "filtered"
    assert synscan.classify_udp(IP() / UDP())[0] == "open"
    assert synscan.classify_udp(IP() / ICMP(type=3, code=3))[0] == "closed"
    assert synscan.classify_udp(None)[0] == "open|filtered"
    assert synscan.ports("22,80,8000-8002") == [22, 80, 8000, 8001, 8002]


def test_allowed_counts_virtual_ips_as_the_controller_does() -> None:
    from topologies.scaled import Scaled
    from weblab.lab import service_defaults
    doc = Scaled(monitoring=False).policy_document(service_defaults())
    # the only HTTPS rule names the VIP: it reaches lb1 and lb2 only through their virtual address
    assert allowed(doc, "client", "lb1", "tcp", 443) and allowed(doc, "client", "lb2", "tcp", 443)
    assert not allowed(doc, "client", "web1", "tcp", 80) and allowed(doc, "lb2", "web1", "tcp", 80)


def test_firewall_on_refuted_when_the_mail_hosts_smtp_is_not_reachable_from_the_client(tmp_path: Path) -> None:
    v = c9_run(tmp_path, on=True, override={("client", "mail", 25): "filtered"},
               nmap_override={("client", "mail", 25): "filtered"})
    assert v.verdict == "refuted"
    assert v.measured["open_from_client"] == ["lb1:443", "lb1:80"]
