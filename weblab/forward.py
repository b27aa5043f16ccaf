"""`weblab forward HOST:PORT`: reach a lab service from the machine's 127.0.0.1, and nowhere else.

The listening socket lives in the root namespace bound to 127.0.0.1; the connections into the lab
are opened by one thread that has entered the host's network namespace (setns is per thread, and
a socket stays in the namespace it was created in). Nothing is routed or NATed.
"""
from __future__ import annotations

import ctypes
import os
import queue
import selectors
import socket
import threading
from typing import Callable

CLONE_NEWNET = 0x40000000
MAX_CONNECTIONS = 64


def enter_netns(pid: int) -> None:
    """Move the calling thread into the network namespace of pid."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into the network namespace of pid {pid}: {os.strerror(err)}")
    finally:
        os.close(fd)


class Connector:
    """A thread inside the host's namespace that opens TCP connections on request."""

    def __init__(self, pid: int):
        self.requests: queue.Queue = queue.Queue()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(pid,), daemon=True)
        self.thread.start()
        if not self.ready.wait(5):
            raise TimeoutError("the namespace thread did not start")
        if self.error:
            raise self.error

    def _run(self, pid: int) -> None:
        try:
            enter_netns(pid)
        except BaseException as e:
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        while True:
            item = self.requests.get()
            if item is None:
                return
            (addr, reply) = item
            try:
                reply.put(socket.create_connection(addr, timeout=5))
            except OSError as e:
                reply.put(e)

    def connect(self, addr: tuple[str, int]) -> socket.socket:
        """A connected socket inside the lab host."""
        reply: queue.Queue = queue.Queue()
        self.requests.put((addr, reply))
        result = reply.get(timeout=10)
        if isinstance(result, BaseException):
            raise result
        result.settimeout(None)
        return result


def relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    try:
        while True:
            for key, _ in sel.select():
                data = key.fileobj.recv(65536)
                if not data:
                    return
                key.data.sendall(data)
    except OSError:
        return
    finally:
        sel.close()
        a.close()
        b.close()


def serve(pid: int, target: tuple[str, int], local_port: int,
          announce: Callable[[int], None] = lambda port: None, stop: threading.Event | None = None) -> None:
    """Listen on 127.0.0.1:local_port and forward each connection to target inside the host."""
    connector = Connector(pid)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", local_port))
    except OSError as e:
        connector.requests.put(None)
        listener.close()
        from weblab.core.errors import WeblabError
        raise WeblabError(f"cannot listen on 127.0.0.1:{local_port}: {e.strerror}; "
                          f"pick another with --local PORT (or 0 for any)") from None
    listener.listen(16)
    listener.settimeout(0.5)
    announce(listener.getsockname()[1])
    active: list[threading.Thread] = []
    try:
        while stop is None or not stop.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            active = [t for t in active if t.is_alive()]
            if len(active) >= MAX_CONNECTIONS:
                client.close()
                continue
            try:
                upstream = connector.connect(target)
            except OSError:
                client.close()
                continue
            t = threading.Thread(target=relay, args=(client, upstream), daemon=True)
            t.start()
            active.append(t)
    finally:
        listener.close()
        connector.requests.put(None)
