"""The packet-level throughput analysis on synthetic captures whose every byte is known."""
from __future__ import annotations

import csv
import struct

import pytest

from experiments import throughput
from experiments.capture import Pcap, PcapError, headers, tcp_events
from tests.unit.pcaps import A_IP, A_MAC, B_IP, B_MAC, T0, Conversation, frame, tls_record, write_pcap


def bulk(n: int = 100, size: int = 1448, step: float = 0.01) -> tuple[Conversation, int]:
    """A sends n segments of size bytes, B acks every second one; returns it and A's wire bytes."""
    c = Conversation(step=step).handshake()
    wire_a = len(c.records[0][1]) + len(c.records[2][1])
    for i in range(n):
        wire_a += c.a_sends(bytes(size))
        if i % 2:
            c.b_acks()
    return c, wire_a


def test_known_bytes_per_direction_flow_and_bin(tmp_path):
    c, wire_a = bulk()
    pcap = c.write(tmp_path / "bulk.pcap")
    total = sum(len(d) for _, d, _ in c.records)
    r = throughput.analyse(pcap, bin_s=0.1, local=B_MAC)
    assert r.packets == len(c.records) and r.wire_bytes == total and r.captured_bytes == total
    assert r.local == B_MAC
    assert r.directions["in"] == {"packets": 102, "wire_bytes": wire_a, "goodput_bytes": 100 * 1448}
    assert r.directions["out"]["wire_bytes"] == total - wire_a and r.directions["out"]["goodput_bytes"] == 0
    [ab] = r.select(src=A_IP)
    assert (ab.goodput_bytes, ab.payload_bytes, ab.retrans_segments, ab.ooo_segments) == (144800, 144800, 0, 0)
    assert (ab.syn, ab.fin, ab.direction, ab.dport) == (1, 0, "in", 5201)
    # bins: the sum of every bin is the total; rates are bytes * 8 / bin width
    assert sum(row[2] + row[5] for row in r.bins) == total
    times, bps = r.series(None, 1.0)
    assert times[0] == 0 and sum(bps) == pytest.approx(total * 8)
    t10, bps10 = r.series("in", 0.1, what="goodput")
    assert sum(x * 0.1 / 8 for x in bps10) == pytest.approx(144800)
    assert len(t10) == len(r.bins) == int(r.duration_s / 0.1) + 1


def test_direction_is_inferred_from_the_address_in_most_frames(tmp_path):
    c, wire_a = bulk(10)
    extra = frame("10.0.0.2", B_IP, 53, 5353, 1, smac="02:00:0a:00:00:02", dmac=B_MAC)  # a third host talks to B
    c._add(extra)
    r = throughput.analyse(c.write(tmp_path / "x.pcap"))
    assert r.local == B_MAC and r.directions["in"]["wire_bytes"] == wire_a + len(extra)
    assert throughput.analyse(tmp_path / "x.pcap", local=B_IP).local == B_MAC  # by its IP address too
    c.records.pop()  # two hosts only: each is in every frame, and the report says so
    r = throughput.analyse(c.write(tmp_path / "y.pcap"))
    assert any("equally many frames" in w for w in r.warnings)


def test_a_retransmission_counts_once_in_goodput(tmp_path):
    c = Conversation().handshake()
    c.a_sends(b"a" * 1000)
    c.a_sends(b"b" * 1000)
    c.a_sends(b"b" * 1000, at=1000)           # the second segment again
    c.a_sends(b"c" * 500)
    c.a_sends(b"x" * 800, at=2100)            # overlaps 400 old bytes, adds 400 new
    [f] = throughput.analyse(c.write(tmp_path / "r.pcap")).select(src=A_IP)
    assert f.payload_bytes == 4300 and f.goodput_bytes == 2900
    assert (f.retrans_segments, f.retrans_bytes, f.ooo_segments) == (2, 1400, 0)


