"""weblab's os-ken app: an OpenFlow 1.3 L2 switch with a stateful per-destination firewall.

On connect a switch loses every flow and gets the compiled policy (see compiler.py). Known
hosts are forwarded proactively; a frame from an unknown (port, source MAC) is copied to the
controller, which learns it (e.g. a keepalived virtual MAC, a host behind another switch) and
moves it when it shows up elsewhere; the switch forwards every frame itself. OpenFlow errors
are logged at ERROR with the offending flow and kept for the control socket. With ARP inspection
on, the switches drop spoofed ARP themselves; the app reads the drop flows' counters every
ARP_POLL_INTERVAL s and logs one line per port that starts dropping (an attack), naming the host.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from os_ken import cfg
from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER, HANDSHAKE_DISPATCHER,
                                       MAIN_DISPATCHER, set_ev_cls)
from os_ken.lib import addrconv
from os_ken.ofproto import ofproto_v1_3

from controllers import flows
from controllers.compiler import (KIND_ARP_DROP, KIND_MASK, KIND_MISS, KIND_RULE, FlowSpec,
                                  compile_switch, cookie, kind_of, learned_flows, learned_source)
from controllers.policy import Policy, load_policy

cfg.CONF.register_cli_opts([cfg.StrOpt("weblab-policy", help="weblab policy JSON file")])

MAX_ERRORS = 100
MAX_SENT = 20000
ARP_POLL_INTERVAL = 0.25  # s: an attacking port is reported within this plus one stats round trip
ARP_POLL_TIMEOUT = 1.0
ARP_QUIET = 5.0  # s without new drops on a port before a new burst is logged again


@dataclass
class ArpDrops:
    """Spoofed ARP dropped on one switch port, as the drop flow's counter says."""

    dpid: int
    port: int
    host: str
    packets: int = 0          # total over reinstalls
    raw: int = 0              # the flow's counter at the last poll
    first: Optional[float] = None  # wall time the controller first saw drops here
    last: Optional[float] = None   # wall time of the last poll that saw new drops

    def to_dict(self, switch: Optional[str]) -> dict[str, Any]:
        return {"dpid": self.dpid, "switch": switch, "port": self.port, "host": self.host,
                "packets": self.packets, "first": self.first, "last": self.last}


@dataclass
class Waiter:
    """A pending request to one switch: collects reply bodies until the last reply."""

    on_done: Optional[Callable[[], None]] = None
    bodies: list[Any] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def finish(self) -> None:
        """Mark the request answered."""
        self.done.set()
        if self.on_done:
            self.on_done()


