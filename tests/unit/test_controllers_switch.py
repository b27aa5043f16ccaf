"""The app and the compiler on a recording fake datapath (real os-ken OF1.3 messages)."""
import logging
from types import SimpleNamespace

import pytest
from os_ken.ofproto import nicira_ext, ofproto_v1_3 as ofp, ofproto_v1_3_parser as parser
from scapy.all import ARP, ICMP, IP, Ether

from controllers import compiler, flows
from controllers.ops import LiveControl
from controllers.policy import parse_policy
from controllers.switch import WeblabSwitch
from tests.unit.test_controllers_policy import example

# OpenFlow 1.3 prerequisites (spec table 12), written out independently of the compiler.
PREREQS = {
    "ip_proto": ("eth_type", {0x0800, 0x86DD}),
    "ipv4_src": ("eth_type", {0x0800}), "ipv4_dst": ("eth_type", {0x0800}),
    "tcp_src": ("ip_proto", {6}), "tcp_dst": ("ip_proto", {6}),
    "udp_src": ("ip_proto", {17}), "udp_dst": ("ip_proto", {17}),
    "icmpv4_type": ("ip_proto", {1}), "icmpv4_code": ("ip_proto", {1}),
    "arp_spa": ("eth_type", {0x0806}), "arp_tpa": ("eth_type", {0x0806}),
    "arp_op": ("eth_type", {0x0806}), "arp_sha": ("eth_type", {0x0806}), "arp_tha": ("eth_type", {0x0806}),
}
RULE_KIND = compiler.KIND_RULE


class FakeDatapath:
    """Records what the app sends; answers barriers and flow-stats like a switch would."""

    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, app: WeblabSwitch, dpid: int = 1) -> None:
        self.app, self.id, self.xid = app, dpid, 100
        self.address = ("127.0.0.1", 40000 + dpid)
        self.sent: list = []
        self.answer = True  # set False to play a switch that never replies

    def set_xid(self, msg) -> int:
        self.xid += 1
        msg.set_xid(self.xid)
        return self.xid

    def send_msg(self, msg) -> None:
        if msg.xid is None:
            self.set_xid(msg)
        msg.serialize()  # every message must encode
        self.sent.append(msg)
        if not self.answer:
            return
        if isinstance(msg, parser.OFPBarrierRequest):
            reply = parser.OFPBarrierReply(self)
            reply.xid = msg.xid
            self.app.barrier_reply_handler(SimpleNamespace(msg=reply))
        elif isinstance(msg, parser.OFPFlowStatsRequest):
            self._stats_reply(msg)

    def table(self) -> list:
        """The flows a switch would hold now: adds since the last delete of their cookie."""
        held = []
        for msg in self.sent:
            if not isinstance(msg, parser.OFPFlowMod):
                continue
            if msg.command == ofp.OFPFC_ADD:
                held = [m for m in held if not _same_flow(m, msg)] + [msg]
            elif msg.command == ofp.OFPFC_DELETE:
                held = [m for m in held if (m.cookie & msg.cookie_mask) != msg.cookie]
            elif msg.command == ofp.OFPFC_DELETE_STRICT:
                held = [m for m in held if not _same_flow(m, msg)]
        return held

    def _stats_reply(self, request) -> None:
        bodies = [parser.OFPFlowStats(table_id=m.table_id, priority=m.priority, cookie=m.cookie,
                                      packet_count=10, byte_count=1000, match=m.match,
                                      instructions=m.instructions) for m in self.table()]
        half = len(bodies) // 2
        for part, flags in ((bodies[:half], ofp.OFPMPF_REPLY_MORE), (bodies[half:], 0)):
            reply = parser.OFPFlowStatsReply(self, body=part, flags=flags)
            reply.xid = request.xid
            self.app.flow_stats_reply_handler(SimpleNamespace(msg=reply))


def _same_flow(a, b) -> bool:
    return (a.table_id, a.priority, sorted(a.match.items())) == (
        b.table_id, b.priority, sorted(b.match.items()))


def connect(firewall: bool = True, dpid: int = 1, app: WeblabSwitch = None):
    """An app with a policy, and a fake switch that has just connected to it."""
    doc = example()
    doc["firewall"] = firewall
    app = app or WeblabSwitch(policy=parse_policy(doc))
    dp = FakeDatapath(app, dpid)
    app.switch_features_handler(SimpleNamespace(msg=SimpleNamespace(datapath=dp)))
    return app, dp


