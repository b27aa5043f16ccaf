"""Nginx: static files and a reverse proxy to the app server."""
from __future__ import annotations

import ipaddress
import re
import shutil
import signal
from pathlib import Path
from typing import Any

from hostapps.base import Service, render_template
from weblab.core.errors import WeblabError

STATIC = Path(__file__).resolve().parent / "webapp" / "static"


class Nginx(Service):
    """nginx -p DIR in the foreground, all state under its run directory."""

    kind = "nginx"
    binaries = {"nginx": "nginx"}
    reload_signal = signal.SIGHUP
    # app: one app server "host:port", or a list of them (separate app tier, balanced by nginx)
    # syslog_host: the IP address of a log collector that every access-log line is sent to as well (syslog
    # over UDP to syslog_port, tagged nginx_<server name>); "" = the file only
    defaults = {"port": 80, "app": "127.0.0.1:8000", "server_name": "", "workers": 1, "tls_cert": "",
                "syslog_host": "", "syslog_port": 5140}

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        o = self.opts
        if o["syslog_host"]:
            try:
                ipaddress.ip_address(o["syslog_host"])
            except ValueError:
                raise WeblabError(f"nginx on {self.host.name}: syslog_host must be an IP address, "
                                  f"got {o['syslog_host']!r}") from None
            if not isinstance(o["syslog_port"], int) or not 0 < o["syslog_port"] < 65536:
                raise WeblabError(f"nginx on {self.host.name}: syslog_port must be 1..65535, "
                                  f"got {o['syslog_port']!r}")

    @property
    def syslog(self) -> str:
        """IP:PORT its access log is also sent to, "" if none."""
        o = self.opts
        return f"{o['syslog_host']}:{o['syslog_port']}" if o["syslog_host"] else ""

    @property
    def syslog_tag(self) -> str:
        """The syslog tag of its access-log lines: nginx_<server name> (letters, digits and _ only)."""
        return "nginx_" + re.sub(r"\W", "_", self.opts["server_name"] or self.host.name)

    @property
    def conf(self) -> Path:
        return self.dir / "nginx.conf"

    def render(self) -> None:
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
            shutil.chown(self.dir / "tmp" / sub, "www-data")
        # A copy, so www-data can read it wherever the checkout lives.
        shutil.copytree(STATIC, self.dir / "static", dirs_exist_ok=True)
        self.conf.write_text(render_template(
            "nginx.conf.j2", dir=self.dir, server_name=self.opts["server_name"] or self.host.name,
            apps=[self.opts["app"]] if isinstance(self.opts["app"], str) else list(self.opts["app"]),
            syslog=self.syslog, syslog_tag=self.syslog_tag,
            **{k: self.opts[k] for k in ("port", "workers", "tls_cert")}))

    def base_argv(self) -> list[str]:
        return ["nginx", "-p", f"{self.dir}/", "-c", str(self.conf), "-e", str(self.dir / "error.log")]

    def check_argv(self) -> list[str]:
        return [*self.base_argv(), "-t", "-q", "-g", "daemon off;"]

    def config_files(self) -> list[Path]:
        return [self.conf]

    def reload_effect(self) -> str:
        return ("SIGHUP to nginx's master: it starts new workers with the new configuration and lets "
                "the old ones finish the requests they hold")

    def argv(self) -> list[str]:
        return [*self.base_argv(), "-g", "daemon off;"]

    def probe(self) -> bool:
        return self.http_ok(f"http://127.0.0.1:{self.opts['port']}/static/hello.txt")
