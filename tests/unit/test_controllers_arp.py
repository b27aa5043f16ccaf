"""ARP inspection: the compiled bindings and drops, judged on crafted ARP frames; counters, reports, live on/off."""
import ipaddress
import logging

import pytest
from scapy.all import ARP, Ether

from controllers import compiler
from controllers.ops import LiveControl
from controllers.policy import PolicyError, parse_policy
from controllers.switch import WeblabSwitch
from tests.unit.test_controllers_policy import example
from tests.unit.test_controllers_switch import FakeDatapath, adds, connect, goto

S1_MAC, S2_MAC = "00:00:00:00:01:03", "00:00:00:00:01:04"
LB1_MAC, LB2_MAC = "00:00:00:00:00:0a", "00:00:00:00:00:0b"
VMAC = "00:00:5e:00:01:33"


def policy(inspection: bool = True, firewall: bool = True):
    doc = example()
    doc["firewall"], doc["arp_inspection"] = firewall, inspection
    return parse_policy(doc)


def _field_matches(want, have) -> bool:
    if isinstance(want, tuple):  # (value, mask)
        if "." in want[0]:
            value, mask = (int(ipaddress.IPv4Address(x)) for x in want)
            return int(ipaddress.IPv4Address(have)) & mask == value & mask
        value, mask = (int(x.replace(":", ""), 16) for x in want)
        return int(have.replace(":", ""), 16) & mask == value & mask
    return str(want).lower() == str(have).lower()


def verdict(flows, in_port: int, frame) -> str:
    """What the L2 source table does with a frame: 'forward' (to L2_DST), 'drop', or 'learn' (miss)."""
    frame = Ether(bytes(frame))
    fields = {"in_port": in_port, "eth_type": frame.type, "eth_src": frame.src}
    if ARP in frame:
        fields.update(arp_sha=frame[ARP].hwsrc, arp_spa=frame[ARP].psrc, arp_op=frame[ARP].op)
    table = sorted((f for f in flows if f.table == compiler.TABLE_L2), key=lambda f: -f.priority)
    for flow in table:
        if all(k in fields and _field_matches(v, fields[k]) for k, v in flow.match.items()):
            if flow.goto == compiler.TABLE_L2_DST and not flow.actions:
                return "forward"
            return "drop" if flow.goto is None and not flow.actions else "learn"
    return "drop"


def arp(src_mac: str, ip: str, op: int = 2, eth_src: str | None = None, target: str = "10.0.1.3"):
    return Ether(src=eth_src or src_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=op, hwsrc=src_mac, psrc=ip, pdst=target)


def test_spoofed_arp_of_every_kind_is_dropped_at_the_attackers_port():
    flows = compiler.compile_switch(policy(), 2)
    assert verdict(flows, 4, arp(S2_MAC, "10.0.1.4")) == "forward"          # server2 about itself
    assert verdict(flows, 4, arp(S2_MAC, "10.0.1.3")) == "drop"             # reply: server1 is-at server2
    assert verdict(flows, 4, arp(S2_MAC, "10.0.1.3", op=1)) == "drop"       # request / gratuitous
    assert verdict(flows, 4, arp(S1_MAC, "10.0.1.3")) == "drop"             # forged sender MAC too
    assert verdict(flows, 4, arp(S2_MAC, "10.0.1.4", eth_src=S1_MAC)) == "drop"  # forged Ethernet source
    assert verdict(flows, 3, arp(S1_MAC, "10.0.1.3")) == "forward"          # server1 itself, its port
    assert verdict(flows, 3, arp(S1_MAC, "0.0.0.0", op=1)) == "forward"     # an address probe


