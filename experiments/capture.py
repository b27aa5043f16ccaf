"""Reading the wire: one streaming pcap reader for every claim, and what claims ask of a capture.

`Pcap` streams a capture's records with Scapy's RawPcapReader (pcap and pcapng), never holding the
file in memory, and stops cleanly at a record a killed tcpdump left half-written. `headers()` parses
Ethernet/IP/TCP/UDP from the raw bytes (fast, and it works on snaplen-limited frames, whose lengths
come from the IP header, not from what was captured). On top: TCP segments (sequence diagrams, byte
search across segments), TLS record headers, DNS answers (Scapy's DNS layer, only for port 53).
"""
from __future__ import annotations

import gzip
import logging
import socket
import struct
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from weblab.core.errors import WeblabError
from weblab.core.wire import http_label, tls_header

PCAP_HEADER = 24  # bytes tcpdump writes once its capture socket is open

# link-layer types (www.tcpdump.org/linktypes.html) the header parser knows
ETHERNET, RAW, LINUX_SLL, IPV4, IPV6, LINUX_SLL2 = 1, 101, 113, 228, 229, 276
VLAN_TAGS = (0x8100, 0x88A8, 0x9100)


class PcapError(WeblabError, ValueError):
    """A file that cannot be read as a capture: missing, not pcap/pcapng, or holding no packet."""


def wait_capture_ready(path: Path, timeout: float = 5.0) -> bool:
    """True once tcpdump has written the pcap header to path (it is capturing), False after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(path).exists() and Path(path).stat().st_size >= PCAP_HEADER:
            return True
        time.sleep(0.02)  # bounded poll: tcpdump gives no other readiness signal
    return False


class _Collect(logging.Handler):
    """Scapy's reader warnings (a torn record, a bad block), kept instead of printed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _scapy_warnings() -> Iterator[_Collect]:
    log = logging.getLogger("scapy.runtime")
    handler, propagate = _Collect(), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


