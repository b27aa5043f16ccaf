"""One JSON object per line each way over a Unix stream socket: the protocol of weblab's control
sockets (the SDN controller's and the lab's own). Client and the server-side answer, no I/O loop."""
from __future__ import annotations

import json
import logging
import os
import socket
import stat
from typing import Any, Callable

LOG = logging.getLogger(__name__)
MAX_LINE = 64 * 1024

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlError(RuntimeError):
    """The control socket could not be reached or answered garbage."""


def request(sock_path: str, obj: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request object, return the reply object ({"ok": bool, ...})."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(sock_path)
            sock.sendall(json.dumps(obj).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as err:
        raise ControlError(f"control socket {sock_path}: {err}") from err
    try:
        reply = json.loads(data)
    except ValueError as err:
        raise ControlError(f"control socket {sock_path}: bad reply {data[:200]!r}") from err
    if not isinstance(reply, dict):
        raise ControlError(f"control socket {sock_path}: bad reply {reply!r}")
    return reply


def answer(line: bytes, handler: Handler) -> dict[str, Any]:
    """The reply to one request line; never raises."""
    if len(line) > MAX_LINE:
        return {"ok": False, "error": f"request longer than {MAX_LINE} bytes"}
    try:
        req = json.loads(line)
    except ValueError as err:
        return {"ok": False, "error": f"not JSON: {err}"}
    if not isinstance(req, dict):
        return {"ok": False, "error": "request must be a JSON object"}
    try:
        return handler(req)
    except Exception as err:  # a bug must not kill the control socket
        LOG.exception("control request %r failed", req)
        return {"ok": False, "error": f"internal error: {type(err).__name__}: {err}"}


def bind(path: str, mode: int = 0o600) -> socket.socket:
    """A listening unix socket at path (a stale socket file there is replaced), with file mode `mode`."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"{path} exists and is not a socket")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)  # never readable by others, not even between bind and chmod
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, mode)
    sock.listen(16)
    return sock


def serve_client(conn: socket.socket, handler: Handler) -> None:
    """Answer each request line of one client with one reply line, until it hangs up."""
    with conn, conn.makefile("rwb") as stream:
        while True:
            line = stream.readline(MAX_LINE + 1)
            if not line:
                return
            stream.write(json.dumps(answer(line, handler)).encode() + b"\n")
            stream.flush()
