"""mtail on the monitor host: the web servers' access logs, collected over the lab network, turned into
Prometheus metrics (log analysis, with nothing of the monitoring system on the servers).

Nginx sends each access-log line as one syslog datagram (`access_log syslog:server=MONITOR:PORT`,
hostapps/nginx.py) tagged nginx_<server>; rsyslog on the monitor (hostapps/rsyslog.py) writes them to
its file, and mtail follows that file (inotify) and counts requests by server and status, and sums
their bytes (templates/nginx.mtail.j2). mtail 3.0.0-rc50 can read a UDP socket itself, but only one
datagram per poll interval (250 ms by default): at 1 ms it kept up but cost ~5% of a core idle, the
file costs nothing idle.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hostapps.base import render_template
from hostapps.exporters import Exporter
from weblab.core.errors import WeblabError

REQUESTS = "nginx_syslog_requests_total"   # {web_server, status}: requests the access logs reported
BYTES = "nginx_syslog_body_bytes_total"    # {web_server}: response body bytes they reported
TAG_PREFIX = "nginx_"                     # the syslog tag Nginx sends: nginx_<server>


class Mtail(Exporter):
    """mtail --logs FILE (the collector's file) with its program in the run directory."""

    kind = "mtail"
    binaries = {"mtail": "mtail"}
    # log_file: the file the log collector writes; "" = the file of the rsyslog service on the same host
    defaults: dict[str, Any] = {"bind": "127.0.0.1", "port": 3903, "log_file": ""}

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        if self.opts["log_file"] and not str(self.opts["log_file"]).startswith("/"):
            raise WeblabError(f"mtail on {self.host.name}: log_file must be an absolute path, "
                              f"got {self.opts['log_file']!r}")

    @property
    def log_file(self) -> Path:
        """What it follows: the given file, else the one rsyslog on this host writes (a sibling service
        directory of the same run)."""
        if self.opts["log_file"]:
            return Path(self.opts["log_file"])
        from hostapps.rsyslog import Rsyslog
        return self.dir.parent / Rsyslog.kind / Rsyslog.defaults["file"]

    @property
    def progs(self) -> Path:
        return self.dir / "progs"

    @property
    def program(self) -> Path:
        return self.progs / "nginx.mtail"

    def render(self) -> None:
        self.progs.mkdir(parents=True, exist_ok=True)
        self.program.write_text(render_template("nginx.mtail.j2", host=self.host.name, requests=REQUESTS,
                                                bytes=BYTES, tag_prefix=TAG_PREFIX))

    def check_argv(self) -> list[str]:
        return ["mtail", "--progs", str(self.progs), "--compile_only", "--logtostderr"]

    def argv(self) -> list[str]:
        o = self.opts
        # --logtostderr: glog would otherwise write its files to the shared /tmp; --poll_interval 0:
        # inotify tells it of new lines (polling every 250 ms would only add delay)
        return ["mtail", "--progs", str(self.progs), "--logs", str(self.log_file), "--address", o["bind"],
                "--port", str(o["port"]), "--logtostderr", "--poll_interval", "0"]

    def config_files(self) -> list[Path]:
        return [self.program]
