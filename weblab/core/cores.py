"""Placing a lab on CPUs: chosen hosts on cores of their own, the rest of the lab ("*") on others.

A CPU quota (--cpu) caps how much a host may use, but on a machine of few cores a host that burns its
quota still runs on the same cores as every other host, and delays their wake-ups: a coupling that
separate real servers do not have. Pinning (CPU affinity, inherited by every thread and child) gives a
host cores of its own. "*" places everything else the lab starts - the other hosts' processes, the
switch (ovs-vswitchd, ovsdb-server) and the SDN controller - so that nothing of the lab shares the
pinned hosts' cores.
"""
from __future__ import annotations

import os
import shutil

from weblab.core.errors import WeblabError

REST = "*"  # every host not named, and the lab's own daemons (switch, controller)


def parse_cpulist(text: str) -> list[int]:
    """'1', '0-2', '0,2-3' -> sorted CPU numbers (the kernel's cpulist format, as taskset -c takes)."""
    cpus: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"{text!r} is not a CPU list (examples: 1, 0-1, 0,2-3)")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"{text!r}: range {part} runs backwards")
        cpus.update(range(a, b + 1))
    return sorted(cpus)


def validate(cores: dict[str, str], hosts: list[str], available: set[int] | None = None) -> dict[str, str]:
    """Check a host -> CPU list map before anything starts; returns it with canonical values."""
    if not cores:
        return {}
    unknown = set(cores) - set(hosts) - {REST}
    if unknown:
        raise WeblabError(f"--cores for unknown host(s) {', '.join(sorted(unknown))}; hosts: "
                          f"{', '.join(sorted(hosts))}, or {REST} for the rest of the lab")
    available = set(os.sched_getaffinity(0)) if available is None else available
    out: dict[str, str] = {}
    for host, text in cores.items():
        try:
            cpus = parse_cpulist(text)
        except ValueError as e:
            raise WeblabError(f"--cores {host}={text}: {e}") from None
        missing = [c for c in cpus if c not in available]
        if missing:
            raise WeblabError(f"--cores {host}={text}: CPU(s) {missing} are not available here; this "
                              f"process may use CPUs {','.join(map(str, sorted(available)))}")
        out[host] = ",".join(map(str, cpus))
    if shutil.which("taskset") is None:
        raise WeblabError("--cores needs taskset (package util-linux): sudo make install")
    return out


def for_host(cores: dict[str, str], host: str) -> str | None:
    """The CPU list a host's processes run on, or None for no pinning."""
    return cores.get(host, cores.get(REST))


def wrap(argv: list[str], cpus: str | None) -> list[str]:
    """argv run on cpus (taskset sets the affinity, then execs: same pid, inherited by children)."""
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)
