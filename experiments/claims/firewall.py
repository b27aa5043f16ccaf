"""C9 firewall: port scans (Scapy SYN scan, nmap for comparison) from the client and from a compromised web
server, with the SDN firewall off and on, judged against what listens and what the policy allows."""
from __future__ import annotations

import csv
import ipaddress
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from experiments import drive, plots
from experiments.base import Case, Experiment, say
from experiments.fidelity import window
from experiments.registry import register
from controllers.policy import parse_policy
from hostapps.haproxy import HAProxy
from hostapps.mariadb import MariaDB
from experiments.verdict import Check, Figure, Verdict, gate, inconclusive
from weblab.core.errors import WeblabError

CLIENT, INSIDER = "client", "server1"       # the internet, and the "compromised" web server
LISTENERS, POLICY, FW_BEFORE, FW_AFTER = "listeners.json", "policy.json", "firewall-before.json", "firewall-after.json"
DATABASE_PORTS = (MariaDB.defaults["port"],)
ADMIN_PORTS = (HAProxy.defaults["stats_port"],)  # HAProxy stats/admin page
EXTRA_TCP = (22, 8080)                       # common ports nothing should listen on: must never be open
MAIL = "mail"                                # the domain's mail host (C26): SMTP from the client network is intended
INTENDED_FROM_CLIENT = ["lb1:80", "lb1:443", f"{MAIL}:25"]  # the site (HTTP, HTTPS) and the MX host (SMTP)


