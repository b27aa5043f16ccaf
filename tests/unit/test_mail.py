"""C26 mail: the rendered Postfix configuration (and Postfix's own check of it), the zone's MX and SPF,
the mail host in the designs, and the mail-mx verdict on synthetic captures."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hostapps.base import HostHandle
from hostapps.dns import Dns
from hostapps.mail import Mail, read_maildir
from tests.unit.pcaps import T0, frame, write_pcap
from tests.unit.raw_data import new_case, write_cpu
from weblab.core.errors import WeblabError

CLIENT, DNS_IP, MAIL_IP, ENTRY = "10.0.0.100", "10.0.0.2", "10.0.0.25", "10.0.0.10"
MSGID = "<c26.0123456789abcdef@client.example>"


def mail_service(tmp_path: Path, **opts) -> Mail:
    return Mail(HostHandle("mail", pid=os.getpid(), ips=[MAIL_IP]), tmp_path / "mail",
                domain="foobar.com", hostname="mail.foobar.com", **opts)


def settings(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", " ")) and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


# --- the rendered Postfix configuration ----------------------------------------------------------------
def test_main_cf_names_the_host_keeps_everything_in_the_run_dir_and_relays_for_nobody(tmp_path):
    svc = mail_service(tmp_path)
    svc.dir.mkdir()
    svc.render()
    cf = settings(svc.main_cf)
    assert cf["myhostname"] == "mail.foobar.com"  # hosts share one hostname: never the machine's
    for key in ("config_directory", "queue_directory", "data_directory", "virtual_mailbox_base", "maillog_file"):
        assert cf[key].startswith(str(svc.dir)), key
    assert cf["virtual_mailbox_domains"] == "foobar.com" and cf["mydestination"] == ""
    assert cf["mynetworks"] == "127.0.0.0/8"  # the client network is not trusted to relay
    assert cf["smtpd_relay_restrictions"] == "permit_mynetworks, reject_unauth_destination"
    assert (svc.etc / "mailboxes.map").read_text().splitlines() == [
        "admin@foobar.com foobar.com/admin/", "postmaster@foobar.com foobar.com/postmaster/",
        "webmaster@foobar.com foobar.com/webmaster/"]  # trailing slash: Maildir


def test_master_cf_listens_on_the_port_and_chroots_nothing(tmp_path):
    svc = mail_service(tmp_path, port=2525)
    svc.dir.mkdir()
    svc.render()
    rows = [l.split() for l in svc.master_cf.read_text().splitlines() if l and not l.startswith("#")]
    assert ["2525", "inet", "n", "-", "n", "-", "-", "smtpd"] in rows
    assert all(r[4] == "n" for r in rows)
    assert {"virtual", "qmgr", "cleanup", "postlog"} <= {r[0] for r in rows}


def test_master_runs_in_the_foreground_with_the_rendered_config(tmp_path):
    svc = mail_service(tmp_path)
    argv = svc.argv()
    assert argv[0].endswith("/master") and argv[1:] == ["-c", str(svc.etc), "-s"]  # no -w: no fork
    assert svc.check_argv() == ["postfix", "-c", str(svc.etc), "check"]


def test_bad_mailbox_names_are_an_early_error(tmp_path):
    with pytest.raises(WeblabError, match="mailbox names"):
        mail_service(tmp_path, mailboxes=["Admin Root"])
    with pytest.raises(WeblabError, match="unknown option"):
        mail_service(tmp_path, relay=True)


@pytest.mark.skipif(shutil.which("postfix") is None or os.geteuid() != 0 or shutil.which("mnexec") is None,
                    reason="postfix check needs Postfix (package postfix), root and mnexec")
def test_rendered_config_passes_postfix_check(tmp_path):
    svc = mail_service(tmp_path)
    svc.configure()  # renders, then `postfix -c DIR check` (raises on failure); creates the queue dirs
    assert (svc.dir / "queue" / "maildrop").is_dir()
    assert "warning" not in (svc.log.read_text() if svc.log.exists() else "")
    res = subprocess.run(["postconf", "-c", str(svc.etc), "-h", "myhostname", "queue_directory"],
                         capture_output=True, text=True, timeout=10)
    assert res.stdout.split() == ["mail.foobar.com", str(svc.dir / "queue")]
    # a broken draft fails the same check
    draft = tmp_path / "draft.cf"
    draft.write_text(svc.main_cf.read_text().replace("mail_owner = postfix", "mail_owner = nosuchuser"))
    [check] = svc.check_file_argv(svc.main_cf, draft)
    assert subprocess.run(check, capture_output=True, timeout=20).returncode != 0


def test_messages_are_read_from_the_maildir_and_found_by_message_id(tmp_path):
    box = tmp_path / "admin"
    (box / "new").mkdir(parents=True)
    (box / "cur").mkdir()
    (box / "new" / "1.x").write_bytes(f"Message-Id: {MSGID}\r\nSubject: hi\r\nFrom: a@b\r\n\r\nbody\r\n".encode())
    (box / "cur" / "0.x:2,S").write_bytes(b"Message-Id: <old@x>\r\nSubject: old\r\n\r\n")
    os.utime(box / "cur" / "0.x:2,S", (T0, T0))
    msgs = read_maildir(box)
    assert [m["subject"] for m in msgs] == ["old", "hi"]
    svc = mail_service(tmp_path)
    svc.dir.mkdir()
    shutil.copytree(box, svc.maildir("admin"))
    assert svc.find("admin", MSGID.strip("<>"))["subject"] == "hi"
    assert svc.find("admin", "<nope@x>") is None
    with pytest.raises(WeblabError, match="no mailbox"):
        svc.messages("bob")


# --- the zone --------------------------------------------------------------------------------------------
def zone_lines(tmp_path, **opts):
    svc = Dns(HostHandle("dns", pid=1, ips=[DNS_IP]), tmp_path, apex=ENTRY,
              a_records={"mail": MAIL_IP, "lb1": ENTRY}, **opts)
    svc.render()
    return svc, [l.split(None, 3) for l in svc.zonefile.read_text().splitlines() if l and not l.startswith(";")]


def test_zone_has_mx_mail_a_and_spf(tmp_path):
    svc, lines = zone_lines(tmp_path, mx=[[10, "mail"]], apex_txt=["v=spf1 mx -all"])
    assert ["@", "IN", "MX", "10 mail.foobar.com."] in lines
    assert ["mail", "IN", "A", MAIL_IP] in lines
    assert ["@", "IN", "TXT", '"v=spf1 mx -all"'] in lines
    if shutil.which("named-checkzone"):
        res = subprocess.run(["named-checkzone", "foobar.com", str(svc.zonefile)], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout


def test_zone_without_mx_has_none(tmp_path):
    _, lines = zone_lines(tmp_path)
    assert not any(l[2:3] == ["MX"] for l in lines)


# --- the designs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("design,params", [("distributed", {}), ("secured", {}), ("scaled", {}),
                                           ("one-server", {"mail": "true"})])
def test_mail_host_on_the_client_network_with_mx_and_a_firewall_hole_for_smtp(design, params):
    from controllers.policy import parse_policy
    from topologies import DESIGNS
    from weblab.lab import service_defaults
    t = DESIGNS[design](**DESIGNS[design].resolve_params(params))
    assert t.addresses_of("mail") == ["10.0.0.25"] and t.role("mail") == "mail"
    assert len(set(sum(t.addresses.values(), []))) == len(sum(t.addresses.values(), []))  # no address twice
    dns = next(s for s in t.services if s.kind == "dns").options
    assert dns["mx"] == [[10, "mail"]] and dns["apex_txt"] == ["v=spf1 mx -all"]
    spec = t.service_spec("mail", "mail")
    assert spec.options["hostname"] == "mail.foobar.com" and spec.options["port"] == 25
    policy = parse_policy({**t.policy_document(service_defaults()), "firewall": True})  # on or off, the rule is there
    assert policy.admits("10.0.0.100", "10.0.0.25", "tcp", 25)
    assert not policy.admits("10.0.0.100", "10.0.0.25", "tcp", 587)
    if "lb1" in t.hosts():
        assert not policy.admits("10.0.0.100", t.addresses_of("lb1")[0], "tcp", 25)


def test_mail_is_optional_and_mx_can_be_left_out():
    from topologies.distributed import Distributed
    from topologies.one_server import OneServer
    assert "mail" not in OneServer().hosts()
    assert "mail" not in Distributed(mail="false").hosts()
    t = Distributed(mail_mx="false")
    dns = next(s for s in t.services if s.kind == "dns").options
    assert "mail" in t.hosts() and "mx" not in dns
    with pytest.raises(ValueError, match="mail"):
        Distributed(mail="maybe")


# --- the verdict, on synthetic captures ------------------------------------------------------------------
def dns_frames(qtype: str, qname: str, answers: list) -> list[bytes]:
    from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRMX
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    rrs = [DNSRRMX(rrname=n, preference=int(v.split()[0]), exchange=v.split()[1], ttl=60) if t == "MX"
           else DNSRR(rrname=n, type=t, rdata=v, ttl=60) for n, t, v in answers]
    q = DNS(id=9, rd=1, qd=DNSQR(qname=qname, qtype=qtype))
    r = DNS(id=9, qr=1, aa=1, rd=1, qd=DNSQR(qname=qname, qtype=qtype), an=rrs or [])
    return [bytes(Ether() / IP(src=CLIENT, dst=DNS_IP) / UDP(sport=41000, dport=53) / q),
            bytes(Ether() / IP(src=DNS_IP, dst=CLIENT) / UDP(sport=53, dport=41000) / r)]


class Smtp:
    """A client -> server SMTP conversation, one line (or block) per segment."""

    def __init__(self, server: str, sport: int):
        self.server, self.sport, self.frames = server, sport, []
        self.c, self.s = 1000, 5000

    def syn(self, answer: str = "SA") -> "Smtp":
        self.frames.append(frame(CLIENT, self.server, self.sport, 25, self.c, "S"))
        if answer:
            self.frames.append(frame(self.server, CLIENT, 25, self.sport, self.s, answer, ack=self.c + 1))
        self.c += 1
        self.s += 1
        return self

    def say(self, who: str, text: str) -> "Smtp":
        data = text.encode()
        if who == "C":
            self.frames.append(frame(CLIENT, self.server, self.sport, 25, self.c, "PA", data))
            self.c += len(data)
        else:
            self.frames.append(frame(self.server, CLIENT, 25, self.sport, self.s, "PA", data))
            self.s += len(data)
        return self


def delivery(server: str = MAIL_IP, msgid: str = MSGID, to: str = "admin@foobar.com") -> Smtp:
    s = Smtp(server, 42000).syn()
    for who, text in [("S", "220 mail.foobar.com ESMTP\r\n"), ("C", "EHLO client.example\r\n"),
                      ("S", "250-mail.foobar.com\r\n250 8BITMIME\r\n"), ("C", "MAIL FROM:<visitor@client.example>\r\n"),
                      ("S", "250 2.1.0 Ok\r\n"), ("C", f"RCPT TO:<{to}>\r\n"), ("S", "250 2.1.5 Ok\r\n"),
                      ("C", "DATA\r\n"), ("S", "354 End data with <CR><LF>.<CR><LF>\r\n"),
                      ("C", f"Subject: C26 mx\r\nMessage-Id: {msgid}\r\n\r\nQUIT\r\n"), ("C", ".\r\n"),
                      ("S", "250 2.0.0 Ok: queued as ABC\r\n"), ("C", "QUIT\r\n"), ("S", "221 2.0.0 Bye\r\n")]:
        s.say(who, text)
    return s


def relay(reply: str = "554 5.7.1 <someone@example.org>: Relay access denied") -> Smtp:
    s = Smtp(MAIL_IP, 42001).syn()
    for who, text in [("S", "220 mail.foobar.com ESMTP\r\n"), ("C", "EHLO client.example\r\n"),
                      ("S", "250 mail.foobar.com\r\n"), ("C", "MAIL FROM:<visitor@client.example>\r\n"),
                      ("S", "250 2.1.0 Ok\r\n"), ("C", "RCPT TO:<someone@example.org>\r\n"), ("S", reply + "\r\n"),
                      ("C", "QUIT\r\n")]:
        s.say(who, text)
    return s


def mx_run(tmp_path, *, mx=("10 mail.foobar.com",), server=MAIL_IP, found=True, relay_reply=None, msgid=MSGID):
    exp, raw, case = new_case(tmp_path, "mail-mx", "mx", entry_ip=ENTRY)
    frames = dns_frames("MX", "foobar.com", [("foobar.com.", "MX", v) for v in mx])
    frames += dns_frames("A", "mail.foobar.com", [("mail.foobar.com.", "A", MAIL_IP)])
    frames += delivery(server, msgid).frames + relay(*(() if relay_reply is None else (relay_reply,))).frames
    write_pcap(case / "mail.pcap", [(T0 + i * 0.001, f, len(f)) for i, f in enumerate(frames)])
    (case / "hosts.json").write_text(json.dumps({"mail": MAIL_IP, "entry": ENTRY, "message_id": MSGID}))
    (case / "delivery.json").write_text(json.dumps({
        "message_id": MSGID, "sent_at": T0, "delivered_at": T0 + 0.2 if found else None,
        "found": {"file": "/run/x/new/1", "message_id": MSGID, "mtime": T0 + 0.2} if found else None, "mailbox": []}))
    return exp, raw, case


def no_mx_run(tmp_path, answer: str = "R", found=False, tmp_case=None):
    exp, raw, case = new_case(tmp_path, "mail-mx", "no-mx", entry_ip=ENTRY)
    frames = dns_frames("MX", "foobar.com", [])
    frames += dns_frames("A", "foobar.com", [("foobar.com.", "A", ENTRY)])
    s = Smtp(ENTRY, 43000).syn(answer)
    if answer == "SA":
        s.say("S", "220 somebody ESMTP\r\n")
    frames += s.frames
    write_pcap(case / "mail.pcap", [(T0 + i * 0.001, f, len(f)) for i, f in enumerate(frames)])
    (case / "hosts.json").write_text(json.dumps({"mail": MAIL_IP, "entry": ENTRY, "message_id": MSGID}))
    (case / "delivery.json").write_text(json.dumps({
        "message_id": MSGID, "sent_at": T0, "delivered_at": T0 if found else None,
        "found": {"file": "x", "mtime": T0} if found else None, "mailbox": []}))
    return exp, raw, case


def test_supported_with_every_piece_of_evidence_in_both_cases(tmp_path):
    mx_run(tmp_path)
    exp, raw, _ = no_mx_run(tmp_path)  # the same run: both cases
    v = exp.analyse(raw)
    assert v.verdict == "supported", v.reasons
    m = v.measured
    assert m["mx.mx_exchange"] == "mail.foobar.com" and m["mx.smtp_server"] == MAIL_IP
    assert m["mx.dialogue_missing"] == [] and m["mx.relay_refused"] is True
    assert m["mx.relay_reply"].startswith("554 5.7.1") and m["mx.delivery_s"] == pytest.approx(0.2)
    assert m["no-mx.attempt_to"] == ENTRY
    for words in ("mail.foobar.com", "Relay access denied", f"went to {ENTRY}", "connection refused"):
        assert words in v.summary, v.summary


@pytest.mark.parametrize("change,key", [
    ({"mx": ("10 www.foobar.com",)}, "mx_exchange"),
    ({"found": False}, "message_in_mailbox"),
    ({"relay_reply": "250 2.1.5 Ok"}, "relay_refused"),                  # an open relay
    ({"server": "10.0.0.77"}, "smtp_to_mx_host"),                        # delivered elsewhere
    ({"msgid": "<other@client.example>"}, "dialogue_missing"),           # the sent Message-ID not on the wire
])
def test_mx_case_refuted_when_one_piece_fails(tmp_path, change, key):
    exp, raw, _ = mx_run(tmp_path, **change)
    v = exp.analyse(raw)
    assert v.verdict == "refuted", v.reasons
    good = {"mx_exchange": "mail.foobar.com", "message_in_mailbox": True, "relay_refused": True,
            "smtp_to_mx_host": True, "dialogue_missing": []}
    assert v.measured[key] != good[key]
    linked = {"mx_exchange": "smtp_to_mx_host"}.get(key)  # a different MX also means a different MX host
    others = {k: v.measured[k] for k in good if k not in (key, linked)}
    assert others == {k: g for k, g in good.items() if k not in (key, linked)}  # only the broken piece fails


def test_no_mx_case_supported_when_the_attempt_goes_to_the_a_record_and_fails(tmp_path):
    for answer, outcome in (("R", "connection refused"), ("", "no answer")):
        exp, raw, _ = no_mx_run(tmp_path / answer, answer)
        v = exp.analyse(raw)
        assert v.verdict == "supported", v.reasons
        assert v.measured["attempt_to"] == ENTRY and v.measured["mx_records"] == 0
        assert v.measured["attempt_outcome"].startswith(outcome)


def test_no_mx_case_refuted_when_an_mta_answers_there_or_the_mail_arrives(tmp_path):
    exp, raw, _ = no_mx_run(tmp_path / "a", "SA")
    assert exp.analyse(raw).verdict == "refuted"
    exp, raw, _ = no_mx_run(tmp_path / "b", "R", found=True)
    assert exp.analyse(raw).verdict == "refuted"


def test_inconclusive_without_the_mx_lookup_on_the_wire_even_on_a_busy_machine(tmp_path):
    exp, raw, case = mx_run(tmp_path)
    write_pcap(case / "mail.pcap", [(T0, f, len(f)) for f in delivery().frames])
    assert exp.analyse(raw).verdict == "inconclusive"
    exp, raw, case = mx_run(tmp_path / "busy")
    write_cpu(case, T0, T0 + 5, 1.0)  # where mail goes does not depend on a busy machine
    assert exp.analyse(raw).verdict == "supported"


def test_cases_follow_the_design_parameter():
    from experiments import registry
    exp = registry.get("mail-mx")
    cases = exp.all_cases(exp.params({"design": "one-server"}))
    assert [(c.name, c.design, c.lab_params) for c in cases] == [
        ("mx", "one-server", {"params": {"mail": True}}),
        ("no-mx", "one-server", {"params": {"mail": True, "mail_mx": False}})]
    with pytest.raises(ValueError, match="no mail host"):
        exp.all_cases(exp.params({"design": "nowhere"}))


# --- weblab mail: bad input before any lab is asked ------------------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["mail", "send", "--to", "admin", "--subject", "x"], "is not an address"),
    (["mail", "send", "--to", "admin@foobar.com", "--subject", "x", "--from", "me"], "is not an address"),
])
def test_mail_send_refuses_bad_addresses_with_one_line(argv, words, capsys, monkeypatch):
    from weblab import cli
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # the address is checked before root is asked for
    assert cli.main(argv) != 0
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_mailbox_names_and_domains_are_checked():
    from weblab import mail

    class Lab:
        def hosts(self):
            return ["client", "mail"]

        def service_dir(self, host, kind):
            return Path("/nonexistent")
    with pytest.raises(WeblabError, match="no mailbox 'bob'"):
        mail.mailbox(Lab(), "bob")
    with pytest.raises(WeblabError, match="@foobar.com only"):
        mail.mailbox(Lab(), "admin@example.org")
    assert mail.mailbox(Lab(), "admin@foobar.com") == (Path("/nonexistent/mailboxes/foobar.com/admin"), [])
