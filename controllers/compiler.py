"""Compiles a Policy into the flow specs of one switch: tables, priority bands, cookies.

Pipeline (OpenFlow 1.3 + OVS conntrack, one conntrack zone per switch):

  table 0 FILTER  firewall on:  ip,ct_state=-trk -> ct(table=1)    ARP rules -> L2
                                anything else -> drop (default deny, non-IP)
                  firewall off: everything -> L2
  table 1 ACL     +trk+inv -> drop; +trk+est / +trk+rel -> L2
                  +trk+new + deny rule -> drop; +trk+new + allow rule -> ct(commit), L2
                  anything else -> drop (default deny, IP)
  table 2 L2_SRC  ARP inspection on: ARP from a host's port whose sender MAC/IP is one of the
                  design's bindings of that host -> table 3; any other ARP from that port ->
                  drop (counted per port: the drop flow's cookie carries the port)
                  known (in_port, eth_src) -> table 3; miss -> copy to controller (learning)
                  and on to table 3: the controller learns sources, it never forwards
  table 3 L2_DST  broadcast/multicast -> flood; known host MAC -> its port (proactive);
                  learned MAC -> its port; unknown unicast -> flood

ARP inspection sits in the L2 source table, so it applies with the firewall on or off and after
the firewall's own ARP rules; it is proactive (no packet-in): the controller reads the drop flows'
counters to report an attacking port.

Rules are the ingress policy of their destination: they match on destination addresses and
are installed on every switch, so a packet is checked against its destination's policy on
each switch it crosses, including the one that delivers it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from controllers.policy import ETH_TYPE_ARP, ETH_TYPE_IP, Policy, Rule

TABLE_FILTER, TABLE_ACL, TABLE_L2, TABLE_L2_DST = 0, 1, 2, 3

# Priority bands: control traffic > ACL > L2; table-miss flows sit at 0.
BANDS = {"control": (40000, 49999), "acl": (20000, 39999), "l2": (1000, 1999)}
PRIO_CONTROL = 40000
PRIO_CONTROL_DENY = 45000  # ARP deny rules, above ARP allow rules
PRIO_ACL_DENY = 30000
PRIO_ACL_ALLOW = 20000
PRIO_FLOOD, PRIO_HOST, PRIO_LEARNED = 1200, 1100, 1000
PRIO_ARP_BINDING, PRIO_ARP_DROP = 1600, 1500  # above the host's own source flow in the L2 table
PRIO_MISS = 0

# Cookies: the top byte says what installed a flow, the rest is the rule number.
KIND_SHIFT = 56
KIND_MASK = 0xFF << KIND_SHIFT
KIND_RULE, KIND_BASE, KIND_DEFAULT_DENY, KIND_L2, KIND_LEARNED, KIND_MISS = range(1, 7)
KIND_ARP_BINDING, KIND_ARP_DROP = 7, 8  # ARP inspection; a drop flow's number is its in_port

# ct_state bits (OVS)
CT_NEW, CT_EST, CT_REL, CT_RPL, CT_INV, CT_TRK = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

FLOOD = "flood"
CONTROLLER = "controller"
GROUP_BIT = ("01:00:00:00:00:00", "01:00:00:00:00:00")
VRRP_MAC = ("00:00:5e:00:01:00", "ff:ff:ff:ff:ff:00")  # RFC 5798 virtual router MACs (keepalived use_vmac)
ARP_PROBE_SPA = "0.0.0.0"  # RFC 5227 address probes carry no sender address


@dataclass(frozen=True)
class Output:
    """Send out a port number, or FLOOD, or to the CONTROLLER."""

    port: Union[int, str]


@dataclass(frozen=True)
class Ct:
    """Send through conntrack in a zone; recirculate to `table`, or `commit` and go on."""

    zone: int
    table: Optional[int] = None
    commit: bool = False


Action = Union[Output, Ct]


@dataclass(frozen=True)
class FlowSpec:
    """One flow entry, independent of os-ken; no actions and no goto means drop."""

    table: int
    priority: int
    match: dict[str, Any]
    cookie: int
    actions: tuple[Action, ...] = ()
    goto: Optional[int] = None
    idle_timeout: int = 0
    notes: str = field(default="", compare=False)


def cookie(kind: int, number: int = 0) -> int:
    """A flow cookie of a kind (KIND_*) and a number."""
    return (kind << KIND_SHIFT) | number


def rule_cookie(rule: Rule) -> int:
    """The cookie that every flow of this rule carries."""
    return cookie(KIND_RULE, rule.number)


def kind_of(flow_cookie: int) -> int:
    """The KIND_* of a cookie."""
    return flow_cookie >> KIND_SHIFT


def zone_of(dpid: int) -> int:
    """The conntrack zone of a switch: switches sharing one datapath keep separate state."""
    return dpid & 0xFFFF


def compile_switch(policy: Policy, dpid: int) -> list[FlowSpec]:
    """Every flow one switch needs for this policy (installed after a delete-all)."""
    flows = l2_flows(policy, dpid)
    if policy.arp_inspection:
        flows += arp_inspection_flows(policy, dpid)
    if not policy.firewall:
        flows.append(FlowSpec(TABLE_FILTER, PRIO_MISS, {}, cookie(KIND_BASE), goto=TABLE_L2,
                              notes="firewall off: straight to L2"))
        return flows
    flows += base_firewall_flows(dpid)
    for rule in policy.rules:
        flows += rule_flows(policy, rule, dpid)
    return flows


def base_firewall_flows(dpid: int) -> list[FlowSpec]:
    """Conntrack plumbing and the default-deny flows of a switch with the firewall on."""
    zone, ip = zone_of(dpid), {"eth_type": ETH_TYPE_IP}
    base, deny = cookie(KIND_BASE), cookie(KIND_DEFAULT_DENY)
    return [
        FlowSpec(TABLE_FILTER, PRIO_CONTROL, {**ip, "ct_state": (0, CT_TRK)}, base,
                 actions=(Ct(zone, table=TABLE_ACL),), notes="track all IP"),
        FlowSpec(TABLE_FILTER, PRIO_MISS, {}, deny, notes="default deny: non-IP"),
        FlowSpec(TABLE_ACL, PRIO_CONTROL + 2, {**ip, "ct_state": _ct(CT_TRK | CT_INV)}, base,
                 notes="invalid"),
        FlowSpec(TABLE_ACL, PRIO_CONTROL + 1, {**ip, "ct_state": _ct(CT_TRK | CT_EST)}, base,
                 goto=TABLE_L2, notes="established"),
        FlowSpec(TABLE_ACL, PRIO_CONTROL + 1, {**ip, "ct_state": _ct(CT_TRK | CT_REL)}, base,
                 goto=TABLE_L2, notes="related"),
        FlowSpec(TABLE_ACL, PRIO_MISS, {}, deny, notes="default deny: IP"),
    ]


def rule_flows(policy: Policy, rule: Rule, dpid: int) -> list[FlowSpec]:
    """The flows of one rule on one switch (only meaningful with the firewall on)."""
    allow = rule.action == "allow"
    flow_cookie, notes = rule_cookie(rule), f"rule {rule.id}"
    flows = []
    for match in rule.matches(policy.resolve):
        if match["eth_type"] == ETH_TYPE_ARP:
            prio = (PRIO_CONTROL if allow else PRIO_CONTROL_DENY) + len(match)
            flows.append(FlowSpec(TABLE_FILTER, prio, match, flow_cookie,
                                  goto=TABLE_L2 if allow else None, notes=notes))
            continue
        prio = (PRIO_ACL_ALLOW if allow else PRIO_ACL_DENY) + len(match)
        new = {**match, "ct_state": _ct(CT_TRK | CT_NEW)}
        actions = (Ct(zone_of(dpid), commit=True),) if allow else ()
        flows.append(FlowSpec(TABLE_ACL, prio, new, flow_cookie, actions=actions,
                              goto=TABLE_L2 if allow else None, notes=notes))
    return flows


def l2_flows(policy: Policy, dpid: int) -> list[FlowSpec]:
    """The forwarding tables: source check (learning), flooding, proactive host MACs."""
    l2 = cookie(KIND_L2)
    flows = [
        FlowSpec(TABLE_L2, PRIO_MISS, {}, cookie(KIND_MISS), actions=(Output(CONTROLLER),),
                 goto=TABLE_L2_DST, notes="unknown source: learn"),
        FlowSpec(TABLE_L2_DST, PRIO_FLOOD, {"eth_dst": GROUP_BIT}, l2, actions=(Output(FLOOD),),
                 notes="broadcast and multicast"),
        FlowSpec(TABLE_L2_DST, PRIO_MISS, {}, l2, actions=(Output(FLOOD),),
                 notes="unknown destination"),
    ]
    for host in policy.hosts_on(dpid):
        flows += _mac_flows(host.mac, host.port, PRIO_HOST, l2, f"host {host.name}")
    return flows


def arp_inspection_flows(policy: Policy, dpid: int) -> list[FlowSpec]:
    """ARP bindings of every host port of a switch, and the per-port drop of every other ARP.

    A host may send ARP from its port with its MAC (Ethernet source and sender hardware address)
    and as sender address one of its own addresses, a virtual IP the design lets it hold (a
    keepalived takeover's gratuitous ARP, also from a VRRP virtual MAC), or none (a probe).
    """
    ok, flows = cookie(KIND_ARP_BINDING), []
    for host in policy.hosts_on(dpid):
        arp = {"in_port": host.port, "eth_type": ETH_TYPE_ARP}
        for ip in policy.own_ips(host.name) + host.vips + (ARP_PROBE_SPA,):
            flows.append(FlowSpec(TABLE_L2, PRIO_ARP_BINDING,
                                  {**arp, "eth_src": host.mac, "arp_sha": host.mac, "arp_spa": ip}, ok,
                                  goto=TABLE_L2_DST, notes=f"arp binding {host.name} {ip}"))
        for vip in host.vips:
            flows.append(FlowSpec(TABLE_L2, PRIO_ARP_BINDING,
                                  {**arp, "eth_src": VRRP_MAC, "arp_sha": VRRP_MAC, "arp_spa": vip}, ok,
                                  goto=TABLE_L2_DST, notes=f"arp binding {host.name} {vip} (VRRP MAC)"))
        flows.append(FlowSpec(TABLE_L2, PRIO_ARP_DROP, arp, arp_drop_cookie(host.port),
                              notes=f"arp inspection: spoofed ARP from {host.name}"))
    return flows


def arp_drop_cookie(port: int) -> int:
    """The cookie of the ARP inspection drop flow of a port (its counter is that port's drops)."""
    return cookie(KIND_ARP_DROP, port)


def learned_flows(mac: str, port: int) -> list[FlowSpec]:
    """Source check and forwarding for a MAC learned from a packet-in."""
    return _mac_flows(mac, port, PRIO_LEARNED, cookie(KIND_LEARNED), f"learned {mac}")


def learned_source(mac: str, port: int) -> FlowSpec:
    """The source-check flow of a learned MAC (deleted, strictly, when the MAC moves)."""
    return learned_flows(mac, port)[0]


def _mac_flows(mac: str, port: int, priority: int, flow_cookie: int, notes: str) -> list[FlowSpec]:
    """A MAC behind a port: its frames from there are known, frames to it go there."""
    return [
        FlowSpec(TABLE_L2, priority, {"in_port": port, "eth_src": mac}, flow_cookie,
                 goto=TABLE_L2_DST, notes=notes),
        FlowSpec(TABLE_L2_DST, priority, {"eth_dst": mac}, flow_cookie,
                 actions=(Output(port),), notes=notes),
    ]


def _ct(bits: int) -> tuple[int, int]:
    """A ct_state (value, mask) requiring every given bit set."""
    return (bits, bits)
