"""What the load tools share: where they send (one URL resolved once, connections to it over HTTP or
HTTPS), how they read a response, and the CSV they write from many threads.

Stdlib only (the tools run by file path inside lab hosts). The address is resolved once, so DNS
is not measured with every request; HTTPS verifies the certificate against the host's trust store
(inside a lab host: the run's CA) for the URL's name, with SNI, although the socket goes to the
resolved address.
"""
from __future__ import annotations

import csv
import http.client
import socket
import ssl
import threading
from typing import IO
from urllib.parse import urlsplit


class Target:
    """scheme, name, address, port and path of a URL, and a factory of connections to it."""

    def __init__(self, url: str):
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise SystemExit(f"--url must be an http:// or https:// URL with a host, not {url!r}")
        self.scheme, self.host = u.scheme, u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.ip = socket.getaddrinfo(self.host, self.port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        self.context = ssl.create_default_context() if self.scheme == "https" else None

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        """A new (not yet connected) connection to the resolved address."""
        if self.context is None:
            return http.client.HTTPConnection(self.ip, self.port, timeout=timeout)
        return _Tls(self.ip, self.port, timeout, self.context, self.host)


SERVED_BY = ("X-Served-By", "X-Backend-Server", "X-Web-Server")


def exchange(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str],
             body: str | None = None) -> tuple[int | None, str, str]:
    """One request on conn, which is closed after: (status, the server that answered, error)."""
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        served = next((resp.getheader(h) for h in SERVED_BY if resp.getheader(h)), "") or ""
        return resp.status, served, ""
    except (OSError, http.client.HTTPException) as exc:
        return None, "", f"{type(exc).__name__}: {exc}"[:120].replace("\n", " ")
    finally:
        conn.close()


class _Tls(http.client.HTTPSConnection):
    """HTTPS to an address, verified (and SNI sent) for a name."""

    def __init__(self, ip: str, port: int, timeout: float, context: ssl.SSLContext, name: str):
        super().__init__(ip, port, timeout=timeout, context=context)
        self._name = name
        self._ctx = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._name)


class RowLog:
    """A CSV file written by many threads: the header first, then each row flushed as it is logged
    (the runner reads the file while the tool runs: its first row is the tool's readiness signal)."""

    def __init__(self, f: IO[str], fields: list[str]):
        self.f, self.writer, self.lock = f, csv.writer(f), threading.Lock()
        self(fields)

    def __call__(self, row: list[object]) -> None:
        with self.lock:
            self.writer.writerow(row)
            self.f.flush()
