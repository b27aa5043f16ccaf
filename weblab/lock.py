"""One lab at a time per machine: an flock held by the process that holds the lab."""
from __future__ import annotations

import fcntl
import json
import os

from weblab.core import paths
from weblab.core.errors import WeblabError


class LabLock:
    """The machine-wide lab lock; released automatically when its holder dies."""

    def __init__(self) -> None:
        self.fd: int | None = None

    def acquire(self, run_id: str, design: str) -> None:
        """Take the lock or raise an error naming the running lab."""
        paths.RUN_ROOT.mkdir(parents=True, exist_ok=True)
        fd = os.open(paths.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder()
            os.close(fd)
            raise WeblabError(running_message(holder)) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"run_id": run_id, "design": design, "pid": os.getpid()}).encode())
        self.fd = fd

    def release(self) -> None:
        """Give the lock up (the file stays; its content is stale once unlocked)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_holder() -> dict | None:
    """Who holds (or last held) the lock."""
    try:
        return json.loads(paths.LOCK_FILE.read_text() or "null")
    except (OSError, ValueError):
        return None


def is_held() -> bool:
    """True if some process holds the lab lock now."""
    if not paths.LOCK_FILE.exists():
        return False
    fd = os.open(paths.LOCK_FILE, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def running_message(holder: dict | None) -> str:
    """The error for a second lab."""
    if not holder:
        return "another lab is running; stop it first with: sudo weblab down"
    return (f"a lab is already running: {holder.get('design')} (lab {holder.get('run_id')}, "
            f"pid {holder.get('pid')}); stop it first with: sudo weblab down")
