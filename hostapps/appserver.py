"""The app server: gunicorn running the weblab web application (hostapps/webapp)."""
from __future__ import annotations

import signal
import sys

from hostapps.accounts import APP, DATABASE
from hostapps.base import Service


class AppServer(Service):
    """gunicorn with threaded workers, configured only through WEBLAB_* variables."""

    kind = "webapp"
    binaries = {}
    reload_signal = signal.SIGHUP
    defaults = {"bind": "127.0.0.1:8000", "workers": 2, "threads": 4, "server_name": "",
                "db_read": "127.0.0.1:3306", "db_write": "127.0.0.1:3306",
                "db_user": APP.user, "db_password": APP.password, "db_name": DATABASE}

    def gunicorn(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "--bind", self.opts["bind"],
                "--workers", str(self.opts["workers"]), "--threads", str(self.opts["threads"]),
                "--worker-class", "gthread", "--pid", str(self.dir / "gunicorn.pid"),
                "--access-logfile", str(self.dir / "access.log"), "--error-logfile", "-",
                "--graceful-timeout", "5", "--timeout", "30",
                # gunicorn 27 opens a control socket at a fixed path by default; hosts share the
                # filesystem, so several app servers would fight over it.
                "--no-control-socket"]

    def check_argv(self) -> list[str]:
        return ["env", *(f"{k}={v}" for k, v in self.env().items()),
                *self.gunicorn(), "--check-config", "hostapps.webapp.app:application"]

    def argv(self) -> list[str]:
        return [*self.gunicorn(), "hostapps.webapp.app:application"]

    def env(self) -> dict[str, str]:
        o = self.opts
        return {"WEBLAB_SERVER_NAME": o["server_name"] or self.host.name,
                "WEBLAB_DB_READ": o["db_read"], "WEBLAB_DB_WRITE": o["db_write"],
                "WEBLAB_DB_USER": o["db_user"], "WEBLAB_DB_PASSWORD": o["db_password"],
                "WEBLAB_DB_NAME": o["db_name"]}

    def probe(self) -> bool:
        return self.http_ok(f"http://{self.opts['bind'].replace('0.0.0.0', '127.0.0.1')}/health")
