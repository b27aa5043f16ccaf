"""The load balancers' pool, grown and shrunk while the lab runs (`weblab lb add|remove`, claim C21).

Mininet cannot add a host to a running network from another process, so a design builds spare hosts at
`up` (`--param spare=N`, role "spare", services configured but stopped, known to the firewall). Adding
one, on every load balancer of the design at once:

  1. the firewall follows: every live rule naming the pool's role (role:web) gets a copy naming the
     spare (id RULE:SPARE), so the load balancers reach it and it reaches what the servers reach;
  2. its services start, in the design's order, each waiting until it is ready;
  3. HAProxy's runtime API on every load balancer: `add server servers/NAME ADDR:PORT check ...`,
     `enable health`, `set server ... state ready`; it takes traffic once its checks pass (UP).

Removing it reverses that, draining first: `set server ... state drain` everywhere, wait until no
session is left on it, `state maint`, `disable health`, `del server`; then its services stop and its
firewall rules go. DNS needs no change: every host of the lab, spares included, has its A record from
`up`, and clients reach the pool through the load balancers' name, which does not move.

It works on a lab handle (weblab.core.handle.LabHandle): the Lab's control socket calls it for the
CLI, and experiments call it in-process. Every check runs before anything changes (PoolError).
"""
from __future__ import annotations

import time
from typing import Any, Callable

from hostapps.haproxy import admin_command, backend_stats
from weblab.core.errors import WeblabError

SPARE_ROLE = "spare"
BACKEND = "servers"


class PoolError(WeblabError):
    """A request `lb add|remove` refuses before changing anything."""


# --- what the lab looks like ---------------------------------------------------------------------
def load_balancers(lab: Any) -> list[str]:
    """Hosts running HAProxy (every one of them serves the same pool)."""
    return [h for h, _ in lab.services("haproxy")]


def spares(lab: Any) -> list[str]:
    """The spare hosts the lab was built with."""
    return [h for h in lab.hosts() if lab.role(h) == SPARE_ROLE]


def pool_role(lab: Any) -> str:
    """The role of the servers the design put behind its load balancers (web)."""
    hap = lab.service(load_balancers(lab)[0], "haproxy")
    names = [s["name"] for s in hap.opts["servers"] if lab.role(s["name"]) != SPARE_ROLE]
    return lab.role(names[0])


def in_pool(lab: Any) -> dict[str, list[str]]:
    """Load balancer -> the server names in its pool now (its admin socket)."""
    return {lb: sorted(backend_stats(lab.service(lb, "haproxy").admin_socket)) for lb in load_balancers(lab)}


def check_add(lab: Any, server: str) -> None:
    """Refuse, before anything changes, a server that cannot join the pool."""
    lbs = load_balancers(lab)
    if not lbs:
        raise PoolError(f"the {lab.design} design has no load balancer")
    free = spares(lab)
    pools = in_pool(lab)
    if server not in lab.hosts():
        raise PoolError(f"unknown server {server!r}; spares: {', '.join(free) or 'none'}")
    if any(server in names for names in pools.values()):
        raise PoolError(f"{server} is already in the pool of {', '.join(lb for lb, n in pools.items() if server in n)}")
    if not free:
        raise PoolError(f"this lab has no spare server: start it with --param spare=N (design {lab.design})")
    if server not in free:
        raise PoolError(f"{server} is not a spare server (its role is {lab.role(server)}); spares: {', '.join(free)}")
    for lb in lbs:
        if lab.service(lb, "haproxy").opts.get("backend_tls"):
            raise PoolError(f"the pool of {lb} re-encrypts to its servers: adding a server there is not supported")


def check_remove(lab: Any, server: str) -> None:
    """Refuse, before anything changes, a server `remove` cannot take out (only spares that were added)."""
    lbs = load_balancers(lab)
    if not lbs:
        raise PoolError(f"the {lab.design} design has no load balancer")
    if server not in lab.hosts():
        raise PoolError(f"unknown server {server!r}; in the pool: {', '.join(in_pool(lab)[lbs[0]])}")
    if server not in spares(lab):
        raise PoolError(f"{server} is one of the design's own servers; take it out of rotation with "
                        f"weblab lb drain|maint {server}")
    missing = [lb for lb, names in in_pool(lab).items() if server not in names]
    if missing:
        raise PoolError(f"{server} is not in the pool of {', '.join(missing)}; add it with: weblab lb add {server}")


