"""The one HTTP/TLS wire parser, and the live sniffer's lines built from it (no root, no capture)."""
from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from weblab import sniff
from weblab.core.wire import http_body, http_label, tls_header


def test_tls_headers():
    assert tls_header(bytes([23, 3, 3, 0x01, 0x00]) + b"x" * 256) == ("ApplicationData", 256)
    assert tls_header(bytes([22, 3, 1, 0, 5])) == ("Handshake", 5)
    assert tls_header(bytes([23, 2, 0, 0, 5])) is None        # not TLS 1.x
    assert tls_header(bytes([24, 3, 3, 0, 5])) is None        # heartbeat: not a type we name
    assert tls_header(b"\x17\x03") is None                    # too short for a header


def test_http_labels():
    assert http_label(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n") == "GET /login HTTP/1.1"
    assert http_label(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>") == "HTTP/1.1 200 OK (text/html)"
    assert http_label(b"HTTP/1.0 301 Moved\r\n\r\n") == "HTTP/1.0 301 Moved"
    assert http_label(b"GETTING warm\r\n") == "" and http_label(b"\x16\x03\x01") == ""
    assert http_body(b"POST / HTTP/1.1\r\n\r\nuser=a") == b"user=a" and http_body(b"no header end") == b""


def _pkt(payload: bytes):
    return Ether() / IP(src="10.0.1.10", dst="10.0.1.11") / TCP(sport=40000, dport=80) / payload


def test_sniff_lines_for_http_tls_and_grep():
    post = _pkt(b"POST /login HTTP/1.1\r\nHost: www\r\n\r\nusername=alice&password=wonderland")
    line = sniff.line_for(post, None)
    assert "10.0.1.10:40000 -> 10.0.1.11:80  HTTP POST /login HTTP/1.1  body: username=alice" in line
    hit = sniff.line_for(post, b"wonderland")
    assert "MATCH 'wonderland' at byte" in hit and "password=wonderland" in hit
    assert sniff.line_for(post, b"absent") is None
    tls = sniff.line_for(_pkt(bytes([23, 3, 3, 0, 40]) + b"\0" * 40), None)
    assert tls.endswith("TLS ApplicationData record, 40 bytes (encrypted)")
    assert sniff.line_for(_pkt(b"\x01\x02 opaque"), None) is None    # neither: silent
    assert sniff.line_for(Ether() / IP() / TCP(), None) is None       # no payload
