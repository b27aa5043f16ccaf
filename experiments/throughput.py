"""Throughput from packets: what a capture says a link carried, streamed from any pcap.

Per bin (default 100 ms, and per second) and per direction and per flow (5-tuple): packets/s and
bits/s of the wire (each frame's original length, so a snaplen-limited capture still counts whole
frames, and a TSO super-segment counts as what the host handed to the link), TCP goodput (payload
counted once by its place in the sequence space; retransmitted and out-of-order bytes apart), and for
TLS streams, without keys, the record framing: header bytes, record bodies by content type, and an
estimate of the application bytes inside (record length minus the AEAD overhead of the version seen).

The capture is read once, record by record (experiments.capture.Pcap: Scapy's RawPcapReader), and
the state kept is per flow and per bin, never per packet: memory is bounded by max_flows and
max_flow_bins, not by the file. "out" is what the capture's own host sent: the link address seen in
the most frames (the host end of a link sees its own in every frame), or the one given as local.
"""
from __future__ import annotations

import csv
import math
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from experiments.capture import Pcap, PcapError, addr, parse
from weblab.core.wire import TLS_CONTENT_TYPES

SYN, FIN, RST = 2, 1, 4
MAX_HOLES = 256            # sequence gaps remembered per flow direction (older ones count as never seen)
TLS_PROBES = 3             # payload segments at a flow's start looked at for a TLS record header
TLS_MAX_RECORD = 2**14 + 2048
# bytes a record body carries beyond its plaintext: TLS 1.3 AEAD tag + inner content type;
# TLS 1.2 AES-GCM explicit nonce + tag (the suites OpenSSL prefers)
TLS_OVERHEAD = {"1.3": 17, "1.2": 24}
BROADCAST = b"\xff" * 6


def check_bin(bin_s: float) -> float:
    """A bin width that divides one second (0.001 .. 1 s); ValueError otherwise."""
    if not isinstance(bin_s, (int, float)) or not 0.001 <= bin_s <= 1 or \
            abs(round(1 / bin_s) * bin_s - 1) > 1e-9:
        raise ValueError(f"bin {bin_s!r} s must divide one second (e.g. 0.1, 0.05, 0.25, 0.5, 1)")
    return float(bin_s)


@dataclass
class TlsStats:
    """What the TLS record framing of one flow direction shows without keys."""

    records: dict[str, int] = field(default_factory=dict)      # content type -> records
    body_bytes: dict[str, int] = field(default_factory=dict)   # content type -> bytes of record bodies
    header_bytes: int = 0          # 5 per record
    unparsed_bytes: int = 0        # stream bytes whose framing was lost (snaplen, a gap) and not regained
    resyncs: int = 0
    version: str = "?"             # "1.3" / "1.2" from the record that follows ChangeCipherSpec
    app_bytes_estimate: int = 0    # ApplicationData bodies minus the version's AEAD overhead

    @property
    def record_bytes(self) -> int:
        return self.header_bytes + sum(self.body_bytes.values())


@dataclass
class FlowStats:
    """One direction of one flow (a 5-tuple) over the capture."""

    proto: str
    src: str
    sport: int
    dst: str
    dport: int
    direction: str = "?"
    packets: int = 0
    wire_bytes: int = 0
    payload_bytes: int = 0         # every transport payload byte on the wire, retransmissions too
    goodput_bytes: int = 0         # TCP: each sequence byte once; UDP: the payload
    retrans_segments: int = 0
    retrans_bytes: int = 0
    ooo_segments: int = 0          # segments that filled a gap (reordered, or lost before the capture)
    ooo_bytes: int = 0
    first: float = 0.0
    last: float = 0.0
    syn: int = 0
    fin: int = 0
    rst: int = 0
    tls: TlsStats | None = None

    @property
    def name(self) -> str:
        if self.proto in ("tcp", "udp"):
            return f"{self.proto} {self.src}:{self.sport} > {self.dst}:{self.dport}"
        return f"{self.proto if self.proto.isalpha() else 'ip proto ' + self.proto} {self.src} > {self.dst}"