def test_keepalived_takeover_garps_pass_for_the_vip_holders_only():
    flows = compiler.compile_switch(policy(), 1)
    vip = "10.0.0.100"
    assert verdict(flows, 5, arp(LB2_MAC, vip, op=1, target=vip)) == "forward"  # lb2 takes over
    assert verdict(flows, 4, arp(LB1_MAC, vip, target=vip)) == "forward"
    assert verdict(flows, 5, arp(VMAC, vip, target=vip)) == "forward"          # keepalived use_vmac
    assert verdict(flows, 1, arp("00:00:00:00:00:01", vip, target=vip)) == "drop"  # the client may not
    assert verdict(flows, 5, arp(LB2_MAC, "10.0.0.10")) == "drop"              # lb2 claiming lb1's own IP
    assert verdict(flows, 5, arp(VMAC, "10.0.0.10")) == "drop"                 # a VRRP MAC only for VIPs


def test_multi_homed_hosts_keep_their_own_addresses_on_every_leg():
    flows = compiler.compile_switch(policy(), 1)
    assert verdict(flows, 9, arp("00:00:00:00:00:fe", "10.0.0.254")) == "forward"
    assert verdict(flows, 9, arp("00:00:00:00:00:fe", "10.0.1.254")) == "forward"  # arp_announce 0
    assert verdict(flows, 9, arp("00:00:00:00:01:fe", "10.0.1.254")) == "drop"     # the other leg's MAC


def test_ip_traffic_and_unknown_ports_are_not_inspected():
    flows = compiler.compile_switch(policy(), 2)
    ip = Ether(src=S2_MAC, dst=S1_MAC, type=0x0800) / bytes(20)
    assert verdict(flows, 4, ip) == "forward"                       # the host's own source flow
    assert verdict(flows, 7, arp("00:00:00:00:07:07", "10.0.1.3")) == "learn"  # no host there: L2 as before


def test_inspection_flows_per_port_with_a_counting_cookie_in_the_l2_band():
    on, off = compiler.compile_switch(policy(), 2), compiler.compile_switch(policy(False), 2)
    inspect = [f for f in on if f not in off]
    assert inspect and all(f.table == compiler.TABLE_L2 for f in inspect)
    assert all(compiler.BANDS["l2"][0] <= f.priority <= compiler.BANDS["l2"][1] for f in inspect)
    assert all(f.priority > compiler.PRIO_HOST for f in inspect)
    drops = [f for f in inspect if compiler.kind_of(f.cookie) == compiler.KIND_ARP_DROP]
    assert sorted(f.cookie & 0xFFFFFFFF for f in drops) == [3, 4, 9]  # one per host port, numbered by it
    assert all(f.match == {"in_port": f.cookie & 0xFFFFFFFF, "eth_type": 0x0806} for f in drops)
    bindings = [f for f in inspect if compiler.kind_of(f.cookie) == compiler.KIND_ARP_BINDING]
    assert all(f.match["eth_type"] == 0x0806 and goto_of(f) == compiler.TABLE_L2_DST for f in bindings)
    assert not [f for f in compiler.compile_switch(policy(False, firewall=False), 2)
                if compiler.kind_of(f.cookie) in (compiler.KIND_ARP_BINDING, compiler.KIND_ARP_DROP)]
    fw_off = compiler.compile_switch(policy(True, firewall=False), 2)
    assert [f for f in fw_off if f in inspect] == inspect  # the same with the firewall off


def goto_of(flow) -> int | None:
    return flow.goto


def test_policy_field_is_optional_and_validated():
    doc = example()
    assert parse_policy(doc).arp_inspection is False
    doc["arp_inspection"] = "yes"
    with pytest.raises(PolicyError, match="arp_inspection"):
        parse_policy(doc)


def test_switch_installs_inspection_with_only_arp_prerequisite_matches():
    app = WeblabSwitch(policy=policy())
    _, dp = connect(app=app, dpid=2)
    mods = [m for m in adds(dp) if compiler.kind_of(m.cookie) in (compiler.KIND_ARP_BINDING, compiler.KIND_ARP_DROP)]
    assert mods
    for m in mods:
        fields = dict(m.match.items())
        assert fields["eth_type"] == 0x0806 and "in_port" in fields
        assert goto(m) in (None, compiler.TABLE_L2_DST)


