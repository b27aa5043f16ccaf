"""Scapy port scan from inside a lab host: TCP SYN (half-open) and UDP probes, one CSV line per target port.

Run inside a host (root, its own network namespace):
    python synscan.py --target lb1=10.0.0.10 --target server2=10.0.1.12 --tcp 22,80,443,3306 --udp 53 --out s.csv
TCP: SYN-ACK -> open (the kernel answers the unexpected SYN-ACK with a RST, so no connection is left
half-open), RST -> closed, ICMP unreachable or no answer after --retries resends -> filtered.
UDP: any UDP answer -> open (port 53 gets a real DNS query), ICMP port unreachable -> closed, other
ICMP unreachable -> filtered, nothing -> open|filtered. A target without a route from this host is
`no-route` for every port (nothing is sent). Waits are bounded by --timeout per round.
CSV: source,target,address,proto,port,state,detail.
"""
from __future__ import annotations

import argparse
import csv
import logging
import subprocess
import sys
import time

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.all import DNS, DNSQR, ICMP, IP, TCP, UDP, conf, sr  # noqa: E402  (after the log level)

FIELDS = ["source", "target", "address", "proto", "port", "state", "detail"]


def ports(text: str) -> list[int]:
    """'22,80,8000-8002' -> [22, 80, 8000, 8001, 8002]."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return sorted(set(out))


def routable(address: str) -> bool:
    """True when this host has a route to address (`ip route get` succeeds)."""
    res = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True, timeout=5)
    return res.returncode == 0


def classify_tcp(reply) -> tuple[str, str]:
    """State of a TCP port from the answer to its SYN."""
    if reply is None:
        return "filtered", "no answer"
    if reply.haslayer(TCP):
        flags = reply[TCP].flags
        if flags & 0x12 == 0x12:
            return "open", "SYN-ACK"
        if flags & 0x04:
            return "closed", "RST"
        return "filtered", f"TCP flags {flags}"
    if reply.haslayer(ICMP):
        return "filtered", f"ICMP type {reply[ICMP].type} code {reply[ICMP].code}"
    return "filtered", reply.summary()


def classify_udp(reply) -> tuple[str, str]:
    """State of a UDP port from the answer to its probe."""
    if reply is None:
        return "open|filtered", "no answer"
    if reply.haslayer(UDP):
        return "open", "UDP answer"
    if reply.haslayer(ICMP):
        t, c = reply[ICMP].type, reply[ICMP].code
        return ("closed" if (t, c) == (3, 3) else "filtered"), f"ICMP type {t} code {c}"
    return "open|filtered", reply.summary()


def udp_probe(address: str, port: int):
    """A UDP datagram a service on port is likely to answer (a DNS query for port 53)."""
    payload = DNS(rd=1, qd=DNSQR(qname="foobar.com")) if port == 53 else b"weblab-scan\n"
    return IP(dst=address) / UDP(sport=40000 + port % 20000, dport=port) / payload


def scan(address: str, tcp_ports: list[int], udp_ports: list[int], timeout: float, retries: int):
    """[(proto, port, state, detail)] for one address."""
    out = []
    probes = [IP(dst=address) / TCP(sport=50000 + p % 10000, dport=p, flags="S", seq=1000) for p in tcp_ports]
    probes += [udp_probe(address, p) for p in udp_ports]
    if not probes:
        return out
    answered, _ = sr(probes, timeout=timeout, retry=retries, verbose=0)
    replies = {}
    for sent, got in answered:
        proto = "tcp" if sent.haslayer(TCP) else "udp"
        replies[(proto, sent[TCP].dport if proto == "tcp" else sent[UDP].dport)] = got
    for p in tcp_ports:
        out.append(("tcp", p, *classify_tcp(replies.get(("tcp", p)))))
    for p in udp_ports:
        out.append(("udp", p, *classify_udp(replies.get(("udp", p)))))
    return out


def main(argv: list[str] | None = None) -> int:
    """Scan every target, write the CSV."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="", help="name of the scanning host (recorded)")
    ap.add_argument("--target", action="append", required=True, help="NAME=ADDRESS (repeat)")
    ap.add_argument("--tcp", default="", help="TCP ports: 22,80,8000-8010")
    ap.add_argument("--udp", default="", help="UDP ports")
    ap.add_argument("--timeout", type=float, default=1.5, help="seconds to wait for answers, per round")
    ap.add_argument("--retries", type=int, default=1, help="resends of unanswered probes")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    conf.verb = 0
    tcp_ports, udp_ports = ports(a.tcp), ports(a.udp)
    t0 = time.time()
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        for spec in a.target:
            name, _, address = spec.partition("=")
            if not routable(address):
                for proto, plist in (("tcp", tcp_ports), ("udp", udp_ports)):
                    w.writerows([a.source, name, address, proto, p, "no-route", "no route from source"] for p in plist)
                continue
            for proto, port, state, detail in scan(address, tcp_ports, udp_ports, a.timeout, a.retries):
                w.writerow([a.source, name, address, proto, port, state, detail])
            f.flush()
    print(f"scanned {len(a.target)} target(s) in {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
