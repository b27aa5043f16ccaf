"""The live-control socket: a unix stream socket speaking one JSON object per line each way."""
from __future__ import annotations

import socket

from os_ken.lib import hub

from weblab.core import jsonline
from weblab.core.jsonline import Handler


def bind(path: str) -> socket.socket:
    """A listening unix socket at path (a stale socket file there is replaced)."""
    return jsonline.bind(path, mode=0o660)


def serve(sock: socket.socket, handler: Handler) -> None:
    """Accept clients forever, each in its own hub thread."""
    while True:
        conn, _addr = sock.accept()
        hub.spawn(jsonline.serve_client, conn, handler)
