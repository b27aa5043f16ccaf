"""C26 mail-mx: mail for someone@foobar.com goes to the host the domain's MX record names (seen on the wire,
found in the mailbox); the mail host relays for nobody; without an MX record a sender falls back to the
domain's A record (RFC 5321 section 5.1), here the web entry point, which runs no MTA."""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments import plots
from experiments.base import Case, Experiment, read_lab_info, say
from experiments.capture import dns_answers, flag_letters, tcp_segments, wait_capture_ready
from experiments.registry import register
from experiments.verdict import Check, Figure, Verdict, gate, inconclusive

MAIL_HOST = "mail"
SMTP = 25
PCAP, DELIVER, RELAY, FALLBACK, DELIVERY, HOSTS = ("mail.pcap", "swaks-deliver.txt", "swaks-relay.txt",
                                                  "swaks-fallback.txt", "delivery.json", "hosts.json")
# the designs with a mail host, and the lab parameters that give it one (monitoring off: not needed here)
DESIGNS = {"distributed": {}, "secured": {"monitoring": False}, "scaled": {"monitoring": False},
           "one-server": {"mail": True}}


@register
class MailMx(Experiment):
    """Capture the client's link while swaks (which resolves the MX itself) sends to admin@foobar.com and
    tries to relay to another domain; find the message in the mail host's Maildir by its Message-ID; then,
    in a lab whose zone has no MX record, send again and watch where the delivery attempt goes."""

    slug = "mail-mx"
    claim = "C26"
    title = "Mail for @foobar.com goes to the host the MX record names"
    statement = ("A domain name gives its owner email addresses: mail for someone@foobar.com goes to the host its "
                 "MX record names.")
    design = "distributed"
    timing_sensitive = False  # where mail goes and what the server answers, not how fast
    defaults = {"design": "distributed", "to": "admin@foobar.com", "relay_to": "someone@example.org",
                "sender": "visitor@client.example", "wait_s": 10.0, "timeout_s": 5}
    checks = (
        gate("mx_answers", ">=", 1, "DNS answers to the client's MX question in the capture",
             fail="the capture holds no answer to an MX question: the sender's lookup was not seen"),
        Check("mx_exchange", "==", "mail.foobar.com", "the MX answer's exchange", cases=("mx",)),
        Check("smtp_to_mx_host", "==", True, "the SMTP delivery went to the MX host's address (its A record "
              "on the wire)", cases=("mx",)),
        Check("message_in_mailbox", "==", True, "the sent Message-ID is in {to}'s Maildir", cases=("mx",)),
        Check("dialogue_missing", "==", [], "steps of the SMTP dialogue (220, EHLO, MAIL, RCPT, DATA, 354, "
              "Message-ID, ., 250, QUIT) missing from the capture", cases=("mx",)),
        Check("relay_refused", "==", True, "relaying to {relay_to} refused (a 5xx answer to RCPT)", cases=("mx",)),
        Check("mx_records", "==", 0, "MX records in the answer", cases=("no-mx",)),
        Check("attempt_to_a_record", "==", True, "the delivery attempt went to the domain's A record (the "
              "entry point)", cases=("no-mx",)),
        Check("attempt_failed", "==", True, "the attempt failed there (no SMTP greeting: no MTA)",
              cases=("no-mx",)),
        Check("mailbox_without_message", "==", True, "the mail host's Maildir does not hold the message (nothing "
              "took the MX's place)", cases=("no-mx",)),
    )
    figures = {
        "mx.mx_exchange": Figure("the MX answer's exchange", abs_tol=0),
        "mx.delivery_s": Figure("send to mailbox", "s"),
        "no-mx.attempt_outcome": Figure("the fallback attempt's outcome", abs_tol=0),
    }
    summary = ("the MX answer named {mx.mx_exchange}, swaks delivered to {mx.smtp_server} and the message was in "
               "the Maildir {mx.delivery_s} after sending",
               "relaying to another domain got '{mx.relay_reply}'",
               "without the MX record the attempt went to {no-mx.attempt_to} and failed ({no-mx.attempt_outcome})")

    # --- cases -----------------------------------------------------------------------------------
    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        design = params.get("design", self.defaults["design"])
        if design not in DESIGNS:
            raise ValueError(f"{self.slug}: design {design!r} has no mail host; one of {', '.join(DESIGNS)}")
        lab = DESIGNS[design]
        return [Case("mx", design, {"params": dict(lab)} if lab else {}),
                Case("no-mx", design, {"params": {**lab, "mail_mx": False}})]

    def procedure(self, p: dict[str, Any]) -> str:
        return (f"tcpdump on the client's link (DNS and SMTP) while swaks sends to {p['to']} resolving the MX "
                f"itself (Net::DNS), then tries to relay to {p['relay_to']} through the mail host; the Message-ID "
                f"looked up in the mail host's Maildir (within {p['wait_s']:g} s); on the {p['design']} design, "
                f"then on the same design without the MX record (mail_mx=false)")

    # --- run --------------------------------------------------------------------------------------
    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        intf = lab.link_intfs("client", "s1")[0]
        user = params["to"].split("@")[0]
        msgid = f"<c26.{secrets.token_hex(8)}@client.example>"
        svc = lab.service(MAIL_HOST, "mail")
        (out / HOSTS).write_text(json.dumps({"mail": lab.ip(MAIL_HOST), "entry": lab.entry_ip,
                                             "message_id": msgid}, indent=2) + "\n")
        pcap = out / PCAP
        cap = lab.capture("client", intf, pcap, bpf=f"port 53 or tcp port {SMTP}")
        try:
            if not wait_capture_ready(pcap, 5):
                raise RuntimeError(f"tcpdump on client:{intf} did not start writing {pcap} within 5 s")
            t_sent = time.time()
            self.swaks(lab, out / (DELIVER if case.name == "mx" else FALLBACK), params, params["to"],
                       ["--header", f"Subject: C26 {case.name}", "--header", f"Message-Id: {msgid}",
                        "--body", "Mail for the domain goes where its MX record says."])
            if case.name == "mx":
                self.swaks(lab, out / RELAY, params, params["relay_to"],
                           ["--server", f"{MAIL_HOST}.{lab_zone(params)}", "--quit-after", "RCPT"])
            found, deadline = None, time.monotonic() + (params["wait_s"] if case.name == "mx" else 1.0)
            while found is None and time.monotonic() < deadline:
                found = svc.find(user, msgid)
                if found is None:
                    time.sleep(0.1)
            (out / DELIVERY).write_text(json.dumps({
                "message_id": msgid, "sent_at": t_sent, "found": found,
                "delivered_at": found["mtime"] if found else None,
                "mailbox": [m["message_id"] for m in svc.messages(user)]}, indent=2) + "\n")
        finally:
            cap.stop()
        try:
            (out / "mail.log").write_text(Path(svc.log).read_text(errors="replace"))
        except OSError:
            pass

    @staticmethod
    def swaks(lab: Any, path: Path, params: dict[str, Any], to: str, extra: list[str]) -> None:
        argv = ["swaks", "--to", to, "--from", params["sender"], "--helo", "client.example",
                "--timeout", f"{params['timeout_s']}s", *extra]
        say(" ".join(argv))
        res = lab.exec("client", argv, timeout=params["timeout_s"] * 3 + 10)
        path.write_text(f"$ {' '.join(argv)}\n(exit {res.returncode})\n{res.stdout}{res.stderr}")

    # --- analysis ---------------------------------------------------------------------------------
    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        hosts = json.loads((raw / HOSTS).read_text())
        delivery = json.loads((raw / DELIVERY).read_text())
        entry = read_lab_info(raw).get("entry_ip") or hosts["entry"]
        domain = params["to"].split("@", 1)[1].lower()
        answers = dns_answers(raw / PCAP)
        mx = [a for a in answers if a.qname == domain and a.qtype == "MX"]
        if not mx:
            return inconclusive(rule, f"no DNS answer to an MX question for {domain} in {PCAP}")
        first = mx[0]
        exchanges = [v.split()[1] for n, t, v in first.records if t == "MX"]
        a_of = {}  # name -> addresses its A answers gave, as the client saw them
        for a in answers:
            for n, t, v in a.records:
                if t == "A":
                    a_of.setdefault(n, []).append(v)
        sessions = smtp_sessions(raw / PCAP)
        m: dict[str, Any] = {"mx_answers": len(mx), "mx_frame": first.frame, "mx_rcode": first.rcode,
                             "mx_records": len(exchanges), "mx_answer": [f"{n} {t} {v}" for n, t, v in first.records],
                             "message_id": delivery["message_id"], "message_in_mailbox": delivery["found"] is not None,
                             "smtp_sessions": len(sessions)}
        notes = [f"MX answer (frame {first.frame} from {first.src}): " + ("; ".join(m["mx_answer"]) or
                                                                           f"no records, rcode {first.rcode}")]
        rows: list[list[Any]] = []
        if case.name == "mx":
            exchange = exchanges[0] if exchanges else ""
            deliver = next((s for s in sessions if s.rcpt_to(params["to"])), None)
            relay = next((s for s in sessions if s.rcpt_to(params["relay_to"])), None)
            mx_ips = a_of.get(exchange, [])
            reply = relay.reply_to_rcpt(params["relay_to"]) if relay else ""
            m.update({"mx_exchange": exchange, "mx_host_a": mx_ips,
                      "smtp_server": deliver.server if deliver else "",
                      "smtp_to_mx_host": bool(deliver) and deliver.server in mx_ips and deliver.server == hosts["mail"],
                      "dialogue_missing": dialogue_missing(deliver, params["to"], delivery["message_id"])
                      if deliver else ["the delivery's SMTP connection"],
                      "relay_reply": reply, "relay_refused": reply[:1] == "5",
                      "delivery_s": round(delivery["delivered_at"] - delivery["sent_at"], 3)
                      if delivery["found"] else None})
            rows += [[a.frame, f"DNS {a.qtype} {a.qname}", "; ".join(f"{n} {t} {v}" for n, t, v in a.records)
                      or f"(no records, rcode {a.rcode})"] for a in answers
                     if (a.qname, a.qtype) in ((domain, "MX"), (exchange, "A"))][:2]
            for s in (deliver, relay):
                if s is not None:
                    rows += [[f, s.label(d), text[:90]] for f, d, text in s.lines if not s.in_data(f)]
            if delivery["found"]:
                notes.append(f"found in {delivery['found']['file']}")
        else:
            first_try = sessions[0] if sessions else None
            apex = a_of.get(domain, [])
            m.update({"apex_a": apex, "attempt_to": first_try.server if first_try else "",
                      "attempt_to_a_record": bool(first_try) and first_try.server in apex and first_try.server == entry,
                      "attempt_outcome": first_try.outcome() if first_try else "no attempt",
                      "attempt_failed": bool(first_try) and not first_try.greeted(),
                      "mailbox_without_message": delivery["found"] is None, "mail_host": hosts["mail"]})
            rows += [[a.frame, f"DNS {a.qtype} {a.qname}", "; ".join(f"{n} {t} {v}" for n, t, v in a.records)
                      or f"(no records, rcode {a.rcode})"] for a in answers if a.qname == domain]
            for s in sessions:
                rows += [[f, f"TCP {flags}", f"{src} -> {dst}"] for f, flags, src, dst in s.packets]
        png = plots.table(rows, ["frame", "what", "content"], plots_dir / f"{case.name}-wire.png",
                          f"C26 {case.name}: the client's link (DNS, SMTP)")
        return self.verdict(case, m, params, [png], notes)


