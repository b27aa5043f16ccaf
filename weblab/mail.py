"""`weblab mail`: send mail from the lab's client the way any MTA would (swaks resolves the domain's MX
itself), and read a mailbox of the lab's mail host."""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostapps.mail import Mail, mailbox_users, read_maildir
from topologies.base import MAIL, ZONE
from weblab.core.errors import WeblabError

ADDRESS_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
SENDER = "student@client.example"
CLIENT = "client"


@dataclass
class Sent:
    """What `weblab mail send` did: swaks's exit code and transcript, and the Message-ID it sent."""

    returncode: int
    transcript: str
    message_id: str


def check_address(address: str, what: str = "address") -> str:
    """A plain user@domain address, or a one-line error."""
    if not ADDRESS_RE.match(address or ""):
        raise WeblabError(f"{what} {address!r} is not an address like admin@{ZONE}")
    return address


def send(lab: Any, to: str, subject: str, body: str = "", sender: str = SENDER, server: str | None = None,
         timeout: float = 10) -> Sent:
    """swaks from the client host to `to`: with no server, it looks the recipient domain's MX up itself
    (falling back to its A record, RFC 5321 5.1), as the sending side of any mail does."""
    check_address(to, "--to")
    check_address(sender, "--from")
    if CLIENT not in lab.hosts():
        raise WeblabError(f"this lab has no {CLIENT} host to send from")
    message_id = f"<{time.strftime('%Y%m%d%H%M%S')}.{secrets.token_hex(4)}@{sender.split('@')[1]}>"
    argv = ["swaks", "--to", to, "--from", sender, "--helo", sender.split("@")[1],
            "--header", f"Subject: {subject}", "--header", f"Message-Id: {message_id}",
            "--body", body or "Sent from the lab's client with weblab mail send.", "--timeout", f"{timeout:g}s"]
    if server:
        argv += ["--server", server]
    res = lab.exec(CLIENT, argv, timeout=timeout * 3 + 10)
    return Sent(res.returncode, f"$ {' '.join(argv)}\n{res.stdout}{res.stderr}", message_id)


def mailbox(lab: Any, user: str) -> tuple[Path, list[dict[str, Any]]]:
    """user@ZONE's Maildir on the mail host and its messages, oldest first."""
    if "@" in user:
        user, domain = user.split("@", 1)
        if domain != ZONE:
            raise WeblabError(f"the lab's mail host keeps mail for @{ZONE} only, not @{domain}")
    if MAIL not in lab.hosts():
        raise WeblabError("this lab has no mail host (designs other than one-server have one; one-server "
                          "with --param mail=true)")
    folder = lab.service_dir(MAIL, "mail")
    table = folder / "etc" / "mailboxes.map"  # as rendered, or as a person edited it
    known = mailbox_users(table, ZONE) if table.exists() else list(Mail.defaults["mailboxes"])
    if user not in known:
        raise WeblabError(f"no mailbox {user!r} at {ZONE}; the mail host has: {', '.join(known)}")
    maildir = folder / "mailboxes" / ZONE / user
    if not maildir.exists():
        return maildir, []  # Postfix creates it with the first message
    return maildir, read_maildir(maildir)


def format_messages(maildir: Path, messages: list[dict[str, Any]]) -> str:
    """A mailbox for people: one block per message."""
    if not messages:
        return f"no messages in {maildir}"
    out = [f"{len(messages)} message(s) in {maildir}:"]
    for m in messages:
        out.append(f"  {time.strftime('%H:%M:%S', time.localtime(m['mtime']))}  {m['message_id']}\n"
                   f"    From: {m['from']}\n    Subject: {m['subject']}\n    file: {m['file']}")
    return "\n".join(out)
