"""Attacks in a running lab, for the claims C22-C24: start the man in the middle in the attacker's host,
watch the victims' ARP caches, stop it, and check that nothing of it remains; then read it all back.

Raw data of one phase (raw/<case>/<phase>/): attack.jsonl (the tool's event log), attack.out,
neigh.jsonl (the victims' ARP cache entries about each other, sampled before/during/after),
attacker.pcap (what reached the attacker's interface), cleanup.json (sysctls, nftables, the tool's
exit status, the caches after). A phase whose attack did not poison is inconclusive by the rules.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.attacks.events import read_events

if TYPE_CHECKING:  # the analysis of a run (a bundle elsewhere) needs no Mininet
    from topologies.base import AttackPosition

REPO = Path(__file__).resolve().parent.parent
TOOL = "experiments.attacks.mitm"
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv4/conf/all/send_redirects")
SAMPLE_INTERVAL = 0.25   # s between cache samples during an attack
POISON_TIMEOUT = 6.0     # s the first poisoning may take (a round every 1/rate s)
STOP_TIMEOUT = 10.0      # s the tool may take to restore and exit


def position(lab: Any, attacker: str, victims: list[str]) -> AttackPosition:
    """The attacker's interface on the network it shares with both victims (from the lab's design)."""
    from topologies import get
    pos = get(lab.design)(**lab.params).attack_position(attacker, victims)
    if pos is None:
        raise ValueError(f"{attacker} shares no network with {' and '.join(victims)}")
    return pos


def mitm_argv(lab: Any, pos: AttackPosition, log: Path, duration: float, rate: float, proxy: str | None = None,
              grep: str | None = None) -> list[str]:
    """The tool's command line (run as a module, from the repository, inside the attacker's host)."""
    argv = [lab.python, "-m", TOOL, "--iface", pos.iface, "--duration", f"{duration:g}", "--rate", f"{rate:g}",
            "--log", str(log), "--quiet"]
    for net in pos.lab_nets:
        argv += ["--lab-net", net]
    for name, ip in pos.victims:
        argv += ["--victim", f"{name}={ip}"]
    if proxy:
        argv += ["--proxy", proxy]
    if grep:
        argv += ["--grep", grep]
    return argv


def neighbour(lab: Any, host: str, ip: str) -> dict[str, Any]:
    """host's ARP cache entry for ip (lladdr may be absent: FAILED, INCOMPLETE, no entry)."""
    res = lab.exec(host, ["ip", "-j", "neigh", "show", "to", ip], timeout=5)
    try:
        entries = json.loads(res.stdout or "[]")
    except ValueError:
        entries = []
    entry = entries[0] if entries else {}
    state = entry.get("state") or []
    return {"lladdr": entry.get("lladdr"), "state": ",".join(state) if isinstance(state, list) else str(state)}


def read_sysctls(lab: Any, host: str, iface: str) -> dict[str, str]:
    """The forwarding and redirect sysctls of host's network namespace."""
    keys = [*SYSCTLS, f"net/ipv4/conf/{iface}/send_redirects"]
    res = lab.exec(host, ["cat", *[f"/proc/sys/{k}" for k in keys]], timeout=5)
    return dict(zip(keys, res.stdout.split()))


def nft_tables(lab: Any, host: str) -> list[str]:
    """The nftables tables of host's namespace (the attack's own must be gone afterwards)."""
    res = lab.exec(host, ["nft", "list", "tables"], timeout=5)
    return [line.strip() for line in res.stdout.splitlines() if line.strip()]


