"""The attack tools on crafted packets and loopback sockets (no root, no lab)."""
import base64
import io
import json
import socket
import threading

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from experiments.attacks import arpspoof, harvest, mitm, proxy
from experiments.attacks.events import EventLog, read_events
from experiments.attacks.guard import AddressGuard, GuardError
from experiments.testing import LocalHttpServer

LB = arpspoof.Station("lb1", "10.0.1.10", "02:00:0a:00:01:0a")
S1 = arpspoof.Station("server1", "10.0.1.11", "02:00:0a:00:01:0b")
ME = "02:00:0a:00:01:0c"
FORM = b"username=alice&password=wonder%20land"


def log_to(buf: io.StringIO) -> EventLog:
    return EventLog(buf)


def events(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


# --- the address guard ------------------------------------------------------------------------------
def test_guard_passes_lab_host_addresses_only():
    guard = AddressGuard(["10.0.0.0/24", "10.0.1.0/24"])
    assert guard.check("10.0.1.11") == "10.0.1.11"
    for bad in ("10.0.2.1", "192.168.1.1", "8.8.8.8", "127.0.0.1", "10.0.1.0", "10.0.1.255", "nonsense"):
        with pytest.raises(GuardError):
            guard.check(bad)


@pytest.mark.parametrize("nets", [[], ["0.0.0.0/0"], ["10.0.0.0/8"], ["8.8.8.0/24"], ["10.0.0.1/24"], ["x"]])
def test_guard_refuses_networks_that_are_not_a_lab(nets):
    with pytest.raises(GuardError):
        AddressGuard(nets)


def test_guard_wants_both_victims_and_the_attacker_on_one_link():
    guard = AddressGuard(["10.0.0.0/24", "10.0.1.0/24"])
    assert str(guard.same_network("10.0.1.12", LB.ip, S1.ip)) == "10.0.1.0/24"
    with pytest.raises(GuardError):
        guard.same_network("10.0.1.12", "10.0.0.100", S1.ip)


def test_tools_refuse_to_start_outside_a_lab_host(capsys):
    # Here, lo has 127.0.0.1: not a lab address, so nothing is sent and the exit status says refused.
    for main in (arpspoof.main, mitm.main):
        assert main(["--iface", "lo", "--lab-net", "10.0.1.0/24", "--victim", "a=10.0.1.10",
                     "--victim", "b=10.0.1.11", "--duration", "1"]) == 2
        assert "outside the lab networks" in capsys.readouterr().err
    assert arpspoof.main(["--iface", "lo", "--lab-net", "10.0.1.0/24", "--victim", "a=10.0.1.10",
                          "--victim", "b=10.0.1.11", "--duration", "3600"]) == 2
    assert "--duration" in capsys.readouterr().err


# --- ARP frames -------------------------------------------------------------------------------------
def test_poison_frames_tell_each_victim_the_other_is_at_the_attacker():
    to_lb, to_s1 = arpspoof.poison_frames(LB, S1, ME)
    for frame, victim, other in ((to_lb, LB, S1), (to_s1, S1, LB)):
        frame = Ether(bytes(frame))  # what goes on the wire
        assert (frame.src, frame.dst, frame.type) == (ME, victim.mac, 0x0806)
        arp = frame[ARP]
        assert (arp.op, arp.psrc, arp.hwsrc, arp.pdst, arp.hwdst) == (2, other.ip, ME, victim.ip, victim.mac)


def test_restore_frames_carry_the_true_bindings():
    to_lb, to_s1 = (Ether(bytes(f)) for f in arpspoof.restore_frames(LB, S1, ME))
    assert (to_lb[ARP].psrc, to_lb[ARP].hwsrc, to_lb.dst) == (S1.ip, S1.mac, LB.mac)
    assert (to_s1[ARP].psrc, to_s1[ARP].hwsrc, to_s1.dst) == (LB.ip, LB.mac, S1.mac)
    ask = Ether(bytes(arpspoof.who_has(S1.ip, ME, "10.0.1.12")))
    assert (ask.dst, ask[ARP].op, ask[ARP].pdst, ask[ARP].psrc) == ("ff:ff:ff:ff:ff:ff", 1, S1.ip, "10.0.1.12")


def test_spoofer_is_rate_limited_and_restores_after_it_stops():
    sent: list = []
    buf = io.StringIO()
    spoofer = arpspoof.Spoofer("eth0", LB, S1, ME, 10.0, log_to(buf), send=sent.append)
    spoofer.start()
    spoofer.stop_event.wait(0.35)
    spoofer.stop(rounds=3, interval=0)
    spoofer.stop(rounds=3, interval=0)  # idempotent: no second restore
    lies = [f for f in sent if f[0][ARP].hwsrc == ME]
    truths = [f for f in sent if f[0][ARP].hwsrc != ME]
    assert 2 <= len(lies) <= 6  # ~10 rounds/s for 0.35 s
    assert len(truths) == 3 and sent.index(truths[0]) > sent.index(lies[-1])
    names = [e["event"] for e in events(buf)]
    assert names[0] == "poison" and names[-2:] == ["poison_stopped", "restored"]
    with pytest.raises(GuardError):
        arpspoof.Spoofer("eth0", LB, S1, ME, 50.0, log_to(buf))


def test_restore_outlasts_the_neighbour_lock_time():
    assert (arpspoof.RESTORE_ROUNDS - 1) * arpspoof.RESTORE_INTERVAL > 1.0  # Linux locktime: 1 s


def test_sysctls_are_saved_set_and_restored(tmp_path):
    for key, value in (("net/ipv4/ip_forward", "0"), ("net/ipv4/conf/all/send_redirects", "1"),
                       ("net/ipv4/conf/eth0/send_redirects", "1")):
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_text(value + "\n")
    s = arpspoof.Sysctls("eth0", root=tmp_path)
    assert s.restore() == {}  # nothing applied: nothing written
    before = s.apply()
    assert before == {"net/ipv4/ip_forward": "0", "net/ipv4/conf/all/send_redirects": "1",
                      "net/ipv4/conf/eth0/send_redirects": "1"}
    assert s.read() == {"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/send_redirects": "0",
                        "net/ipv4/conf/eth0/send_redirects": "0"}
    assert s.restore() == before


# --- the harvester ----------------------------------------------------------------------------------
def test_harvester_finds_form_fields_basic_auth_and_grep():
    basic = base64.b64encode(b"bob:s3cret").decode()
    data = (b"POST /login HTTP/1.1\r\nHost: www.foobar.com\r\nAuthorization: Basic " + basic.encode() +
            b"\r\n\r\n" + FORM)
    found = {(m.kind, m.field, m.value) for m in harvest.find_credentials(data, b"wonder")}
    assert ("form", "username", "alice") in found and ("form", "password", "wonder land") in found
    assert ("basic", "bob", "s3cret") in found
    assert any(k == "grep" for k, _, _ in found)
    assert {m.field for m in harvest.secrets_of(harvest.find_credentials(data))} == {"password", "bob"}
    assert harvest.find_credentials(b"GET /index.css HTTP/1.1\r\n\r\n") == []


def test_harvester_reassembles_a_flow_and_reports_each_credential_once():
    hits = []
    h = harvest.Harvester(on_match=lambda flow, m, src: hits.append((flow, m.field, m.value)))
    flow = ("10.0.1.10", 40000, "10.0.1.11", 80)
    assert h.feed(flow, b"POST /login HTTP/1.1\r\n\r\nusername=alice&pass") == [
        harvest.Match("form", "username", "alice", 24)]
    h.feed(flow, b"word=wonderland")
    h.feed(flow, b"")  # an ACK
    h.feed(("10.0.1.11", 80, "10.0.1.10", 40000), b"HTTP/1.1 200 OK\r\n\r\n")
    h.feed(flow, b"&more=1")  # the same credentials again: not reported twice
    assert [(f, v) for _, f, v in hits] == [("username", "alice"), ("password", "wonderland")]
    # a proxy's whole message of the same flow is its own stream: no run-on with the wire's bytes
    h.feed(flow, b"POST /login HTTP/1.1\r\n\r\nusername=alice&password=wonderland", source="proxy")
    assert [v for _, f, v in hits if f == "password"] == ["wonderland", "wonderland"]


def test_wire_watch_reads_intercepted_segments_between_the_victims_only():
    buf = io.StringIO()
    h = harvest.Harvester()
    watch = harvest.WireWatch("eth0", ME, "10.0.1.12", h, log_to(buf), only={LB.ip, S1.ip})
    seg = Ether(dst=ME) / IP(src=LB.ip, dst=S1.ip) / TCP(sport=40000, dport=80, flags="PA") / (
        b"POST /login HTTP/1.1\r\nHost: x\r\n\r\n" + FORM)
    other = Ether(dst=ME) / IP(src="10.0.1.50", dst=S1.ip) / TCP(sport=1, dport=80) / b"password=nope"
    tls = Ether(dst=ME) / IP(src=LB.ip, dst=S1.ip) / TCP(sport=40001, dport=443) / (bytes([23, 3, 3, 0, 32]) + b"x" * 32)
    for pkt in (seg, other, tls):
        watch.on_packet(Ether(bytes(pkt)))
    assert watch.packets == 2 and len(watch.per_flow) == 2
    assert [m.value for _, m, _ in h.found if m.field == "password"] == ["wonder land"]
    logged = events(buf)
    assert [e["event"] for e in logged].count("flow") == 2
    assert any(e["event"] == "http" and e["line"].startswith("HTTP POST /login") for e in logged)
    assert harvest.intercepted_filter(ME, "10.0.1.12") == f"ether dst {ME} and ip and not dst host 10.0.1.12"
    assert harvest.describe(bytes([23, 3, 3, 0, 32])) == "TLS ApplicationData record, 32 bytes (encrypted)"


# --- the proxy's message handling -------------------------------------------------------------------
def _msg(raw: bytes, response: bool = True) -> proxy.Message:
    return proxy.read_message(io.BytesIO(raw), response=response)


def test_messages_are_read_by_their_framing():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    assert _msg(chunked).body == b"hello world"
    assert _msg(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").body == b"abc"
    assert _msg(b"HTTP/1.1 200 OK\r\n\r\nuntil close").body == b"until close"
    assert _msg(b"HTTP/1.1 304 Not Modified\r\n\r\n").body == b""
    req = _msg(b"POST /login HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab=cd", response=False)
    assert (req.start, req.get("host"), req.body) == ("POST /login HTTP/1.1", "a", b"ab=cd")
    with pytest.raises(proxy.HttpError):
        _msg(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    with pytest.raises(proxy.HttpError):
        _msg(b"")


def test_requests_are_forwarded_one_per_connection_uncompressed():
    req = _msg(b"GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n", False)
    out = proxy.prepare_request(req)
    assert out.get("Accept-Encoding") is None and out.get("Connection") == "close" and out.get("Host") == "a"
    assert out.encode().endswith(b"\r\n\r\n")


def test_rewrite_puts_a_marker_into_html_and_fixes_the_length():
    page = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n" \
           b"12\r\n<body>hello</body>\r\n0\r\n\r\n"
    out, tampered = proxy.rewrite_response(_msg(page), "EVIL")
    assert tampered and b"EVIL" in out.body and out.body.endswith(b"</body>")
    assert out.get("Content-Length") == str(len(out.body)) and out.get("Transfer-Encoding") is None
    css, tampered = proxy.rewrite_response(_msg(b"HTTP/1.1 200 OK\r\nContent-Type: text/css\r\n"
                                                b"Content-Length: 4\r\n\r\nbody"))
    assert not tampered and css.body == b"body"


def test_strip_keeps_the_client_on_plain_http():
    body = b'<a href="https://www.foobar.com/x">x</a>'
    resp = _msg(b"HTTP/1.1 301 Moved\r\nLocation: https://www.foobar.com/login\r\n"
                b"Strict-Transport-Security: max-age=31536000\r\nSet-Cookie: sid=1; Secure; HttpOnly\r\n"
                b"Content-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    out, done = proxy.strip_response(resp)
    assert set(done) == {"hsts", "redirect", "secure-cookie", "links"}
    assert out.get("Location") == "http://www.foobar.com/login"
    assert out.get("Strict-Transport-Security") is None
    assert out.get("Set-Cookie") == "sid=1; HttpOnly"
    assert b"https://" not in out.body and out.get("Content-Length") == str(len(out.body))


def test_nft_redirect_names_its_own_table_and_only_the_victims():
    script = proxy.nft_ruleset("weblab_attack_42", "attacker-eth0", ["10.0.0.100", "10.0.0.10"], 80, 40123)
    assert "table ip weblab_attack_42 {" in script and "type nat hook prerouting priority dstnat" in script
    assert ('iifname "attacker-eth0" ip saddr { 10.0.0.100, 10.0.0.10 } ip daddr { 10.0.0.100, 10.0.0.10 } '
            'tcp dport 80 redirect to :40123') in script
    assert proxy.nft_table(7) == "weblab_attack_7"


def test_rewrite_proxy_relays_a_login_and_tampers_with_the_page():
    server = LocalHttpServer().start()
    buf = io.StringIO()
    h = harvest.Harvester()
    px = proxy.Proxy("rewrite", "127.0.0.1", 0, AddressGuard(["127.0.0.0/16"]), log_to(buf), h, "EVIL")
    px.upstream_port = server.port  # the real site, here on loopback
    mine, theirs = socket.socketpair()
    try:
        t = threading.Thread(target=px._relay, args=(theirs, "10.0.0.100:5000", "127.0.0.1", 80, ("10.0.0.100", 5000)))
        t.start()
        mine.sendall(b"GET /?" + FORM + b" HTTP/1.1\r\nHost: www.foobar.com\r\nAccept-Encoding: gzip\r\n\r\n")
        t.join(timeout=10)
        theirs.close()  # what exchange() does after the relay
        mine.settimeout(5)
        reply = mine.makefile("rb").read()
    finally:
        mine.close()
        theirs.close()
        server.stop()
        px.sock.close()
    assert reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200")
    assert b"EVIL" in reply and b"hello" in reply
    assert [m.value for _, m, _ in h.found if m.field == "password"] == ["wonder land"]
    logged = {e["event"]: e for e in events(buf)}
    assert logged["response"]["tampered"] is True and logged["request"]["credentials"]


def test_event_log_round_trips_and_skips_a_torn_line(tmp_path):
    path = tmp_path / "e.jsonl"
    with open(path, "w") as f:
        log = EventLog(f)
        log("poison", round=1)
        f.write('{"t": 1, "event": "cut')
    assert [e["event"] for e in read_events(path)] == ["poison"]