@register
class Firewall(Experiment):
    """Listening ports (ss) as ground truth; SYN scans from client and server1; the controller's rule counters."""

    slug = "firewall"
    claim = "C9"
    title = "A firewall per server: only intended ports are reachable"
    statement = ("Without a firewall every listening port is reachable from the internet; with it only the intended "
                 "ones; per-server firewalls stop lateral movement.")
    design = "secured"
    timing_sensitive = False   # reachability, not speed: a busy machine cannot make a closed port open
    defaults = {"scan_timeout": 1.5, "scan_retries": 1, "nmap_host_timeout_s": 60}
    checks = (
        gate("scapy_nmap_disagreements", "==", 0, "ports on which Scapy and nmap disagree",
             fail="Scapy and nmap disagree on which ports are open"),
        gate("server1_listening_without_rule", ">=", 1, "listening ports server1 reaches that no allow rule grants "
             "it", cases=("firewall-on",), fail="no listening port lacks a rule for server1: lateral movement "
             "cannot be tested"),
        Check("open_from_client", "==", INTENDED_FROM_CLIENT, "ports open from the client", cases=("firewall-on",)),
        Check("server1_open_without_rule", "==", 0, "ports open from server1 that no allow rule grants it",
              cases=("firewall-on",)),
        Check("database_open", ">=", 1, f"database ports ({', '.join(map(str, DATABASE_PORTS))}) open from a source",
              cases=("firewall-off",)),
        Check("admin_open", ">=", 1, f"admin ports ({', '.join(map(str, ADMIN_PORTS))}) open from a source",
              cases=("firewall-off",)),
        Check("listening_not_open", "==", 0, "ports listening on a non-loopback address of a target the source can "
              "route to that are not open", cases=("firewall-off",)),
    )
    figures = {
        "firewall-off.open_from_client": Figure("ports open from the client, firewall off", abs_tol=0),
        "firewall-on.open_from_client": Figure("ports open from the client, firewall on", abs_tol=0),
        "firewall-on.open_from_server1": Figure("ports open from server1, firewall on", abs_tol=0),
        "firewall-on.server1_open_without_rule": Figure("ports server1 reaches without an allow rule", abs_tol=0),
    }
    summary = ("without the firewall the client reached {firewall-off.open_from_client:names}, and the database "
               "({firewall-off.database_open:names}) and admin ({firewall-off.admin_open:names}) ports were open",
               "with it the client reached only {firewall-on.open_from_client:names}, and server1 "
               "{firewall-on.server1_open_without_rule:count} ports that no rule grants it")

    def all_cases(self, params: dict[str, Any]) -> list[Case]:
        return [Case(f"firewall-{'on' if on else 'off'}", "secured", {"params": {"monitoring": False, "mail": True},
                                                                     "firewall": on})
                for on in (False, True)]

    def procedure(self, p: dict[str, Any]) -> str:
        return ("scans (Scapy SYN scan; nmap -sS must agree on which ports are open) of every TCP port that listens "
                "on any host (ss) plus 22 and 8080, from client against lb1, every server and the mail host, and from server1 "
                "against lb1, the other servers and dns; the firewall off and on")

    # --- run ------------------------------------------------------------------------------------
    def run_case(self, lab: Any, case: Case, out: Path, params: dict[str, Any]) -> None:
        listeners = {h: listening(lab.exec(h, ["ss", "-H", "-ltnu"], timeout=10).stdout) for h in lab.hosts()}
        (out / LISTENERS).write_text(json.dumps(listeners, indent=2) + "\n")
        (out / POLICY).write_text(json.dumps(lab_policy(lab), indent=2) + "\n")
        (out / FW_BEFORE).write_text(json.dumps(firewall_show(lab), indent=2) + "\n")
        tcp = sorted({p["port"] for ls in listeners.values() for p in ls if p["proto"] == "tcp"} | set(EXTRA_TCP))
        udp = sorted({p["port"] for ls in listeners.values() for p in ls if p["proto"] == "udp"})
        servers = sorted(h for h in lab.hosts() if h.startswith("server"))
        mail = [MAIL] if MAIL in lab.hosts() else []  # on the client's network only: server1 has no route to it
        plan = {CLIENT: ["lb1", *servers, *mail], INSIDER: ["lb1", *[s for s in servers if s != INSIDER], "dns"]}
        for src, targets in plan.items():
            spec = [f"{t}={address_for(lab, t, src)}" for t in targets]
            (out / f"targets-{src}.json").write_text(json.dumps(dict(s.split("=") for s in spec)) + "\n")
            say(f"{case.name}: Scapy SYN scan from {src}: {', '.join(spec)}; tcp {len(tcp)} ports, udp {udp}")
            with window(out, f"scan-{src}"):
                res = lab.exec(src, drive.tool_argv(lab, "synscan", [
                    "--source", src, *[a for s in spec for a in ("--target", s)], "--tcp", ",".join(map(str, tcp)),
                    "--udp", ",".join(map(str, udp)), "--timeout", str(params["scan_timeout"]),
                    "--retries", str(params["scan_retries"]), "--out", str(out / f"scapy-{src}.csv")]), timeout=120)
                (out / f"scapy-{src}.log").write_text(res.stdout + res.stderr)
                if res.returncode != 0:
                    raise RuntimeError(f"synscan from {src} failed ({res.returncode}): {res.stderr.strip()[-300:]}")
                say(f"{case.name}: nmap -sS from {src}")
                res = lab.exec(src, ["nmap", "-sS", "-Pn", "-n", "--max-retries", "1",
                                     "--host-timeout", f"{params['nmap_host_timeout_s']}s",
                                     "-p", ",".join(map(str, tcp)), "-oX", str(out / f"nmap-{src}.xml"),
                                     *[s.split("=")[1] for s in spec]], timeout=params["nmap_host_timeout_s"] * len(spec) + 30)
                (out / f"nmap-{src}.log").write_text(res.stdout + res.stderr)
        (out / FW_AFTER).write_text(json.dumps(firewall_show(lab), indent=2) + "\n")

    # --- analysis -------------------------------------------------------------------------------
    def judge(self, case: Case, raw: Path, params: dict[str, Any], plots_dir: Path) -> Verdict:
        rule = self.rule_text(params)
        on = bool(case.lab_params.get("firewall"))
        listeners = json.loads((raw / LISTENERS).read_text())
        policy = json.loads((raw / POLICY).read_text())
        scans = read_scans(raw)
        if not scans:
            return inconclusive(rule, "no scan results")
        nmap = read_nmap(raw)
        exposed = {h: {p["port"] for p in ls if p["proto"] == "tcp" and not loopback(p["addr"])} for h, ls in listeners.items()}
        tcp = [s for s in scans if s["proto"] == "tcp"]
        open_by = {src: sorted(f"{s['target']}:{s['port']}" for s in tcp if s["source"] == src and s["state"] == "open")
                   for src in (CLIENT, INSIDER)}
        disagree = [f"{s['source']}->{s['target']}:{s['port']} scapy {s['state']} nmap {nmap.get((s['source'], s['address'], s['port']), 'none')}"
                    for s in tcp if s["state"] != "no-route"
                    and (s["state"] == "open") != (nmap.get((s["source"], s["address"], s["port"])) == "open")]
        counters = rule_counters(raw)
        m: dict[str, Any] = {"firewall": on, "ports_scanned_tcp": sorted({s["port"] for s in tcp}),
                             "open_from_client": open_by[CLIENT], "open_from_server1": open_by[INSIDER],
                             "udp": {f"{s['source']}->{s['target']}:{s['port']}": s["state"] for s in scans if s["proto"] == "udp"},
                             "no_route": sorted({f"{s['source']}->{s['target']}" for s in scans if s["state"] == "no-route"}),
                             "scapy_nmap_disagreements": disagree, "listening": {h: sorted(p) for h, p in exposed.items() if p},
                             "rule_packets_during_scans": counters}
        cells = {(f"{s['source']} -> {s['target']}", f"{s['proto']}/{s['port']}"): s["state"] for s in scans}
        png = plots.scan_matrix(cells, plots_dir / f"{case.name}-scan.png",
                                f"C9 {case.name}: Scapy SYN/UDP scan (red = open)")
        if on:
            granted = {(s["target"], s["port"]) for s in tcp if s["source"] == INSIDER
                       and allowed(policy, INSIDER, s["target"], "tcp", s["port"])}
            forbidden = sorted(f"{t}:{p}" for t, ps in exposed.items() for p in ps
                               if t != INSIDER and (t, p) not in granted and any(s["source"] == INSIDER and s["target"] == t for s in tcp))
            leaks = [o for o in open_by[INSIDER] if (o.split(":")[0], int(o.split(":")[1])) not in granted]
            m.update({"server1_listening_without_rule": forbidden, "server1_open_without_rule": leaks,
                      "server1_open_with_rule": [o for o in open_by[INSIDER] if o not in leaks]})
        else:
            missed = sorted(f"{s['source']}->{s['target']}:{s['port']}" for s in tcp if s["state"] not in ("open", "no-route")
                            and s["port"] in exposed.get(s["target"], set()))
            db_open = [o for src in open_by.values() for o in src if int(o.split(":")[1]) in DATABASE_PORTS]
            admin_open = [o for src in open_by.values() for o in src if int(o.split(":")[1]) in ADMIN_PORTS]
            m.update({"listening_not_open": missed, "database_open": sorted(set(db_open)), "admin_open": sorted(set(admin_open))})
        return self.verdict(case, m, params, [png])


