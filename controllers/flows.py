"""Turns compiler FlowSpecs into os-ken OpenFlow 1.3 messages, and reads some back."""
from __future__ import annotations

import struct
from typing import Any, Optional

from os_ken.ofproto import nicira_ext

from controllers.compiler import CONTROLLER, FLOOD, Action, Ct, FlowSpec, Output

ALL_COOKIES = 0xFFFFFFFFFFFFFFFF
LEARN_BYTES = 64  # the controller only reads the Ethernet header of a packet-in


def flow_mod(dp: Any, spec: FlowSpec) -> Any:
    """An OFPFlowMod adding one flow spec."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    inst = []
    if spec.actions:
        inst.append(parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS, [_action(dp, a) for a in spec.actions]))
    if spec.goto is not None:
        inst.append(parser.OFPInstructionGotoTable(spec.goto))
    return parser.OFPFlowMod(datapath=dp, cookie=spec.cookie, table_id=spec.table,
                             command=ofp.OFPFC_ADD, idle_timeout=spec.idle_timeout,
                             priority=spec.priority, match=parser.OFPMatch(**spec.match),
                             instructions=inst)


def delete_flows(dp: Any, flow_cookie: int = 0, cookie_mask: int = 0) -> Any:
    """An OFPFlowMod deleting, in every table, all flows (default) or those of a cookie."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    return parser.OFPFlowMod(datapath=dp, cookie=flow_cookie, cookie_mask=cookie_mask,
                             table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
                             out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                             match=parser.OFPMatch())


def delete_strict(dp: Any, spec: FlowSpec) -> Any:
    """An OFPFlowMod deleting exactly the flow of a spec (same table, priority, match)."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    return parser.OFPFlowMod(datapath=dp, table_id=spec.table, command=ofp.OFPFC_DELETE_STRICT,
                             priority=spec.priority, out_port=ofp.OFPP_ANY,
                             out_group=ofp.OFPG_ANY, match=parser.OFPMatch(**spec.match))


def flow_stats_request(dp: Any, flow_cookie: int = 0, cookie_mask: int = 0) -> Any:
    """An OFPFlowStatsRequest over every table, optionally narrowed to a cookie/mask."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    return parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                      flow_cookie, cookie_mask, parser.OFPMatch())


def offending_cookie(ofp: Any, data: bytes) -> Optional[int]:
    """The cookie of the flow-mod an OFPErrorMsg quotes, if it quotes one."""
    if len(data) < 16:
        return None
    _version, msg_type = struct.unpack_from("!BB", data, 0)
    if msg_type != ofp.OFPT_FLOW_MOD:
        return None
    return struct.unpack_from("!Q", data, 8)[0]


def describe(spec: FlowSpec) -> str:
    """A one-line, ovs-ofctl-like description of a flow spec for logs."""
    fields = ",".join(f"{k}={v}" for k, v in spec.match.items()) or "*"
    acts = ",".join(_describe_action(a) for a in spec.actions)
    if spec.goto is not None:
        acts = ",".join(filter(None, [acts, f"goto_table:{spec.goto}"]))
    return (f"cookie={spec.cookie:#018x} table={spec.table} priority={spec.priority} "
            f"{fields} actions={acts or 'drop'}" + (f" ({spec.notes})" if spec.notes else ""))


def _action(dp: Any, action: Action) -> Any:
    """One os-ken action for a compiler action."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    if isinstance(action, Ct):
        table = nicira_ext.NX_CT_RECIRC_NONE if action.table is None else action.table
        flags = nicira_ext.NX_CT_F_COMMIT if action.commit else 0
        # zone_src empty: zone_ofs_nbits carries the zone as an immediate value
        return parser.NXActionCT(flags=flags, zone_src="", zone_ofs_nbits=action.zone,
                                 recirc_table=table, alg=0, actions=[])
    if action.port == FLOOD:
        return parser.OFPActionOutput(ofp.OFPP_FLOOD)
    if action.port == CONTROLLER:
        return parser.OFPActionOutput(ofp.OFPP_CONTROLLER, LEARN_BYTES)
    return parser.OFPActionOutput(action.port)


def _describe_action(action: Action) -> str:
    """An ovs-ofctl-like word for one action."""
    if isinstance(action, Ct):
        args = [f"zone={action.zone}"] + (["commit"] if action.commit else []) + (
            [f"table={action.table}"] if action.table is not None else [])
        return f"ct({','.join(args)})"
    if isinstance(action, Output) and isinstance(action.port, int):
        return f"output:{action.port}"
    return str(action.port).upper()