class _Tls:
    """Record framing state of one flow direction (stream positions are unwrapped sequence numbers)."""

    __slots__ = ("next", "partial", "lost_at", "prev", "last_type", "stats")

    def __init__(self, at: int):
        self.next: int | None = at      # where the next record header starts; None: framing lost
        self.partial = b""
        self.lost_at: int | None = 0    # where it was lost (None: a new connection, nothing lost yet)
        self.prev = -1
        self.last_type = -1
        self.stats = TlsStats()


def _plausible(hdr: bytes) -> bool:
    return len(hdr) >= 5 and 20 <= hdr[0] <= 23 and hdr[1] == 3 and hdr[2] <= 4 and \
        0 < ((hdr[3] << 8) | hdr[4]) <= TLS_MAX_RECORD


def _lose(t: _Tls, at: int) -> None:
    t.next, t.partial, t.lost_at = None, b"", at


def _tls_feed(t: _Tls, s: int, e: int, payload: bytes, new_from: int) -> None:
    """Advance the framing over segment [s, e) whose captured bytes are payload; [new_from, e) is new."""
    p = t.next
    if p is None:
        if s < new_from or not _plausible(payload[:5]):
            return
        if t.lost_at is not None:
            t.stats.unparsed_bytes += max(0, s - t.lost_at)
            t.stats.resyncs += 1
        p = s
    st = t.stats
    while p < e:
        have = t.partial
        q = p + len(have)
        if q < s:  # the next header lies in bytes never captured (a gap in the stream)
            _lose(t, p)
            return
        off, need = q - s, 5 - len(have)
        chunk = payload[off:off + need]
        if len(chunk) < need:
            if off + len(chunk) == e - s:  # captured to the segment's end: the header goes on in the next one
                t.partial, t.next = have + chunk, p
                return
            _lose(t, p)  # the header is on the wire but past the snaplen
            return
        hdr = have + chunk
        t.partial = b""
        if not _plausible(hdr):
            _lose(t, p)
            return
        typ, length = hdr[0], (hdr[3] << 8) | hdr[4]
        name = TLS_CONTENT_TYPES[typ]
        if t.prev == 20 and st.version == "?":
            st.version = "1.3" if typ == 23 else "1.2" if typ == 22 else "?"
        t.prev = t.last_type = typ
        st.records[name] = st.records.get(name, 0) + 1
        st.body_bytes[name] = st.body_bytes.get(name, 0) + length
        st.header_bytes += 5
        p += 5 + length
    t.next = p


def _tls_finish(t: _Tls, end: int) -> None:
    """At the end of the capture: a record cut off by it counts only its bytes that were seen."""
    st = t.stats
    if t.next is None:
        if t.lost_at is not None:
            st.unparsed_bytes += max(0, end - t.lost_at)
    elif t.next > end and t.last_type in TLS_CONTENT_TYPES:
        name = TLS_CONTENT_TYPES[t.last_type]
        st.body_bytes[name] = max(0, st.body_bytes[name] - (t.next - end))
    elif t.partial:
        st.unparsed_bytes += len(t.partial)


# per-flow mutable state, a list for speed: indexes
P, W, PL, G, RS, RB, OS, OB, FIRST, LAST, HI, HOLES, FLAGS, TLS, L2, IDX, PROBES, CB, ACC = range(19)


def _flow(l2src: bytes, ts: float, idx: int) -> list:
    return [0, 0, 0, 0, 0, 0, 0, 0, ts, ts, None, None, [0, 0, 0], None, l2src, idx, 0, -1, None]


def _restart(f: list) -> None:
    """Close the books on a flow direction's sequence space before a new connection reuses its 5-tuple."""
    t = f[TLS]
    if t:
        _tls_finish(t, f[HI])
        # the same flow's figures go on; the framing starts again at the new stream's first record header
        t.next, t.partial, t.lost_at, t.prev, t.last_type = None, b"", None, -1, -1
    elif t is False:
        f[TLS] = None
    f[HI], f[HOLES], f[PROBES] = None, None, 0


