"""Nginx: static files and a reverse proxy to the app server."""
from __future__ import annotations

import shutil
import signal
from pathlib import Path

from hostapps.base import Service, render_template

STATIC = Path(__file__).resolve().parent / "webapp" / "static"


class Nginx(Service):
    """nginx -p DIR in the foreground, all state under its run directory."""

    kind = "nginx"
    binaries = {"nginx": "nginx"}
    reload_signal = signal.SIGHUP
    # app: one app server "host:port", or a list of them (separate app tier, balanced by nginx)
    defaults = {"port": 80, "app": "127.0.0.1:8000", "server_name": "", "workers": 1, "tls_cert": ""}

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
