"""Packet captures inside a host: tcpdump writing pcap files that Wireshark and Scapy read."""
from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

from weblab.core.errors import NotReady


def tcpdump_argv(intf: str, path: Path, bpf: str | None = None, count: int | None = None,
                 snaplen: int = 0, buffer_kib: int = 0) -> list[str]:
    """tcpdump writing a pcap of intf as it arrives (-U, --immediate-mode: nothing lost at stop); with
    buffer_kib, a kernel buffer that large and batched writes instead of one per packet (for high
    packet rates: the file is complete once tcpdump has stopped)."""
    argv = ["tcpdump", "-i", intf, "--immediate-mode", "-n", "-s", str(snaplen), "-w", str(path)]
    argv += ["-B", str(buffer_kib)] if buffer_kib else ["-U"]
    if count:
        argv += ["-c", str(count)]
    return argv + (bpf.split() if bpf else [])


class Capture:
    """A running tcpdump; stop() flushes the file and returns its path."""

    def __init__(self, proc: subprocess.Popen, path: Path, errlog: Path):
        self.proc, self.path, self.errlog = proc, path, errlog

    @classmethod
    def start(cls, lab, host: str, intf: str, path: Path, bpf: str | None = None,
              timeout: float = 5.0, snaplen: int = 0, buffer_kib: int = 0) -> "Capture":
        """Start tcpdump and wait (bounded) until it is listening, so no early packet is missed.

        snaplen: bytes kept of each frame (0: all). buffer_kib: a kernel buffer that large and writes
        batched (for high packet rates; the file is complete once stop() returns); 0: every packet
        written as it comes (the file can be read while the capture runs)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        errlog = path.with_suffix(".tcpdump.log")
        argv = tcpdump_argv(intf, path, bpf, snaplen=snaplen, buffer_kib=buffer_kib)
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

    def stats(self) -> dict[str, int]:
        """tcpdump's own counts once stopped (captured, received, dropped, lost = dropped + not written)."""
        return tcpdump_stats(self.errlog.read_text(errors="replace") if self.errlog.exists() else "")


def tcpdump_stats(text: str) -> dict[str, int]:
    """The summary tcpdump prints at exit: packets captured, received by filter, dropped by kernel and by
    interface; `unwritten`: received but never written (those in flight as it stopped); `lost`: all of
    these. Empty if it printed no summary."""
    out: dict[str, int] = {}
    for key, pattern in (("captured", r"(\d+) packets? captured"), ("received", r"(\d+) packets? received by filter"),
                         ("dropped", r"(\d+) packets? dropped by kernel"),
                         ("dropped_interface", r"(\d+) packets? dropped by interface")):
        m = re.search(pattern, text)
        if m:
            out[key] = int(m.group(1))
    if "captured" in out:
        out["unwritten"] = max(0, out.get("received", out["captured"]) - out["captured"])
        out["lost"] = out.get("dropped", 0) + out.get("dropped_interface", 0) + out["unwritten"]
    return out
