"""The lab that is running now, as the CLI verbs reach it from another process: find it, enter its
hosts, stop it, drive its load balancers. Everything here reads the run's state file."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Callable

from weblab.core import paths
from weblab.core.errors import WeblabError
from weblab.core.proc import ProcRef, wait_gone
from weblab.core.state import RunState, ServiceRecord, all_runs


def current() -> RunState:
    """The state of the lab that is running now, or an error saying how to start (or clean) one."""
    from weblab.clean import crashed_runs
    for run_id in all_runs():
        try:
            state = RunState.load(run_id)
        except (FileNotFoundError, ValueError):
            continue
        if state.holder_alive():
            return state
    if crashed_runs():
        raise WeblabError("the last lab crashed; remove what it left with: sudo weblab clean")
    raise WeblabError("no lab is running; start one with: sudo weblab up one-server --detach")


def host_argv(state: RunState, host: str, argv: list[str]) -> list[str]:
    """argv run inside host of the running lab (its namespaces, its CPUs): the hostapps' own prefix."""
    from hostapps.base import HostHandle
    from weblab.core import cores
    try:
        info = state.host(host)
    except KeyError as e:
        raise WeblabError(e.args[0]) from None
    return HostHandle(host, info.pid, info.ips, cores=cores.for_host(state.cores, host)).argv(argv)


def exec_in_host(state: RunState, host: str, argv: list[str]) -> None:
    """Replace this process by argv inside host (what `weblab exec` does)."""
    full = host_argv(state, host, argv)
    os.execvp(full[0], full)


def stop(state: RunState, timeout: float, signalled: Callable[[], None] | None = None) -> None:
    """Ask the lab's holder to tear it down (then call `signalled`) and wait (bounded) until it has;
    an error if it did not."""
    holder = state.holder
    if holder is None:
        raise WeblabError(f"lab {state.run_id} has no holder; remove it with: sudo weblab clean")
    holder.signal(signal.SIGTERM)
    if signalled is not None:
        signalled()
    if not wait_gone(holder, timeout):
        raise WeblabError(f"the lab's holder (pid {holder.pid}) did not stop within {timeout:.0f} s; "
                          f"force it with: sudo weblab clean --force")
    if paths.run_dir(state.run_id).exists():
        raise WeblabError(f"the lab stopped but left {paths.run_dir(state.run_id)}; run: sudo weblab clean")


VITAL = ("ovs-vswitchd", "ovsdb-server", "controller")  # without these the lab forwards nothing


def dead_daemons(state: RunState) -> list[ProcRef]:
    """The lab's own daemons (switch, controller) that have died under it."""
    return [p for p in state.processes if p.name in VITAL and not p.alive()]


def load_balancer(state: RunState, name: str | None = None) -> ServiceRecord:
    """The HAProxy of host `name` (default: the first), or an error naming the load balancers."""
    lbs = [s for s in state.services if s.kind == "haproxy"]
    lb = next((s for s in lbs if s.host == name), None) if name else (lbs[0] if lbs else None)
    if lb is None:
        raise WeblabError(f"no HAProxy {'on ' + name if name else 'in this lab'}; "
                          f"load balancers: {', '.join(s.host for s in lbs) or 'none'}")
    return lb


def admin_socket(lb: ServiceRecord) -> Path:
    """Where an HAProxy of the lab listens for admin commands."""
    from hostapps.haproxy import HAProxy
    return HAProxy.admin_socket_in(lb.dir)


def service_record(state: RunState, host: str, kind: str) -> ServiceRecord:
    """The record of one service of the running lab, or an error naming the services there are."""
    found = next((s for s in state.services if (s.host, s.kind) == (host, kind)), None)
    if found is None:
        have = ", ".join(f"{s.kind}@{s.host}" for s in state.services) or "none"
        raise WeblabError(f"no service {kind} on {host}; services: {have}")
    return found


def sql_argv(state: RunState, host: str, statement: str | None = None) -> list[str]:
    """The MariaDB client as root on host's own server (its socket), inside host; one statement or a
    prompt."""
    from hostapps.mariadb import MariaDB
    sock = MariaDB.socket_in(service_record(state, host, "mariadb").dir)
    argv = ["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root"]
    return host_argv(state, host, argv + (["-e", statement] if statement else []))


class Attached:
    """The running lab as exercise checks see it, from another process: its hosts, commands run in
    them, its services' folders, and service actions through the lab's control socket."""

    def __init__(self, state: RunState):
        self.state = state
        self.design = state.design
        self.scenario = state.scenario
        self.params = state.params

    def hosts(self) -> list[str]:
        return list(self.state.hosts)

    def ip(self, host: str) -> str:
        try:
            return self.state.host(host).ips[0]
        except KeyError as e:
            raise WeblabError(e.args[0]) from None

    def exec(self, host: str, argv: list[str], timeout: float = 30,
             input: str | None = None) -> subprocess.CompletedProcess:
        """Run argv inside host and wait (bounded); never raises on a non-zero exit."""
        return subprocess.run(host_argv(self.state, host, argv), capture_output=True, text=True,
                              timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def popen(self, host: str, argv: list[str], **kw) -> subprocess.Popen:
        """Start argv inside host in its own process group (the caller stops it)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(host_argv(self.state, host, argv), start_new_session=True, **kw)

    def service_dir(self, host: str, kind: str) -> Path:
        """The run folder of a service (its config, sockets, logs)."""
        return service_record(self.state, host, kind).dir

    def service_action(self, host: str, kind: str, action: str) -> None:
        """start | stop | restart | reload | kill a service, through the lab that holds it."""
        from weblab import control
        control.request(self.state, {"op": "service", "host": host, "kind": kind, "action": action})