def test_out_of_order_fills_the_gap_and_is_not_a_retransmission(tmp_path):
    c = Conversation().handshake()
    c.a_sends(b"a" * 1000)
    c.a_sends(b"c" * 1000, at=2000)            # the middle segment comes later
    c.a_sends(b"b" * 1000, at=1000)
    c.a_sends(b"b" * 1000, at=1000)            # and then once more: that one is a retransmission
    [f] = throughput.analyse(c.write(tmp_path / "o.pcap")).select(src=A_IP)
    assert f.goodput_bytes == 3000 and (f.ooo_segments, f.ooo_bytes) == (1, 1000)
    assert (f.retrans_segments, f.retrans_bytes) == (1, 1000)


def test_sequence_numbers_wrapping_past_2_32(tmp_path):
    c = Conversation(isn_a=2**32 - 3000).handshake()
    for _ in range(5):
        c.a_sends(bytes(1448))
    c.a_sends(bytes(1448), at=1448 * 3)        # a retransmission after the wrap
    [f] = throughput.analyse(c.write(tmp_path / "w.pcap")).select(src=A_IP)
    assert f.goodput_bytes == 5 * 1448 and f.retrans_bytes == 1448


def test_snaplen_limited_capture_counts_whole_frames_from_the_headers(tmp_path):
    c, wire_a = bulk(20)
    total = sum(len(d) for _, d, _ in c.records)
    r = throughput.analyse(c.write(tmp_path / "s.pcap", snaplen=96), local=B_IP)
    assert r.snaplen == 96 and r.wire_bytes == total and r.captured_bytes < total
    assert r.captured_bytes == sum(min(96, len(d)) for _, d, _ in c.records)
    assert r.directions["in"]["goodput_bytes"] == 20 * 1448 and r.directions["in"]["wire_bytes"] == wire_a


def test_super_segments_larger_than_the_mtu(tmp_path):
    """TSO/GSO: the host hands the link 64 KiB segments; and beyond 64 KiB the IP length reads 0."""
    c = Conversation().handshake()
    c.a_sends(bytes(65000))
    c.a_sends(bytes(65000))
    big = frame(A_IP, B_IP, c.sport, c.dport, c.isn_a + 1 + c.sent_a, "A", bytes(100), ip_len=0)
    hdr = len(big) - 100
    c.records.append((c.t, big[:128], hdr + 90000))   # snaplen-cut, its true length only in the record
    r = throughput.analyse(c.write(tmp_path / "tso.pcap"))
    [f] = r.select(src=A_IP)
    assert f.goodput_bytes == 2 * 65000 + 90000
    assert r.wire_bytes == sum(w for _, _, w in c.records)


def test_tls_records_split_across_segments_without_keys(tmp_path):
    c = Conversation(dport=443).handshake()
    hello = tls_record(22, 300)
    c.a_sends(hello)
    server = tls_record(22, 120) + tls_record(20, 1) + tls_record(23, 2000)   # a TLS 1.3 server flight
    for i in range(0, len(server), 700):
        c.b_sends(server[i:i + 700])
    client = tls_record(20, 1) + tls_record(23, 53)
    c.a_sends(client)
    app = tls_record(23, 1000 + 17) + tls_record(23, 16384 + 17)
    # segment edges inside a header (3 of its 5 bytes in one segment, 2 in the next) and inside bodies
    cuts = [1000, 1025, 1027, 9000, len(app)]
    prev = 0
    for cut in cuts:
        c.a_sends(app[prev:cut])
        prev = cut
    r = throughput.analyse(c.write(tmp_path / "tls.pcap"))
    [a] = r.select(src=A_IP)
    [b] = r.select(src=B_IP)
    assert a.tls.records == {"Handshake": 1, "ChangeCipherSpec": 1, "ApplicationData": 3}
    assert a.tls.header_bytes == 25 and a.tls.unparsed_bytes == 0
    assert a.tls.record_bytes == a.goodput_bytes == len(hello) + len(client) + len(app)
    assert b.tls.version == "1.3" and a.tls.version == "1.3"
    assert a.tls.app_bytes_estimate == (53 - 17) + 1000 + 16384
    assert b.tls.records == {"Handshake": 1, "ChangeCipherSpec": 1, "ApplicationData": 1}
    tls = r.tls()
    assert tls.header_bytes == 40 and tls.body_bytes["ApplicationData"] == 2000 + 53 + 1017 + 16401


