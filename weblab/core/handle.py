"""The lab handle: everything an experiment (or an exercise check) may ask of a running lab.

Experiments import this protocol, never the orchestrator: `weblab.lab.Lab` satisfies it, and so does
the test double `experiments.testing.FakeLab` (tests/unit/test_handle.py checks both).
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ServiceHandle(Protocol):
    """One daemon of the lab: what faults and measurements do to it."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def restart(self) -> None: ...
    def wait_ready(self, timeout: float | None = None) -> float: ...

    @property
    def pid(self) -> int | None: ...


@runtime_checkable
class CaptureHandle(Protocol):
    """A running packet capture; stop() flushes it and returns the pcap."""

    path: Path

    def stop(self, timeout: float = 5.0) -> Path: ...
    def stats(self) -> dict[str, int]: ...   # tcpdump's counts once stopped: captured, received, dropped, unwritten, lost


@runtime_checkable
class LabHandle(Protocol):
    """A running lab, as experiments see it."""

    design: str                 # the design's name (one-server, distributed, secured, scaled)
    run_id: str                 # the lab run's id (its folder under /run/weblab)
    params: dict[str, Any]      # the design parameters it was built with
    cores: dict[str, str]       # host (or "*") -> CPU list it runs on

    @property
    def python(self) -> str: ...          # the interpreter that runs weblab's tools inside hosts

    @property
    def entry_ip(self) -> str: ...        # where clients reach the site (a host's address or a VIP)

    @property
    def cgroups(self) -> dict[str, Path]: ...  # host -> its CPU cgroup directory (CPU-limited hosts)

    def hosts(self) -> list[str]: ...
    def role(self, host: str) -> str: ...
    def ip(self, host: str) -> str: ...
    def address_on(self, host: str, peer: str) -> str: ...  # host's address on a network it shares with peer

    def exec(self, host: str, argv: list[str], timeout: float = 30,
             input: str | None = None) -> subprocess.CompletedProcess: ...
    def popen(self, host: str, argv: list[str], **kw: Any) -> subprocess.Popen: ...

    def services(self, kind: str | None = None) -> list[tuple[str, str]]: ...  # (host, kind) pairs
    def service(self, host: str, kind: str) -> Any: ...   # a ServiceHandle, with the daemon's own methods

    def link_intfs(self, a: str, b: str) -> tuple[str, str]: ...
    def link_down(self, a: str, b: str) -> None: ...
    def link_up(self, a: str, b: str) -> None: ...
    def capture(self, host: str, intf: str, pcap: str | Path, bpf: str | None = None, snaplen: int = 0,
                buffer_kib: int = 0) -> CaptureHandle: ...
    def port_counters(self, host: str, switch: str) -> dict[str, int]: ...  # rx_/tx_ packets, bytes, dropped

    def policy(self) -> dict[str, Any]: ...                  # the firewall policy the controller enforces
    def firewall(self, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]: ...  # a controller op