def _tcp(f: list, seq: int, flags: int, plen: int, data: bytes, at: int) -> int:
    """Account one TCP segment in its flow direction; returns the bytes it added to the goodput."""
    if flags & (SYN | FIN | RST):
        fl = f[FLAGS]
        fl[0] += bool(flags & SYN)
        fl[1] += bool(flags & FIN)
        fl[2] += bool(flags & RST)
    hi = f[HI]
    if hi is not None and flags & SYN and (seq + 1 - hi) & 0xFFFFFFFF > 0x10000:
        _restart(f)  # a new connection on the same 5-tuple (a reused port): a new sequence space
        hi = None
    if hi is None:
        s = seq + 1 if flags & SYN else seq
        f[HI] = hi = s
    else:
        s = hi + ((seq - hi + 0x80000000) & 0xFFFFFFFF) - 0x80000000  # unwrapped near the stream's top
        if flags & SYN:
            s += 1
    if plen <= 0:
        return 0
    e = s + plen
    f[PL] += plen
    if s == hi:                                   # in order: the common case
        f[HI], new = e, plen
    elif s > hi:                                  # a gap: bytes not (yet) seen before s
        holes = f[HOLES]
        if holes is None:
            holes = f[HOLES] = []
        holes.append([hi, s])
        if len(holes) > MAX_HOLES:
            del holes[0]
        f[HI], new = e, plen
    else:                                         # below the top: a retransmission, or a gap filled
        top = e - hi if e > hi else 0
        filled = 0
        holes = f[HOLES]
        if holes:
            lo, up = s, min(e, hi)
            keep = []
            for a, b in holes:
                x, y = max(a, lo), min(b, up)
                if x < y:
                    filled += y - x
                    if a < x:
                        keep.append([a, x])
                    if y < b:
                        keep.append([y, b])
                else:
                    keep.append([a, b])
            f[HOLES] = keep
        if top:
            f[HI] = e
        new = top + filled
        dup = plen - new
        if dup > 0:
            f[RS] += 1
            f[RB] += dup
        elif filled:
            f[OS] += 1
            f[OB] += filled
    t = f[TLS]
    if t is None and f[PROBES] < TLS_PROBES:
        f[PROBES] += 1
        if s >= hi and _plausible(data[at:at + 5]):
            t = f[TLS] = _Tls(s)
        elif f[PROBES] == TLS_PROBES:
            f[TLS] = False
    if t:
        _tls_feed(t, s, e, data[at:at + plen], hi)
    return new