def test_drops_are_counted_per_port_and_logged_once_per_burst(caplog):
    app = WeblabSwitch(policy=policy())
    drop4 = compiler.arp_drop_cookie(4)
    caplog.set_level(logging.WARNING)
    app.count_arp_drops(2, [(drop4, 0), (compiler.arp_drop_cookie(3), 0)], now=100.0)
    assert app.arp_report() == {"on": True, "dropped": 0, "ports": []}
    app.count_arp_drops(2, [(drop4, 6)], now=100.5)
    app.count_arp_drops(2, [(drop4, 10)], now=101.0)
    lines = [r.getMessage() for r in caplog.records if "ARP inspection" in r.getMessage()]
    assert len(lines) == 1 and "s2 port 4" in lines[0] and "server2" in lines[0] and S2_MAC in lines[0]
    app.count_arp_drops(2, [(drop4, 2)], now=101.5)  # the flow was reinstalled: its counter restarted
    app.count_arp_drops(2, [(drop4, 3)], now=120.0)  # a new burst after a quiet spell: logged again
    lines = [r.getMessage() for r in caplog.records if "ARP inspection" in r.getMessage()]
    assert len(lines) == 2
    (port,) = app.arp_report()["ports"]
    assert port == {"dpid": 2, "switch": "s2", "port": 4, "host": "server2", "packets": 13,
                    "first": 100.5, "last": 120.0}


def test_poll_reads_the_switch_counters_and_status_and_show_report_them():
    app = WeblabSwitch(policy=policy())
    _, dp = connect(app=app, dpid=2)
    app.poll_arp_drops(timeout=1)
    stats = [m for m in dp.sent if m.__class__.__name__ == "OFPFlowStatsRequest"]
    assert stats and stats[-1].cookie_mask == compiler.KIND_MASK
    assert stats[-1].cookie == compiler.cookie(compiler.KIND_ARP_DROP)
    report = app.arp_report()
    assert report["on"] and {p["port"] for p in report["ports"]} == {3, 4, 9}  # the fake says 10 each
    control = LiveControl(app)
    assert control.handle({"op": "status"})["arp_inspection"]["dropped"] == 30
    assert control.handle({"op": "show"})["arp_inspection"]["ports"]


def test_live_on_off_touches_only_the_inspection_flows():
    app = WeblabSwitch(policy=policy(False))
    _, dp = connect(app=app, dpid=2)
    before = {(m.table_id, m.priority, m.cookie) for m in dp.table()}
    control = LiveControl(app)
    reply = control.handle({"op": "arp-inspection", "on": True})
    assert reply == {"arp_inspection": True, "ok": True}
    added = {(m.table_id, m.priority, m.cookie) for m in dp.table()} - before
    assert added and {compiler.kind_of(c) for _, _, c in added} == {compiler.KIND_ARP_BINDING,
                                                                     compiler.KIND_ARP_DROP}
    assert control.handle({"op": "status"})["arp_inspection"]["on"] is True
    assert control.handle({"op": "arp-inspection", "on": False})["ok"]
    assert {(m.table_id, m.priority, m.cookie) for m in dp.table()} == before
    assert control.handle({"op": "arp-inspection", "on": "yes"})["ok"] is False
    assert app.policy.arp_inspection is False


def test_reconnect_keeps_inspection_as_set_live():
    app = WeblabSwitch(policy=policy(False))
    _, dp = connect(app=app, dpid=2)
    LiveControl(app).handle({"op": "arp-inspection", "on": True})
    dp2 = FakeDatapath(app, 2)
    from types import SimpleNamespace
    app.switch_features_handler(SimpleNamespace(msg=SimpleNamespace(datapath=dp2)))
    assert any(compiler.kind_of(m.cookie) == compiler.KIND_ARP_DROP for m in dp2.table())
