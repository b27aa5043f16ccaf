"""keepalived: VRRP between the load balancers, one virtual IP that follows the healthy one."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

from hostapps.base import Service, render_template
from hostapps.haproxy import HAProxy
from weblab.core.errors import WeblabError


def check_script(port: int, path: str) -> str:
    """keepalived's HAProxy check: one HTTP/1.0 GET on loopback, in bash builtins alone.

    It runs every second on every load balancer; a curl process costs ~7 ms of CPU (libraries, TLS
    set-up), which on a small machine shows in every other host's latency tail once a second.
    """
    return ("#!/bin/bash\n"
            "# HAProxy answers on its stats port: this load balancer may hold the VIP\n"
            f"exec 3<>/dev/tcp/127.0.0.1/{int(port)} || exit 1\n"
            f"printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3\n"
            "IFS= read -r -t 1 status <&3 || exit 1\n"
            'case "$status" in "HTTP/1."?" 200 "*) exit 0 ;; esac\n'
            "exit 1\n")


class Keepalived(Service):
    """keepalived --vrrp in the foreground; unicast VRRPv3 to its peers; tracks HAProxy."""

    kind = "keepalived"
    binaries = {"keepalived": "keepalived"}
    reload_signal = signal.SIGHUP
    defaults: dict[str, Any] = {"vip": "", "prefix": 24, "interface": "", "state": "BACKUP",
                                "priority": 100, "router_id": 51, "advert_int": 1.0, "peers": [],
                                "src_ip": "", "check_port": HAProxy.defaults["stats_port"], "check_path": "/alive",
                                "check_interval": 1,
                                # with a weight, a failing check lowers the priority by it instead
                                # of putting the instance in FAULT (0: no weight)
                                "track_weight": 0}

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        for key in ("vip", "interface", "src_ip"):
            if not self.opts[key]:
                raise WeblabError(f"keepalived on {self.host.name}: option {key} is required")
        if self.opts["state"] not in ("MASTER", "BACKUP"):
            raise WeblabError(f"keepalived on {self.host.name}: state must be MASTER or BACKUP")

    @property
    def conf(self) -> Path:
        return self.dir / "keepalived.conf"

    def render(self) -> None:
        script = self.dir / "check_haproxy.sh"
        script.write_text(check_script(self.opts["check_port"], self.opts["check_path"]))
        script.chmod(0o755)
        self.conf.write_text(render_template("keepalived.conf.j2", host=self.host.name,
                                             check_script=str(script), **self.opts))

    def check_argv(self) -> list[str]:
        # --config-test writes what it found to a file only (it refuses /dev/stdout): show that file
        return ["sh", "-c", 'rm -f "$1"; keepalived --config-test="$1" -f "$2"; rc=$?; cat "$1" 2>/dev/null; '
                'exit $rc', "config-test", str(self.dir / "config-test.log"), str(self.conf)]

    def config_files(self) -> list[Path]:
        return [self.conf]

    def reload_effect(self) -> str:
        return ("SIGHUP to keepalived: it reads its configuration again; the VRRP instance keeps its "
                "state and new priorities count from the next advertisement")

    def argv(self) -> list[str]:
        d = self.dir
        # Own pid files: hosts share the filesystem, and the defaults are machine-wide paths. 2.3 checks
        # the BFD child's (/run/bfd.pid) even with --vrrp only: the second load balancer refused to start.
        return ["keepalived", "--vrrp", "--dont-fork", "--log-console", "--log-detail", "--no-syslog",
                "-f", str(self.conf), "-p", str(d / "keepalived.pid"), "-r", str(d / "vrrp.pid"),
                "-c", str(d / "checkers.pid"), "-b", str(d / "bfd.pid")]

    def probe(self) -> bool:
        # Ready once its VRRP instance has settled in a state (MASTER holds the VIP, BACKUP not).
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "Entering MASTER STATE" in text or "Entering BACKUP STATE" in text

    def holds_vip(self) -> bool:
        """True if the VIP is on this host's interface now."""
        try:
            res = self.host.run(["ip", "-o", "-4", "addr", "show", "dev", self.opts["interface"]], timeout=5)
        except subprocess.TimeoutExpired:
            return False
        return f" {self.opts['vip']}/" in res.stdout