class Pcap:
    """The records of a capture file, streamed: iterate for (time, original length, captured bytes,
    link type). After iterating, `packets`, `truncated` and `warnings` say what was read."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise PcapError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise PcapError(f"{self.path}: not a file")
        self.size = self.path.stat().st_size
        if self.size == 0:
            raise PcapError(f"{self.path}: empty file (not even a pcap header: was the capture started?)")
        self.linktype: int | None = None
        self.snaplen = 0
        self.packets = 0
        self.truncated = False
        self.warnings: list[str] = []

    def _open(self) -> Any:
        from scapy.error import Scapy_Exception
        from scapy.utils import RawPcapReader
        f = open(self.path, "rb", buffering=1 << 20)
        try:
            reader = RawPcapReader(f)
        except (Scapy_Exception, EOFError, OSError) as exc:
            f.close()
            raise PcapError(f"{self.path}: not a pcap or pcapng capture ({exc})") from None
        return reader

    def __iter__(self) -> Iterator[tuple[float, int, bytes, int]]:
        from scapy.utils import RawPcapNgReader
        self.packets, self.truncated, self.warnings = 0, False, []
        with _scapy_warnings() as scapy_said:
            reader = self._open()
            try:
                if isinstance(reader, RawPcapNgReader):
                    yield from self._pcapng(reader)
                else:
                    yield from self._pcap(reader)
            finally:
                reader.close()
        if any("truncated" in m or "too short" in m or "Invalid" in m for m in scapy_said.messages):
            self.truncated = True
        if self.truncated:
            self._warn(f"{self.path.name} ends in a partly written record (a capture stopped mid-write?): "
                       f"analysed up to the last whole packet ({self.packets})")

    def _pcap(self, reader: Any) -> Iterator[tuple[float, int, bytes, int]]:
        """Classic pcap: a torn last record shows as fewer bytes than its header promised, or as bytes
        left over after the last whole record."""
        linktype = self.linktype = reader.linktype
        self.snaplen = reader.snaplen
        scale = 1e-9 if reader.nano else 1e-6
        consumed, n = PCAP_HEADER, 0
        read = reader._read_packet  # what __next__ calls, without a StopIteration per packet
        try:
            while True:
                try:
                    data, (sec, frac, wirelen, caplen) = read()
                except EOFError:
                    break
                except Exception as exc:  # a malformed record: keep what came before it
                    self._warn(f"unreadable record after packet {n}: {exc}")
                    self.truncated = True
                    break
                if len(data) < caplen and len(data) < 0xFFFF:
                    self.truncated = True  # the last record was cut mid-write
                    break
                consumed += 16 + caplen
                n += 1
                yield sec + frac * scale, wirelen, data, linktype
        finally:
            self.packets = n
        if not isinstance(reader.f, gzip.GzipFile) and consumed < self.size:
            self.truncated = True  # a record header cut mid-write

    def _pcapng(self, reader: Any) -> Iterator[tuple[float, int, bytes, int]]:
        read = reader._read_packet
        while True:
            try:
                data, meta = read()
            except EOFError:
                break
            except Exception as exc:
                self._warn(f"unreadable block after packet {self.packets}: {exc}")
                self.truncated = True
                break
            if data is None:
                continue  # a block that is not a packet
            if self.linktype is None:
                self.linktype = meta.linktype
            self.packets += 1
            yield ((meta.tshigh << 32) | meta.tslow) / meta.tsresol, meta.wirelen, data, meta.linktype

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)


class Headers(NamedTuple):
    """What headers() found in one frame; ports, seq and flags are 0 for what it has not."""

    l2src: bytes        # source MAC (or the IP source where there is no link header)
    l2dst: bytes
    ip: int             # 4, 6, or 0 (not IP: ARP, LLDP, ...)
    src: bytes          # packed addresses
    dst: bytes
    proto: int          # 6 TCP, 17 UDP, ...
    sport: int
    dport: int
    seq: int
    flags: int          # TCP flag bits (FIN 1, SYN 2, RST 4, PSH 8, ACK 16)
    payload_at: int     # offset of the L4 payload in the captured bytes
    payload_len: int    # its length on the wire (from the IP header: snaplen does not shorten it)
    l4: bool = True     # the transport header was captured whole


# Ethernet + a 20-byte IPv4 header + TCP up to its flags: the frames that matter for speed
_ETH_IP4_TCP = struct.Struct("!6s6sHBxH2xH1xB2x4s4sHHI4xBB")
_ETH_IP4_TCP_LEN = _ETH_IP4_TCP.size


def parse(data: bytes, linktype: int, wirelen: int) -> tuple | None:
    """headers() as a plain tuple (the fields of Headers, in order): for loops over millions of frames."""
    n = len(data)
    if linktype == ETHERNET and n >= _ETH_IP4_TCP_LEN and data[12] == 8 and data[13] == 0 and data[14] == 0x45 \
            and data[23] == 6:
        dst, src, _, _, total, frag, proto, s_ip, d_ip, sport, dport, seq, doff, flags = \
            _ETH_IP4_TCP.unpack_from(data)
        if not frag & 0x1FFF:
            if total == 0:
                total = wirelen - 14
            doff = (doff >> 4) * 4
            return (src, dst, 4, s_ip, d_ip, 6, sport, dport, seq, flags, 34 + doff,
                    total - 20 - doff if total > 20 + doff else 0, True)
    if linktype == ETHERNET:
        if n < 14:
            return None
        l2dst, l2src = data[0:6], data[6:12]
        etype, off = (data[12] << 8) | data[13], 14
        while etype in VLAN_TAGS and n >= off + 4:
            etype, off = (data[off + 2] << 8) | data[off + 3], off + 4
    elif linktype == LINUX_SLL:
        if n < 16:
            return None
        l2src, l2dst, etype, off = data[6:6 + min(data[5], 8)], b"", (data[14] << 8) | data[15], 16
    elif linktype == LINUX_SLL2:
        if n < 20:
            return None
        l2src, l2dst, etype, off = data[12:12 + min(data[11], 8)], b"", (data[0] << 8) | data[1], 20
    elif linktype in (RAW, IPV4, IPV6):
        if n < 1:
            return None
        etype, off = (0x0800 if data[0] >> 4 == 4 else 0x86DD), 0
        l2src = l2dst = b""
    else:
        return None
    if etype == 0x0800 and n >= off + 20:
        ihl = (data[off] & 15) * 4
        total = (data[off + 2] << 8) | data[off + 3]
        if total == 0:  # a GSO super-segment beyond 64 KiB: the frame's length is the truth
            total = wirelen - off
        proto, src, dst = data[off + 9], data[off + 12:off + 16], data[off + 16:off + 20]
        if (data[off + 6] & 0x1F) | data[off + 7]:  # a later fragment: no transport header in it
            return (l2src or src, l2dst or dst, 4, src, dst, proto, 0, 0, 0, 0, off + ihl, total - ihl, False)
        l4, ip_payload, ipver = off + ihl, total - ihl, 4
    elif etype == 0x86DD and n >= off + 40:
        proto, src, dst = data[off + 6], data[off + 8:off + 24], data[off + 24:off + 40]
        plen = (data[off + 4] << 8) | data[off + 5]
        l4, ip_payload, ipver = off + 40, plen or wirelen - off - 40, 6
    else:
        return (l2src, l2dst, 0, b"", b"", 0, 0, 0, 0, 0, off, max(0, wirelen - off), False)
    if l2src == b"":
        l2src, l2dst = src, dst
    if proto == 6:
        if n < l4 + 14:
            return (l2src, l2dst, ipver, src, dst, 6, 0, 0, 0, 0, l4, ip_payload, False)
        doff = (data[l4 + 12] >> 4) * 4
        return (l2src, l2dst, ipver, src, dst, 6, (data[l4] << 8) | data[l4 + 1], (data[l4 + 2] << 8) | data[l4 + 3],
                int.from_bytes(data[l4 + 4:l4 + 8], "big"), data[l4 + 13], l4 + doff, max(0, ip_payload - doff), True)
    if proto == 17:
        if n < l4 + 8:
            return (l2src, l2dst, ipver, src, dst, 17, 0, 0, 0, 0, l4, ip_payload, False)
        return (l2src, l2dst, ipver, src, dst, 17, (data[l4] << 8) | data[l4 + 1], (data[l4 + 2] << 8) | data[l4 + 3],
                0, 0, l4 + 8, max(0, ip_payload - 8), True)
    return (l2src, l2dst, ipver, src, dst, proto, 0, 0, 0, 0, l4, ip_payload, True)


def headers(data: bytes, linktype: int, wirelen: int) -> Headers | None:
    """Parse the link, IP and TCP/UDP headers of one captured frame; None if not even IP is readable."""
    t = parse(data, linktype, wirelen)
    return None if t is None else Headers._make(t)


def addr(packed: bytes) -> str:
    """A packed IPv4/IPv6 address (or MAC) as text."""
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed)
    if len(packed) == 16:
        return socket.inet_ntop(socket.AF_INET6, packed)
    return ":".join(f"{b:02x}" for b in packed)


TCP_FLAG_LETTERS = "FSRPAUEC"  # bit 0 first: what Scapy prints ('S', 'SA', 'PA', 'FA')


def flag_letters(flags: int) -> str:
    """TCP flag bits as Scapy's letters."""
    return "".join(c for i, c in enumerate(TCP_FLAG_LETTERS) if flags >> i & 1)


