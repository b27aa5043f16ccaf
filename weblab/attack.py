"""`weblab attack mitm|stop`: the man-in-the-middle tool (experiments/attacks/mitm.py) inside a lab host.

The plan comes from the running lab's design: the attacker's interface on the network it shares with
both victims, the victims' addresses there, and the lab's networks (the tool refuses anything
outside them). The tool runs in the foreground of the command that started it (as `weblab sniff`
does) and is recorded in the run directory first, so `weblab attack stop` and `weblab down` stop it
(SIGTERM: it restores the victims' caches and its sysctls before it exits).
"""
from __future__ import annotations

import ipaddress
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from weblab.core import paths
from weblab.core.errors import WeblabError
from weblab.core.proc import ProcRef
from weblab.core.state import RunState

TOOL = "experiments.attacks.mitm"
DEFAULT_DURATION = 300.0
STOP_TIMEOUT = 10.0  # the tool restores the caches (~2 s) before it exits


@dataclass(frozen=True)
class Plan:
    """Where an attack runs: the attacker, its interface and address, the two victims, the lab networks."""

    attacker: str
    iface: str
    address: str
    victims: tuple[tuple[str, str], ...]   # (name, address on the shared network)
    lab_nets: tuple[str, ...]


def plan(state: RunState, attacker: str, between: list[str]) -> Plan:
    """The attack's plan from the running lab's design; an error naming the fix for a bad choice."""
    from topologies import get
    topo = get(state.design)(**state.params)
    hosts = topo.hosts()
    for name in [attacker, *between]:
        if name not in hosts:
            raise WeblabError(f"unknown host {name!r}; hosts of this lab: {', '.join(hosts)}")
    if len(between) != 2 or len(set(between)) != 2 or attacker in between:
        raise WeblabError("--between takes two other hosts, e.g. --between lb1,server1")
    leg = topo.leg_towards(attacker, between)
    if leg is not None:
        return Plan(attacker, f"{attacker}-eth{leg['host_port']}", str(leg["ip"].ip),
                    tuple((v, topo.address_on(v, attacker)) for v in between), tuple(topo.networks()))
    raise WeblabError(f"{attacker} shares no network with both {between[0]} and {between[1]}: ARP spoofing "
                      f"works on one link (on the back network try --from server2 --between lb1,server1)")


def argv(p: Plan, python: str, duration: float, grep: str | None = None, proxy: str | None = None,
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


def records_dir(state: RunState) -> Path:
    """Where the run keeps the records of running attacks (removed with the run)."""
    return paths.run_dir(state.run_id) / "attacks"


def record_self(state: RunState, p: Plan) -> Path:
    """Record this process (about to become the tool by exec: same pid, same start time)."""
    folder = records_dir(state)
    folder.mkdir(parents=True, exist_ok=True)
    ref = ProcRef.of(f"attack:mitm@{p.attacker}", os.getpid(), group=False, host=p.attacker)
    path = folder / f"mitm-{os.getpid()}.json"
    path.write_text(json.dumps({**ref.to_dict(), "victims": [list(v) for v in p.victims]}) + "\n")
    return path


def running(state: RunState) -> list[tuple[Path, ProcRef]]:
    """The recorded attacks whose process is still the one recorded."""
    out = []
    folder = records_dir(state)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            data = json.loads(path.read_text())
            ref = ProcRef(data["name"], data["pid"], data["start"], data.get("group", False), data.get("host", ""))
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
            continue
        if ref.alive():
            out.append((path, ref))
        else:
            path.unlink(missing_ok=True)  # it ended by itself
    return out


def stop_all(state: RunState, timeout: float = STOP_TIMEOUT) -> list[str]:
    """SIGTERM every recorded attack (it undoes itself), bounded; the names of those stopped."""
    stopped = []
    for path, ref in running(state):
        ref.stop(timeout=timeout)
        path.unlink(missing_ok=True)
        stopped.append(f"{ref.name} (pid {ref.pid})")
    return stopped


def announce(p: Plan, duration: float) -> None:
    """What the person is about to see."""
    (a, ia), (b, ib) = p.victims
    print(f"attack: {p.attacker} ({p.address} on {p.iface}) between {a} ({ia}) and {b} ({ib}) for "
          f"{duration:g} s; Ctrl-C or `sudo weblab attack stop` ends it and restores their ARP caches",
          file=sys.stderr, flush=True)


def check_networks(p: Plan) -> None:
    """The plan's own consistency: every address it aims at is inside the lab networks."""
    nets = [ipaddress.ip_network(n) for n in p.lab_nets]
    for _, ip in p.victims:
        if not any(ipaddress.ip_address(ip) in n for n in nets):
            raise WeblabError(f"{ip} is outside the lab networks {', '.join(p.lab_nets)}")
