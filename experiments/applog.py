"""The app server's own record of what reached it: slices of gunicorn's access log, counted afterwards.

Raw file written here: app-<name>-<host>.log, the access-log lines gunicorn wrote on host while the
block ran (the counts of "app-server requests" come from these, never from the client).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# gunicorn's default access format: h l u [t] "r" s b "f" "a"
LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<target>\S+) [^"]*" (?P<status>\d{3}) \S+'
                  r'(?: "[^"]*" "(?P<agent>[^"]*)")?')


def access_log(lab: Any, host: str) -> Path:
    """The access log of the app server (webapp service) on host."""
    return Path(lab.service(host, "webapp").dir) / "access.log"


class AccessSlice:
    """Context manager: copy what the app servers on hosts append to their access logs inside the block to
    out/app-<name>-<host>.log (gunicorn writes each line as it answers)."""

    def __init__(self, lab: Any, hosts: list[str], out: Path, name: str):
        self.logs = {h: access_log(lab, h) for h in hosts}
        self.out, self.name = Path(out), name
        self.start: dict[str, int] = {}

    def __enter__(self) -> "AccessSlice":
        self.start = {h: p.stat().st_size if p.exists() else 0 for h, p in self.logs.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        for h, p in self.logs.items():
            data = b""
            if p.exists():
                with open(p, "rb") as f:
                    f.seek(self.start[h])
                    data = f.read()
            (self.out / slice_name(self.name, h)).write_bytes(data)


def slice_name(name: str, host: str) -> str:
    return f"app-{name}-{host}.log"


def count(path: Path, method: str = "GET", target: str | re.Pattern[str] = "/", agent: str | None = None) -> int:
    """Lines of an access-log slice for method and a request target (exact string, or a regex it must match
    in full, query included); agent: only requests with this User-Agent (Nginx passes the client's on, so a
    load generator's requests are told from a previous load's tail and from health checks)."""
    n = 0
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if not m or m.group("method") != method or (agent is not None and m.group("agent") != agent):
                continue
            t = m.group("target")
            if (t == target) if isinstance(target, str) else bool(target.fullmatch(t)):
                n += 1
    return n


def count_all(raw: Path, name: str, method: str = "GET", target: str | re.Pattern[str] = "/",
              agent: str | None = None) -> dict[str, int]:
    """Per host, the count of one slice name over every app-<name>-<host>.log in raw."""
    prefix = f"app-{name}-"
    return {p.name[len(prefix):-len(".log")]: count(p, method, target, agent)
            for p in sorted(Path(raw).glob(f"{prefix}*.log"))}
