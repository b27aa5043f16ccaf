"""What a sniffer reads at the start of a TCP payload: HTTP request/status lines and TLS record headers.

The one parser of these for the live sniffer (weblab sniff) and the experiments' pcap analysis.
Pure functions on bytes: no Scapy, no I/O.
"""
from __future__ import annotations

from typing import NamedTuple

TLS_CONTENT_TYPES = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "ApplicationData"}
HTTP_METHODS = ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH")
TLS_HEADER = 5  # content type, version (2), length (2)


class TlsHeader(NamedTuple):
    """A TLS record header: its content type name and the length of the record's body."""

    content_type: str
    length: int


def tls_header(payload: bytes) -> TlsHeader | None:
    """The TLS record header at the start of payload, or None if it does not start one."""
    if len(payload) >= TLS_HEADER and payload[0] in TLS_CONTENT_TYPES and payload[1] == 3:
        return TlsHeader(TLS_CONTENT_TYPES[payload[0]], int.from_bytes(payload[3:5], "big"))
    return None


def http_label(payload: bytes) -> str:
    """A request line, or a status line with its Content-Type, or '' for other bytes."""
    head = payload.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    first = lines[0].decode("latin-1", "replace")
    if first.startswith("HTTP/"):
        ctype = next((ln.split(b":", 1)[1].strip().decode("latin-1") for ln in lines[1:]
                      if ln.lower().startswith(b"content-type:")), "")
        return f"{first} ({ctype})" if ctype else first
    if first.split(" ", 1)[0] in HTTP_METHODS and "HTTP/" in first:
        return first
    return ""


def http_body(payload: bytes) -> bytes:
    """The bytes after the header block of an HTTP message that starts payload (b'' if none)."""
    return payload.partition(b"\r\n\r\n")[2]