def test_tls_framing_lost_past_the_snaplen_is_regained_at_a_segment_start(tmp_path):
    c = Conversation(dport=443).handshake()
    c.a_sends(tls_record(22, 200))
    c.a_sends(tls_record(23, 100) + tls_record(23, 100))    # the second header is past a 96-byte snaplen
    c.a_sends(tls_record(23, 500))
    c.a_sends(tls_record(23, 500))
    [f] = throughput.analyse(c.write(tmp_path / "t.pcap", snaplen=96)).select(src=A_IP)
    assert f.tls.records == {"Handshake": 1, "ApplicationData": 3}
    assert f.tls.unparsed_bytes == 105 and f.tls.resyncs == 1
    assert f.goodput_bytes == 205 + 210 + 1010


def test_a_capture_cut_mid_record_is_read_to_its_last_whole_packet(tmp_path):
    c, _ = bulk(10)
    whole = throughput.analyse(c.write(tmp_path / "whole.pcap"), local=B_MAC)
    for cut in (7, 500, len(c.records[-1][1]) + 16 + 3):   # in a body, in a body, in a record header
        r = throughput.analyse(c.write(tmp_path / f"cut{cut}.pcap", cut=cut), local=B_MAC)
        assert r.truncated and r.warnings and "last whole packet" in r.warnings[0]
        assert r.packets < whole.packets
    assert not whole.truncated and not whole.warnings


@pytest.mark.parametrize("content,message", [
    (None, "no such file"), (b"", "empty file"), (b"hello, not a capture\n" * 3, "not a pcap"),
])
def test_files_that_are_not_captures(tmp_path, content, message):
    path = tmp_path / "f.pcap"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PcapError, match=message):
        throughput.analyse(path)


def test_a_capture_without_packets(tmp_path):
    with pytest.raises(PcapError, match="no packets"):
        throughput.analyse(write_pcap(tmp_path / "h.pcap", []))


def test_pcapng_is_read_too(tmp_path):
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcapng
    c, wire_a = bulk(10)
    pkts = []
    for ts, data, _ in c.records:
        p = Ether(data)
        p.time = ts
        pkts.append(p)
    wrpcapng(str(tmp_path / "x.pcapng"), pkts)
    r = throughput.analyse(tmp_path / "x.pcapng", local=B_MAC)
    assert r.directions["in"]["wire_bytes"] == wire_a and r.directions["in"]["goodput_bytes"] == 14480


