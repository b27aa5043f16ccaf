"""What an attack tool did, one JSON object a line (the experiment's raw data), optionally echoed."""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import IO, Any


class EventLog:
    """Thread-safe JSON-lines log: every event has a wall-clock time `t` and a name `event`."""

    def __init__(self, stream: IO[str] | None = None, echo: IO[str] | None = None):
        self.stream, self.echo = stream, echo
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def __call__(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"t": round(time.time(), 6), "event": event, **fields}
        with self.lock:
            self.counts[event] = self.counts.get(event, 0) + 1
            if self.stream is not None:
                self.stream.write(json.dumps(record, default=str) + "\n")
                self.stream.flush()
        return record

    def say(self, line: str) -> None:
        """A line for the person watching (stdout of `weblab attack`), if anyone is."""
        if self.echo is not None:
            with self.lock:
                print(line, file=self.echo, flush=True)


def read_events(path: Any) -> list[dict[str, Any]]:
    """The events of a log file (a truncated last line, from a killed tool, is skipped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM, SIGINT or SIGHUP: the tool then stops and undoes what it did."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def stamp(t: float) -> str:
    """HH:MM:SS.mmm of a wall-clock time."""
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def fail(message: str) -> int:
    """One line on stderr and the exit status of a refused or failed start."""
    print(f"attack: {message}", file=sys.stderr, flush=True)
    return 2
