"""Integration fixtures: real labs started the way a user starts them, checked for leftovers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from weblab.core import paths
from weblab.core.proc import ProcRef

CLI = [sys.executable, "-m", "weblab"]


def weblab(*args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
    """Run the weblab CLI as a user would (bounded)."""
    res = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"weblab {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def running_state() -> dict:
    """The state file of the one running lab."""
    states = [json.loads(p.read_text()) for p in paths.RUN_ROOT.glob("*/state.json")]
    assert len(states) == 1, f"expected one run, found {len(states)}"
    return states[0]


def leftovers(state: dict) -> list[str]:
    """Everything the run recorded that still exists: processes, links, switch ports, cgroups, its dir."""
    found = []
    for d in state.get("processes", []):
        ref = ProcRef(**d)
        if ref.name != "holder" and ref.alive():
            found.append(f"process {ref.name} pid {ref.pid}")
    holder = state.get("holder")
    if holder and ProcRef(**holder).alive() and ProcRef(**holder).pid != os.getpid():
        found.append(f"supervisor pid {holder['pid']}")
    taps = set(tap_ports(state))
    for link in state.get("links", []):
        for intf in (link[1], link[3]):
            if intf and Path("/sys/class/net", intf).exists():
                found.append(f"link {intf}")
    # A tap port lives in its host's namespace: look in every namespace a process still holds.
    found += [f"tap {name} (in a network namespace)" for name in sorted(taps & interfaces_everywhere())]
    for sw in state.get("switches", []):
        if Path("/sys/class/net", sw).exists():
            found.append(f"switch port {sw}")
    for cg in state.get("cgroups", []):
        if Path(cg).exists():
            found.append(f"cgroup {cg}")
    if paths.run_dir(state["run_id"]).exists():
        found.append(f"run directory {paths.run_dir(state['run_id'])}")
    eth = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    found += [f"link {line.split()[0]}" for line in eth.splitlines() if "-eth" in line.split()[0]]
    return found


def tap_ports(state: dict) -> list[str]:
    """The host interfaces that are tap ports: their link has no interface at the switch end."""
    return [i1 or i2 for _n1, i1, _n2, i2 in state.get("links", []) if not (i1 and i2)]


def interfaces_everywhere() -> set[str]:
    """Interface names in every network namespace some process is in (the root one included)."""
    seen, names = set(), set()
    for ns in Path("/proc").glob("[0-9]*/ns/net"):
        try:
            ino = os.stat(ns).st_ino
        except OSError:
            continue
        if ino in seen:
            continue
        seen.add(ino)
        res = subprocess.run(["nsenter", f"--net={ns}", "ip", "-o", "link"], capture_output=True,
                             text=True, timeout=10)
        names |= {line.split(":")[1].strip().split("@")[0] for line in res.stdout.splitlines()
                  if line.count(":") >= 2}
    return names


@pytest.fixture(scope="module")
def detached_lab(request):
    """A design brought up with `weblab up DESIGN --detach`; downed and checked after the module."""
    design = getattr(request.module, "DESIGN", "one-server")
    extra = getattr(request.module, "UP_ARGS", [])
    weblab("up", design, "--detach", *extra)
    state = running_state()
    try:
        yield state
    finally:
        weblab("down", check=False)
        left = leftovers(state)
        assert not left, f"left behind after `weblab down`: {left}"


def in_host(host: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """`weblab exec HOST -- ARGV` (bounded)."""
    return weblab("exec", host, "--", *argv, timeout=timeout, check=False)


def service_info(state: dict, host: str, kind: str) -> dict:
    """A service's record in the state file: dir, log, pid, start."""
    return next(s for s in state["services"] if (s["host"], s["kind"]) == (host, kind))


def served_by(host: str = "client", url: str = "http://www.foobar.com/", n: int = 1) -> list[str]:
    """X-Served-By of n successive requests (one curl, keep-alive off: each request is balanced)."""
    res = in_host(host, "sh", "-c", f"for i in $(seq {n}); do curl -s -o /dev/null -D - "
                  f"--max-time 3 -H 'Connection: close' {url}; done")
    return [l.split(":", 1)[1].strip() for l in res.stdout.splitlines()
            if l.lower().startswith("x-served-by:")]