def lab_zone(params: dict[str, Any]) -> str:
    """The domain the mail is for (the lab's zone)."""
    return params["to"].split("@", 1)[1]


# --- the SMTP dialogue, from a capture (pure, unit-tested) ----------------------------------------------
@dataclass
class SmtpSession:
    """One TCP connection to port 25 as the capture shows it: its packets, and the dialogue's lines."""

    client: str
    sport: int
    server: str
    packets: list[tuple[int, str, str, str]]        # (frame, flags, src, dst)
    lines: list[tuple[int, str, str]]               # (frame, "C" or "S", text)
    data_frames: tuple[int, int] = (0, 0)           # frames of the message content (after 354, to ".")

    def label(self, d: str) -> str:
        return f"{self.client} -> {self.server}" if d == "C" else f"{self.server} -> {self.client}"

    def rcpt_to(self, address: str) -> bool:
        return any(d == "C" and t.upper().startswith("RCPT TO:") and address.lower() in t.lower()
                   for _, d, t in self.lines)

    def reply_to_rcpt(self, address: str) -> str:
        """The server's answer to RCPT TO:<address>."""
        asked = False
        for _, d, t in self.lines:
            if d == "C" and t.upper().startswith("RCPT TO:") and address.lower() in t.lower():
                asked = True
            elif asked and d == "S":
                return t
        return ""

    def greeted(self) -> bool:
        """Did the server send its 220 greeting?"""
        return any(d == "S" and t.startswith("220") for _, d, t in self.lines)

    def outcome(self) -> str:
        flags = [(src, f) for _, f, src, _ in self.packets]
        if any(src == self.server and "S" in f and "A" in f for src, f in flags):
            return "connected" + (", greeted" if self.greeted() else ", no greeting")
        if any(src == self.server and "R" in f for src, f in flags):
            return "connection refused (RST): nothing listens on port 25"
        return "no answer to the SYN"

    def in_data(self, frame: int) -> bool:
        lo, hi = self.data_frames
        return lo < frame < hi


