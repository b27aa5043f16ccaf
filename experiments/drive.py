"""Running the measuring tools inside lab hosts: start, wait for first data, stop, all bounded."""
from __future__ import annotations

import csv
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent / "tools"


def tool_argv(lab: Any, tool: str, args: list[str]) -> list[str]:
    """The venv python running experiments/tools/<tool>.py by path (works without installing weblab)."""
    return [lab.python, str(TOOLS / f"{tool}.py"), *args]


def start_tool(lab: Any, host: str, tool: str, args: list[str], log: Path) -> subprocess.Popen:
    """Start a tool in host; its stdout goes to log, stderr to log + '.err'."""
    out = open(log, "w")
    err = open(f"{log}.err", "w")
    try:
        return lab.popen(host, tool_argv(lab, tool, args), stdout=out, stderr=err, text=True)
    finally:
        out.close()
        err.close()


def start_probe(lab: Any, out: Path, url: str, duration: float, interval: float, timeout: float
                ) -> tuple[subprocess.Popen, Path]:
    """The availability probe (tools/probe.py) in client, writing out/probe.csv; returns it and that path."""
    csv_path = out / "probe.csv"
    proc = start_tool(lab, "client", "probe", [
        "--url", url, "--out", str(csv_path), "--duration", str(duration),
        "--interval", str(interval), "--timeout", str(timeout)], out / "probe.log")
    return proc, csv_path


def wait_rows(csv_path: Path, rows: int = 1, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    """Block until csv_path has a header and `rows` data lines; RuntimeError after timeout or if proc died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(csv_path) as f:
                if sum(1 for _ in f) > rows:
                    return
        except FileNotFoundError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{csv_path.name}: tool exited with {proc.returncode} before writing data "
                               f"(see {csv_path.parent})")
        time.sleep(0.02)  # bounded poll for the first data line, the tool's readiness signal
    raise RuntimeError(f"{csv_path} got no data within {timeout:.0f} s (see the tool's .err log beside it)")


def wait_healthy(csv_path: Path, consecutive: int = 25, timeout: float = 10.0, kinds: tuple[str, ...] = (),
                 proc: subprocess.Popen | None = None) -> bool:
    """Block (bounded) until the `consecutive` latest-sent answered requests of a tool's CSV all succeeded
    (of each kind, for a mix); False after timeout. A lab is ready when its daemons answer; the first
    requests through it can still meet a cold path (first connections, ARP, the app's first queries):
    an experiment waits for the site to be healthy before its baseline, and judges the baseline from here."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{csv_path.name}: tool exited with {proc.returncode} (see {csv_path.parent})")
        if _latest_ok(csv_path, consecutive, kinds):
            return True
        time.sleep(0.05)  # bounded poll of the tool's CSV
    return False


def _latest_ok(csv_path: Path, n: int, kinds: tuple[str, ...]) -> bool:
    try:
        with open(csv_path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("t_send")]
    except FileNotFoundError:
        return False
    rows.sort(key=lambda r: float(r["t_send"]))
    for kind in kinds or ("",):
        mine = [r for r in rows if not kind or r.get("kind") == kind][-n:]
        if len(mine) < n or not all(r.get("ok") == "1" for r in mine):
            return False
    return True


def finish(proc: subprocess.Popen, timeout: float, name: str, terminate: bool = False) -> int:
    """Wait for a tool (SIGTERM first if terminate), bounded; SIGKILL as a last resort; returns its exit code."""
    if terminate and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
        raise RuntimeError(f"{name} did not finish within {timeout:.0f} s and was killed")


def pause(seconds: float) -> None:
    """A scheduled phase of the experiment (baseline, fault, recovery): the timetable, not a readiness wait."""
    time.sleep(max(0.0, seconds))