def test_non_ip_and_udp_frames_are_counted(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import ARP, Ether
    arp = bytes(Ether(src=A_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=A_IP, pdst=B_IP))
    udp = bytes(Ether(src=B_MAC, dst=A_MAC) / IP(src=B_IP, dst=A_IP) / UDP(sport=53, dport=5000) / (b"d" * 77))
    r = throughput.analyse(write_pcap(tmp_path / "u.pcap", [(T0, arp, len(arp)), (T0 + 0.01, udp, len(udp))]),
                           local=B_MAC)
    assert r.non_ip_packets == 1 and r.wire_bytes == len(arp) + len(udp)
    assert r.directions["in"]["wire_bytes"] == len(arp)
    [f] = r.select(proto="udp")
    assert f.goodput_bytes == 77 and f.direction == "out"


def test_window_keeps_only_packets_between_start_and_end(tmp_path):
    c, _ = bulk(100, step=0.01)
    pcap = c.write(tmp_path / "b.pcap")
    lo, hi = c.records[50][0], c.records[99][0]
    r = throughput.analyse(pcap, start=lo, end=hi)
    assert r.packets == 50 and r.outside_window == len(c.records) - 50
    assert r.wire_bytes == sum(len(d) for _, d, _ in c.records[50:100])


def test_flows_past_the_bound_stay_in_the_totals(tmp_path):
    recs = [(T0 + i * 0.001, frame(A_IP, B_IP, 40000 + i, 80, 1, "PA", bytes(100)), 0) for i in range(5)]
    recs = [(t, d, len(d)) for t, d, _ in recs]
    r = throughput.analyse(write_pcap(tmp_path / "m.pcap", recs), max_flows=2, max_flow_bins=1)
    assert len(r.flows) == 2 and r.other_flows == 3 and r.wire_bytes == sum(len(d) for _, d, _ in recs)
    assert not r.flow_bins_complete and any("flows past" in w for w in r.warnings)


def test_csv_rows_add_up(tmp_path):
    c, _ = bulk(30, step=0.05)
    r = throughput.analyse(c.write(tmp_path / "b.pcap"), bin_s=0.1)
    rows = list(csv.DictReader(open(r.write_csv(tmp_path / "out.csv"))))
    for width in ("0.1", "1"):
        alls = [x for x in rows if x["scope"] == "all" and x["bin_s"] == width]
        assert sum(int(x["wire_bytes"]) for x in alls) == r.wire_bytes
        flows = [x for x in rows if x["scope"] == "flow" and x["bin_s"] == width]
        assert sum(int(x["wire_bytes"]) for x in flows) == r.wire_bytes
        assert sum(int(x["goodput_bytes"]) for x in flows) == 30 * 1448
    first = next(x for x in rows if x["scope"] == "all" and x["bin_s"] == "0.1")
    assert float(first["wire_bits_per_s"]) == pytest.approx(int(first["wire_bytes"]) * 80)


def test_text_report_and_chart(tmp_path):
    c, _ = bulk(30, step=0.05)
    text = throughput.analyse(c.write(tmp_path / "b.pcap"), local=B_MAC).text()
    assert "goodput" in text and f"tcp {A_IP}:40000 > {B_IP}:5201" in text and "bits/s per" in text


@pytest.mark.parametrize("bin_s", [0.3, 0, 2, -1, 0.0001])
def test_bins_must_divide_a_second(bin_s):
    with pytest.raises(ValueError, match="divide one second"):
        throughput.check_bin(bin_s)


def test_one_reader_for_the_claims_too(tmp_path):
    """The segments other claims read come from the same streaming reader and header parser."""
    c = Conversation(dport=80).handshake()
    c.a_sends(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    c.b_sends(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html></html>")
    pcap = c.write(tmp_path / "h.pcap")
    kinds = [(e.kind, e.flags, e.label) for e in tcp_events(pcap)]
    assert kinds[:3] == [("SYN", "S", "SYN"), ("SYN-ACK", "SA", "SYN-ACK"), ("ACK", "A", "ACK")]
    assert kinds[3][2] == "GET / HTTP/1.1" and kinds[4][2] == "HTTP/1.1 200 OK (text/html)"
    reader = Pcap(pcap)
    assert sum(1 for _ in reader) == reader.packets == 5 and reader.linktype == 1
    h = headers(c.records[3][1], 1, len(c.records[3][1]))
    assert (h.sport, h.dport, h.flags, h.payload_len) == (40000, 80, 0x18, 27)


def test_headers_of_vlan_tagged_and_ipv6_frames():
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    v = bytes(Ether(src=A_MAC, dst=B_MAC) / Dot1Q(vlan=5) / IPv6(src="fd00::1", dst="fd00::2") /
              TCP(sport=1, dport=2, seq=7) / b"hello")
    h = headers(v, 1, len(v))
    assert (h.ip, h.proto, h.sport, h.dport, h.seq, h.payload_len) == (6, 6, 1, 2, 7, 5)
    assert struct.unpack("!H", v[12:14])[0] == 0x8100


# ---- the lab side: tcpdump's counts, the switch's port counters, the verb's bad input -----------------
def test_tcpdump_stats_count_what_it_never_wrote_as_lost():
    from weblab.tcpdump import tcpdump_stats
    text = ("tcpdump: listening on lb1-eth0, link-type EN10MB (Ethernet), snapshot length 128 bytes\n"
            "231329 packets captured\n232135 packets received by filter\n0 packets dropped by kernel\n")
    assert tcpdump_stats(text) == {"captured": 231329, "received": 232135, "dropped": 0, "unwritten": 806,
                                   "lost": 806}
    assert tcpdump_stats("1 packet captured\n1 packet received by filter\n3 packets dropped by kernel\n")["lost"] == 3
    assert tcpdump_stats("tcpdump: lb1-eth9: No such device exists\n") == {}


def test_switch_port_counters_from_ovs_ofctl():
    from weblab.core.errors import WeblabError
    from weblab.ovs import parse_port_stats
    text = ("OFPST_PORT reply (OF1.3) (xid=0x4): 1 ports\n"
            "  port  3: rx pkts=41131, bytes=3275418, drop=0, errs=0, frame=0, over=0, crc=0\n"
            "           tx pkts=191034, bytes=289155362, drop=2, errs=?, coll=0\n           duration=5.922s\n")
    assert parse_port_stats(text) == {"rx_packets": 41131, "rx_bytes": 3275418, "rx_dropped": 0, "rx_errors": 0,
                                      "tx_packets": 191034, "tx_bytes": 289155362, "tx_dropped": 2, "tx_errors": -1}
    with pytest.raises(WeblabError, match="unexpected"):
        parse_port_stats("ovs-ofctl: s9 is not a bridge or a socket")


@pytest.mark.parametrize("argv,message", [
    (["throughput"], "what to measure"),
    (["throughput", "lb-back", "--pcap", "x.pcap"], "not both"),
    (["throughput", "--pcap", "/nonexistent/x.pcap"], "no such file"),
    (["throughput", "--pcap", "{tmp}/empty.pcap"], "empty file"),
    (["throughput", "--pcap", "{tmp}/text.pcap"], "not a pcap"),
    (["throughput", "--pcap", "{tmp}/nopackets.pcap"], "holds no packets"),
    (["throughput", "--pcap", "{tmp}/nopackets.pcap", "--bin", "0.3"], "divide one second"),
])
def test_throughput_verb_bad_input_is_one_line(tmp_path, capsys, argv, message):
    from weblab import cli
    (tmp_path / "empty.pcap").write_bytes(b"")
    (tmp_path / "text.pcap").write_text("GET / HTTP/1.1\r\n" * 4)
    write_pcap(tmp_path / "nopackets.pcap", [])
    assert cli.main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


def test_throughput_verb_on_a_pcap_prints_and_writes_csv(tmp_path, capsys):
    from weblab import cli
    c, _ = bulk(40, step=0.02)
    pcap = c.write(tmp_path / "b.pcap", cut=100)
    assert cli.main(["throughput", "--pcap", str(pcap), "-o", str(tmp_path / "o.csv"), "--bin", "0.05",
                     "--local", B_IP]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "last whole packet" in out and "goodput" in out
    assert (tmp_path / "o.csv").read_text().startswith("scope,key,bin_s")


def test_live_throughput_needs_a_running_lab(tmp_path, capsys, monkeypatch):
    import os

    from weblab import cli
    from weblab.core import paths
    monkeypatch.setattr(paths, "RUN_ROOT", tmp_path / "run")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["throughput", "lb-back", "--duration", "1"]) == 2
    assert "no lab is running" in capsys.readouterr().err
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["throughput", "lb-back"]) == 2
    assert "needs root" in capsys.readouterr().err


def test_a_reused_port_starts_a_new_sequence_space(tmp_path):
    """wrk with a connection per request: a later connection may reuse a 5-tuple with a new ISN."""
    c = Conversation(dport=443).handshake()
    c.a_sends(tls_record(22, 200))
    c.a_sends(tls_record(23, 100))
    again = Conversation(dport=443, isn_a=2**31 + 12345, t=c.t + 1).handshake()
    again.a_sends(tls_record(22, 200))
    again.a_sends(tls_record(23, 300))
    [f] = throughput.analyse(write_pcap(tmp_path / "p.pcap", c.records + again.records)).select(src=A_IP)
    assert f.goodput_bytes == 2 * 205 + 105 + 305 and f.retrans_segments == 0 and f.syn == 2
    assert f.tls.records == {"Handshake": 2, "ApplicationData": 2} and f.tls.unparsed_bytes == 0
