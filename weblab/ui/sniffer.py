"""A link's live packet summary in the view: `weblab sniff` run inside the host at the link's end, through
the lab's control socket (so the lab records the process and removes it), its output read from its log."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from weblab.core.errors import WeblabError
from weblab.core.proc import ProcRef
from weblab.core.state import RunState

MAX_SECONDS = 300     # a sniffer nobody stops stops by itself
MAX_LINES = 200
NAME = "ui-sniff"


class Sniffer:
    """At most one sniffer at a time; start() replaces the running one."""

    def __init__(self, state: RunState, ends: dict[str, tuple[str, str]]):
        self.state, self.ends = state, ends
        self.lock = threading.Lock()
        self.ref: ProcRef | None = None
        self.log: Path | None = None
        self.offset = 0
        self.link = ""
        self.grep = ""

    def start(self, link: str, grep: str = "") -> dict[str, Any]:
        from weblab import control, sniff
        if link not in self.ends:
            raise WeblabError(f"no link {link!r}; links: {', '.join(sorted(self.ends))}")
        if len(grep) > 100:
            raise WeblabError("the filter is at most 100 characters")
        host, intf = self.ends[link]
        with self.lock:
            self._stop()
            log = self.state.dir / "spawned" / f"{NAME}.log"
            offset = log.stat().st_size if log.exists() else 0
            reply = control.request(self.state, {"op": "spawn", "host": host, "name": NAME,
                                                 "argv": sniff.argv(intf, grep or None, duration=MAX_SECONDS)})
            try:
                self.ref = ProcRef.of(NAME, int(reply["pid"]), host=host)
            except ProcessLookupError:
                self.ref = None
            self.log, self.offset, self.link, self.grep = Path(reply["log"]), offset, link, grep
        return self.status()

    def _stop(self) -> None:
        from weblab import control
        if self.ref is not None and self.ref.alive():
            try:
                control.request(self.state, {"op": "stop-process", "pid": self.ref.pid}, timeout=10)
            except WeblabError:
                pass
        self.ref = None

    def stop(self) -> dict[str, Any]:
        with self.lock:
            self._stop()
        return self.status()

    def status(self) -> dict[str, Any]:
        lines: list[str] = []
        if self.log is not None and self.log.exists():
            with open(self.log, "rb") as f:
                f.seek(self.offset)
                data = f.read(1 << 20)
            lines = data.decode(errors="replace").splitlines()[-MAX_LINES:]
        running = self.ref is not None and self.ref.alive()
        return {"link": self.link, "grep": self.grep, "running": running, "lines": lines,
                "host": self.ends.get(self.link, ("", ""))[0], "intf": self.ends.get(self.link, ("", ""))[1]}