class WeblabSwitch(app_manager.OSKenApp):
    """L2 forwarding plus the weblab firewall, driven by a Policy."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, policy: Optional[Policy] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy or load_policy(cfg.CONF.weblab_policy)
        self.lock = threading.RLock()  # policy changes and (re)installs; os-ken 4 hub = threads
        self.datapaths: dict[int, Any] = {}
        self.ready: dict[int, bool] = {}
        self._installs: dict[int, int] = {}  # install generation per switch
        self.learned: dict[int, dict[str, int]] = {}
        self.errors: list[dict[str, Any]] = []
        self.error_count = 0
        self.packet_ins: dict[int, int] = {}  # per switch: steady traffic should add none
        self.next_number = self.policy.next_number()
        self._sent: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._waiters: dict[tuple[int, int], Waiter] = {}
        self._sent_lock = threading.Lock()
        self._warned: set[tuple[int, str, int]] = set()
        self.arp_drops: dict[tuple[int, int], ArpDrops] = {}

    def start(self) -> Any:
        """os-ken starts the app: also the ARP inspection poller (a hub thread like the others)."""
        from os_ken.lib import hub
        thread = super().start()
        self.threads.append(hub.spawn(self._arp_poll_loop))
        return thread

    def _arp_poll_loop(self) -> None:
        while True:
            time.sleep(ARP_POLL_INTERVAL)
            try:
                if self.policy.arp_inspection:
                    self.poll_arp_drops()
            except Exception:  # the poller must outlive a bad reply
                self.logger.exception("ARP inspection poll failed")

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features_handler(self, ev: Any) -> None:
        """A switch connected: forget its flows and install ours."""
        dp = ev.msg.datapath
        self.logger.info("switch %s connected from %s", dp.id, dp.address)
        if dp.id not in {s.dpid for s in self.policy.switches}:
            self.logger.warning("switch %s is not in the policy: no hosts known there", dp.id)
        with self.lock:
            self.datapaths[dp.id] = dp
            self.install(dp)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def state_change_handler(self, ev: Any) -> None:
        """A switch disconnected."""
        dp = ev.datapath
        with self.lock:
            if dp.id is not None and self.datapaths.get(dp.id) is dp:
                del self.datapaths[dp.id]
                self.ready.pop(dp.id, None)
                self.logger.warning("switch %s disconnected", dp.id)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in_handler(self, ev: Any) -> None:
        """Learn the source of a frame the switch did not know (it forwards the frame itself)."""
        msg = ev.msg
        self.packet_ins[msg.datapath.id] = self.packet_ins.get(msg.datapath.id, 0) + 1
        if kind_of(msg.cookie) != KIND_MISS:
            return
        if len(msg.data) >= 14:  # the packet-in carries only the first bytes of the frame
            src = addrconv.mac.bin_to_text(bytes(msg.data[6:12]))
            self.learn(msg.datapath, src, msg.match["in_port"])

    @set_ev_cls(ofp_event.EventOFPErrorMsg,
                [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error_msg_handler(self, ev: Any) -> None:
        """A switch refused something: say loudly what, and remember it."""
        msg = ev.msg
        dp, ofp = msg.datapath, msg.datapath.ofproto
        names = ofp.ofp_error_to_jsondict(msg.type, msg.code)
        flow_cookie = flows.offending_cookie(ofp, bytes(msg.data))
        rule = None
        if flow_cookie is not None and kind_of(flow_cookie) == KIND_RULE:
            found = self.policy.rule_by_number(flow_cookie & 0xFFFFFFFF)
            rule = found.id if found else None
        with self._sent_lock:
            request = self._sent.get((dp.id, msg.xid), "a request not sent by this app")
        error = {"time": time.time(), "dpid": dp.id, "xid": msg.xid, "type": names["type"],
                 "code": names["code"], "rule": rule, "request": request,
                 "cookie": None if flow_cookie is None else f"{flow_cookie:#018x}"}
        self.logger.error("OpenFlow ERROR from switch %s: %s %s, cookie %s (rule %s), "
                          "xid %s: %s", dp.id, error["type"], error["code"], error["cookie"],
                          rule, msg.xid, request)
        self.errors = (self.errors + [error])[-MAX_ERRORS:]
        self.error_count += 1

    @set_ev_cls(ofp_event.EventOFPBarrierReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def barrier_reply_handler(self, ev: Any) -> None:
        """Everything sent before the barrier has been processed."""
        waiter = self._waiters.pop((ev.msg.datapath.id, ev.msg.xid), None)
        if waiter:
            waiter.finish()

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def flow_stats_reply_handler(self, ev: Any) -> None:
        """Collect flow statistics until the last part of the reply."""
        msg = ev.msg
        key = (msg.datapath.id, msg.xid)
        waiter = self._waiters.get(key)
        if waiter is None:
            return
        waiter.bodies.extend(msg.body)
        if not msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
            self._waiters.pop(key, None)
            waiter.finish()

    def poll_arp_drops(self, timeout: float = ARP_POLL_TIMEOUT) -> None:
        """Read the ARP drop counters of every switch; log a port that starts dropping."""
        dps = list(self.datapaths.values())
        waiters = [(dp.id, self.request(dp, flows.flow_stats_request(dp, cookie(KIND_ARP_DROP), KIND_MASK),
                                        "ARP inspection counters")) for dp in dps]
        deadline = time.monotonic() + timeout
        for dpid, waiter in waiters:
            if waiter.done.wait(max(0.0, deadline - time.monotonic())):
                self.count_arp_drops(dpid, [(s.cookie, s.packet_count) for s in waiter.bodies])

    def count_arp_drops(self, dpid: int, counters: list[tuple[int, int]], now: Optional[float] = None) -> None:
        """Fold one switch's drop-flow counters (cookie, packets) into the per-port totals."""
        now = time.time() if now is None else now
        names = {s.dpid: s.name for s in self.policy.switches}
        for flow_cookie, raw in counters:
            if kind_of(flow_cookie) != KIND_ARP_DROP:
                continue
            port = flow_cookie & 0xFFFFFFFF
            host = self.policy.host_at(dpid, port)
            entry = self.arp_drops.setdefault((dpid, port), ArpDrops(dpid, port, host.name if host else "?"))
            new = raw - entry.raw if raw >= entry.raw else raw  # a reinstall resets the flow's counter
            entry.raw = raw
            if new <= 0:
                continue
            burst = entry.last is None or now - entry.last > ARP_QUIET
            entry.packets += new
            entry.first = entry.first or now
            entry.last = now
            if burst:
                self.logger.warning("ARP inspection: switch %s port %s (host %s, %s) sends spoofed ARP: "
                                    "%d dropped (sender IP/MAC not the design's)", names.get(dpid, dpid),
                                    port, entry.host, host.mac if host else "unknown MAC", entry.packets)

    def arp_report(self) -> dict[str, Any]:
        """ARP inspection state and per-port drops, for the control socket."""
        names = {s.dpid: s.name for s in self.policy.switches}
        drops = [d.to_dict(names.get(d.dpid)) for _, d in sorted(self.arp_drops.items()) if d.packets]
        return {"on": self.policy.arp_inspection, "dropped": sum(d["packets"] for d in drops), "ports": drops}

    def install(self, dp: Any) -> Waiter:
        """Delete every flow of a switch, install the policy's, return the barrier waiter."""
        with self.lock:
            self.ready[dp.id] = False
            generation = self._installs[dp.id] = self._installs.get(dp.id, 0) + 1
            self.send(dp, flows.delete_flows(dp), "delete all flows")
            self.send(dp, dp.ofproto_parser.OFPBarrierRequest(dp), "barrier after delete")
            specs = compile_switch(self.policy, dp.id)
            for mac, port in dict(self.learned.get(dp.id, {})).items():  # packet-ins may add
                specs += learned_flows(mac, port)
            for spec in specs:
                self.send_flow(dp, spec)
            errors = self.error_count
            return self.request(dp, dp.ofproto_parser.OFPBarrierRequest(dp), "barrier",
                                on_done=lambda: self._installed(dp, generation, len(specs), errors))

    def learn(self, dp: Any, mac: str, port: int) -> None:
        """Remember where a source MAC lives and forward to it from now on."""
        if int(mac[:2], 16) & 1:
            return
        static = {h.mac: h.port for h in self.policy.hosts_on(dp.id)}
        if mac in static:  # the policy is the truth for its hosts: say so once, change nothing
            if (dp.id, mac, port) not in self._warned:
                self._warned.add((dp.id, mac, port))
                self.logger.warning("switch %s: %s seen on port %s, policy says port %s",
                                    dp.id, mac, port, static[mac])
            return
        table = self.learned.setdefault(dp.id, {})
        old = table.get(mac)
        if old == port:
            self.send_flow(dp, learned_source(mac, port))  # its flow was lost: put it back
            return
        table[mac] = port
        self.logger.info("switch %s: learned %s on port %s%s", dp.id, mac, port,
                         f" (moved from port {old})" if old else "")
        if old is not None:
            self.send(dp, flows.delete_strict(dp, learned_source(mac, old)),
                      f"forget {mac} on port {old}")
        for spec in learned_flows(mac, port):
            self.send_flow(dp, spec)

    def send_flow(self, dp: Any, spec: FlowSpec) -> None:
        """Install one flow spec."""
        self.send(dp, flows.flow_mod(dp, spec), flows.describe(spec))

    def send(self, dp: Any, msg: Any, description: str) -> None:
        """Send a message, remembering what it was so an error can name it."""
        self._register(dp, msg, description)
        dp.send_msg(msg)

    def request(self, dp: Any, msg: Any, description: str,
                on_done: Optional[Callable[[], None]] = None) -> Waiter:
        """Send a request whose reply(ies) a Waiter collects."""
        waiter = Waiter(on_done=on_done)
        self._waiters[self._register(dp, msg, description)] = waiter
        dp.send_msg(msg)
        return waiter

    def sync(self, dps: list[Any], timeout: float = 1.0) -> list[str]:
        """Wait until switches processed what was sent; problems (errors, silence) as text."""
        before = self.error_count
        waiters = [(dp.id, self.request(dp, dp.ofproto_parser.OFPBarrierRequest(dp), "barrier"))
                   for dp in dps]
        deadline = time.monotonic() + timeout
        problems = [f"switch {dpid}: no barrier reply within {timeout} s"
                    for dpid, w in waiters
                    if not w.done.wait(max(0.0, deadline - time.monotonic()))]
        new_errors = self.errors[-(self.error_count - before):] if self.error_count > before else []
        return problems + [f"switch {e['dpid']}: {e['type']} {e['code']}: {e['request']}"
                           for e in new_errors]

    def _register(self, dp: Any, msg: Any, description: str) -> tuple[int, int]:
        """Give a message its xid and remember its description."""
        with self._sent_lock:
            dp.set_xid(msg)
            key = (dp.id, msg.xid)
            self._sent[key] = description
            while len(self._sent) > MAX_SENT:
                self._sent.popitem(last=False)
        return key

    def _installed(self, dp: Any, generation: int, count: int, errors_before: int) -> None:
        """The barrier after an install came back (ignored if another install followed)."""
        if self._installs.get(dp.id) != generation:
            return
        self.ready[dp.id] = True
        failed = self.error_count - errors_before
        log = self.logger.error if failed else self.logger.info
        log("switch %s: %d flows sent, %d refused (firewall %s, ARP inspection %s)", dp.id, count, failed,
            "on" if self.policy.firewall else "off", "on" if self.policy.arp_inspection else "off")