class Attack:
    """One run of the man in the middle, recording the victims' caches while it runs; a context manager."""

    def __init__(self, lab: Any, out: Path, pos: AttackPosition, duration: float = 30.0, rate: float = 2.0,
                 proxy: str | None = None, grep: str | None = None, capture: bool = True):
        self.lab, self.out, self.pos = lab, Path(out), pos
        self.out.mkdir(parents=True, exist_ok=True)
        self.duration, self.rate, self.proxy, self.grep, self.capture = duration, rate, proxy, grep, capture
        self.log = self.out / "attack.jsonl"
        self.neigh = open(self.out / "neigh.jsonl", "a", encoding="utf-8")
        self.proc: subprocess.Popen | None = None
        self.cap: Any = None
        self.sampling = threading.Event()
        self.sampler: threading.Thread | None = None
        self.attacker_mac = lab.exec(pos.attacker, ["cat", f"/sys/class/net/{pos.iface}/address"],
                                     timeout=5).stdout.strip()
        self.sysctls_before: dict[str, str] = {}
        self.lock = threading.Lock()

    # --- the victims' caches ----------------------------------------------------------------------------
    def sample(self, phase: str) -> list[dict[str, Any]]:
        """One reading of each victim's entry for the other, appended to neigh.jsonl."""
        (a, ia), (b, ib) = self.pos.victims
        rows = []
        for victim, about, ip in ((a, b, ib), (b, a, ia)):
            entry = neighbour(self.lab, victim, ip)
            row = {"t": round(time.time(), 6), "phase": phase, "victim": victim, "about": about, "ip": ip,
                   **entry, "poisoned": entry["lladdr"] == self.attacker_mac}
            rows.append(row)
        with self.lock:
            for row in rows:
                self.neigh.write(json.dumps(row) + "\n")
            self.neigh.flush()
        return rows

    def _sample_loop(self) -> None:
        while not self.sampling.wait(SAMPLE_INTERVAL):
            self.sample("during")

    def wait_poisoned(self, timeout: float = POISON_TIMEOUT) -> bool:
        """True once both victims map the other's address to the attacker (bounded); False if not in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(r["poisoned"] for r in self.sample("during")):
                return True
            if self.proc is not None and self.proc.poll() is not None:
                return False
            time.sleep(0.05)  # bounded poll of the caches: the kernel gives no notice of an ARP change
        return False

    # --- the attack ---------------------------------------------------------------------------------------
    def start(self) -> "Attack":
        self.sysctls_before = read_sysctls(self.lab, self.pos.attacker, self.pos.iface)
        self.sample("before")
        if self.capture:
            self.cap = self.lab.capture(self.pos.attacker, self.pos.iface, self.out / "attacker.pcap")
        argv = mitm_argv(self.lab, self.pos, self.log, self.duration, self.rate, self.proxy, self.grep)
        with open(self.out / "attack.out", "w") as out:
            self.proc = self.lab.popen(self.pos.attacker, argv, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO))
        self.sampler = threading.Thread(target=self._sample_loop, daemon=True)
        self.sampler.start()
        return self

    def stop(self) -> dict[str, Any]:
        """SIGTERM the tool (it restores the caches and sysctls), then check that nothing of it remains."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            try:
                code = self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(timeout=5)
        self.sampling.set()
        if self.sampler is not None:
            self.sampler.join(timeout=5)
        if self.cap is not None:
            self.cap.stop()
        after = self.sample("after")
        cleanup = {"exit_code": code, "attacker_mac": self.attacker_mac, "position": self.pos.__dict__,
                   "sysctls_before": self.sysctls_before,
                   "sysctls_after": read_sysctls(self.lab, self.pos.attacker, self.pos.iface),
                   "nft_tables_after": nft_tables(self.lab, self.pos.attacker),
                   "caches_after": after, "t": time.time()}
        (self.out / "cleanup.json").write_text(json.dumps(cleanup, indent=2, default=str) + "\n")
        self.neigh.close()
        return cleanup

    def __enter__(self) -> "Attack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --- reading a phase back (no lab) ------------------------------------------------------------------------
def read_phase(folder: Path) -> dict[str, Any]:
    """What one attack phase did, from its raw files: poisoning, cleanup, the tool's counts."""
    folder = Path(folder)
    events = read_events(folder / "attack.jsonl") if (folder / "attack.jsonl").exists() else []
    neigh = [json.loads(line) for line in (folder / "neigh.jsonl").read_text().splitlines() if line.strip()]
    cleanup = json.loads((folder / "cleanup.json").read_text())
    during = [r for r in neigh if r["phase"] == "during"]
    victims = sorted({r["victim"] for r in neigh})
    poisoned = {v: any(r["poisoned"] for r in during if r["victim"] == v) for v in victims}
    first_poisoned = [min((r["t"] for r in during if r["victim"] == v and r["poisoned"]), default=None)
                      for v in victims]
    poison_events = [e for e in events if e["event"] == "poison"]
    left = leftovers(cleanup)
    return {
        "events": events, "neigh": neigh, "cleanup": cleanup,
        "poisoned": bool(victims) and all(poisoned.values()), "poisoned_by_victim": poisoned,
        "poisoned_samples": sum(r["poisoned"] for r in during),
        "first_poison_sent": min((e["t"] for e in poison_events), default=None),
        "poisoned_at": max(first_poisoned) if victims and None not in first_poisoned else None,
        "poison_frames": max((e.get("frames", 0) for e in events if e["event"] in ("poison", "poison_stopped")),
                             default=0),
        "restored": any(e["event"] == "restored" for e in events),
        "credentials": [e for e in events if e["event"] == "credential"],
        "requests": [e for e in events if e["event"] == "request"],
        "responses": [e for e in events if e["event"] == "response"],
        "tls_rejected": [e for e in events if e["event"] == "tls_rejected"],
        "refused": [e["reason"] for e in events if e["event"] in ("refused", "failed")],
        "leftovers": left,
    }


