"""HAProxy: the load balancer, with health checks, an admin socket and a Prometheus endpoint."""
from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

from hostapps.base import Service, render_template
from weblab.core.errors import WeblabError

ALGORITHMS = ("roundrobin", "leastconn", "source")
TLS_CIPHERS = ("aead", "legacy")
# TLS 1.2 suites with forward secrecy and authenticated encryption only (no CBC: LUCKY13 and kin)
AEAD_CIPHERS = ":".join(f"ECDHE-{k}-{c}" for c in ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305")
                        for k in ("ECDSA", "RSA"))
TLS13_SUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


class HAProxy(Service):
    """haproxy -W -db (master-worker, foreground); drain/ready/maint through its admin socket."""

    kind = "haproxy"
    binaries = {"haproxy": "haproxy"}
    reload_signal = signal.SIGUSR2
    defaults: dict[str, Any] = {"bind": "*", "servers": [], "algorithm": "roundrobin", "inter": 1000,
                                "fall": 3, "rise": 2, "retries": 3, "stats_port": 8404,
                                "tls_cert": "", "backend_tls": False, "ca_file": "",
                                "hsts_max_age": 0, "tls_ciphers": "aead", "check_path": "/health",
                                # servers readiness does not wait for (a scenario that breaks them)
                                "ready_without": []}

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        if self.opts["algorithm"] not in ALGORITHMS:
            raise WeblabError(f"haproxy on {self.host.name}: algorithm {self.opts['algorithm']!r} is not "
                              f"one of {', '.join(ALGORITHMS)}")
        if not self.opts["servers"]:
            raise WeblabError(f"haproxy on {self.host.name}: no backend servers")
        if self.opts["tls_ciphers"] not in TLS_CIPHERS:
            raise WeblabError(f"haproxy on {self.host.name}: tls_ciphers {self.opts['tls_ciphers']!r} is not "
                              f"one of {', '.join(TLS_CIPHERS)}")
        if self.opts["backend_tls"] and not self.opts["ca_file"]:
            raise WeblabError(f"haproxy on {self.host.name}: backend_tls needs ca_file to verify backends")

    @property
    def conf(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def admin_socket(self) -> Path:
        return self.admin_socket_in(self.dir)

    @staticmethod
    def admin_socket_in(directory: Path) -> Path:
        """The admin socket of an HAProxy whose run directory is `directory`."""
        return Path(directory) / "admin.sock"

    def render(self) -> None:
        self.conf.write_text(render_template("haproxy.cfg.j2", host=self.host.name, dir=self.dir,
                                             aead_ciphers=AEAD_CIPHERS, tls13_suites=TLS13_SUITES, **self.opts))

    def check_argv(self) -> list[str]:
        return ["haproxy", "-c", "-f", str(self.conf)]  # not -q: it hides the errors too

    def config_files(self) -> list[Path]:
        return [self.conf]

    def reload_effect(self) -> str:
        return ("SIGUSR2 to HAProxy's master: it starts a new worker with the new configuration and lets "
                "the old one finish its connections; health checks and counters start afresh")

    def argv(self) -> list[str]:
        return ["haproxy", "-W", "-db", "-f", str(self.conf)]

    def probe(self) -> bool:
        if not self.admin_socket.exists():
            return False
        try:
            states = self.server_states()
        except OSError:
            return False
        # Ready when every active (non-backup) server has passed its checks.
        active = [s["name"] for s in self.opts["servers"]
                  if not s.get("backup") and s["name"] not in self.opts["ready_without"]]
        return all(states.get(name) == "UP" for name in active)

    def admin(self, command: str, timeout: float = 3.0) -> str:
        """One command on the admin socket."""
        return admin_command(self.admin_socket, command, timeout)

    def server_states(self) -> dict[str, str]:
        """Backend server name -> UP/DOWN/MAINT/DRAIN as HAProxy sees it now."""
        return {name: rec["status"].split(" ")[0] for name, rec in backend_stats(self.admin_socket).items()}

    def set_state(self, server: str, state: str) -> None:
        """drain | ready | maint one backend server (rolling deploys)."""
        set_server_state(self.admin_socket, server, state)

    def sessions(self, server: str) -> int:
        """Current sessions on one backend server (0 once drained)."""
        stats = backend_stats(self.admin_socket)
        if server not in stats:
            raise WeblabError(f"haproxy has no server {server}")
        return int(stats[server].get("scur") or 0)


def admin_command(sock: Path | str, command: str, timeout: float = 3.0) -> str:
    """One command on an HAProxy admin socket (a Unix socket: reachable from the root namespace)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        s.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


SERVER_STATES = ("drain", "ready", "maint")


def set_server_state(sock: Path | str, server: str, state: str) -> None:
    """drain | ready | maint one backend server through an admin socket; HAProxy's refusal is an error."""
    if state not in SERVER_STATES:
        raise WeblabError(f"server state {state!r}: use {', '.join(SERVER_STATES)}")
    reply = admin_command(sock, f"set server servers/{server} state {state}").strip()
    if reply:
        raise WeblabError(f"haproxy refused `set server servers/{server} state {state}`: {reply}")


def parse_stat(csv_text: str, proxy: str = "servers") -> dict[str, dict[str, str]]:
    """`show stat` CSV -> {server name: its columns} for one backend's servers."""
    lines = [l for l in csv_text.splitlines() if l.strip()]
    if not lines:
        return {}
    cols = lines[0].lstrip("# ").split(",")
    out = {}
    for row in lines[1:]:
        rec = dict(zip(cols, row.split(",")))
        if rec.get("pxname") == proxy and rec.get("svname") not in ("FRONTEND", "BACKEND"):
            out[rec["svname"]] = rec
    return out


def backend_stats(sock: Path | str) -> dict[str, dict[str, str]]:
    """Live per-server stats of the `servers` backend."""
    return parse_stat(admin_command(sock, "show stat"))
