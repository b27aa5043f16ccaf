"""C23 internal-interception: a compromised backend host ARP-spoofs lb1 and server1 and reads the logins
that cross the back network, unless TLS is re-encrypted to the backends."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from experiments import attacking, drive, plots
from experiments.base import Case, Experiment, say
from experiments.credentials import FORM, PASSWORD
from experiments.fidelity import window
from experiments.registry import register
from experiments.stats import between, read_probe, rounded, success_rate
from experiments.verdict import Check, Figure, P, Verdict, gate

MODES = ("terminate", "reencrypt")


def run_attack_with_logins(lab: Any, out: Path, params: dict[str, Any], phase: str) -> dict[str, Any]:
    """The man in the middle between the victims while the client logs in (until enough logins went through
    the second victim) and a probe measures the site; raw data under out/<phase>/."""
    folder = out / phase
    folder.mkdir(parents=True, exist_ok=True)
    pos = attacking.position(lab, params["attacker"], params["victims"])
    target = params["victims"][1]
    probe, csv_path = drive.start_probe(lab, folder, params["probe_url"], params["probe_s"], params["interval"],
                                        params["timeout"])
    drive.wait_rows(csv_path, 5, proc=probe)
    drive.pause(params["before_s"])
    attack = attacking.Attack(lab, folder, pos, duration=params["attack_s"], rate=params["rate"])
    marks: dict[str, Any] = {"phase": phase}
    try:
        with window(folder, "attack"):
            marks["attack_start"] = time.time()
            attack.start()
            marks["poisoned"] = attack.wait_poisoned()
            say(f"{phase}: {pos.attacker} {'poisoned' if marks['poisoned'] else 'did NOT poison'} "
                f"{' and '.join(v for v, _ in pos.victims)}; logging in until {target} served "
                f"{params['min_victim_logins']}")
            served = 0
            for _ in range(params["logins"]):
                row = attacking.login(lab, params["login_url"], FORM, folder / "logins.jsonl")
                served += row["backend"] == target and row["code"] == "200"
                if served >= params["min_victim_logins"]:
                    break
            drive.pause(params["hold_s"])
            marks["attack_stop"] = time.time()
    finally:
        marks["cleanup"] = attack.stop()
        drive.pause(params["after_s"])
        drive.finish(probe, 10, "probe", terminate=True)
        (folder / "phase.json").write_text(json.dumps(marks, indent=2, default=str) + "\n")
    return marks


def judge_phase(folder: Path, params: dict[str, Any]) -> dict[str, Any]:
    """The measured values of one attack phase (what the attacker captured between the victims, the caches,
    the logins, the probe), from its raw files."""
    ph = attacking.read_phase(folder)
    marks = json.loads((folder / "phase.json").read_text())
    cleanup = ph["cleanup"]
    ips = dict(cleanup["position"]["victims"])
    a, b = params["victims"]
    wire = attacking.intercepted(folder / "attacker.pcap", ips[a], ips[b], cleanup["attacker_mac"], PASSWORD.encode())
    logins = attacking.read_jsonl(folder / "logins.jsonl")
    rows = read_probe(folder / "probe.csv")
    during = between(rows, marks.get("attack_start", 0), marks.get("attack_stop", 0))
    return {"ph": ph, "wire": wire, "logins": logins, "probe": rows, "marks": marks, "m": {
        "poisoned": ph["poisoned"], "poisoned_samples": ph["poisoned_samples"],
        "poison_frames_sent": ph["poison_frames"], "restored": ph["restored"],
        "leftovers": ph["leftovers"], "logins": len(logins),
        "victim_logins": sum(1 for r in logins if r["backend"] == b and r["code"] == "200"),
        "intercepted_frames": wire["frames"], "password_frames": wire["needle_frames"],
        "password_frames_n": len(wire["needle_frames"]), "tls_app_data": wire["tls_app_data"],
        "plaintext_http": wire["http_messages"], "tls_records": wire["tls_records"],
        "attack_requests": len(during), "attack_success": rounded(success_rate(during)) if during else None}}


def timeline(folder: Path, got: dict[str, Any], out: Path, title: str) -> Path:
    """The attack over time: lies sent, the victims' caches, the password seen; frames crossing, probe success."""
    ph, wire, marks = got["ph"], got["wire"], got["marks"]
    t0 = min([r["t"] for r in ph["neigh"]] + [marks.get("attack_start", 0) or float("inf")])
    t1 = max([r["t"] for r in ph["neigh"]] + [t0 + 1])
    lanes = {"ARP lies sent": [(e["t"], True) for e in ph["events"] if e["event"] == "poison"],
             **attacking.cache_lanes(ph["neigh"]),
             "password seen by the attacker": [(t, True) for t in wire["needle_times"]],
             "logins (200)": [(r["t"], False) for r in got["logins"] if r["code"] == "200"]}
    xs, crossed = plots.binned(wire["times"], t0, t1)
    ok_x, ok = plots.binned([r.t_send for r in got["probe"] if r.ok], t0, t1)
    _, sent = plots.binned([r.t_send for r in got["probe"]], t0, t1)
    series = {"victims' frames reaching the attacker": (xs, crossed),
              "probe: failed requests": (ok_x, [s - k for s, k in zip(sent, ok)])}
    window = [(marks["attack_start"], marks["attack_stop"], "attack")] if marks.get("attack_stop") else []
    return plots.attack_timeline(t0, lanes, series, out, title, window)


