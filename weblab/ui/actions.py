"""What the live view can do to a lab, each through the lab's own channels (its control socket, the
HAProxy admin sockets, the controller), and the timeline where every action and every change seen lands."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from weblab.core.errors import WeblabError
from weblab.core.state import RunState
from weblab.ui.graph import Drawing

SERVICE_DOS = ("kill", "start", "stop", "restart")
LB_STATES = ("drain", "ready", "maint")


class Timeline:
    """The newest events, oldest first: actions (with their outcome) and changes the sampler saw."""

    def __init__(self, size: int = 300):
        self.events: deque = deque(maxlen=size)
        self.lock = threading.Lock()
        self.seq = 0

    def add(self, kind: str, text: str, ok: bool = True) -> dict[str, Any]:
        with self.lock:
            self.seq += 1
            event = {"seq": self.seq, "t": round(time.time(), 3), "kind": kind, "text": text, "ok": ok}
            self.events.append(event)
            return event

    def list(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)


def describe(req: dict[str, Any]) -> str:
    """An action request in words, for the confirmation and the timeline."""
    what = req.get("action")
    if what == "service":
        return f"{req.get('do')} {req.get('kind')} on {req.get('host')}"
    if what == "link":
        return f"take link {req.get('link')} {req.get('state')}"
    if what == "lb":
        return f"{req.get('state')} server {req.get('server')}"
    if what == "firewall":
        do = req.get("do")
        if do in ("allow", "deny"):
            return f"firewall {do} {req.get('rule')}"
        if do == "remove":
            return f"firewall remove rule {req.get('id')}"
        return f"firewall {do}"
    return f"unknown action {what!r}"


class Actions:
    """Validates an action request, carries it out, and writes it (and how it went) to the timeline."""

    def __init__(self, state: RunState, drawing: Drawing, timeline: Timeline):
        self.state, self.drawing, self.timeline = state, drawing, timeline
        self.lock = threading.Lock()  # one action at a time, in the order they came

    def do(self, req: dict[str, Any]) -> dict[str, Any]:
        text = describe(req)
        try:
            with self.lock:
                detail = self._do(req)
        except WeblabError as e:
            self.timeline.add("action", f"{text}: FAILED: {e}", ok=False)
            return {"ok": False, "error": str(e)}
        self.timeline.add("action", text + (f": {detail}" if detail else ""))
        return {"ok": True, "message": text + (f": {detail}" if detail else "")}

    def _do(self, req: dict[str, Any]) -> str:
        from weblab import control
        what = req.get("action")
        if what == "service":
            host, kind, do = req.get("host"), req.get("kind"), req.get("do")
            if do not in SERVICE_DOS:
                raise WeblabError(f"service action {do!r}: use one of {', '.join(SERVICE_DOS)}")
            if not any(s.host == host and s.kind == kind for s in self.state.services):
                raise WeblabError(f"this lab has no {kind} on {host}")
            reply = control.request(self.state, {"op": "service", "host": host, "kind": kind, "action": do})
            return f"pid {reply['pid']}" if reply.get("pid") else ""
        if what == "link":
            link = next((l for l in self.drawing.links if l.key == req.get("link")), None)
            if link is None:
                raise WeblabError(f"no link {req.get('link')!r} in this design")
            if req.get("state") not in ("up", "down"):
                raise WeblabError("a link goes up or down")
            control.request(self.state, {"op": "link", "a": link.host, "b": link.switch, "state": req["state"]})
            return ""
        if what == "lb":
            return self._lb(str(req.get("server")), str(req.get("state")))
        if what == "firewall":
            return self._firewall(req)
        raise WeblabError(f"unknown action {what!r}: service, link, lb or firewall")

    def _lb(self, server: str, state: str) -> str:
        from hostapps.haproxy import set_server_state
        from weblab import running
        if state not in LB_STATES:
            raise WeblabError(f"server state {state!r}: use {', '.join(LB_STATES)}")
        lbs = [s for s in self.state.services if s.kind == "haproxy"]
        if not lbs:
            raise WeblabError("this lab has no load balancer")
        done = []
        for lb in lbs:  # every load balancer of the lab: with VRRP, either may be serving
            try:
                set_server_state(running.admin_socket(lb), server, state)
            except OSError as e:
                raise WeblabError(f"HAProxy on {lb.host} did not answer: {e}") from None
            done.append(lb.host)
        return f"on {', '.join(done)}"

    def _firewall(self, req: dict[str, Any]) -> str:
        from weblab import firewall
        do = req.get("do")
        if do in ("on", "off"):
            firewall.control(self.state, {"op": "enable" if do == "on" else "disable"})
            return ""
        if do in ("allow", "deny"):
            words = str(req.get("rule") or "").split()
            reply = firewall.control(self.state, {"op": do, "rule": firewall.rule_from_words(words)})
            return f"rule {reply.get('id')}"
        if do == "remove":
            firewall.control(self.state, {"op": "remove", "id": str(req.get("id"))})
            return ""
        raise WeblabError(f"firewall action {do!r}: on, off, allow, deny or remove")


def changes(name: str, old: Any, new: Any) -> list[str]:
    """What changed between two readings of one source, in words for the timeline (nothing on the first)."""
    if old is None or new is None:
        return []
    out = []
    if name == "haproxy":
        for lb, servers in new.items():
            before = {s.get("server"): s.get("status", "").split(" ")[0] for s in old.get(lb, [])}
            for s in servers:
                status = s.get("status", "").split(" ")[0]
                if s.get("server") in before and before[s.get("server")] != status:
                    out.append(f"{lb} sees {s['server']} {status} (was {before[s['server']]})")
    elif name == "vrrp":
        for vip, holders in new.items():
            if old.get(vip) != holders:
                out.append(f"VIP {vip} held by {', '.join(holders) or 'nobody'} (was {', '.join(old.get(vip) or []) or 'nobody'})")
    elif name == "services":
        before = {(s["host"], s["kind"]): s["alive"] for s in old}
        for s in new:
            key = (s["host"], s["kind"])
            if key in before and before[key] != s["alive"]:
                out.append(f"{s['kind']} on {s['host']} {'running' if s['alive'] else 'STOPPED'}")
    elif name == "links":
        for key, link in new.items():
            was = old.get(key, {}).get("up")
            if was is not None and link.get("up") is not None and was != link["up"]:
                out.append(f"link {key} {'up' if link['up'] else 'DOWN'}")
    elif name == "alerts":
        before = {(a["name"], a["state"], str(a["labels"])) for a in old}
        for a in new:
            if (a["name"], a["state"], str(a["labels"])) not in before:
                where = ", ".join(f"{k}={v}" for k, v in a["labels"].items() if k in ("instance", "host", "server"))
                out.append(f"alert {a['name']} {a['state']}" + (f" ({where})" if where else ""))
    elif name == "firewall":
        if old.get("on") != new.get("on"):
            out.append(f"firewall {'ON' if new.get('on') else 'OFF'}")
    elif name == "db":
        before = {d["host"]: d.get("role") for d in old}
        for d in new:
            if d["host"] in before and before[d["host"]] != d.get("role"):
                out.append(f"database on {d['host']}: {d.get('role')} (was {before[d['host']]})")
    return out