@dataclass
class Throughput:
    """The analysis of one capture (or of its part between start and end)."""

    path: str
    bin_s: float
    linktype: int | None = None
    snaplen: int = 0
    packets: int = 0
    wire_bytes: int = 0
    captured_bytes: int = 0
    non_ip_packets: int = 0
    outside_window: int = 0
    t_first: float | None = None
    t_last: float | None = None
    local: str = ""
    directions: dict[str, dict[str, int]] = field(default_factory=dict)  # out/in -> packets, wire, goodput
    bins: list[list[float]] = field(default_factory=list)  # [bin, out pkts, out bytes, out goodput, in ...]
    flows: list[FlowStats] = field(default_factory=list)
    flow_bins: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # (flow, bin) -> pkts, bytes, goodput
    flow_bins_complete: bool = True
    other_flows: int = 0           # flows past max_flows: counted in every total, not tracked alone
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)

    # ---- derived figures -----------------------------------------------------------------------------
    @property
    def duration_s(self) -> float:
        return (self.t_last - self.t_first) if self.packets else 0.0

    def total(self, key: str, direction: str | None = None, proto: str | None = None,
              port: int | None = None) -> int:
        """Sum of a FlowStats number over flows (optionally one direction, protocol, port)."""
        return sum(getattr(f, key) for f in self.select(direction, proto, port))

    def select(self, direction: str | None = None, proto: str | None = None, port: int | None = None,
               src: str | None = None, dst: str | None = None) -> list[FlowStats]:
        """The flows matching every given filter (port: either end)."""
        return [f for f in self.flows if (direction is None or f.direction == direction)
                and (proto is None or f.proto == proto) and (port is None or port in (f.sport, f.dport))
                and (src is None or f.src == src) and (dst is None or f.dst == dst)]

    def tls(self, direction: str | None = None) -> TlsStats:
        """TLS figures summed over flows (optionally one direction)."""
        out = TlsStats(version="")
        versions = set()
        for f in self.select(direction):
            t = f.tls
            if t is None:
                continue
            for k, v in t.records.items():
                out.records[k] = out.records.get(k, 0) + v
            for k, v in t.body_bytes.items():
                out.body_bytes[k] = out.body_bytes.get(k, 0) + v
            out.header_bytes += t.header_bytes
            out.unparsed_bytes += t.unparsed_bytes
            out.resyncs += t.resyncs
            out.app_bytes_estimate += t.app_bytes_estimate
            versions.add(t.version)
        out.version = "/".join(sorted(versions)) or "-"
        return out

    def series(self, direction: str | None = None, bin_s: float | None = None,
               what: str = "bits") -> tuple[list[float], list[float]]:
        """(bin start times relative to the first packet, rate per second) of wire bits, packets or
        goodput bits, one direction or both, at bin_s (a multiple of the analysis bin)."""
        bin_s = bin_s or self.bin_s
        k = max(1, round(bin_s / self.bin_s))
        col = {"packets": 0, "bits": 1, "goodput": 2}[what]
        scale = 8 if what != "packets" else 1
        cols = [1 + col] if direction == "out" else [4 + col] if direction == "in" else [1 + col, 4 + col]
        merged: dict[int, float] = {}
        for row in self.bins:
            merged[int(row[0]) // k] = merged.get(int(row[0]) // k, 0) + sum(row[c] for c in cols)
        n = max(merged) + 1 if merged else 0
        width = k * self.bin_s
        return [i * width for i in range(n)], [merged.get(i, 0) * scale / width for i in range(n)]

    def summary(self) -> dict[str, Any]:
        """The totals as plain JSON-able values."""
        tcp = self.select(proto="tcp")
        tls = self.tls()
        out = {"pcap": self.path, "packets": self.packets, "wire_bytes": self.wire_bytes,
               "captured_bytes": self.captured_bytes, "snaplen": self.snaplen, "duration_s": round(self.duration_s, 6),
               "t_first": self.t_first, "t_last": self.t_last, "local": self.local,
               "non_ip_packets": self.non_ip_packets, "outside_window": self.outside_window,
               "flows": len(self.flows), "other_flows": self.other_flows, "truncated": self.truncated,
               "warnings": list(self.warnings), "directions": self.directions,
               "tcp": {k: sum(getattr(f, k) for f in tcp) for k in
                       ("packets", "wire_bytes", "payload_bytes", "goodput_bytes", "retrans_segments",
                        "retrans_bytes", "ooo_segments", "ooo_bytes")},
               "tls": {**asdict(tls), "record_bytes": tls.record_bytes}}
        if self.duration_s > 0:
            out["wire_bits_per_s"] = self.wire_bytes * 8 / self.duration_s
            out["packets_per_s"] = self.packets / self.duration_s
        return out

    # ---- output --------------------------------------------------------------------------------------
    def write_csv(self, path: Path) -> Path:
        """One row per (scope, bin): all, out, in, and every tracked flow; at the analysis bin and per second."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["scope", "key", "bin_s", "t_start_s", "packets", "wire_bytes", "goodput_bytes",
                        "packets_per_s", "wire_bits_per_s", "goodput_bits_per_s"])
            for width in dict.fromkeys((self.bin_s, 1.0)):
                k = max(1, round(width / self.bin_s))
                for scope, key, rows in self._scoped_rows(k):
                    for b, (pk, by, gp) in sorted(rows.items()):
                        w.writerow([scope, key, f"{width:g}", f"{b * width:.6f}", pk, by, gp,
                                    f"{pk / width:.3f}", f"{by * 8 / width:.1f}", f"{gp * 8 / width:.1f}"])
        return path

    def _scoped_rows(self, k: int):
        for scope, cols in (("all", None), ("direction", "out"), ("direction", "in")):
            rows: dict[int, list[int]] = {}
            for r in self.bins:
                acc = rows.setdefault(int(r[0]) // k, [0, 0, 0])
                for j, base in enumerate((0, 1, 2)):
                    acc[j] += (r[1 + base] + r[4 + base]) if cols is None else r[(1 if cols == "out" else 4) + base]
            yield scope, cols or "all", rows
        per: dict[int, dict[int, list[int]]] = {}
        for (fi, b), (pk, by, gp) in self.flow_bins.items():
            acc = per.setdefault(fi, {}).setdefault(b // k, [0, 0, 0])
            acc[0] += pk
            acc[1] += by
            acc[2] += gp
        for fi, rows in sorted(per.items()):
            yield "flow", self.flows[fi].name, rows

    def text(self, chart: bool = True, top: int = 8, width: int = 50) -> str:
        """A report for a terminal: totals, the busiest flows, TLS, and a chart of bits/s per bin."""
        s = self.summary()
        lines = [f"{self.path}: {self.packets} packets, {_size(self.wire_bytes)} on the wire in "
                 f"{self.duration_s:.3f} s" + (f" ({_rate(s['wire_bits_per_s'])}, {s['packets_per_s']:,.0f} packets/s)"
                                                 if self.duration_s > 0 else "")]
        if self.snaplen and self.captured_bytes < self.wire_bytes:
            lines.append(f"  snaplen {self.snaplen}: {_size(self.captured_bytes)} captured of {_size(self.wire_bytes)} "
                         f"(lengths from the headers)")
        for d in ("out", "in"):
            x = self.directions.get(d, {})
            lines.append(f"  {d:3} ({'sent by' if d == 'out' else 'received by'} {self.local or '?'}): "
                         f"{x.get('packets', 0)} packets, {_size(x.get('wire_bytes', 0))} wire, "
                         f"{_size(x.get('goodput_bytes', 0))} goodput"
                         + (f", {_rate(x.get('wire_bytes', 0) * 8 / self.duration_s)}" if self.duration_s > 0 else ""))
        t = s["tcp"]
        if t["packets"]:
            lines.append(f"  TCP: goodput {_size(t['goodput_bytes'])} of {_size(t['payload_bytes'])} payload; "
                         f"retransmitted {t['retrans_segments']} segments ({_size(t['retrans_bytes'])}), "
                         f"out of order {t['ooo_segments']} ({_size(t['ooo_bytes'])})")
        tls = self.tls()
        if tls.records:
            lines.append(f"  TLS ({tls.version}): {sum(tls.records.values())} records, {_size(tls.record_bytes)} "
                         f"({_size(tls.header_bytes)} headers); application data ~{_size(tls.app_bytes_estimate)} "
                         f"inside {_size(tls.body_bytes.get('ApplicationData', 0))} of records; framing lost on "
                         f"{_size(tls.unparsed_bytes)}; " + ", ".join(f"{k} {v}" for k, v in sorted(tls.records.items())))
        busiest = sorted(self.flows, key=lambda f: -f.wire_bytes)[:top]
        if busiest:
            lines.append(f"  busiest flows (of {len(self.flows) + self.other_flows}):")
            for f in busiest:
                span = f.last - f.first
                lines.append(f"    {f.name:48} {f.packets:>8} pk {_size(f.wire_bytes):>10} wire "
                             f"{_size(f.goodput_bytes):>10} goodput" + (f" {_rate(f.goodput_bytes * 8 / span):>12}"
                                                                        if span > 0 else "")
                             + (f" retrans {f.retrans_segments}" if f.retrans_segments else ""))
        if chart and self.bins:
            lines += self.chart(width)
        for wtext in self.warnings:
            lines.append(f"  warning: {wtext}")
        return "\n".join(lines)

    def chart(self, width: int = 50, max_rows: int = 40) -> list[str]:
        """Bits/s per bin, out and in side by side (bins merged so that at most max_rows are printed)."""
        n = int(self.bins[-1][0]) + 1 if self.bins else 0
        k = 1
        while n / k > max_rows or not _whole(k * self.bin_s):
            k += 1  # merged bins divide a second, or are whole seconds
        times, out = self.series("out", k * self.bin_s)
        _, inn = self.series("in", k * self.bin_s)
        peak = max(out + inn + [1.0])
        half = width // 2
        lines = [f"  bits/s per {k * self.bin_s:g} s bin; a full bar is {_rate(peak)}",
                 f"  {'t (s)':>7}  {'out':>13} {'':{half}}  {'in':>13}"]
        for t, o, i in zip(times, out, inn):
            lines.append(f"  {t:7.2f}  {_rate(o):>13} {'#' * round(o / peak * half):<{half}}  "
                         f"{_rate(i):>13} {'=' * round(i / peak * half)}".rstrip())
        return lines


def _whole(width: float) -> bool:
    return abs(round(1 / width) * width - 1) < 1e-9 if width < 1 else abs(width - round(width)) < 1e-9


def _size(n: float) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f} B"


def _rate(bps: float) -> str:
    for unit, div in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if abs(bps) >= div:
            return f"{bps / div:.2f} {unit}"
    return f"{bps:.0f} bit/s"


def analyse(pcap: str | Path, bin_s: float = 0.1, start: float | None = None, end: float | None = None,
            local: str | None = None, max_flows: int = 50_000, max_flow_bins: int = 1_000_000) -> Throughput:
    """Read pcap once and measure it (only packets with start <= time <= end, if given).

    PcapError (a WeblabError and a ValueError) when the file is missing, not a capture, or holds no packet."""
    inv = 1.0 / check_bin(bin_s)
    reader = Pcap(pcap)
    res = Throughput(str(pcap), float(bin_s))
    flows: dict[tuple, list] = {}
    order: list[tuple] = []
    other = _flow(b"", 0.0, -1)
    pair_bins: dict[tuple[bytes, bytes, int], list[int]] = {}   # (link source, destination, bin)
    flow_bins = res.flow_bins
    bins_open = True
    extra: set[tuple] = set()
    t0 = last = None
    packets = wire = captured = non_ip = outside = 0
    lo = -math.inf if start is None else start
    hi_t = math.inf if end is None else end
    for ts, wirelen, data, linktype in reader:
        if ts < lo or ts > hi_t:
            outside += 1
            continue
        if t0 is None:
            t0 = ts
        last = ts
        b = int((ts - t0) * inv)
        packets += 1
        wire += wirelen
        captured += len(data)
        h = parse(data, linktype, wirelen)
        if h is None:
            non_ip += 1
            acc = pair_bins.get((b"", b"", b))
            if acc is None:
                acc = pair_bins[(b"", b"", b)] = [0, 0, 0]
            acc[0] += 1
            acc[1] += wirelen
            continue
        l2src, l2dst, ipver, src, dst, proto, sport, dport, seq, flags, at, plen, l4 = h
        acc = pair_bins.get((l2src, l2dst, b))
        if acc is None:
            acc = pair_bins[(l2src, l2dst, b)] = [0, 0, 0]
        acc[0] += 1
        acc[1] += wirelen
        if not ipver:
            non_ip += 1
            continue
        key = (proto, src, sport, dst, dport)
        f = flows.get(key)
        if f is None:
            if len(order) < max_flows:
                f = flows[key] = _flow(l2src, ts, len(order))
                order.append(key)
            else:
                f = other
                if key not in extra:
                    extra.add(key) if len(extra) < max_flows else None
                    res.other_flows += 1
        f[P] += 1
        f[W] += wirelen
        f[LAST] = ts
        if proto == 6 and l4:
            g = _tcp(f, seq, flags, plen, data, at) if f is not other else 0
        elif proto == 17:
            g = plen
            f[PL] += g
        else:
            g = 0
        if g:
            f[G] += g
            acc[2] += g
        if f is not other and bins_open:
            if f[CB] != b:  # a new bin for this flow: the only dict lookup per flow and bin
                fk = (f[IDX], b)
                fb = flow_bins.get(fk)
                if fb is None:
                    if len(flow_bins) >= max_flow_bins:
                        bins_open = res.flow_bins_complete = False
                        res.warnings.append(f"more than {max_flow_bins} (flow, bin) pairs: per-flow bins stop "
                                            f"there (totals stay exact)")
                        continue
                    fb = flow_bins[fk] = [0, 0, 0]
                f[CB], f[ACC] = b, fb
            fb = f[ACC]
            fb[0] += 1
            fb[1] += wirelen
            fb[2] += g
    if reader.packets == 0:
        raise PcapError(f"{pcap}: the capture holds no packets")
    res.linktype, res.snaplen = reader.linktype, reader.snaplen
    res.truncated, res.warnings = reader.truncated, reader.warnings + res.warnings
    res.packets, res.wire_bytes, res.captured_bytes = packets, wire, captured
    res.non_ip_packets, res.outside_window = non_ip, outside
    res.t_first, res.t_last = t0, last
    if res.other_flows:
        res.warnings.append(f"{res.other_flows} flows past the first {max_flows} are counted in the totals only")
    me, tie = _local_address(pair_bins, flows, local)
    res.local = addr(me) if me else (local or "")
    if tie:
        res.warnings.append(f"{addr(me)} and {addr(tie)} are in equally many frames: 'out' is taken to be what "
                            f"{addr(me)} sent (say which host captured with local=/--local)")
    elif local and me is None:
        res.warnings.append(f"no frame carries {local}: every frame counts as 'in'")
    _fold(res, pair_bins, me)
    res.flows = [_stats(k, flows[k], me) for k in order]
    _tls_versions(res)
    return res


def _local_address(pair_bins: dict, flows: dict, local: str | None) -> tuple[bytes | None, bytes | None]:
    """The capturing host's link address: the one given (a MAC, or an IP address its frames carry),
    or else the unicast address in the most frames; and the runner-up when it is in as many."""
    if local:
        text = local.lower()
        try:
            packed = socket.inet_pton(socket.AF_INET6 if ":" in text and text.count(":") != 5 else socket.AF_INET,
                                      text) if text.count(":") != 5 else None
        except OSError:
            packed = None
        if packed is None:
            return next((a for a, _, _ in pair_bins if addr(a) == text), None) or \
                next((d for _, d, _ in pair_bins if addr(d) == text), None), None
        return next((f[L2] for k, f in flows.items() if k[1] == packed), None), None
    seen: dict[bytes, int] = {}
    for (a, d, _), (pk, _, _) in pair_bins.items():
        seen[a] = seen.get(a, 0) + pk
        seen[d] = seen.get(d, 0) + pk
    ranked = sorted(((n, a) for a, n in seen.items() if a and a != BROADCAST and not (len(a) == 6 and a[0] & 1)),
                    reverse=True)
    if not ranked:
        return None, None
    tie = ranked[1][1] if len(ranked) > 1 and ranked[1][0] == ranked[0][0] else None
    return ranked[0][1], tie


def _fold(res: Throughput, pair_bins: dict, me: bytes | None) -> None:
    """Per-address bins into out/in bins and direction totals."""
    rows: dict[int, list[float]] = {}
    dirs = {"out": {"packets": 0, "wire_bytes": 0, "goodput_bytes": 0},
            "in": {"packets": 0, "wire_bytes": 0, "goodput_bytes": 0}}
    for (l2, _, b), (pk, by, gp) in pair_bins.items():
        row = rows.setdefault(b, [b, 0, 0, 0, 0, 0, 0])
        base = 1 if me is not None and l2 == me else 4
        d = dirs["out" if base == 1 else "in"]
        row[base] += pk
        row[base + 1] += by
        row[base + 2] += gp
        d["packets"] += pk
        d["wire_bytes"] += by
        d["goodput_bytes"] += gp
    n = max(rows) + 1 if rows else 0
    res.bins = [rows.get(i, [i, 0, 0, 0, 0, 0, 0]) for i in range(n)]
    res.directions = dirs


def _stats(key: tuple, f: list, me: bytes | None) -> FlowStats:
    proto, src, sport, dst, dport = key
    tls = None
    if f[TLS]:
        _tls_finish(f[TLS], f[HI] if f[HI] is not None else 0)
        tls = f[TLS].stats
    return FlowStats({6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}.get(proto, str(proto)), addr(src), sport,
                     addr(dst), dport, "out" if me is not None and f[L2] == me else "in", f[P], f[W], f[PL], f[G],
                     f[RS], f[RB], f[OS], f[OB], f[FIRST], f[LAST], *f[FLAGS], tls)


def _tls_versions(res: Throughput) -> None:
    """A connection's version is what either direction showed; then estimate the application bytes."""
    by_key = {(f.proto, f.src, f.sport, f.dst, f.dport): f for f in res.flows}
    for f in res.flows:
        if f.tls is None:
            continue
        if f.tls.version == "?":
            back = by_key.get((f.proto, f.dst, f.dport, f.src, f.sport))
            if back is not None and back.tls is not None:
                f.tls.version = back.tls.version
        overhead = TLS_OVERHEAD.get(f.tls.version, TLS_OVERHEAD["1.3"])
        f.tls.app_bytes_estimate = max(0, f.tls.body_bytes.get("ApplicationData", 0)
                                       - overhead * f.tls.records.get("ApplicationData", 0))
