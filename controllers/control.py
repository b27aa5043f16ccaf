"""The live-control socket: a unix stream socket speaking one JSON object per line each way."""
from __future__ import annotations

import json
import logging
import os
import socket
import stat
from typing import Any, Callable

from os_ken.lib import hub

LOG = logging.getLogger(__name__)
MAX_LINE = 64 * 1024

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def bind(path: str) -> socket.socket:
    """A listening unix socket at path (a stale socket file there is replaced)."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"{path} exists and is not a socket")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o660)
    sock.listen(16)
    return sock


def serve(sock: socket.socket, handler: Handler) -> None:
    """Accept clients forever, each in its own hub thread."""
    while True:
        conn, _addr = sock.accept()
        hub.spawn(_serve_client, conn, handler)


def _serve_client(conn: socket.socket, handler: Handler) -> None:
    """Answer each request line of one client with one reply line."""
    with conn, conn.makefile("rwb") as stream:
        while True:
            line = stream.readline(MAX_LINE + 1)
            if not line:
                return
            reply = _answer(line, handler)
            stream.write(json.dumps(reply).encode() + b"\n")
            stream.flush()


def _answer(line: bytes, handler: Handler) -> dict[str, Any]:
    """The reply to one request line; never raises."""
    if len(line) > MAX_LINE:
        return {"ok": False, "error": f"request longer than {MAX_LINE} bytes"}
    try:
        request = json.loads(line)
    except ValueError as err:
        return {"ok": False, "error": f"not JSON: {err}"}
    if not isinstance(request, dict):
        return {"ok": False, "error": "request must be a JSON object"}
    try:
        return handler(request)
    except Exception as err:  # a bug must not kill the control socket
        LOG.exception("control request %r failed", request)
        return {"ok": False, "error": f"internal error: {type(err).__name__}: {err}"}
