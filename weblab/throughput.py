"""`weblab throughput LINK`: capture a link of the running lab at its host end for a while, then
hand the pcap to an analysis (the CLI passes experiments.throughput's; this layer runs no analysis).

tcpdump runs inside the host with a snaplen (headers are all a throughput analysis reads), a large
kernel buffer and batched writes, so a busy link is captured whole; its own drop count is reported.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from weblab import links, running
from weblab.core import paths
from weblab.core.errors import WeblabError
from weblab.core.state import RunState
from weblab.tcpdump import tcpdump_argv, tcpdump_stats

MAX_DURATION = 3600.0
BUFFER_KIB = 32768


@dataclass
class LiveCapture:
    """A finished live capture: where, how long, tcpdump's counts, and the analysis of its pcap."""

    link: str
    host: str
    intf: str
    local: str                  # the host's MAC on that link ("out" = what it sent)
    seconds: float
    pcap: Path | None           # kept only when asked for
    stats: dict[str, int] = field(default_factory=dict)
    result: Any = None

    def describe(self) -> str:
        """One line: what was captured, and whether tcpdump dropped packets."""
        s = self.stats
        dropped = s.get("dropped", 0) + s.get("dropped_interface", 0)
        counts = (f"{s.get('captured', '?')} packets captured, "
                  + (f"{dropped} DROPPED by tcpdump (the figures are too low)" if dropped else "none dropped"))
        if s.get("unwritten"):
            counts += f"; {s['unwritten']} more arrived as it stopped (not in the pcap)"
        kept = f"; pcap kept in {self.pcap}" if self.pcap else ""
        return f"{self.link} on {self.host}:{self.intf} for {self.seconds:.1f} s: {counts}{kept}"


def check_duration(duration: float) -> float:
    """A capture length in seconds: > 0 and at most an hour."""
    if not 0 < duration <= MAX_DURATION:
        raise WeblabError(f"--duration {duration:g} s: give a length between 0 and {MAX_DURATION:.0f} seconds")
    return float(duration)


def host_mac(state: RunState, host: str, intf: str) -> str:
    """The MAC address of intf inside host ('' if it cannot be read)."""
    res = subprocess.run(running.host_argv(state, host, ["ip", "-o", "link", "show", "dev", intf]),
                         capture_output=True, text=True, timeout=5)
    m = re.search(r"link/ether ([0-9a-f:]{17})", res.stdout)
    return m.group(1) if m else ""


def measure(state: RunState, link: str, duration: float, analyse: Callable[..., Any], snaplen: int = 128,
            keep: str | Path | None = None, say: Callable[[str], None] | None = None) -> LiveCapture:
    """Capture link for duration seconds (Ctrl-C ends it early), then analyse(pcap, local=MAC).

    The pcap is written to keep if given, else to a temporary file in the run's directory that is
    removed once analysed."""
    check_duration(duration)
    if not 0 <= snaplen <= 262144:
        raise WeblabError(f"--snaplen {snaplen}: give 0 (whole frames) or a byte count up to 262144")
    host, intf = links.resolve(state, link)
    mac = host_mac(state, host, intf)
    if keep:
        pcap = Path(keep).resolve()
        if not pcap.parent.is_dir():
            raise WeblabError(f"cannot write {pcap}: {pcap.parent} is not a directory")
    else:
        where = paths.run_dir(state.run_id) / "captures"
        where.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"throughput-{link.replace(':', '-')}-", suffix=".pcap", dir=where)
        os.close(fd)
        pcap = Path(name)
    err = tempfile.TemporaryFile()
    argv = tcpdump_argv(intf, pcap, snaplen=snaplen, buffer_kib=BUFFER_KIB)
    proc = subprocess.Popen(running.host_argv(state, host, argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=err, start_new_session=True)
    t0 = time.monotonic()
    try:
        _wait_listening(proc, err, host, intf)
        (say or _say)(f"capturing {link} on {host}:{intf} for {duration:g} s (snaplen {snaplen}; Ctrl-C stops early)")
        t0 = time.monotonic()
        try:
            proc.wait(timeout=duration)
        except subprocess.TimeoutExpired:
            pass
        except KeyboardInterrupt:
            pass  # stop early: what was captured is still analysed
        seconds = time.monotonic() - t0
    finally:
        _stop(proc)
    err.seek(0)
    text = err.read().decode(errors="replace")
    err.close()
    if proc.returncode not in (0, -signal.SIGINT, 128 + signal.SIGINT) and "captured" not in text:
        if not keep:
            pcap.unlink(missing_ok=True)
        raise WeblabError(f"tcpdump on {host}:{intf} failed: {text.strip().splitlines()[-1] if text.strip() else proc.returncode}")
    cap = LiveCapture(link, host, intf, mac, seconds, pcap if keep else None, tcpdump_stats(text))
    try:
        cap.result = analyse(pcap, local=mac or None)
    finally:
        if not keep:
            pcap.unlink(missing_ok=True)
    return cap


def _wait_listening(proc: subprocess.Popen, err, host: str, intf: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        err.seek(0)
        text = err.read().decode(errors="replace")
        if "listening on" in text:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise WeblabError(f"tcpdump on {host}:{intf} did not start: {text.strip() or 'no output'}")
        time.sleep(0.02)  # bounded poll: tcpdump's only readiness signal is that line


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT (tcpdump flushes and prints its counts), bounded, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