def adds(dp) -> list:
    return [m for m in dp.sent if isinstance(m, parser.OFPFlowMod) and m.command == ofp.OFPFC_ADD]


def actions(mod) -> list:
    return [a for i in mod.instructions if isinstance(i, parser.OFPInstructionActions)
            for a in i.actions]


def goto(mod):
    found = [i.table_id for i in mod.instructions if isinstance(i, parser.OFPInstructionGotoTable)]
    return found[0] if found else None


def cts(mod) -> list:
    return [a for a in actions(mod) if isinstance(a, parser.NXActionCT)]


def in_band(priority: int, band: str) -> bool:
    low, high = compiler.BANDS[band]
    return low <= priority <= high


def test_connect_deletes_every_flow_in_every_table_first():
    _app, dp = connect()
    first = dp.sent[0]
    assert isinstance(first, parser.OFPFlowMod)
    assert first.command == ofp.OFPFC_DELETE and first.table_id == ofp.OFPTT_ALL
    assert (first.out_port, first.out_group) == (ofp.OFPP_ANY, ofp.OFPG_ANY)
    assert first.cookie_mask == 0 and dict(first.match.items()) == {}
    assert isinstance(dp.sent[1], parser.OFPBarrierRequest)
    assert all(m.command == ofp.OFPFC_ADD for m in dp.sent[2:]
               if isinstance(m, parser.OFPFlowMod))


@pytest.mark.parametrize("firewall", [True, False])
def test_every_match_carries_its_prerequisites(firewall):
    _app, dp = connect(firewall)
    checked = 0
    for mod in adds(dp):
        fields = dict(mod.match.items())
        for name, value in fields.items():
            if name in PREREQS:
                need, allowed = PREREQS[name]
                assert fields.get(need) in allowed, f"{name} without {need}: {fields}"
                checked += 1
    assert checked > 20 if firewall else checked == 0


def test_rule_protocols_compile_to_their_ip_protocols():
    app, dp = connect()
    by_rule = {}
    for mod in adds(dp):
        if compiler.kind_of(mod.cookie) == RULE_KIND:
            rule = app.policy.rule_by_number(mod.cookie & 0xFFFFFFFF)
            by_rule.setdefault(rule.id, []).append(dict(mod.match.items()))
    assert {m.get("ip_proto") for m in by_rule["icmp"]} == {1}
    assert {m.get("ip_proto") for m in by_rule["vrrp"]} == {112}
    assert {(m["ip_proto"], m["udp_dst"]) for m in by_rule["dns"]} == {(17, 53)}
    assert {m["eth_type"] for m in by_rule["arp"]} == {0x0806}
    assert all("ip_proto" not in m for m in by_rule["lan"])


def test_priorities_sit_in_their_bands():
    app, dp = connect()
    mods = adds(dp)
    rule_mods = [m for m in mods if compiler.kind_of(m.cookie) == RULE_KIND]
    arp = [m for m in rule_mods if m.match["eth_type"] == 0x0806]
    acl = [m for m in rule_mods if m.match["eth_type"] == 0x0800]
    assert arp and acl
    assert all(m.table_id == compiler.TABLE_FILTER and in_band(m.priority, "control") for m in arp)
    assert all(m.table_id == compiler.TABLE_ACL and in_band(m.priority, "acl") for m in acl)
    l2 = [m for m in mods if m.table_id == compiler.TABLE_L2 and m.priority > 0]
    assert l2 and all(in_band(m.priority, "l2") for m in l2)
    assert max(m.priority for m in l2) < min(m.priority for m in acl)
    denies = [m.priority for m in acl if not goto(m)]
    allows = [m.priority for m in acl if goto(m)]
    assert denies and allows and min(denies) > max(allows)
    base = [m for m in mods if m.cookie == compiler.cookie(compiler.KIND_BASE)]
    assert base and all(in_band(m.priority, "control") for m in base)


def test_one_cookie_per_rule():
    app, dp = connect()
    owners = {}
    for mod in adds(dp):
        if compiler.kind_of(mod.cookie) == RULE_KIND:
            owners.setdefault(mod.cookie, set()).add(
                app.policy.rule_by_number(mod.cookie & 0xFFFFFFFF).id)
    assert all(len(ids) == 1 for ids in owners.values())
    assert sorted(i for ids in owners.values() for i in ids) == sorted(
        r.id for r in app.policy.rules)
    assert len(owners) == len(app.policy.rules)


