"""rsyslog on the monitor host: the lab's log collector, receiving the web servers' access logs as
syslog over UDP and writing them, one message a line, to a file of its own that mtail reads.

Nothing runs on the servers for it: Nginx itself sends each access-log line as a syslog datagram
(`access_log syslog:server=...`, hostapps/nginx.py). It listens on the monitor's lab address only,
with one UDP input and one file action, and loads no other module (no /dev/log, no kernel log).
"""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from hostapps.base import Service, render_template
from weblab.core.errors import WeblabError


class Rsyslog(Service):
    """rsyslogd -n with its config, pid file, work directory and the collected log in the run directory."""

    kind = "rsyslog"
    binaries = {"rsyslogd": "rsyslog", "ss": "iproute2"}
    ready_timeout = 10.0
    defaults: dict[str, Any] = {"address": "", "port": 5140, "file": "access-logs.log"}

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        try:
            ipaddress.ip_address(self.opts["address"])
        except ValueError:
            raise WeblabError(f"rsyslog on {self.host.name}: address must be the IP address it receives on, "
                              f"got {self.opts['address']!r}") from None
        if not isinstance(self.opts["port"], int) or not 0 < self.opts["port"] < 65536:
            raise WeblabError(f"rsyslog on {self.host.name}: port must be 1..65535, got {self.opts['port']!r}")

    @property
    def conf(self) -> Path:
        return self.dir / "rsyslog.conf"

    @property
    def collected(self) -> Path:
        """The file every received message is appended to (what mtail tails)."""
        return self.dir / self.opts["file"]

    def render(self) -> None:
        o = self.opts
        (self.dir / "work").mkdir(exist_ok=True)  # before the dry run, which checks it exists
        self.conf.write_text(render_template("rsyslog.conf.j2", host=self.host.name, dir=self.dir,
                                             work=self.dir / "work", address=o["address"], port=o["port"],
                                             file=self.collected))

    def prepare(self) -> None:
        self.collected.touch()  # mtail tails it from the start, before the first message

    def check_argv(self) -> list[str]:
        return ["rsyslogd", "-N1", "-f", str(self.conf)]

    def argv(self) -> list[str]:
        return ["rsyslogd", "-n", "-f", str(self.conf), "-i", str(self.dir / "rsyslogd.pid")]

    def config_files(self) -> list[Path]:
        return [self.conf]

    def probe(self) -> bool:
        # its UDP socket is bound (a datagram sent now would be received); -H: no header line
        res = self.host.run(["ss", "-ulnH"], timeout=3)
        return res.returncode == 0 and f"{self.opts['address']}:{self.opts['port']} " in res.stdout
