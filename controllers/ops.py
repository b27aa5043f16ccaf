"""The operations of the control socket: show, status, allow, deny, remove, enable, disable, arp-inspection.

Each operation takes a request dict and returns {"ok": bool, ...}; changes are sent to every
connected switch and confirmed with a barrier (bounded wait) before the reply, so a reply of
ok means the switches hold the new flows.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

from controllers import flows
from controllers.compiler import (KIND_ARP_BINDING, KIND_ARP_DROP, KIND_DEFAULT_DENY, KIND_MASK,
                                  arp_inspection_flows, cookie, rule_cookie, rule_flows)
from controllers.policy import PolicyError, parse_rule

STATS_TIMEOUT = 2.0
SYNC_TIMEOUT = 1.0
INSTALL_TIMEOUT = 2.0

Reply = dict[str, Any]


class LiveControl:
    """Applies control requests to a running WeblabSwitch app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ops: dict[str, Callable[[Reply], Reply]] = {
            "show": self.show, "status": self.status, "allow": self.allow, "deny": self.deny,
            "remove": self.remove, "enable": self.enable, "disable": self.disable,
            "arp-inspection": self.arp_inspection,
        }

    def handle(self, request: Reply) -> Reply:
        """Dispatch one request by its "op"."""
        op = self.ops.get(request.get("op"))  # type: ignore[arg-type]
        if op is None:
            return _error(f"op: must be one of {', '.join(self.ops)}, got {request.get('op')!r}")
        try:
            return op(request)
        except PolicyError as err:
            return _error(str(err))

    def status(self, _request: Reply) -> Reply:
        """Connected switches, firewall state, and every OpenFlow error seen."""
        app = self.app
        names = {s.dpid: s.name for s in app.policy.switches}
        switches = [{"dpid": dpid, "name": names.get(dpid), "ready": app.ready.get(dpid, False),
                     "learned_macs": len(app.learned.get(dpid, {})),
                     "packet_ins": app.packet_ins.get(dpid, 0)}
                    for dpid in sorted(app.datapaths)]
        if app.error_count:
            state = "error"
        elif set(names) <= set(app.datapaths) and all(s["ready"] for s in switches):
            state = "ok"
        else:
            state = "starting"
        return {"ok": True, "status": state, "firewall": app.policy.firewall,
                "switches": switches, "expected": sorted(names),
                "rules": len(app.policy.rules), "error_count": app.error_count,
                "errors": app.errors, "arp_inspection": app.arp_report()}

    def show(self, _request: Reply) -> Reply:
        """Every rule with packet/byte/flow counters summed over all switches."""
        app = self.app
        dps = list(app.datapaths.values())
        waiters = [(dp.id, app.request(dp, flows.flow_stats_request(dp), "flow stats"))
                   for dp in dps]
        deadline = time.monotonic() + STATS_TIMEOUT
        counters: dict[int, list[int]] = {}
        missing = []
        for dpid, waiter in waiters:
            if not waiter.done.wait(max(0.0, deadline - time.monotonic())):
                missing.append(dpid)
                continue
            for stat in waiter.bodies:
                c = counters.setdefault(stat.cookie, [0, 0, 0])
                c[0] += stat.packet_count
                c[1] += stat.byte_count
                c[2] += 1
        rules = [{**rule.to_dict(), "cookie": f"{rule_cookie(rule):#x}",
                  **_counts(counters.get(rule_cookie(rule)))} for rule in app.policy.rules]
        reply = {"ok": not missing, "firewall": app.policy.firewall, "rules": rules,
                 "default_deny": _counts(counters.get(cookie(KIND_DEFAULT_DENY))),
                 "switches": sorted(app.datapaths), "arp_inspection": app.arp_report()}
        if missing:
            reply["error"] = f"no flow stats from switch(es) {missing} within {STATS_TIMEOUT} s"
        return reply

    def allow(self, request: Reply) -> Reply:
        """Add an allow rule live."""
        return self._add(request, "allow")

    def deny(self, request: Reply) -> Reply:
        """Add a deny rule live."""
        return self._add(request, "deny")

    def remove(self, request: Reply) -> Reply:
        """Remove a rule live: its flows go, found by cookie."""
        app = self.app
        with app.lock:
            rule = app.policy.rule(request.get("id"))  # type: ignore[arg-type]
            app.policy = app.policy.without_rule(request.get("id"))  # type: ignore[arg-type]
            dps = list(app.datapaths.values())
            for dp in dps:
                app.send(dp, flows.delete_flows(dp, rule_cookie(rule), flows.ALL_COOKIES),
                         f"delete flows of rule {rule.id}")
        return _synced(app.sync(dps, SYNC_TIMEOUT), {"id": rule.id})

    def enable(self, _request: Reply) -> Reply:
        """Turn the firewall on (re-installing every switch)."""
        return self._set_firewall(True)

    def disable(self, _request: Reply) -> Reply:
        """Turn the firewall off (re-installing every switch)."""
        return self._set_firewall(False)

    def arp_inspection(self, request: Reply) -> Reply:
        """Turn ARP inspection on or off live: only its own flows are added or deleted (by cookie)."""
        on = request.get("on")
        if not isinstance(on, bool):
            return _error("on: must be true or false")
        app = self.app
        with app.lock:
            app.policy = replace(app.policy, arp_inspection=on)
            dps = list(app.datapaths.values())
            for dp in dps:
                for kind in (KIND_ARP_BINDING, KIND_ARP_DROP):
                    app.send(dp, flows.delete_flows(dp, cookie(kind), KIND_MASK), "delete ARP inspection flows")
                if on:
                    for spec in arp_inspection_flows(app.policy, dp.id):
                        app.send_flow(dp, spec)
        app.logger.info("ARP inspection turned %s live", "on" if on else "off")
        return _synced(app.sync(dps, SYNC_TIMEOUT), {"arp_inspection": on})

    def _add(self, request: Reply, action: str) -> Reply:
        """Validate a rule against the hosts, store it, install it where the firewall is on."""
        app = self.app
        raw = request.get("rule")
        if not isinstance(raw, dict):
            return _error("rule: must be an object")
        if raw.get("action", action) != action:
            return _error(f"rule.action: {raw['action']!r} in an {action!r} request")
        with app.lock:
            number = app.next_number
            rule = parse_rule({**raw, "action": action}, app.policy, "rule", number,
                              default_id=f"live-{number}")
            app.policy = app.policy.with_rule(rule)
            app.next_number = number + 1
            dps = list(app.datapaths.values()) if app.policy.firewall else []
            count = 0
            for dp in dps:
                for spec in rule_flows(app.policy, rule, dp.id):
                    app.send_flow(dp, spec)
                    count += 1
        app.logger.info("rule added live: %s", rule.to_dict())
        return _synced(app.sync(dps, SYNC_TIMEOUT),
                       {"id": rule.id, "cookie": f"{rule_cookie(rule):#x}", "flows": count,
                        "firewall": app.policy.firewall})

    def _set_firewall(self, on: bool) -> Reply:
        """Switch the firewall and re-install all switches."""
        app = self.app
        errors_before = app.error_count
        with app.lock:
            app.policy = replace(app.policy, firewall=on)
            waiters = [app.install(dp) for dp in app.datapaths.values()]
        app.logger.info("firewall turned %s live", "on" if on else "off")
        deadline = time.monotonic() + INSTALL_TIMEOUT
        late = [w for w in waiters if not w.done.wait(max(0.0, deadline - time.monotonic()))]
        problems = [f"{len(late)} switch(es) did not confirm within {INSTALL_TIMEOUT} s"
                    for _ in late[:1]]
        if app.error_count > errors_before:
            problems.append(f"{app.error_count - errors_before} OpenFlow error(s): see status")
        return _synced(problems, {"firewall": on})


def _counts(c: Any) -> Reply:
    """Counters as a dict (zeros when no flow carries the cookie)."""
    packets, nbytes, nflows = c or (0, 0, 0)
    return {"packets": packets, "bytes": nbytes, "flows": nflows}


def _synced(problems: list[str], reply: Reply) -> Reply:
    """A reply that is ok only if the switches confirmed without errors."""
    if problems:
        return {**reply, "ok": False, "error": "; ".join(problems)}
    return {**reply, "ok": True}


def _error(message: str) -> Reply:
    """A failed reply."""
    return {"ok": False, "error": message}
