"""The mail host (C26): the zone's MX and SPF, a message sent from the client with swaks (MX lookup) and
found in the Maildir, relaying and unknown users refused, and nothing of Postfix left after `weblab down`."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

from tests.integration.conftest import in_host, service_info, weblab
from weblab.core.proc import ProcRef

DESIGN = "secured"  # the firewall on: SMTP reaches the mail host because a rule admits it
UP_ARGS = ["--param", "monitoring=false"]


def test_zone_names_the_mail_host_in_its_mx_record(detached_lab):
    assert in_host("client", "dig", "+short", "foobar.com", "MX").stdout.split() == ["10", "mail.foobar.com."]
    assert in_host("client", "dig", "+short", "mail.foobar.com", "A").stdout.split() == ["10.0.0.25"]
    assert '"v=spf1 mx -all"' in in_host("client", "dig", "+short", "foobar.com", "TXT").stdout


def test_a_message_sent_from_the_client_is_in_the_mailbox(detached_lab):
    res = weblab("mail", "send", "--to", "admin@foobar.com", "--subject", "integration", timeout=60)
    msgid = re.search(r"\*\*\* Message-ID (<[^>]+>): accepted", res.stdout).group(1)
    assert "mail.foobar.com" in res.stdout  # swaks found the MX itself and connected to it
    deadline, shown = time.monotonic() + 10, ""
    while time.monotonic() < deadline and msgid not in shown:
        shown = weblab("mail", "show", "admin").stdout
        time.sleep(0.2)
    assert msgid in shown and "Subject: integration" in shown, shown


def test_relaying_to_another_domain_and_unknown_users_are_refused(detached_lab):
    res = weblab("mail", "send", "--to", "someone@example.org", "--subject", "relay", "--server",
                 "mail.foobar.com", timeout=60, check=False)
    assert res.returncode != 0 and "Relay access denied" in res.stdout, res.stdout
    res = weblab("mail", "send", "--to", "bob@foobar.com", "--subject", "nobody", timeout=60, check=False)
    assert res.returncode != 0 and "User unknown" in res.stdout, res.stdout


def test_postfix_writes_only_in_the_run_directory_and_stops_with_the_lab(detached_lab):
    info = service_info(detached_lab, "mail", "mail")
    run_dir = Path(info["dir"])
    assert (run_dir / "queue" / "pid" / "master.pid").exists() and (run_dir / "mail.log").exists()
    master = ProcRef("mail", info["pid"], info["start"])
    assert master.alive()
    daemons = [p for p in Path("/proc").glob("[0-9]*") if pgid_of(p) == master.pid]
    assert len(daemons) >= 2  # the master and its daemons (qmgr, pickup, ...), one process group
    weblab("down", timeout=120)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(pgid_of(p) == master.pid for p in Path("/proc").glob("[0-9]*")):
        time.sleep(0.1)
    assert not [p.name for p in Path("/proc").glob("[0-9]*") if pgid_of(p) == master.pid]
    assert not run_dir.exists()


def pgid_of(proc: Path) -> int | None:
    """The process group of /proc/PID (None once it is gone)."""
    try:
        return os.getpgid(int(proc.name))
    except (ProcessLookupError, ValueError):
        return None
