"""Prometheus exporters that run on a lab host beside what they watch: the machine, Nginx, MariaDB.

What the node exporter's numbers mean in a lab: Mininet hosts share the machine's /proc except
/proc/net, which follows the reader's network namespace. So the cpu, meminfo and loadavg series are
the whole machine's and identical on every host (a CPU-limited host's cgroup share is not visible
there), while netdev and netstat are the host's own interfaces and TCP counters.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from hostapps.accounts import EXPORTER
from hostapps.base import Service, render_template
from weblab.core import versions
from weblab.core.errors import WeblabError

# Cheap collectors whose numbers mean something in a lab (see the module docstring); the rest
# (filesystem, diskstats, hwmon, ...) read the shared machine and only cost scrape time at 1 s.
NODE_COLLECTORS = ("cpu", "meminfo", "loadavg", "netdev", "netstat")


class Exporter(Service):
    """An exporter: one HTTP listener, ready once its /metrics answers."""

    ready_timeout = 15.0

    @property
    def listen(self) -> str:
        return f"{self.opts['bind']}:{self.opts['port']}"

    @property
    def metrics_url(self) -> str:
        """Where a probe inside the host reaches /metrics (loopback when bound to every address)."""
        addr = "127.0.0.1" if self.opts["bind"] in ("0.0.0.0", "") else self.opts["bind"]
        return f"http://{addr}:{self.opts['port']}/metrics"

    def probe(self) -> bool:
        return self.http_ok(self.metrics_url)

    def metrics(self, timeout: float = 3.0) -> str:
        """The exporter's current /metrics text, fetched from inside the host ("" if it fails)."""
        try:
            res = self.host.run(["curl", "-s", "--max-time", str(timeout), self.metrics_url],
                                timeout=timeout + 2)
        except subprocess.TimeoutExpired:
            return ""
        return res.stdout if res.returncode == 0 else ""


class NodeExporter(Exporter):
    """prometheus-node-exporter limited to a few cheap collectors."""

    kind = "node_exporter"
    binaries = {"prometheus-node-exporter": "prometheus-node-exporter"}
    defaults: dict[str, Any] = {"bind": "0.0.0.0", "port": 9100, "collectors": list(NODE_COLLECTORS)}

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        bad = [c for c in self.opts["collectors"] if not re.fullmatch(r"[a-z_]+", c)]
        if bad or not self.opts["collectors"]:
            raise WeblabError(f"node_exporter on {self.host.name}: collectors must be a non-empty "
                              f"list of collector names, got {self.opts['collectors']!r}")

    def argv(self) -> list[str]:
        # disable-defaults also turns off the textfile collector, whose directory is a fixed
        # path in /var/lib shared by every host.
        return ["prometheus-node-exporter", f"--web.listen-address={self.listen}",
                "--collector.disable-defaults", "--web.disable-exporter-metrics",
                *(f"--collector.{c}" for c in self.opts["collectors"])]


class NginxExporter(Exporter):
    """prometheus-nginx-exporter reading the local Nginx's stub_status page."""

    kind = "nginx_exporter"
    binaries = {"prometheus-nginx-exporter": "prometheus-nginx-exporter"}
    defaults: dict[str, Any] = {"bind": "0.0.0.0", "port": 9113,
                                "scrape_uri": "http://127.0.0.1/nginx_status"}

    @classmethod
    def version(cls) -> versions.Version | None:
        """This machine's exporter release (0.11 on Debian 12, 1.4 on Debian 13), None if unknown."""
        return versions.of("prometheus-nginx-exporter")

    def argv(self) -> list[str]:
        return nginx_exporter_argv(self.opts["scrape_uri"], self.listen, self.version())


def nginx_exporter_argv(scrape_uri: str, listen: str, version: versions.Version | None) -> list[str]:
    """The exporter's command line for its release: 1.0 moved to --long flags and dropped the retries."""
    if version is not None and version < (1, 0):
        # 0.x exits if stub_status does not answer at start: a few retries absorb start order,
        # and are bounded well inside ready_timeout.
        return ["prometheus-nginx-exporter", "-nginx.scrape-uri", scrape_uri, "-web.listen-address", listen,
                "-nginx.retries", "5", "-nginx.retry-interval", "1s"]
    # 1.x (and a release that does not say): no retries flag; it starts without NGINX and reports
    # nginx_up 0 until stub_status answers.
    return ["prometheus-nginx-exporter", f"--nginx.scrape-uri={scrape_uri}", f"--web.listen-address={listen}"]


class MysqldExporter(Exporter):
    """prometheus-mysqld-exporter with credentials in a private my.cnf (0.14 has no DSN flag)."""

    kind = "mysqld_exporter"
    binaries = {"prometheus-mysqld-exporter": "prometheus-mysqld-exporter"}
    defaults: dict[str, Any] = {"bind": "0.0.0.0", "port": 9104, "mysql": "127.0.0.1:3306",
                                "user": EXPORTER.user, "password": EXPORTER.password, "require_db": True}
    db_timeout = 10.0

    @property
    def cnf(self) -> Path:
        return self.dir / "exporter.cnf"

    def render(self) -> None:
        host, _, port = self.opts["mysql"].rpartition(":")
        if not host or not port.isdigit():
            raise WeblabError(f"mysqld_exporter on {self.host.name}: mysql must be HOST:PORT, "
                              f"got {self.opts['mysql']!r}")
        text = render_template("exporter.cnf.j2", host=self.host.name, db_host=host, db_port=port,
                               user=self.opts["user"], password=self.opts["password"])
        # Created 0600 from the first byte: the password is never readable by other users.
        self.cnf.unlink(missing_ok=True)
        fd = os.open(self.cnf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def argv(self) -> list[str]:
        return ["prometheus-mysqld-exporter", f"--config.my-cnf={self.cnf}",
                f"--web.listen-address={self.listen}"]

    def after_ready(self) -> None:
        # /metrics answers 200 even when the database refuses the exporter (mysql_up 0): without
        # this check a wrong password would show as a healthy target.
        if self.opts["require_db"]:
            self.wait_db(self.db_timeout)

    def wait_db(self, timeout: float) -> None:
        """Wait (bounded) until the exporter reports mysql_up 1; raise with the cause otherwise."""
        deadline = time.monotonic() + timeout
        while not mysql_up(self.metrics()):
            if time.monotonic() > deadline:
                raise WeblabError(
                    f"{self.name}: reports mysql_up 0 after {timeout:.0f} s: MariaDB at "
                    f"{self.opts['mysql']} refuses user {self.opts['user']!r} or is not running "
                    f"(start it before the exporter; the user is created by hostapps/mariadb.py) "
                    f"(log: {self.log})")
            time.sleep(0.5)


def mysql_up(metrics_text: str) -> bool:
    """True if a mysqld exporter's /metrics says it reached the database."""
    return any(line.split()[:2] == ["mysql_up", "1"] for line in metrics_text.splitlines())
