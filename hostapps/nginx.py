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
    # static: "nginx" serves /static/ from disk (offloaded), "app" proxies it to the app server
    # cache: the proxy cache for the DB-backed pages (/ and /api/items), each kept cache_ttl s
    defaults = {"port": 80, "app": "127.0.0.1:8000", "server_name": "", "workers": 1, "tls_cert": "",
                "syslog_host": "", "syslog_port": 5140, "static": "nginx", "cache": False, "cache_ttl": 1}
    STATIC_MODES = ("nginx", "app")

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

    @property
    def cache_dir(self) -> Path:
        """The proxy cache's files (cache=on), in the run directory like everything else of this nginx."""
        return self.dir / "cache"

    def render(self) -> None:
        if self.opts["static"] not in self.STATIC_MODES:
            raise WeblabError(f"nginx on {self.host.name}: static={self.opts['static']!r} must be one of "
                              f"{', '.join(self.STATIC_MODES)}")
        ttl = self.opts["cache_ttl"]
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 3600:
            raise WeblabError(f"nginx on {self.host.name}: cache_ttl={ttl!r} must be whole seconds in 1..3600")
        subs = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        for d in [self.dir / "tmp" / sub for sub in subs] + ([self.cache_dir] if self.opts["cache"] else []):
            d.mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "www-data")
        # A copy, so www-data can read it wherever the checkout lives.
        shutil.copytree(STATIC, self.dir / "static", dirs_exist_ok=True)
        self.conf.write_text(render_template(
            "nginx.conf.j2", dir=self.dir, server_name=self.opts["server_name"] or self.host.name,
            apps=[self.opts["app"]] if isinstance(self.opts["app"], str) else list(self.opts["app"]),
            syslog=self.syslog, syslog_tag=self.syslog_tag, cache_dir=self.cache_dir,
            **{k: self.opts[k] for k in ("port", "workers", "tls_cert", "static", "cache", "cache_ttl")}))

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
        # with static=app /static/ answers only once the app does; nginx's own status page does not wait for it
        path = "/static/hello.txt" if self.opts["static"] == "nginx" else "/nginx_status"
        return self.http_ok(f"http://127.0.0.1:{self.opts['port']}{path}")
