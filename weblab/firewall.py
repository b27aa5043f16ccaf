"""`weblab firewall ...`: read and change the running lab's firewall through the controller."""
from __future__ import annotations

import time
from typing import Any

from controllers.policy import PROTOS
from weblab.core.errors import WeblabError
from weblab.core.state import RunState


def rule_from_words(words: list[str], rule_id: str | None = None) -> dict[str, Any]:
    """`SRC DST PROTO [PORT]` -> a rule object for the controller."""
    if len(words) not in (3, 4):
        raise WeblabError("a rule is: SRC DST PROTO [PORT] (SRC/DST: any, a host, role:NAME or a CIDR); "
                          "example: weblab firewall allow client lb1 tcp 8404")
    src, dst, proto, *port = words
    if proto not in PROTOS:
        raise WeblabError(f"protocol {proto!r}: use one of {', '.join(PROTOS)}")
    rule: dict[str, Any] = {"src": src, "dst": dst, "proto": proto}
    if port:
        if not port[0].isdigit():
            raise WeblabError(f"port {port[0]!r} is not a number")
        rule["port"] = int(port[0])
    if rule_id:
        rule["id"] = rule_id
    return rule


def format_show(reply: dict) -> str:
    """The rules with their counters, as a table."""
    lines = [f"firewall: {'ON' if reply.get('firewall') else 'OFF (rules kept, not enforced)'}",
             f"{'id':22} {'action':6} {'src':14} {'dst':14} {'proto':5} {'port':>5} {'packets':>9} {'bytes':>10}"]
    for r in reply.get("rules", []):
        lines.append(f"{r['id']:22} {r['action']:6} {r['src']:14} {r['dst']:14} {r['proto']:5} "
                     f"{str(r.get('port') or ''):>5} {r.get('packets', 0):>9} {r.get('bytes', 0):>10}")
    d = reply.get("default_deny", {})
    lines.append(f"{'(default deny)':22} {'deny':6} {'any':14} {'any':14} {'any':5} {'':>5} "
                 f"{d.get('packets', 0):>9} {d.get('bytes', 0):>10}")
    lines += arp_lines(reply.get("arp_inspection"))
    if reply.get("error"):
        lines.append(f"note: {reply['error']}")
    return "\n".join(lines)


def arp_lines(report: dict | None) -> list[str]:
    """ARP inspection: on/off and the ports that sent spoofed ARP (the controller's report)."""
    if report is None:
        return []
    lines = [f"ARP inspection: {'ON' if report.get('on') else 'OFF'}"
             + (f", {report.get('dropped', 0)} spoofed ARP dropped" if report.get("ports") else
                (", no spoofed ARP seen" if report.get("on") else ""))]
    for p in report.get("ports", []):
        when = time.strftime("%H:%M:%S", time.localtime(p["first"])) if p.get("first") else "?"
        lines.append(f"  {p.get('switch') or p['dpid']} port {p['port']} ({p['host']}): {p['packets']} dropped "
                     f"since {when}")
    return lines


def status_lines(state: RunState) -> list[str]:
    """What `weblab status` says of the controller: firewall and ARP inspection (nothing if unreachable)."""
    if state.controller is None:
        return []
    try:
        reply = control(state, {"op": "status"}, timeout=2.0)
    except WeblabError:
        return []
    return [f"firewall: {'on' if reply.get('firewall') else 'off'}"] + arp_lines(reply.get("arp_inspection"))


def control(state: RunState, request: dict, timeout: float = 5.0) -> dict:
    """Send one request to the running lab's controller; errors become WeblabError."""
    from controllers.client import ControlError, request as send
    if state.controller is None:
        raise WeblabError("this lab has no controller control socket")
    try:
        reply = send(str(state.controller.control), request, timeout=timeout)
    except ControlError as e:
        raise WeblabError(str(e)) from None
    if not reply.get("ok") and request["op"] != "show":
        raise WeblabError(f"the controller refused: {reply.get('error')}")
    return reply