@dataclass(frozen=True)
class Segment:
    """One TCP segment of a capture, with the payload bytes that were captured."""

    frame: int          # 1-based, as Wireshark numbers them
    time: float
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    flags: int
    payload_len: int    # on the wire
    payload: bytes      # as captured (shorter than payload_len in a snaplen-limited capture)


def tcp_segments(pcap: Path, port: int | None = None) -> Iterator[Segment]:
    """Every IPv4/IPv6 TCP segment (optionally only those to/from port), in capture order, streamed."""
    for n, (ts, wirelen, data, linktype) in enumerate(Pcap(pcap), 1):
        h = headers(data, linktype, wirelen)
        if h is None or h.proto != 6 or not h.l4:
            continue
        if port is None or port in (h.sport, h.dport):
            yield Segment(n, ts, addr(h.src), addr(h.dst), h.sport, h.dport, h.seq, h.flags, h.payload_len,
                          data[h.payload_at:h.payload_at + h.payload_len])


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


def tcp_events(pcap: Path, port: int | None = None) -> list[PacketEvent]:
    """Every TCP segment (optionally only those to/from port) in capture order."""
    out = []
    for s in tcp_segments(pcap, port):
        flags = flag_letters(s.flags)
        kind = _kind(flags, s.payload_len)
        label = http_label(s.payload) if s.payload else ""
        out.append(PacketEvent(s.frame, s.time, s.src, s.dst, s.sport, s.dport, flags, kind,
                               label or kind + (f" {s.payload_len} B" if s.payload_len else ""), s.payload_len))
    return out


