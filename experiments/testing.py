"""Test doubles: a local HTTP server and a FakeLab that runs 'host' commands on this machine (no root, no lab)."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator


class _Handler(BaseHTTPRequestHandler):
    """200 with a small HTML page and X-Served-By; /slow?ms=N sleeps N ms."""

    protocol_version = "HTTP/1.1"
    wbufsize = 65536                   # headers and body in one segment (no Nagle/delayed-ACK stalls)
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.startswith("/slow"):
            ms = float(self.path.partition("ms=")[2] or 50)
            time.sleep(ms / 1000)
        body = b"<html><body>hello</body></html>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Served-By", self.server.name)  # type: ignore[attr-defined]
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    """Threaded, restartable on the same port, with a real listen backlog (the default 5 drops SYNs under a probe)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class LocalHttpServer:
    """A threaded HTTP server on 127.0.0.1 that can be 'crashed' and restarted on the same port."""

    def __init__(self, name: str = "server1", port: int = 0):
        self.name, self.port = name, port
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> "LocalHttpServer":
        self.httpd = _Server(("127.0.0.1", self.port), _Handler)
        self.httpd.name = self.name  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


class FakeService:
    """Service handle over a LocalHttpServer (kill/stop/start/restart, readiness immediate)."""

    def __init__(self, server: LocalHttpServer, log: list[str], restart_gap: float = 0.3):
        self.server, self.log, self.restart_gap = server, log, restart_gap

    def start(self) -> None:
        self.log.append("start")
        self.server.start()

    def stop(self) -> None:
        self.log.append("stop")
        self.server.stop()

    def kill(self) -> None:
        self.log.append("kill")
        self.server.stop()

    def restart(self) -> None:
        self.stop()
        time.sleep(self.restart_gap)  # stands in for the daemon's start-up time (a real gunicorn takes ~1 s)
        self.start()

    def wait_ready(self, timeout: float = 10) -> float:
        return 0.0

    @property
    def pid(self) -> int | None:
        return 1 if self.server.httpd else None


class FakeLab:
    """The Lab handle's shape; commands run on this machine, every service is the one local server."""

    ROLES = {"client": "client", "dns": "dns", "server1": "server"}
    IPS = {"client": "10.0.0.1", "dns": "10.0.0.2", "server1": "10.0.0.10"}

    def __init__(self, design: str, params: dict[str, Any], server: LocalHttpServer, run_dir: Path):
        self.design, self.params, self.server, self.run_dir = design, params, server, run_dir
        self.run_id = "fake-" + design
        self.cores: dict[str, str] = {}
        self.events: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.firewall_requests: list[dict[str, Any]] = []

    @property
    def python(self) -> str:
        return sys.executable

    @property
    def entry_ip(self) -> str:
        return self.IPS["server1"]

    @property
    def cgroups(self) -> dict[str, Path]:
        return {}

    def hosts(self) -> list[str]:
        return list(self.ROLES)

    def role(self, host: str) -> str:
        return self.ROLES[host]

    def ip(self, host: str) -> str:
        return self.IPS[host]

    def address_on(self, host: str, peer: str) -> str:
        return self.IPS[host]  # one network

    def services(self, kind: str | None = None) -> list[tuple[str, str]]:
        every = [("dns", "dns"), ("server1", "mariadb"), ("server1", "webapp"), ("server1", "nginx")]
        return [s for s in every if kind is None or s[1] == kind]

    def policy(self) -> dict[str, Any]:
        return {"firewall": False, "hosts": [{"name": h, "role": r, "ips": [self.IPS[h]]} for h, r in self.ROLES.items()],
                "switches": [], "rules": []}

    def firewall(self, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        self.firewall_requests.append(request)
        return {"ok": True, "firewall": False, "rules": [], "default_deny": {"packets": 0, "bytes": 0}}

    def exec(self, host: str, argv: list[str], timeout: float = 30, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)

    def popen(self, host: str, argv: list[str], **kw: Any) -> subprocess.Popen:
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def service(self, host: str, kind: str) -> FakeService:
        return FakeService(self.server, self.events)

    def link_intfs(self, a: str, b: str) -> tuple[str, str]:
        return (f"{a}-eth0", f"{b}-eth1")

    def link_down(self, a: str, b: str) -> None:
        self.events.append("link_down")
        self.server.stop()

    def link_up(self, a: str, b: str) -> None:
        self.events.append("link_up")
        self.server.start()

    def capture(self, host: str, intf: str, pcap: str | Path, bpf: str | None = None, snaplen: int = 0,
                buffer_kib: int = 0) -> "FakeCapture":
        return FakeCapture(Path(pcap))

    def port_counters(self, host: str, switch: str) -> dict[str, int]:
        """The fake lab has no switch: every counter stays 0."""
        return {f"{side}_{k}": 0 for side in ("rx", "tx") for k in ("packets", "bytes", "dropped", "errors")}

    def teardown(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)


class FakeCapture:
    """A capture that writes an empty pcap (the fake lab has no wire)."""

    def __init__(self, path: Path):
        self.path = path

    def stop(self, timeout: float = 5.0) -> Path:
        from scapy.utils import wrpcap
        wrpcap(str(self.path), [])
        return self.path

    def stats(self) -> dict[str, int]:
        return {"captured": 0, "received": 0, "dropped": 0, "unwritten": 0, "lost": 0}


def fake_lab_factory(server: LocalHttpServer, run_dir: Path, fail: bool = False):
    """A lab_factory for runner.run(): yields a FakeLab (or raises like a lab that never became ready)."""
    @contextmanager
    def factory(design: str, params: dict[str, Any]) -> Iterator[FakeLab]:
        if fail:
            raise RuntimeError(f"lab {design} did not become ready (fake)")
        lab = FakeLab(design, params, server, run_dir)
        try:
            yield lab
        finally:
            lab.teardown()
    return factory