# --- helpers (pure, unit-tested) -------------------------------------------------------------------
def listening(ss_output: str) -> list[dict[str, Any]]:
    """`ss -H -ltnu` lines -> [{"proto", "addr", "port"}] (UNCONN udp sockets count as listening)."""
    out = []
    for line in ss_output.splitlines():
        f = line.split()
        if len(f) < 5 or f[0] not in ("tcp", "udp"):
            continue
        addr, _, port = f[4].rpartition(":")
        if port.isdigit():
            out.append({"proto": f[0], "addr": addr.strip("[]").split("%")[0], "port": int(port)})
    return out


def loopback(addr: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (unreachable from other hosts whatever the firewall)."""
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def address_for(lab: Any, target: str, source: str) -> str:
    """target's address on a network source shares (else its first address: then no route, recorded as such)."""
    try:
        return lab.address_on(target, source)
    except WeblabError:
        return lab.ip(target)


def lab_policy(lab: Any) -> dict[str, Any]:
    """The policy the controller enforces (hosts with roles and addresses, rules), as the lab hands it over."""
    return lab.policy()


def firewall_show(lab: Any) -> dict[str, Any]:
    """The controller's rules with their packet/byte counters (what `weblab firewall show` prints)."""
    return lab.firewall({"op": "show"}, timeout=10)


def read_scans(raw: Path) -> list[dict[str, Any]]:
    """Every scapy-<source>.csv row, ports as ints."""
    rows = []
    for path in sorted(Path(raw).glob("scapy-*.csv")):
        with open(path, newline="") as f:
            rows += [{**r, "port": int(r["port"])} for r in csv.DictReader(f)]
    return rows


def read_nmap(raw: Path) -> dict[tuple[str, str, int], str]:
    """(source, address, port) -> nmap state, from nmap-<source>.xml."""
    out = {}
    for path in sorted(Path(raw).glob("nmap-*.xml")):
        src = path.stem.split("-", 1)[1]
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            continue
        for host in root.iter("host"):
            addr = host.find("address")
            if addr is None:
                continue
            for port in host.iter("port"):
                state = port.find("state")
                if state is not None and port.get("protocol") == "tcp":
                    out[(src, addr.get("addr"), int(port.get("portid")))] = state.get("state")
    return out


def allowed(policy: dict[str, Any], src: str, dst: str, proto: str, port: int) -> bool:
    """Does the policy let host src open proto/port on host dst (from any of its addresses, to any of
    dst's, VIPs included)? The controller's own model decides (controllers.policy.Policy.admits)."""
    model = parse_policy(policy)
    addresses = {h.name: [] for h in model.hosts}
    for h in model.hosts:
        addresses[h.name] += list(h.addresses)
    return any(model.admits(a, b, proto, port) for a in addresses.get(src, []) for b in addresses.get(dst, []))


def rule_counters(raw: Path) -> dict[str, int]:
    """Packets each rule (and the default deny) matched between the two `firewall show` snapshots."""
    try:
        before, after = (json.loads((Path(raw) / n).read_text()) for n in (FW_BEFORE, FW_AFTER))
    except FileNotFoundError:
        return {}
    b = {r["id"]: r.get("packets", 0) for r in before.get("rules", [])}
    out = {r["id"]: r.get("packets", 0) - b.get(r["id"], 0) for r in after.get("rules", [])}
    out["(default deny)"] = after.get("default_deny", {}).get("packets", 0) - before.get("default_deny", {}).get("packets", 0)
    return {k: v for k, v in out.items() if v}
