"""`weblab attack mitm|stop`: the man-in-the-middle tool (experiments/attacks/mitm.py) inside a lab host.

The plan comes from the running lab's design: the attacker's interface on the network it shares with
both victims, the victims' addresses there, and the lab's networks (the tool refuses anything
outside them). The lab itself starts the tool (its control socket's `spawn`: a process the run
records and removes, stopped before anything else at `weblab down`); the command follows its output
live and stops it on Ctrl-C. SIGTERM makes the tool restore the victims' caches and its sysctls.
"""
from __future__ import annotations

import ipaddress
import json
import sys
import time
from pathlib import Path

from topologies.base import AttackPosition
from weblab import control
from weblab.core import paths
from weblab.core.errors import WeblabError
from weblab.core.proc import ProcRef
from weblab.core.state import RunState

TOOL = "experiments.attacks.mitm"
DEFAULT_DURATION = 300.0
STOP_TIMEOUT = 10.0  # the tool restores the caches (~2 s) before it exits


def plan(state: RunState, attacker: str, between: list[str]) -> AttackPosition:
    """The attack's plan from the running lab's design; an error naming the fix for a bad choice."""
    from topologies import get
    topo = get(state.design)(**state.params)
    hosts = topo.hosts()
    for name in [attacker, *between]:
        if name not in hosts:
            raise WeblabError(f"unknown host {name!r}; hosts of this lab: {', '.join(hosts)}")
    if len(between) != 2 or len(set(between)) != 2 or attacker in between:
        raise WeblabError("--between takes two other hosts, e.g. --between lb1,server1")
    pos = topo.attack_position(attacker, between)
    if pos is not None:
        return pos
    raise WeblabError(f"{attacker} shares no network with both {between[0]} and {between[1]}: ARP spoofing "
                      f"works on one link (on the back network try --from server2 --between lb1,server1)")


def argv(p: AttackPosition, python: str, duration: float, grep: str | None = None, proxy: str | None = None,
         log: str | None = None) -> list[str]:
    """The tool's command line inside the attacker host."""
    out = [python, "-m", TOOL, "--iface", p.iface, "--duration", f"{duration:g}"]
    for net in p.lab_nets:
        out += ["--lab-net", net]
    for name, ip in p.victims:
        out += ["--victim", f"{name}={ip}"]
    if grep:
        out += ["--grep", grep]
    if proxy:
        out += ["--proxy", proxy]
    if log:
        out += ["--log", log]
    return out


NAME = "attack-mitm"  # the prefix of the spawned process's name (and log)


def spawn(state: RunState, p: AttackPosition, argv_: list[str]) -> tuple[int, Path]:
    """The lab starts the tool in the attacker host and records it: (pid, its log). Which of the lab's
    spawned processes are attacks is noted in the run directory (removed with the run)."""
    name = f"{NAME}-{p.attacker}-{int(time.time() * 1000) % 10**9}"
    reply = control.request(state, {"op": "spawn", "host": p.attacker, "argv": argv_, "name": name})
    pid, log = int(reply["pid"]), Path(reply["log"])
    ref = ProcRef.of(name, pid, host=p.attacker)
    folder = records_dir(state)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{pid}.json").write_text(json.dumps({**ref.to_dict(), "log": str(log)}) + "\n")
    return pid, log


def records_dir(state: RunState) -> Path:
    return paths.run_dir(state.run_id) / "attacks"


def running(state: RunState) -> list[dict]:
    """The attacks the lab spawned that still run (pid, name, host, log)."""
    out = []
    folder = records_dir(state)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            rec = json.loads(path.read_text())
            alive = ProcRef(rec["name"], rec["pid"], rec["start"], rec.get("group", True), rec.get("host", "")).alive()
        except (OSError, ValueError, KeyError):
            alive = False
        if alive:
            out.append(rec)
        else:
            path.unlink(missing_ok=True)  # it ended
    return out


def stop(state: RunState, pid: int) -> None:
    """Ask the lab to stop one attack (SIGTERM: it restores, then exits; bounded)."""
    control.request(state, {"op": "stop-process", "pid": pid}, timeout=STOP_TIMEOUT + 5)
    (records_dir(state) / f"{pid}.json").unlink(missing_ok=True)


def stop_all(state: RunState) -> list[str]:
    """Stop every attack the lab runs; the names of those stopped."""
    stopped = []
    for s in running(state):
        stop(state, s["pid"])
        stopped.append(f"{s['name']} (pid {s['pid']})")
    return stopped


def follow(state: RunState, pid: int, log: Path, limit: float, out=sys.stdout) -> None:
    """Print the tool's output as it comes until it exits (bounded by limit s); Ctrl-C stops it first."""
    ref = ProcRef.of("attack", pid)
    deadline = time.monotonic() + limit
    with open(log, "rb") as f:
        try:
            while ref.alive() and time.monotonic() < deadline:
                chunk = f.read()
                if chunk:
                    out.write(chunk.decode(errors="replace"))
                    out.flush()
                else:
                    time.sleep(0.1)  # bounded poll of the log the lab writes
        except KeyboardInterrupt:
            stop(state, pid)
        if ref.alive():  # past its own duration: a stuck tool
            stop(state, pid)
        out.write(f.read().decode(errors="replace"))
        out.flush()


def announce(p: AttackPosition, duration: float) -> None:
    """What the person is about to see."""
    (a, ia), (b, ib) = p.victims
    print(f"attack: {p.attacker} ({p.address} on {p.iface}) between {a} ({ia}) and {b} ({ib}) for "
          f"{duration:g} s; Ctrl-C or `sudo weblab attack stop` ends it and restores their ARP caches",
          file=sys.stderr, flush=True)


def check_networks(p: AttackPosition) -> None:
    """The plan's own consistency: every address it aims at is inside the lab networks."""
    nets = [ipaddress.ip_network(n) for n in p.lab_nets]
    for _, ip in p.victims:
        if not any(ipaddress.ip_address(ip) in n for n in nets):
            raise WeblabError(f"{ip} is outside the lab networks {', '.join(p.lab_nets)}")