def find_bytes(pcap: Path, needle: bytes) -> list[int]:
    """Frame numbers whose TCP payload holds needle, also when it spans segments of one direction of a flow."""
    hits: set[int] = set()
    streams: dict[tuple, list[tuple[int, int, bytes]]] = {}
    for s in tcp_segments(pcap):
        if not s.payload:
            continue
        if needle in s.payload:
            hits.add(s.frame)
        streams.setdefault((s.src, s.sport, s.dst, s.dport), []).append((s.seq, s.frame, s.payload))
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
    qtype: str = ""   # the question's type (A, MX, ...)


def _name(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).rstrip(".").lower()


def dns_answers(pcap: Path, qname: str | None = None) -> list[DnsAnswer]:
    """Every DNS response (optionally for qname) with its answer section, in capture order."""
    from scapy.error import Scapy_Exception
    from scapy.layers.dns import DNS
    types = {1: "A", 5: "CNAME", 28: "AAAA", 2: "NS", 6: "SOA", 15: "MX", 16: "TXT"}
    out = []
    for n, (_, wirelen, data, linktype) in enumerate(Pcap(pcap), 1):
        h = headers(data, linktype, wirelen)
        if h is None or h.proto not in (6, 17) or not h.l4 or 53 not in (h.sport, h.dport):
            continue
        body = data[h.payload_at:h.payload_at + h.payload_len]
        if h.proto == 6:  # DNS over TCP: a two-byte length first
            body = body[2:]
        try:
            dns = DNS(body)  # only this layer, from the raw bytes: Scapy need not dissect the rest
        except (Scapy_Exception, ValueError, IndexError, TypeError):
            continue
        if not dns.qr:
            continue
        q = _name(dns.qd[0].qname) if dns.qd else ""
        if qname and q != _name(qname):
            continue
        answers = dns.an if isinstance(dns.an, list) else ([] if dns.an is None else list(_iter_rr(dns.an)))
        records = []
        for rr in answers:
            rtype = types.get(int(rr.type), str(int(rr.type)))
            if rtype == "MX":  # "preference exchange", as dig prints it
                records.append((_name(rr.rrname), rtype, f"{int(rr.preference)} {_name(rr.exchange)}"))
                continue
            if rtype == "TXT":
                parts = rr.rdata if isinstance(rr.rdata, list) else [rr.rdata]
                text = "".join(p.decode("latin-1") if isinstance(p, bytes) else str(p) for p in parts)
                records.append((_name(rr.rrname), rtype, text))
                continue
            value = _name(rr.rdata) if rtype in ("CNAME", "NS") else str(rr.rdata if not isinstance(rr.rdata, bytes)
                                                                        else rr.rdata.decode("latin-1"))
            records.append((_name(rr.rrname), rtype, value))
        qtype = types.get(int(dns.qd[0].qtype), str(int(dns.qd[0].qtype))) if dns.qd else ""
        out.append(DnsAnswer(n, q, int(dns.rcode), addr(h.src), addr(h.dst), records, qtype))
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
    for s in tcp_segments(pcap, port):
        header = tls_header(s.payload)
        if header:
            out.append(TlsRecord(s.frame, s.src, s.dst, s.sport, s.dport, *header))
    return out


def payload_summary(pcap: Path) -> dict[str, int]:
    """Frames, TCP segments with payload, and payload bytes of a capture (to show it saw traffic)."""
    reader = Pcap(pcap)
    data_segments = payload = 0
    for _, wirelen, data, linktype in reader:
        h = headers(data, linktype, wirelen)
        if h is not None and h.proto == 6 and h.l4 and h.payload_len:
            data_segments += 1
            payload += h.payload_len
    return {"frames": reader.packets, "data_segments": data_segments, "payload_bytes": payload}


def context_of(pcap: Path, frame: int, needle: bytes, around: int = 40) -> str:
    """The bytes around needle in one frame's TCP payload, printable (evidence for a report)."""
    for s in tcp_segments(pcap):
        if s.frame > frame:
            break
        if s.frame == frame:
            at = s.payload.find(needle)
            if at < 0:
                return ""
            chunk = s.payload[max(0, at - around):at + len(needle) + around]
            return "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
    return ""
