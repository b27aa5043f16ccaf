"""Reading the wire: pcap analysis with Scapy (byte search, TCP/HTTP sequence, DNS answer chain)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weblab.core.wire import http_label, tls_header

PCAP_HEADER = 24  # bytes tcpdump writes once its capture socket is open


def wait_capture_ready(path: Path, timeout: float = 5.0) -> bool:
    """True once tcpdump has written the pcap header to path (it is capturing), False after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(path).exists() and Path(path).stat().st_size >= PCAP_HEADER:
            return True
        time.sleep(0.02)  # bounded poll: tcpdump gives no other readiness signal
    return False


def _read(pcap: Path) -> list[Any]:
    from scapy.utils import rdpcap
    return list(rdpcap(str(pcap)))


@dataclass(frozen=True)
class PacketEvent:
    """One TCP segment as a line of a sequence diagram."""

    frame: int          # 1-based, as Wireshark numbers them
    time: float
    src: str
    dst: str
    sport: int
    dport: int
    flags: str          # Scapy's flag letters, e.g. 'S', 'SA', 'A', 'PA', 'FA'
    kind: str           # SYN, SYN-ACK, ACK, DATA, FIN, RST
    label: str          # e.g. 'GET / HTTP/1.1' or 'HTTP/1.1 200 OK (text/html)'
    payload_len: int = 0


def _kind(flags: str, payload: int) -> str:
    if "R" in flags:
        return "RST"
    if "S" in flags:
        return "SYN-ACK" if "A" in flags else "SYN"
    if "F" in flags:
        return "FIN"
    return "DATA" if payload else "ACK"


def _tcp_segments(pcap: Path, port: int | None = None):
    """(frame number, packet, its IP layer, its TCP layer, payload) of every IPv4 TCP segment, optionally
    only those to/from port, in capture order."""
    from scapy.layers.inet import IP, TCP
    for n, pkt in enumerate(_read(pcap), 1):
        if IP not in pkt or TCP not in pkt:
            continue
        tcp = pkt[TCP]
        if port is None or port in (tcp.sport, tcp.dport):
            yield n, pkt, pkt[IP], tcp, bytes(tcp.payload)


def tcp_events(pcap: Path, port: int | None = None) -> list[PacketEvent]:
    """Every TCP segment (optionally only those to/from port) in capture order."""
    out = []
    for n, pkt, ip, tcp, payload in _tcp_segments(pcap, port):
        flags = str(tcp.flags)
        kind = _kind(flags, len(payload))
        label = http_label(payload) if payload else ""
        out.append(PacketEvent(n, float(pkt.time), ip.src, ip.dst, tcp.sport, tcp.dport, flags,
                               kind, label or kind + (f" {len(payload)} B" if payload else ""), len(payload)))
    return out


def find_bytes(pcap: Path, needle: bytes) -> list[int]:
    """Frame numbers whose TCP payload holds needle, also when it spans segments of one direction of a flow."""
    hits: set[int] = set()
    streams: dict[tuple, list[tuple[int, int, bytes]]] = {}
    for n, _, ip, tcp, payload in _tcp_segments(pcap):
        if not payload:
            continue
        if needle in payload:
            hits.add(n)
        streams.setdefault((ip.src, tcp.sport, ip.dst, tcp.dport), []).append((tcp.seq, n, payload))
    for segs in streams.values():
        seen: set[int] = set()
        data, owners = b"", []
        for seq, n, payload in sorted(segs, key=lambda s: s[0]):
            if seq in seen:
                continue  # a retransmission
            seen.add(seq)
            data += payload
            owners += [n] * len(payload)
        start = data.find(needle)
        while start >= 0:
            hits.add(owners[start])
            start = data.find(needle, start + 1)
    return sorted(hits)


@dataclass
class DnsAnswer:
    """A DNS response seen on the wire: the question and its answer records in order."""

    frame: int
    qname: str
    rcode: int
    src: str
    dst: str
    records: list[tuple[str, str, str]] = field(default_factory=list)  # (name, type, value)


def _name(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).rstrip(".").lower()


def dns_answers(pcap: Path, qname: str | None = None) -> list[DnsAnswer]:
    """Every DNS response (optionally for qname) with its answer section, in capture order."""
    from scapy.layers.dns import DNS
    from scapy.layers.inet import IP
    types = {1: "A", 5: "CNAME", 28: "AAAA", 2: "NS", 6: "SOA"}
    out = []
    for n, pkt in enumerate(_read(pcap), 1):
        if DNS not in pkt or not pkt[DNS].qr:
            continue
        dns = pkt[DNS]
        q = _name(dns.qd[0].qname) if dns.qd else ""
        if qname and q != _name(qname):
            continue
        answers = dns.an if isinstance(dns.an, list) else ([] if dns.an is None else list(_iter_rr(dns.an)))
        records = []
        for rr in answers:
            rtype = types.get(int(rr.type), str(int(rr.type)))
            value = _name(rr.rdata) if rtype in ("CNAME", "NS") else str(rr.rdata if not isinstance(rr.rdata, bytes)
                                                                        else rr.rdata.decode("latin-1"))
            records.append((_name(rr.rrname), rtype, value))
        src = pkt[IP].src if IP in pkt else ""
        dst = pkt[IP].dst if IP in pkt else ""
        out.append(DnsAnswer(n, q, int(dns.rcode), src, dst, records))
    return out


def _iter_rr(rr: Any) -> Any:
    """Older Scapy chained RRs through payload; walk them."""
    while rr is not None and hasattr(rr, "rrname"):
        yield rr
        rr = rr.payload if rr.payload and hasattr(rr.payload, "rrname") else None


@dataclass(frozen=True)
class TlsRecord:
    """A TLS record header found at the start of a TCP payload (what a sniffer sees of HTTPS)."""

    frame: int
    src: str
    dst: str
    sport: int
    dport: int
    content_type: str   # Handshake, ApplicationData, ...
    length: int


def tls_records(pcap: Path, port: int | None = None) -> list[TlsRecord]:
    """TLS records that start a TCP payload (optionally to/from port), in capture order."""
    out = []
    for n, _, ip, tcp, payload in _tcp_segments(pcap, port):
        header = tls_header(payload)
        if header:
            out.append(TlsRecord(n, ip.src, ip.dst, tcp.sport, tcp.dport, *header))
    return out


def payload_summary(pcap: Path) -> dict[str, int]:
    """Frames, TCP segments with payload, and payload bytes of a capture (to show it saw traffic)."""
    from scapy.layers.inet import TCP
    packets = _read(pcap)
    data = [len(bytes(p[TCP].payload)) for p in packets if TCP in p and len(bytes(p[TCP].payload))]
    return {"frames": len(packets), "data_segments": len(data), "payload_bytes": sum(data)}


def context_of(pcap: Path, frame: int, needle: bytes, around: int = 40) -> str:
    """The bytes around needle in one frame's TCP payload, printable (evidence for a report)."""
    from scapy.layers.inet import TCP
    packets = _read(pcap)
    if not 1 <= frame <= len(packets) or TCP not in packets[frame - 1]:
        return ""
    payload = bytes(packets[frame - 1][TCP].payload)
    at = payload.find(needle)
    if at < 0:
        return ""
    chunk = payload[max(0, at - around):at + len(needle) + around]
    return "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