def smtp_sessions(pcap: Path, port: int = SMTP) -> list[SmtpSession]:
    """Every TCP connection to port in the capture, in order of its first packet, with its lines per
    direction (retransmissions dropped)."""
    sessions: dict[tuple[str, int, str], SmtpSession] = {}
    seen: set[tuple[str, int, str, int, int]] = set()
    pending: dict[tuple[str, int, str, int], str] = {}
    for s in tcp_segments(pcap, port):
        key = (s.src, s.sport, s.dst) if s.dport == port else (s.dst, s.dport, s.src)
        sess = sessions.get(key)
        if sess is None:
            sess = sessions[key] = SmtpSession(key[0], key[1], key[2], [], [])
        sess.packets.append((s.frame, flag_letters(s.flags), s.src, s.dst))
        flow = (s.src, s.sport, s.dst, s.dport)
        if not s.payload or (*flow, s.seq) in seen:
            continue
        seen.add((*flow, s.seq))
        d = "C" if s.dport == port else "S"
        text = pending.pop(flow, "") + s.payload.decode("latin-1")
        *full, rest = text.split("\r\n")
        if rest:
            pending[flow] = rest
        sess.lines += [(s.frame, d, line) for line in full]
    for sess in sessions.values():
        start = next((f for f, d, t in sess.lines if d == "S" and t.startswith("354")), 0)
        end = next((f for f, d, t in sess.lines if start and f > start and d == "C" and t == "."), 0)
        sess.data_frames = (start, end)
    return sorted(sessions.values(), key=lambda x: x.packets[0][0])


