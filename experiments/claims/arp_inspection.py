"""C24 arp-inspection: the controller, knowing every host's IP and MAC from the design, drops the spoofed ARP
of C23's attack at the attacker's port and reports that port; with inspection off the same attack works."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from experiments import attacking, drive, plots
from experiments.base import Case, Experiment, say
from experiments.claims.internal_interception import judge_phase, run_attack_with_logins, timeline
from experiments.registry import register
from experiments.verdict import REFUTED, Check, Figure, M, P, Verdict, gate

CONTROL, INSPECTED = "control", "inspected"


@register
class ArpInspection(Experiment):
    """C23's attack twice in one lab: ARP inspection off (the attack must work), then on (it must not)."""

    slug = "arp-inspection"
    claim = "C24"
    title = "A firewall that knows the network stops ARP spoofing"
    statement = "A firewall that knows the network stops spoofing that port rules cannot see."
    design = "secured"
    defaults = {"attacker": "server2", "victims": ["lb1", "server1"], "rate": 2.0, "attack_s": 30.0,
                "login_url": "https://www.foobar.com/login", "logins": 10, "min_victim_logins": 2,
                "probe_url": "https://www.foobar.com/", "probe_s": 40.0, "interval": 0.02, "timeout": 1.0,
                "before_s": 0.5, "hold_s": 2.0, "after_s": 0.5, "healthy": 0.99, "report_within_s": 1.0}
    timing_sensitive = False
    checks = (
        gate("control_poisoned", "==", True, "with inspection off, the attack poisoned both victims",
             fail="the attack did not work even without the defence: nothing to judge the defence by"),
        gate("leftovers", "==", 0, "what of either attack outlived it (caches, sysctls, nftables, the tool)"),
        gate("lies_sent", ">=", 4, "spoofed ARP replies the attacker sent with inspection on"),
        gate("victim_logins", ">=", P("min_victim_logins"), "logins lb1 sent to server1 during the attack"),
        Check("spoofed_delivered", "==", 0, "spoofed ARP replies delivered to the victims"),
        Check("poisoned_samples", "==", 0, "cache readings that mapped a victim to the attacker"),
        Check("intercepted_frames", "==", 0, "lb1-server1 frames that reached the attacker"),
        Check("dropped", ">=", M("lies_sent", "every spoofed ARP sent"),
              "spoofed ARP the switch dropped at the attacker's port"),
        Check("reported_host", "==", P("attacker"), "the host the controller named", missing=REFUTED,
              absent="the controller reported no port"),
        Check("report_delay_s", "<=", P("report_within_s"), "from the first spoofed ARP to the controller's report",
              "s", missing=REFUTED, absent="the controller reported no port"),
        Check("attack_success", ">=", P("healthy"), "the site's success during the attack", "%"),
    )
    figures = {
        "dropped": Figure("spoofed ARP dropped at the attacker's port", rel_tol=0.5),
        "report_delay_s": Figure("first spoofed ARP to the controller's report", "s", abs_tol=0.5),
        "control_password_frames_n": Figure("frames with the password captured, inspection off", abs_tol=4),
        "intercepted_frames": Figure("lb1-server1 frames reaching the attacker, inspection on", abs_tol=0),
    }
    summary = ("with ARP inspection off server2 poisoned lb1 and server1 and read the password in "
               "{control_password_frames_n} frame(s)",
               "with it on the switch dropped {dropped} spoofed ARP at {reported_host}'s port, "
               "{spoofed_delivered} reached the victims, the controller named the port {report_delay_s} after the first "
               "lie")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case("secured", "secured", {"params": {"tls": "terminate", "monitoring": False,
                                                        "arp_inspection": True}})]

    def procedure(self, p: dict[str, Any]) -> str:
        a, b = p["victims"]
        return (f"C23's attack ({p['attacker']} ARP-spoofs {a} and {b} with Scapy, {p['rate']:g} lies a second, and "
                f"forwards; the client logs in until {b} served {p['min_victim_logins']}) twice in one secured lab: "
                f"ARP inspection turned off live, then on; the victims' links are captured for ARP, their caches "
                f"read every 0.25 s, the controller asked for its drop counters and report")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        say("ARP inspection off: the attack must work")
        lab.firewall({"op": "arp-inspection", "on": False})
        run_attack_with_logins(lab, out, params, CONTROL)
        drive.pause(1.0)  # the restore's last truth lands before the defence goes up
        say("ARP inspection on: the same attack")
        lab.firewall({"op": "arp-inspection", "on": True})
        before = lab.firewall({"op": "status"})
        folder = out / INSPECTED
        folder.mkdir(parents=True, exist_ok=True)
        caps = []
        for victim in params["victims"]:  # what the victims receive of ARP
            intf = lab.link_intfs(victim, _switch_of(lab, victim, params["attacker"]))[0]
            caps.append(lab.capture(victim, intf, folder / f"{victim}-arp.pcap", bpf="arp"))
        try:
            run_attack_with_logins(lab, out, params, INSPECTED)
        finally:
            for cap in caps:
                cap.stop()
        after = lab.firewall({"op": "status"})
        show = lab.firewall({"op": "show"})
        (folder / "controller.json").write_text(json.dumps(
            {"before": before.get("arp_inspection"), "after": after.get("arp_inspection"),
             "show": show.get("arp_inspection"), "t": time.time()}, indent=2) + "\n")

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        control = judge_phase(raw / CONTROL, params)
        inspected = judge_phase(raw / INSPECTED, params)
        ctl = json.loads((raw / INSPECTED / "controller.json").read_text())
        cleanup = inspected["ph"]["cleanup"]
        attacker_mac, ips = cleanup["attacker_mac"], dict(cleanup["position"]["victims"])
        a, b = params["victims"]
        delivered = (attacking.spoofed_arp(raw / INSPECTED / f"{a}-arp.pcap", ips[b], attacker_mac) +
                     attacking.spoofed_arp(raw / INSPECTED / f"{b}-arp.pcap", ips[a], attacker_mac))
        reported = (ctl["after"] or {}).get("ports", [])
        ports = [p for p in reported if p["host"] == params["attacker"]] or reported  # else: the wrong host
        before = {(p["dpid"], p["port"]): p["packets"] for p in (ctl["before"] or {}).get("ports", [])}
        port = ports[0] if ports else None
        first_lie = inspected["ph"]["first_poison_sent"]
        m = {**{k: v for k, v in inspected["m"].items()},
             "control_poisoned": control["m"]["poisoned"],
             "control_password_frames_n": control["m"]["password_frames_n"],
             "control_intercepted_frames": control["m"]["intercepted_frames"],
             "leftovers": control["m"]["leftovers"] + inspected["m"]["leftovers"],
             "lies_sent": inspected["ph"]["poison_frames"],
             "spoofed_delivered": delivered,
             "dropped": (port["packets"] - before.get((port["dpid"], port["port"]), 0)) if port else 0,
             "reported_host": port["host"] if port else None,
             "reported_port": f"{port['switch']} port {port['port']}" if port else None,
             "report_delay_s": round(port["first"] - first_lie, 3) if port and port.get("first") and first_lie
             else None,
             "inspection_on": bool((ctl["after"] or {}).get("on"))}
        pngs = [timeline(raw / phase, got, plots_dir / f"{phase}-timeline.png",
                         f"C24 ARP inspection {'off' if phase == CONTROL else 'on'}: {params['attacker']} between "
                         f"{' and '.join(params['victims'])}")
                for phase, got in ((CONTROL, control), (INSPECTED, inspected))]
        pngs.append(plots.grouped_bars(
            {"poisoned cache readings": {"off": control["m"]["poisoned_samples"], "on": m["poisoned_samples"]},
             "victims' frames at the attacker": {"off": control["m"]["intercepted_frames"],
                                                 "on": m["intercepted_frames"]},
             "password frames": {"off": control["m"]["password_frames_n"], "on": m["password_frames_n"]}},
            plots_dir / "off-vs-on.png", "C24 the same attack, ARP inspection off vs on", "count"))
        notes = [f"controller: {m['reported_port']} ({m['reported_host']}) reported {m['report_delay_s']} s after "
                 f"the first lie" if port else "the controller reported no port"]
        return self.verdict(case, m, params, pngs, notes)


def _switch_of(lab: Any, victim: str, attacker: str) -> str:
    """The switch of victim's leg on the network it shares with the attacker."""
    from topologies import get
    topo = get(lab.design)(**lab.params)
    leg = topo.leg_towards(victim, [attacker])
    if leg is None:
        raise ValueError(f"{victim} shares no network with {attacker}")
    return leg["switch"]
