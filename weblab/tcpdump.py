"""Packet captures inside a host: tcpdump writing pcap files that Wireshark and Scapy read."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from weblab.core.errors import NotReady


def tcpdump_argv(intf: str, path: Path, bpf: str | None = None, count: int | None = None,
                 snaplen: int = 0) -> list[str]:
    """tcpdump writing a pcap of intf as it arrives (-U, --immediate-mode: nothing lost at stop)."""
    argv = ["tcpdump", "-i", intf, "-U", "--immediate-mode", "-n", "-s", str(snaplen), "-w", str(path)]
    if count:
        argv += ["-c", str(count)]
    return argv + (bpf.split() if bpf else [])


class Capture:
    """A running tcpdump; stop() flushes the file and returns its path."""

    def __init__(self, proc: subprocess.Popen, path: Path, errlog: Path):
        self.proc, self.path, self.errlog = proc, path, errlog

    @classmethod
    def start(cls, lab, host: str, intf: str, path: Path, bpf: str | None = None,
              timeout: float = 5.0) -> "Capture":
        """Start tcpdump and wait (bounded) until it is listening, so no early packet is missed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        errlog = path.with_suffix(".tcpdump.log")
        argv = tcpdump_argv(intf, path, bpf)
        with open(errlog, "wb") as err:
            proc = lab.popen(host, argv, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while "listening on" not in errlog.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise NotReady(f"tcpdump on {host}:{intf} did not start: {errlog.read_text().strip()}")
            time.sleep(0.02)
        return cls(proc, path, errlog)

    def stop(self, timeout: float = 5.0) -> Path:
        """Stop tcpdump (it flushes on SIGINT) and return the pcap path."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.path