def test_default_deny_for_ip_and_non_ip():
    _app, dp = connect()
    deny = [m for m in adds(dp) if m.cookie == compiler.cookie(compiler.KIND_DEFAULT_DENY)]
    assert sorted(m.table_id for m in deny) == [compiler.TABLE_FILTER, compiler.TABLE_ACL]
    assert all(m.priority == 0 and m.instructions == [] and not m.match.items() for m in deny)
    # the only way from the ACL table to forwarding: established/related, or an allow rule
    for mod in adds(dp):
        if mod.table_id == compiler.TABLE_ACL and goto(mod) == compiler.TABLE_L2:
            state = mod.match["ct_state"]
            assert state in [(0x22, 0x22), (0x24, 0x24)] or (
                state == (0x21, 0x21) and compiler.kind_of(mod.cookie) == RULE_KIND)
    filt = [m for m in adds(dp) if m.table_id == compiler.TABLE_FILTER and goto(m) is not None]
    assert all(m.match["eth_type"] == 0x0806 for m in filt)  # only ARP rules skip conntrack


def test_stateful_conntrack_actions():
    _app, dp = connect(dpid=1)
    mods = adds(dp)
    track = [m for m in mods if cts(m) and m.table_id == compiler.TABLE_FILTER]
    assert len(track) == 1
    (ct,) = cts(track[0])
    assert track[0].match["ct_state"] == (0, 0x20) and track[0].match["eth_type"] == 0x0800
    assert (ct.flags, ct.recirc_table, ct.zone_src, ct.zone_ofs_nbits) == (0, 1, "", 1)
    allows = [m for m in mods if compiler.kind_of(m.cookie) == RULE_KIND
              and m.table_id == compiler.TABLE_ACL and goto(m) == compiler.TABLE_L2]
    assert allows
    for mod in allows:
        (commit,) = cts(mod)
        assert commit.flags == nicira_ext.NX_CT_F_COMMIT
        assert commit.recirc_table == nicira_ext.NX_CT_RECIRC_NONE and commit.zone_ofs_nbits == 1
        assert mod.match["ct_state"] == (0x21, 0x21)  # +trk+new
    denies = [m for m in mods if compiler.kind_of(m.cookie) == RULE_KIND and
              m.table_id == compiler.TABLE_ACL and not goto(m)]
    assert denies and all(m.instructions == [] for m in denies)


def test_each_switch_has_its_own_conntrack_zone():
    _app, dp2 = connect(dpid=2)
    zones = {ct.zone_ofs_nbits for m in adds(dp2) for ct in cts(m)}
    assert zones == {2}


def test_firewall_off_is_a_plain_learning_switch_with_proactive_hosts():
    _app, dp = connect(firewall=False, dpid=2)
    mods = adds(dp)
    assert not any(cts(m) for m in mods)
    (entry,) = [m for m in mods if m.table_id == compiler.TABLE_FILTER]
    assert entry.priority == 0 and goto(entry) == compiler.TABLE_L2
    hosts = {m.match["eth_dst"]: actions(m)[0].port for m in mods
             if m.table_id == compiler.TABLE_L2_DST and m.priority == compiler.PRIO_HOST}
    assert hosts == {"00:00:00:00:01:03": 3, "00:00:00:00:01:04": 4, "00:00:00:00:01:fe": 9}
    sources = {(m.match["in_port"], m.match["eth_src"]) for m in mods
               if m.table_id == compiler.TABLE_L2 and goto(m) == compiler.TABLE_L2_DST
               and m.priority == compiler.PRIO_HOST}
    assert sources == {(3, "00:00:00:00:01:03"), (4, "00:00:00:00:01:04"),
                       (9, "00:00:00:00:01:fe")}
    (miss,) = [m for m in mods if m.table_id == compiler.TABLE_L2 and m.priority == 0]
    assert [a.port for a in actions(miss)] == [ofp.OFPP_CONTROLLER]
    assert goto(miss) == compiler.TABLE_L2_DST  # the switch forwards; the controller learns
    floods = [m for m in mods if m.table_id == compiler.TABLE_L2_DST
              and [a.port for a in actions(m)] == [ofp.OFPP_FLOOD]]
    assert sorted(m.priority for m in floods) == [0, compiler.PRIO_FLOOD]


def _packet_in(dp, in_port: int, frame, kind: int = compiler.KIND_MISS):
    data = bytes(frame)[:flows.LEARN_BYTES]
    msg = parser.OFPPacketIn(dp, buffer_id=ofp.OFP_NO_BUFFER, total_len=len(bytes(frame)),
                             reason=ofp.OFPR_ACTION, table_id=2, cookie=compiler.cookie(kind),
                             match=parser.OFPMatch(in_port=in_port), data=data)
    return SimpleNamespace(msg=msg)