@register
class InternalInterception(Experiment):
    """server2 (a compromised backend) ARP-spoofs lb1 and server1 with Scapy and forwards; logins cross it."""

    slug = "internal-interception"
    claim = "C23"
    title = "A compromised backend host intercepts what TLS termination leaves in clear"
    statement = ("If the internal network is compromised, traffic behind the TLS-terminating load balancer can be "
                 "intercepted.")
    design = "secured"
    defaults = {"attacker": "server2", "victims": ["lb1", "server1"], "rate": 2.0, "attack_s": 30.0,
                "login_url": "https://www.foobar.com/login", "logins": 10, "min_victim_logins": 2,
                "probe_url": "https://www.foobar.com/", "probe_s": 40.0, "interval": 0.02, "timeout": 1.0,
                "before_s": 1.0, "hold_s": 1.0, "after_s": 0.5, "healthy": 0.99, "min_tls_app_data": 2}
    timing_sensitive = False  # what crosses the attacker is judged, and availability against a fixed bound
    checks = (
        gate("poisoned", "==", True, "both victims' ARP caches mapped each other to the attacker",
             fail="the attack did not poison the victims (ARP inspection was off: no defence applies)"),
        gate("leftovers", "==", 0, "what of the attack outlived it (caches, sysctls, nftables, the tool)"),
        gate("victim_logins", ">=", P("min_victim_logins"), "logins lb1 sent to server1 during the attack"),
        gate("intercepted_frames", ">=", 1, "lb1-server1 frames that reached the attacker",
             fail="nothing between the victims reached the attacker: it was not on the path"),
        Check("password_frames", ">=", 1, "frames with the password in the attacker's capture", cases=("terminate",)),
        Check("password_frames", "==", 0, "frames with the password in the attacker's capture", cases=("reencrypt",)),
        Check("plaintext_http", "==", 0, "plaintext HTTP messages between lb1 and server1", cases=("reencrypt",)),
        Check("tls_app_data", ">=", P("min_tls_app_data"), "TLS ApplicationData records between lb1 and server1",
              cases=("reencrypt",)),
        Check("attack_success", ">=", P("healthy"), "the site's success during the attack", "%"),
    )
    figures = {
        "terminate.password_frames_n": Figure("frames with the password the attacker captured, terminate", abs_tol=4),
        "reencrypt.password_frames_n": Figure("frames with the password the attacker captured, reencrypt", abs_tol=0),
        "reencrypt.tls_app_data": Figure("TLS ApplicationData records the attacker saw, reencrypt", rel_tol=0.5),
        "terminate.attack_success": Figure("the site's success during the attack, terminate", "%", abs_tol=0.01),
        "reencrypt.attack_success": Figure("the site's success during the attack, reencrypt", "%", abs_tol=0.01),
    }
    summary = ("with TLS ended at lb1, server2 ARP-spoofed lb1 and server1 and read the password in "
               "{terminate.password_frames_n} frame(s) while the site answered {terminate.attack_success}",
               "re-encrypted, it saw {reencrypt.tls_app_data} TLS records and the password in "
               "{reencrypt.password_frames_n}")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(m, "secured", {"params": {"tls": m, "monitoring": False, "arp_inspection": False}})
                for m in MODES]

    def procedure(self, p: dict[str, Any]) -> str:
        a, b = p["victims"]
        return (f"{p['attacker']} tells {a} and {b} with Scapy ARP replies ({p['rate']:g} a second) that the other "
                f"is at its MAC, and forwards (ip_forward on, redirects off); the client logs in over HTTPS until "
                f"{b} served {p['min_victim_logins']} logins, a probe asks for {p['probe_url']} every "
                f"{p['interval'] * 1000:g} ms; the attacker's capture is searched for '{PASSWORD}' in {a}-{b} "
                f"frames; ARP inspection off; per TLS mode")

    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        run_attack_with_logins(lab, out, params, "attack")

    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        got = judge_phase(raw / "attack", params)
        png = timeline(raw / "attack", got, plots_dir / f"{case.name}-timeline.png",
                       f"C23 tls={case.name}: {params['attacker']} between {' and '.join(params['victims'])}")
        ph = got["ph"]
        notes = [f"both caches poisoned {ph['poisoned_at'] - ph['first_poison_sent']:.2f} s after the first lie "
                 f"({ph['poison_frames']} lies in all)" if ph["poisoned_at"] and ph["first_poison_sent"]
                 else "the caches were never both poisoned"]
        return self.verdict(case, got["m"], params, [png], notes + [f"left behind: {x}" for x in ph["leftovers"]])