def leftovers(cleanup: dict[str, Any]) -> list[str]:
    """What of an attack outlived it: a cache still poisoned, a sysctl changed, its nftables table, a bad exit."""
    out = []
    if cleanup.get("exit_code") != 0:
        out.append(f"the tool exited with {cleanup.get('exit_code')}")
    before, after = cleanup.get("sysctls_before", {}), cleanup.get("sysctls_after", {})
    out += [f"sysctl {k} is {after.get(k)} (was {v})" for k, v in before.items() if after.get(k) != v]
    out += [f"nftables {t}" for t in cleanup.get("nft_tables_after", []) if "weblab_attack" in t]
    out += [f"{r['victim']} still maps {r['about']} to the attacker" for r in cleanup.get("caches_after", [])
            if r.get("poisoned")]
    return out


def intercepted(pcap: Path, a_ip: str, b_ip: str, attacker_mac: str, needle: bytes) -> dict[str, Any]:
    """Of an attacker's capture: the victims' IPv4 frames that reached it (Ethernet destination its MAC),
    the frames where needle shows (reassembled per direction), TLS records and plaintext HTTP among them."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap

    from weblab.core.wire import http_label, tls_header
    frames, payload_frames, http, hits, times, hit_times = 0, 0, 0, [], [], {}
    tls: dict[str, int] = {}
    streams: dict[tuple, list[tuple[int, int, bytes]]] = {}
    pair = {a_ip, b_ip}
    for n, pkt in enumerate(rdpcap(str(pcap)) if Path(pcap).exists() else [], 1):
        if Ether not in pkt or IP not in pkt or pkt[Ether].dst.lower() != attacker_mac.lower():
            continue
        if {pkt[IP].src, pkt[IP].dst} != pair:
            continue
        frames += 1
        times.append(float(pkt.time))
        if TCP not in pkt:
            continue
        data = bytes(pkt[TCP].payload)
        if not data:
            continue
        payload_frames += 1
        if http_label(data):
            http += 1
        header = tls_header(data)
        if header is not None:
            tls[header.content_type] = tls.get(header.content_type, 0) + 1
        key = (pkt[IP].src, pkt[TCP].sport, pkt[IP].dst, pkt[TCP].dport)
        streams.setdefault(key, []).append((pkt[TCP].seq, n, data))
        hit_times[n] = float(pkt.time)
    for segs in streams.values():
        seen, stream, owners = set(), b"", []
        for seq, n, data in sorted(segs):
            if seq in seen:
                continue  # the forwarded copy or a retransmission
            seen.add(seq)
            stream += data
            owners += [n] * len(data)
        at = stream.find(needle)
        while at >= 0:
            hits.append(owners[at])
            at = stream.find(needle, at + 1)
    return {"frames": frames, "payload_frames": payload_frames, "http_messages": http, "tls_records": tls,
            "tls_app_data": tls.get("ApplicationData", 0), "needle_frames": sorted(set(hits)),
            "times": times, "needle_times": [hit_times[n] for n in sorted(set(hits))]}


def login(lab: Any, url: str, form: str, log: Path, host: str = "client", extra: list[str] | None = None
          ) -> dict[str, Any]:
    """One login (POST form to url) from host with curl; its status, scheme and backend appended to log."""
    t0 = time.time()
    res = lab.exec(host, ["curl", "-s", "-o", "/dev/null", "-D", "-", "-w", "\n%{http_code} %{scheme} %{url_effective}",
                          "--max-time", "5", *(extra or []), "--data", form, url], timeout=15)
    lines = res.stdout.strip().splitlines()
    code, scheme, effective = (lines[-1].split(" ") + ["", "", ""])[:3] if lines else ("", "", "")
    backend = next((l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("x-backend-server:")), "")
    row = {"t": round(t0, 6), "t_end": round(time.time(), 6), "url": url, "code": code, "scheme": scheme.lower(),
           "effective": effective, "backend": backend, "curl_exit": res.returncode, "stderr": res.stderr.strip()[:300]}
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return row


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file (none if it is absent)."""
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def cache_lanes(neigh: list[dict[str, Any]]) -> dict[str, list[tuple[float, bool]]]:
    """Timeline lanes of the victims' cache samples: 'lb1 -> server1' etc., True where poisoned."""
    lanes: dict[str, list[tuple[float, bool]]] = {}
    for r in neigh:
        lanes.setdefault(f"{r['victim']}'s entry for {r['about']}", []).append((r["t"], bool(r["poisoned"])))
    return lanes


def spoofed_arp(pcap: Path, claimed_ip: str, attacker_mac: str) -> int:
    """ARP frames in a victim's capture that bind claimed_ip to the attacker's MAC (spoofed ones delivered)."""
    from scapy.layers.l2 import ARP
    from scapy.utils import rdpcap
    if not Path(pcap).exists():
        return 0
    return sum(1 for p in rdpcap(str(pcap)) if ARP in p and p[ARP].psrc == claimed_ip
               and str(p[ARP].hwsrc).lower() == attacker_mac.lower())
