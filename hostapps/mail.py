"""Mail: Postfix, the MTA the domain's MX record names, delivering @domain mail to Maildirs in the run."""
from __future__ import annotations

import email.parser
import email.policy
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hostapps.base import Service, render_template
from weblab.core.errors import WeblabError

MAILBOX_OWNER = "mail"   # Debian's account for mail spools: owns the Maildirs (virtual delivery)
USER_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Mail(Service):
    """Postfix's master in the foreground (`master -s`, the process `postfix start-fg` runs), its queue,
    data, Maildirs and log under the run directory; `postfix -c DIR check` is the dry run."""

    kind = "mail"
    binaries = {"postfix": "postfix", "postconf": "postfix", "postqueue": "postfix"}
    reload_signal = signal.SIGHUP  # master rereads main.cf/master.cf and restarts its daemons gracefully
    defaults: dict[str, Any] = {"domain": "foobar.com", "hostname": "", "port": 25,
                                "mailboxes": ["admin", "postmaster", "webmaster"]}

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        bad = [u for u in self.opts["mailboxes"] if not USER_RE.match(str(u))]
        if bad or not self.opts["mailboxes"]:
            raise WeblabError(f"mail on {self.host.name}: mailbox names must be lower-case local parts "
                              f"(a-z, 0-9, . _ -), at least one: {bad or 'none given'}")

    # --- where things are ------------------------------------------------------------------------
    @property
    def hostname(self) -> str:
        return self.opts["hostname"] or f"{self.host.name}.{self.opts['domain']}"

    @property
    def etc(self) -> Path:
        """Postfix's config_directory (apart from the queue: postfix check wants it all root's)."""
        return self.dir / "etc"

    @property
    def main_cf(self) -> Path:
        return self.etc / "main.cf"

    @property
    def master_cf(self) -> Path:
        return self.etc / "master.cf"

    @property
    def mailbox_base(self) -> Path:
        return self.dir / "mailboxes"

    def maildir(self, user: str) -> Path:
        """The Maildir of user@domain."""
        return self.mailbox_base / self.opts["domain"] / user

    @staticmethod
    def installed() -> dict[str, str]:
        """Postfix's compiled-in program and meta directories (postconf -d), needed by a config of our own."""
        names = ("daemon_directory", "command_directory", "shlib_directory", "meta_directory")
        res = subprocess.run(["postconf", "-d", *names], capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            raise WeblabError(f"postconf -d failed: {res.stderr.strip()}")
        return dict(line.split(" = ", 1) for line in res.stdout.splitlines() if " = " in line)

    # --- configuration ---------------------------------------------------------------------------
    def render(self) -> None:
        o = self.opts
        owner = pwd.getpwnam(MAILBOX_OWNER)
        self.etc.mkdir(exist_ok=True)
        self.main_cf.write_text(render_template(
            "postfix-main.cf.j2", host=self.host.name, dir=self.dir, etc=self.etc, log=self.log, domain=o["domain"],
            hostname=self.hostname, uid=owner.pw_uid, gid=owner.pw_gid, **self.installed()))
        self.master_cf.write_text(render_template("postfix-master.cf.j2", port=o["port"]))
        # address -> Maildir (relative to virtual_mailbox_base; the trailing slash means Maildir)
        self.mailbox_map.write_text("".join(
            f"{u}@{o['domain']} {o['domain']}/{u}/\n" for u in o["mailboxes"]))

    @property
    def mailbox_map(self) -> Path:
        """address -> Maildir: who has a mailbox (Postfix refuses every other recipient at RCPT TO)."""
        return self.etc / "mailboxes.map"

    def config_files(self) -> list[Path]:
        return [self.main_cf, self.mailbox_map, self.master_cf]

    def check_argv(self) -> list[str]:
        # also creates the queue's subdirectories with Postfix's own owners and modes (post-install)
        return ["postfix", "-c", str(self.etc), "check"]

    def check_file_argv(self, path: Path, text_at: Path) -> list[list[str]]:
        if path not in self.config_files():
            return []
        # postfix check reads a directory: a copy of this one with the draft in place of that file
        draft = self.dir / "etc.draft"
        draft.mkdir(exist_ok=True)
        for f in self.config_files():
            shutil.copyfile(text_at if f == path else f, draft / f.name)
        return [["sh", "-c", 'sed -i "s|^config_directory = .*|config_directory = $0|" "$0/main.cf" && '
                 'postfix -c "$0" check', str(draft)]]

    def prepare(self) -> None:
        (self.dir / "queue").mkdir(exist_ok=True)  # root's; postfix check made its subdirectories
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        shutil.chown(data, "postfix", "postfix")
        self.mailbox_base.mkdir(exist_ok=True)
        shutil.chown(self.mailbox_base, MAILBOX_OWNER, grp.getgrgid(pwd.getpwnam(MAILBOX_OWNER).pw_gid).gr_name)
        # a stale pid file of a crashed master would make the new one refuse to start
        (self.dir / "queue" / "pid" / "master.pid").unlink(missing_ok=True)

    def configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "queue").mkdir(exist_ok=True)  # postfix check fills it in
        super().configure()

    def stop(self) -> None:
        super().stop()
        # the master's SIGTERM goes to its daemons too (its process group); wait until they are gone
        if self.ref is not None:
            deadline = time.monotonic() + self.stop_timeout
            while group_alive(self.ref.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if group_alive(self.ref.pid):
                try:
                    os.killpg(self.ref.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def argv(self) -> list[str]:
        daemon_dir = self.installed()["daemon_directory"]
        # -s keeps stdout; no -w, no fork: the master stays the process the lab started and stops
        return [f"{daemon_dir}/master", "-c", str(self.etc), "-s"]

    def probe(self) -> bool:
        return smtp_banner(self, self.host.ips[0], self.opts["port"]).startswith(f"220 {self.hostname}")

    # --- the mailboxes -----------------------------------------------------------------------------
    def messages(self, user: str) -> list[dict[str, Any]]:
        """Every message in user's Maildir (new and cur), oldest first: file, headers, delivery time."""
        known = mailbox_users(self.mailbox_map, self.opts["domain"]) if self.mailbox_map.exists() \
            else list(self.opts["mailboxes"])
        if user not in known:
            raise WeblabError(f"{user}@{self.opts['domain']} has no mailbox here; mailboxes: {', '.join(known)}")
        return read_maildir(self.maildir(user))

    def find(self, user: str, message_id: str) -> dict[str, Any] | None:
        """The message with this Message-ID in user's mailbox, if delivered."""
        want = message_id.strip().strip("<>")
        return next((m for m in self.messages(user) if m["message_id"].strip().strip("<>") == want), None)

    def queue(self) -> str:
        """postqueue -p: what is waiting in the queue (deferred mail)."""
        res = self.host.run(["postqueue", "-c", str(self.etc), "-p"], timeout=10)
        return (res.stdout + res.stderr).strip()


def mailbox_users(mailbox_map: Path, domain: str) -> list[str]:
    """The local parts that have a mailbox at domain, as the mailbox table (as edited) lists them."""
    users = []
    for line in Path(mailbox_map).read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words and words[0].lower().endswith("@" + domain.lower()):
            users.append(words[0].rsplit("@", 1)[0])
    return users


def read_maildir(maildir: Path) -> list[dict[str, Any]]:
    """Every message of a Maildir (new and cur), oldest first: its file, main headers, delivery time."""
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    out = []
    for sub in ("new", "cur"):
        for path in sorted((Path(maildir) / sub).glob("*")):
            msg = parser.parsebytes(path.read_bytes())
            out.append({"file": str(path), "folder": sub, "mtime": path.stat().st_mtime,
                        "message_id": str(msg.get("Message-ID", "")).strip(), "from": str(msg.get("From", "")),
                        "to": str(msg.get("To", "")), "subject": str(msg.get("Subject", "")),
                        "date": str(msg.get("Date", "")), "received": [str(r) for r in msg.get_all("Received", [])]})
    return sorted(out, key=lambda m: m["mtime"])


def group_alive(pgid: int) -> bool:
    """Is any process still in process group pgid?"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def smtp_banner(svc: Service, ip: str, port: int, timeout: float = 1.0) -> str:
    """The greeting an SMTP server on ip:port gives from inside svc's host ("" when none)."""
    code = ("import smtplib,sys\n"
            "s=smtplib.SMTP(timeout=float(sys.argv[3]))\n"
            "c,m=s.connect(sys.argv[1],int(sys.argv[2]))\n"
            "print(c,m.decode(errors='replace'))\n"
            "s.quit()\n")
    try:
        res = svc.host.run([sys.executable, "-c", code, ip, str(port), str(timeout)], timeout=timeout + 3)
    except subprocess.TimeoutExpired:
        return ""
    return res.stdout.strip() if res.returncode == 0 else ""
