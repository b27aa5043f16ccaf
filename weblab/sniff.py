"""`weblab sniff LINK`: print the HTTP requests and TLS records crossing a link, as they pass.

Runs inside the host at one end of the link (`python -m weblab.sniff --iface IF`), with Scapy.
A security demo: on the load balancer's backend link with TLS terminated at the load balancer, a
login's password shows in clear; on the client link, only TLS records.
"""
from __future__ import annotations

import argparse
import sys
import time

from weblab.core.wire import http_body, http_label, tls_header


def printable(data: bytes) -> str:
    """Bytes as one line of text: what is not printable (newlines, compressed bodies) shown as '.'."""
    return "".join(c if c.isprintable() else "." for c in data.decode(errors="replace"))


def describe(payload: bytes) -> str | None:
    """One line for an HTTP request/response or TLS record at the start of a TCP payload."""
    label = http_label(payload)
    if label:
        body = http_body(payload)
        return f"HTTP {label}" + (f"  body: {printable(body[:200])}" if body else "")
    header = tls_header(payload)
    if header:
        encrypted = " (encrypted)" if header.content_type == "ApplicationData" else ""
        return f"TLS {header.content_type} record, {header.length} bytes{encrypted}"
    return None


def line_for(pkt, grep: bytes | None) -> str | None:
    """The printed line for a packet, or None to stay silent."""
    from scapy.layers.inet import IP, TCP
    if IP not in pkt or TCP not in pkt:
        return None
    payload = bytes(pkt[TCP].payload)
    if not payload:
        return None
    what = describe(payload)
    if grep is not None:
        if grep not in payload:
            return None
        at = payload.index(grep)
        what = (what or "TCP data") + f"  MATCH {grep.decode(errors='replace')!r} at byte {at}: " \
            f"...{printable(payload[max(0, at - 40):at + len(grep) + 20])}..."
    if what is None:
        return None
    stamp = time.strftime("%H:%M:%S", time.localtime(float(pkt.time))) + f".{int(pkt.time * 1000) % 1000:03d}"
    return f"{stamp} {pkt[IP].src}:{pkt[TCP].sport} -> {pkt[IP].dst}:{pkt[TCP].dport}  {what}"


def argv(intf: str, grep: str | None = None, count: int | None = None, duration: float | None = None) -> list[str]:
    """The command line that runs this sniffer on intf (inside the host at the link's end)."""
    out = [sys.executable, "-m", "weblab.sniff", "--iface", intf]
    if grep:
        out += ["--grep", grep]
    if count:
        out += ["--count", str(count)]
    if duration:
        out += ["--duration", str(duration)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m weblab.sniff")
    ap.add_argument("--iface", required=True)
    ap.add_argument("--grep", help="print only packets whose payload holds this text")
    ap.add_argument("--count", type=int, default=0, help="stop after this many printed packets")
    ap.add_argument("--duration", type=float, default=0, help="stop after this many seconds")
    args = ap.parse_args(argv)
    from scapy.all import conf, sniff
    conf.verb = 0
    grep = args.grep.encode() if args.grep else None
    printed = 0

    def on_packet(pkt) -> bool:
        nonlocal printed
        text = line_for(pkt, grep)
        if text:
            print(text, flush=True)
            printed += 1
        return bool(args.count) and printed >= args.count

    print(f"sniffing {args.iface} (TCP payloads{'; matching ' + repr(args.grep) if grep else ''}) ...",
          file=sys.stderr, flush=True)
    sniff(iface=args.iface, filter="tcp", store=False, prn=None, stop_filter=on_packet,
          timeout=args.duration or None)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