STEPS = ("220 greeting", "EHLO", "MAIL FROM", "RCPT TO", "DATA", "354", "Message-ID header", "end of data (.)",
         "250 queued", "QUIT")


def dialogue_missing(sess: SmtpSession, to: str, message_id: str) -> list[str]:
    """The steps of a delivery (STEPS) not found in order in the session's lines."""
    tests = {
        "220 greeting": lambda d, t: d == "S" and t.startswith("220"),
        "EHLO": lambda d, t: d == "C" and t.upper().startswith(("EHLO", "HELO")),
        "MAIL FROM": lambda d, t: d == "C" and t.upper().startswith("MAIL FROM:"),
        "RCPT TO": lambda d, t: d == "C" and t.upper().startswith("RCPT TO:") and to.lower() in t.lower(),
        "DATA": lambda d, t: d == "C" and t.upper() == "DATA",
        "354": lambda d, t: d == "S" and t.startswith("354"),
        "Message-ID header": lambda d, t: d == "C" and t.lower().startswith("message-id:") and message_id in t,
        "end of data (.)": lambda d, t: d == "C" and t == ".",
        "250 queued": lambda d, t: d == "S" and t.startswith("250"),
        "QUIT": lambda d, t: d == "C" and t.upper() == "QUIT",
    }
    missing, i = [], 0
    for step in STEPS:
        at = next((j for j in range(i, len(sess.lines)) if tests[step](sess.lines[j][1], sess.lines[j][2])), None)
        if at is None:
            missing.append(step)
        else:
            i = at + 1
    return missing
