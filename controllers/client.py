"""Client of the controller's control socket (used by the weblab CLI)."""
from __future__ import annotations

import json
import socket
from typing import Any


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
        raise ControlError(f"controller control socket {sock_path}: {err}") from err
    try:
        reply = json.loads(data)
    except ValueError as err:
        raise ControlError(f"controller control socket {sock_path}: "
                           f"bad reply {data[:200]!r}") from err
    if not isinstance(reply, dict):
        raise ControlError(f"controller control socket {sock_path}: bad reply {reply!r}")
    return reply
