"""Synthetic captures with known contents: frames built with Scapy, records written with their
original length, so snaplen-limited, super-segment and cut-off files can be made exactly."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

T0 = 1_700_000_000.0
A_MAC, B_MAC = "02:00:0a:00:00:64", "02:00:0a:00:00:0a"
A_IP, B_IP = "10.0.0.100", "10.0.0.10"


def frame(src: str, dst: str, sport: int, dport: int, seq: int, flags: str = "A", payload: bytes = b"",
          ack: int = 0, smac: str = A_MAC, dmac: str = B_MAC, options: bool = True, ip_len: int | None = None) -> bytes:
    """One Ethernet/IPv4/TCP frame as bytes (with the 12-byte timestamp option, as Linux sends)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))] if options else []
    ip = IP(src=src, dst=dst, len=ip_len) if ip_len is not None else IP(src=src, dst=dst)
    return bytes(Ether(src=smac, dst=dmac) / ip / TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF,
                                                      ack=ack, flags=flags, options=opts) / payload)


def write_pcap(path: Path, records: list[tuple[float, bytes, int]], snaplen: int = 262144,
               linktype: int = 1, cut: int = 0) -> Path:
    """A classic pcap of (time, frame bytes, original length) records, each cut to snaplen; cut drops
    that many bytes off the end of the file (a capture killed mid-write)."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
    for ts, data, wirelen in records:
        kept = data[:snaplen]
        sec = int(ts)
        out += struct.pack("<IIII", sec, int(round((ts - sec) * 1e6)), len(kept), wirelen) + kept
    path.write_bytes(bytes(out[:len(out) - cut] if cut else out))
    return path


@dataclass
class Conversation:
    """A TCP connection A -> B built segment by segment; every frame is kept as a pcap record."""

    sport: int = 40000
    dport: int = 5201
    isn_a: int = 1000
    isn_b: int = 9000
    t: float = T0
    step: float = 0.001
    records: list[tuple[float, bytes, int]] = field(default_factory=list)
    sent_a: int = 0                 # payload bytes A has sent (the next A sequence offset)
    sent_b: int = 0
    a_ip: str = A_IP
    b_ip: str = B_IP
    a_mac: str = A_MAC
    b_mac: str = B_MAC

    def _add(self, data: bytes, wirelen: int | None = None) -> None:
        self.records.append((self.t, data, len(data) if wirelen is None else wirelen))
        self.t += self.step

    def _a(self, seq: int, flags: str, payload: bytes = b"", ack: int = 0) -> bytes:
        return frame(self.a_ip, self.b_ip, self.sport, self.dport, seq, flags, payload, ack=ack,
                     smac=self.a_mac, dmac=self.b_mac)

    def _b(self, seq: int, flags: str, payload: bytes = b"", ack: int = 0) -> bytes:
        return frame(self.b_ip, self.a_ip, self.dport, self.sport, seq, flags, payload, ack=ack,
                     smac=self.b_mac, dmac=self.a_mac)

    def handshake(self) -> "Conversation":
        self._add(self._a(self.isn_a, "S"))
        self._add(self._b(self.isn_b, "SA", ack=self.isn_a + 1))
        self._add(self._a(self.isn_a + 1, "A", ack=self.isn_b + 1))
        return self

    def sent_by(self, ip: str) -> int:
        """Wire bytes of the frames ip sent."""
        from experiments.capture import addr, headers
        return sum(len(d) for _, d, _ in self.records if addr(headers(d, 1, len(d)).src) == ip)

    def a_sends(self, payload: bytes, at: int | None = None, advance: bool = True) -> int:
        """A segment from A at sequence offset at (default: the next); returns its frame length."""
        off = self.sent_a if at is None else at
        data = self._a(self.isn_a + 1 + off, "PA", payload, ack=self.isn_b + 1 + self.sent_b)
        self._add(data)
        if advance:
            self.sent_a = max(self.sent_a, off + len(payload))
        return len(data)

    def b_sends(self, payload: bytes) -> int:
        data = self._b(self.isn_b + 1 + self.sent_b, "PA", payload, ack=self.isn_a + 1 + self.sent_a)
        self._add(data)
        self.sent_b += len(payload)
        return len(data)

    def b_acks(self) -> int:
        data = self._b(self.isn_b + 1 + self.sent_b, "A", ack=self.isn_a + 1 + self.sent_a)
        self._add(data)
        return len(data)

    def write(self, path: Path, **kw) -> Path:
        return write_pcap(path, self.records, **kw)


def tls_record(ctype: int, n: int, fill: int = 0x41) -> bytes:
    """A TLS record (TLS 1.2 record-layer version) with an n-byte body."""
    return bytes([ctype, 3, 3]) + n.to_bytes(2, "big") + bytes([fill]) * n