def _learned(dp) -> dict:
    """(table, in_port or None, mac) -> output port or goto, for learned flows a switch holds."""
    held = {}
    for m in dp.table():
        if m.cookie == compiler.cookie(compiler.KIND_LEARNED):
            mac = m.match.get("eth_src") or m.match["eth_dst"]
            held[(m.table_id, m.match.get("in_port"), mac)] = (
                actions(m)[0].port if actions(m) else goto(m))
    return held


def test_packet_in_learns_sources_and_moves_them():
    app, dp = connect()
    vmac = "00:00:5e:00:01:33"
    garp = Ether(src=vmac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, psrc="10.0.0.100",
                                                           pdst="10.0.0.100", hwsrc=vmac)
    sent = len(dp.sent)
    app.packet_in_handler(_packet_in(dp, 4, garp))
    assert _learned(dp) == {(compiler.TABLE_L2, 4, vmac): compiler.TABLE_L2_DST,
                            (compiler.TABLE_L2_DST, None, vmac): 4}
    assert not any(isinstance(m, parser.OFPPacketOut) for m in dp.sent[sent:])
    # the VIP moved: the old source flow goes (strictly), forwarding follows
    app.packet_in_handler(_packet_in(dp, 5, garp))
    assert _learned(dp) == {(compiler.TABLE_L2, 5, vmac): compiler.TABLE_L2_DST,
                            (compiler.TABLE_L2_DST, None, vmac): 5}
    strict = [m for m in dp.sent if isinstance(m, parser.OFPFlowMod)
              and m.command == ofp.OFPFC_DELETE_STRICT]
    assert [dict(m.match.items()) for m in strict] == [{"in_port": 4, "eth_src": vmac}]
    assert app.learned[1] == {vmac: 5}
    assert app.packet_ins == {1: 2}  # counted per switch: the steady-state packet-in rate comes from it


def test_packet_in_never_relearns_policy_hosts_or_multicast():
    app, dp = connect()
    sent = len(dp.sent)
    ping = Ether(src="00:00:00:00:00:01", dst="00:00:00:00:00:99") / IP() / ICMP()
    app.packet_in_handler(_packet_in(dp, 7, ping))  # client, but not on its port
    app.packet_in_handler(_packet_in(dp, 7, Ether(src="01:00:5e:00:00:12") / IP()))
    assert app.learned.get(1, {}) == {} and len(dp.sent) == sent


def test_learned_macs_survive_a_reinstall():
    app, dp = connect()
    frame = Ether(src="00:00:5e:00:01:33", dst="ff:ff:ff:ff:ff:ff") / ARP()
    app.packet_in_handler(_packet_in(dp, 4, frame))
    assert LiveControl(app).handle({"op": "disable"})["ok"]
    assert set(_learned(dp).values()) == {4, compiler.TABLE_L2_DST}


def test_openflow_error_is_loud_and_names_the_rule(caplog):
    app, dp = connect()
    assert LiveControl(app).handle({"op": "status"})["status"] == "starting"  # s2 missing
    connect(app=app, dpid=2)
    status = LiveControl(app).handle({"op": "status"})
    assert status["status"] == "ok" and [s["ready"] for s in status["switches"]] == [True, True]
    bad = next(m for m in adds(dp) if m.cookie == compiler.cookie(RULE_KIND, 4))  # web-http
    error = parser.OFPErrorMsg(dp, type_=ofp.OFPET_BAD_MATCH, code=ofp.OFPBMC_BAD_PREREQ,
                               data=bytes(bad.buf[:64]))
    error.xid = bad.xid
    with caplog.at_level(logging.ERROR):
        app.error_msg_handler(SimpleNamespace(msg=error))
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "OFPBMC_BAD_PREREQ" in record.getMessage() and "web-http" in record.getMessage()
    status = LiveControl(app).handle({"op": "status"})
    assert status["status"] == "error" and status["error_count"] == 1
    (err,) = status["errors"]
    assert err["rule"] == "web-http" and err["cookie"] == "0x0100000000000004"
    assert err["type"].startswith("OFPET_BAD_MATCH") and "tcp_dst=80" in err["request"]