# --- HAProxy's runtime API -----------------------------------------------------------------------
def add_server_command(server: str, address: str, port: int, opts: dict[str, Any]) -> str:
    """`add server` for a spare, with the health checks the configuration gives its servers (a dynamic
    server takes nothing from `default-server`)."""
    return (f"add server {BACKEND}/{server} {address}:{port} check inter {int(opts['inter'])} "
            f"fall {int(opts['fall'])} rise {int(opts['rise'])}")


def runtime(sock: Any, command: str, ok: Callable[[str], bool] = lambda reply: not reply) -> str:
    """One runtime-API command; HAProxy's refusal is a WeblabError naming the command."""
    reply = admin_command(sock, command).strip()
    if not ok(reply):
        raise WeblabError(f"haproxy refused `{command}`: {reply}")
    return reply


def server_port(hap: Any) -> int:
    """The port the pool's servers listen on, as the load balancer's configuration has it."""
    return int(hap.opts["servers"][0]["port"])


def wait_until(ok: Callable[[], bool], timeout: float, what: str) -> float:
    """Bounded poll (the admin socket has no change notification); seconds waited."""
    t0 = time.monotonic()
    while not ok():
        if time.monotonic() - t0 > timeout:
            raise WeblabError(f"{what} within {timeout:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - t0


def status(hap: Any, server: str) -> dict[str, str]:
    """One server's live stats on one load balancer ({} when it is not in the pool)."""
    return backend_stats(hap.admin_socket).get(server, {})


# --- the firewall follows ------------------------------------------------------------------------
def follow_rules(rules: list[dict[str, Any]], role: str, server: str) -> list[dict[str, Any]]:
    """Copies of the rules naming role:ROLE, naming server instead (ids RULE:SERVER)."""
    out = []
    for r in rules:
        if r.get("action", "allow") != "allow" or ":" in r["id"]:
            continue
        src = server if r["src"] == f"role:{role}" else r["src"]
        dst = server if r["dst"] == f"role:{role}" else r["dst"]
        if (src, dst) != (r["src"], r["dst"]):
            rule = {"id": f"{r['id']}:{server}", "src": src, "dst": dst, "proto": r["proto"]}
            if r.get("port") is not None:
                rule["port"] = r["port"]
            out.append(rule)
    return out


def live_rules(lab: Any) -> list[dict[str, Any]]:
    """The controller's rules now (the design's and any added live)."""
    return list(lab.firewall({"op": "show"}, timeout=10).get("rules", []))


# --- add and remove ------------------------------------------------------------------------------
def add(lab: Any, server: str, ready_timeout: float = 20.0, on_service: Callable[[str, str, Any], None] | None = None,
        ) -> dict[str, Any]:
    """Put a spare in rotation on every load balancer; the steps and their seconds."""
    check_add(lab, server)
    steps: dict[str, float] = {}
    lbs, role = load_balancers(lab), pool_role(lab)
    t = time.monotonic()
    rules = follow_rules(live_rules(lab), role, server)
    for rule in rules:
        lab.firewall({"op": "allow", "rule": rule}, timeout=10)
    steps["firewall_s"] = time.monotonic() - t
    started = []
    try:
        t = time.monotonic()
        for host, kind in lab.services():
            if host == server:
                svc = lab.service(host, kind)
                started.append(svc)
                svc.start()
                if on_service:
                    on_service(host, kind, svc)
        steps["services_s"] = time.monotonic() - t
        t = time.monotonic()
        address = lab.address_on(server, lbs[0])
        for lb in lbs:
            hap = lab.service(lb, "haproxy")
            sock = hap.admin_socket
            runtime(sock, add_server_command(server, address, server_port(hap), hap.opts),
                    ok=lambda reply: reply.startswith("New server registered"))
            # a reload or restart of HAProxy keeps it: its configuration lists it from now on
            hap.opts["servers"] = [*hap.opts["servers"], {"name": server, "address": address,
                                                           "port": server_port(hap), "backup": False}]
            runtime(sock, f"enable health {BACKEND}/{server}")
            runtime(sock, f"set server {BACKEND}/{server} state ready")
        for lb in lbs:
            hap = lab.service(lb, "haproxy")
            wait_until(lambda: status(hap, server).get("status") == "UP", ready_timeout,
                       f"{server} did not pass {lb}'s health checks (UP)")
        steps["up_s"] = time.monotonic() - t
    except BaseException:
        _undo_add(lab, server, lbs, started, rules)
        raise
    return {"server": server, "load_balancers": lbs, "rules": [r["id"] for r in rules],
            "steps": {k: round(v, 3) for k, v in steps.items()}}


def _undo_add(lab: Any, server: str, lbs: list[str], started: list[Any], rules: list[dict[str, Any]]) -> None:
    """A failed add leaves things as they were (each step guarded: the first error is the one raised)."""
    for lb in lbs:
        try:
            hap = lab.service(lb, "haproxy")
            hap.opts["servers"] = [s for s in hap.opts["servers"] if s["name"] != server]
            if status(hap, server):
                admin_command(hap.admin_socket, f"set server {BACKEND}/{server} state maint")
                admin_command(hap.admin_socket, f"disable health {BACKEND}/{server}")
                admin_command(hap.admin_socket, f"del server {BACKEND}/{server}")
        except (OSError, WeblabError):
            pass
    for svc in reversed(started):
        try:
            svc.stop()
        except (OSError, WeblabError):
            pass
    for rule in rules:
        try:
            lab.firewall({"op": "remove", "id": rule["id"]}, timeout=10)
        except WeblabError:
            pass


def remove(lab: Any, server: str, drain_timeout: float = 30.0,
           on_service: Callable[[str, str, Any], None] | None = None) -> dict[str, Any]:
    """Drain a spare on every load balancer, delete it from their pools, stop it; the steps and seconds."""
    check_remove(lab, server)
    steps: dict[str, float] = {}
    lbs = load_balancers(lab)
    haps = {lb: lab.service(lb, "haproxy") for lb in lbs}
    t = time.monotonic()
    for hap in haps.values():
        runtime(hap.admin_socket, f"set server {BACKEND}/{server} state drain")
    for lb, hap in haps.items():
        wait_until(lambda: int(status(hap, server).get("scur") or 0) == 0, drain_timeout,
                   f"{server} still had sessions on {lb} after draining")
    steps["drain_s"] = time.monotonic() - t
    t = time.monotonic()
    for lb, hap in haps.items():
        runtime(hap.admin_socket, f"set server {BACKEND}/{server} state maint")
        runtime(hap.admin_socket, f"disable health {BACKEND}/{server}")
        # idle keep-alive connections to it close asynchronously: `del server` waits for them (bounded)
        wait_until(lambda: admin_command(hap.admin_socket, f"del server {BACKEND}/{server}").strip()
                   .startswith("Server deleted"), 10, f"{lb} did not delete {server} (connections left)")
        hap.opts["servers"] = [s for s in hap.opts["servers"] if s["name"] != server]
    steps["delete_s"] = time.monotonic() - t
    t = time.monotonic()
    for host, kind in reversed(lab.services()):
        if host == server:
            svc = lab.service(host, kind)
            svc.stop()
            if on_service:
                on_service(host, kind, svc)
    steps["stop_s"] = time.monotonic() - t
    removed = []
    for rule in live_rules(lab):
        if rule["id"].endswith(f":{server}"):
            lab.firewall({"op": "remove", "id": rule["id"]}, timeout=10)
            removed.append(rule["id"])
    return {"server": server, "load_balancers": lbs, "rules": removed,
            "steps": {k: round(v, 3) for k, v in steps.items()}}
