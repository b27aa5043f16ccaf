"""Process handles that survive their creator: pid + start time, process groups, bounded stops."""
from __future__ import annotations

import os
import signal as _signal
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Callable

Runner = Callable[[list[str]], tuple[int, str]]


def start_time(pid: int) -> int | None:
    """The kernel's start time of pid (clock ticks since boot), or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[19])


def is_zombie(pid: int) -> bool:
    """True if pid has exited but was not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return False
    return data[data.rindex(")") + 2:].split()[0] == "Z"


@dataclass
class ProcRef:
    """A process this run started, identified by pid and start time so a reused pid is never hit."""

    name: str
    pid: int
    start: int
    group: bool = True  # the process leads its own process group: signal the whole group
    host: str = ""

    @classmethod
    def of(cls, name: str, pid: int, group: bool = True, host: str = "") -> "ProcRef":
        """Record a process that is running now (never init: signalling its "group" would be
        kill(-1), every process of the machine)."""
        if pid <= 1:
            raise ValueError(f"{name}: pid {pid} is not a process weblab may record")
        st = start_time(pid)
        if st is None:
            raise ProcessLookupError(f"{name}: process {pid} exited before it could be recorded")
        return cls(name=name, pid=pid, start=st, group=group, host=host)

    def alive(self) -> bool:
        """True while the very process we started is still there (and not a zombie)."""
        return start_time(self.pid) == self.start and not is_zombie(self.pid)

    def signal(self, sig: int) -> None:
        """Send sig to the process (or its group) if it is still ours."""
        if self.pid <= 1 or start_time(self.pid) != self.start:  # killpg(1) is kill(-1): everything
            return
        try:
            if self.group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 5.0, sig: int = _signal.SIGTERM) -> bool:
        """TERM, wait up to timeout, then KILL; True if it ended by the first signal."""
        if not self.alive():
            return True
        self.signal(sig)
        if wait_gone(self, timeout):
            return True
        self.signal(_signal.SIGKILL)
        wait_gone(self, 2.0)
        return False

    def to_dict(self) -> dict:
        return asdict(self)


def wait_gone(ref: ProcRef, timeout: float) -> bool:
    """Wait (bounded) until ref has exited; reaps it if it is our child."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(ref.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not ref.alive():
            return True
        time.sleep(0.02)
    return not ref.alive()


def run_quiet(argv: list[str], timeout: float = 10) -> tuple[int, str]:
    """Run argv without a shell; (exit code, its output) with 127 if missing and 124 on timeout."""
    try:
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return 127, f"{argv[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]}: no answer after {timeout:.0f} s"
    return res.returncode, (res.stderr or res.stdout).strip()