def test_live_allow_installs_one_new_cookie_and_remove_deletes_it():
    app, dp = connect()
    control = LiveControl(app)
    reply = control.handle({"op": "allow", "rule": {"src": "client", "dst": "role:web",
                                                     "proto": "tcp", "port": 22}})
    assert reply["ok"] and reply["id"] == "live-8" and reply["flows"] == 2
    new_cookie = compiler.cookie(RULE_KIND, 8)
    new = [m for m in dp.table() if m.cookie == new_cookie]
    assert sorted(m.match["ipv4_dst"] for m in new) == ["10.0.1.3", "10.0.1.4"]
    assert all(m.match["tcp_dst"] == 22 and m.match["ip_proto"] == 6 for m in new)
    assert isinstance(dp.sent[-1], parser.OFPBarrierRequest)  # confirmed before replying
    reply = control.handle({"op": "remove", "id": "live-8"})
    assert reply == {"id": "live-8", "ok": True}
    delete = [m for m in dp.sent if isinstance(m, parser.OFPFlowMod)
              and m.command == ofp.OFPFC_DELETE and m.cookie == new_cookie]
    assert len(delete) == 1 and delete[0].cookie_mask == flows.ALL_COOKIES
    assert delete[0].table_id == ofp.OFPTT_ALL
    assert not [m for m in dp.table() if m.cookie == new_cookie]
    assert len(dp.table()) == len(adds(dp)) - 2  # nothing else went
    # numbers are never reused, so a new rule never inherits old counters
    assert control.handle({"op": "deny", "rule": {"src": "any", "dst": "dns", "proto": "ip"}})[
        "id"] == "live-9"


def test_live_deny_sits_above_every_allow():
    app, dp = connect()
    reply = LiveControl(app).handle({"op": "deny", "rule": {
        "id": "block", "src": "client", "dst": "server1", "proto": "tcp", "port": 80}})
    assert reply["ok"]
    (deny,) = [m for m in dp.table() if m.cookie == compiler.cookie(RULE_KIND, 8)]
    allows = [m.priority for m in dp.table() if m.table_id == compiler.TABLE_ACL
              and compiler.kind_of(m.cookie) == RULE_KIND and goto(m)]
    assert deny.instructions == [] and deny.priority > max(allows)


@pytest.mark.parametrize("request_,error", [
    ({"op": "allow"}, "rule: must be an object"),
    ({"op": "allow", "rule": {"src": "nobody", "dst": "any", "proto": "ip"}},
     "rule.src: unknown host 'nobody'"),
    ({"op": "deny", "rule": {"src": "any", "dst": "any", "proto": "ip", "action": "allow"}},
     "rule.action: 'allow' in an 'deny' request"),
    ({"op": "allow", "rule": {"id": "arp", "src": "any", "dst": "any", "proto": "ip"}},
     "rule.id: a rule 'arp' already exists"),
    ({"op": "remove", "id": "nope"}, "id: no rule 'nope'"),
    ({"op": "flush"}, "op: must be one of"),
])
def test_bad_requests_are_refused_without_changes(request_, error):
    app, dp = connect()
    sent = len(dp.sent)
    reply = LiveControl(app).handle(request_)
    assert reply["ok"] is False and reply["error"].startswith(error)
    assert len(dp.sent) == sent and len(app.policy.rules) == 7


def test_show_sums_counters_by_cookie_over_multi_part_replies():
    app, dp = connect()
    reply = LiveControl(app).handle({"op": "show"})
    assert reply["ok"]
    rows = {r["id"]: r for r in reply["rules"]}
    web_flows = len([m for m in dp.table() if m.cookie == compiler.cookie(RULE_KIND, 4)])
    assert web_flows == 6
    assert rows["web-http"] == {**rows["web-http"], "flows": 6, "packets": 60, "bytes": 6000,
                                "cookie": "0x100000000000004", "port": 80}
    assert reply["default_deny"] == {"packets": 20, "bytes": 2000, "flows": 2}


def test_enable_and_disable_reinstall_live():
    app, dp = connect(firewall=False)
    control = LiveControl(app)
    assert not any(cts(m) for m in dp.table())
    assert control.handle({"op": "enable"}) == {"firewall": True, "ok": True}
    assert any(cts(m) for m in dp.table()) and app.policy.firewall
    assert control.handle({"op": "disable"})["ok"]
    assert not any(cts(m) for m in dp.table())


def test_silent_switch_is_reported_not_waited_for_forever():
    app, dp = connect()
    dp.answer = False
    reply = LiveControl(app).handle({"op": "allow", "rule": {"src": "any", "dst": "dns",
                                                             "proto": "tcp", "port": 53}})
    assert reply["ok"] is False and "no barrier reply" in reply["error"]
