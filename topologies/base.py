"""The shared vocabulary of designs: roles, addressing, services and firewall policy, as pure data.

A design is a Mininet Topo subclass (so `mn --custom` works) that also declares which services
run on which host, which host is the entry point, and which traffic its firewall allows. It
starts nothing: weblab.lab reads these declarations and brings them to life.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mininet.topo import Topo

ZONE = "foobar.com"


@dataclass(frozen=True)
class Ref:
    """Stands for a host's address in service options (on the network it shares with `on`)."""

    host: str
    on: str = ""


@dataclass(frozen=True)
class HostTable:
    """Stands for {host name: address} of every host; the lab resolves it (DNS A records)."""


@dataclass(frozen=True)
class Cert:
    """Stands for the path of a certificate+key PEM the run's CA issues for dns_names (and ips of host)."""

    name: str
    dns_names: tuple[str, ...]
    host: str = ""


@dataclass(frozen=True)
class CAFile:
    """Stands for the path of the run CA's certificate."""


@dataclass(frozen=True)
class ServiceSpec:
    """One daemon on one host: its kind (a hostapp) and options."""

    host: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """A firewall rule: src/dst are "any", a host, "role:NAME" or a CIDR; default is deny."""

    id: str
    src: str
    dst: str
    proto: str
    port: int | None = None
    action: str = "allow"

    def to_json(self) -> dict[str, Any]:
        d = {"id": self.id, "src": self.src, "dst": self.dst, "proto": self.proto,
             "action": self.action}
        if self.port is not None:
            d["port"] = self.port
        return d


# ARP, ICMP and DNS are explicit rules, not holes.
BASE_RULES = (
    Rule("arp", "any", "any", "arp"),
    Rule("icmp", "any", "any", "icmp"),
    Rule("dns-udp", "any", "role:dns", "udp", 53),
    Rule("dns-tcp", "any", "role:dns", "tcp", 53),
)


@dataclass(frozen=True)
class Param:
    """A design parameter: its default, allowed values (or a check) and a one-line help."""

    default: Any
    help: str
    choices: tuple | None = None
    kind: type = str


class Subnet:
    """Addresses of one lab network."""

    def __init__(self, cidr: str):
        self.net = ipaddress.ip_network(cidr)

    def ip(self, n: int) -> str:
        """The n-th address of the network."""
        return str(self.net.network_address + n)

    def cidr(self, n: int) -> str:
        """The n-th address with the prefix length, as Mininet wants it."""
        return f"{self.ip(n)}/{self.net.prefixlen}"


def mac_for(ip: str) -> str:
    """A stable, locally administered MAC derived from an IPv4 address."""
    o = ipaddress.ip_address(ip).packed
    return "02:00:" + ":".join(f"{b:02x}" for b in o)


class LabTopo(Topo):
    """A design: the Mininet graph plus roles, services, entry point and policy."""

    design: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, **params: Any):
        self.roles: dict[str, str] = {}
        self.addresses: dict[str, list[str]] = {}
        self.interfaces: dict[str, list[ipaddress.IPv4Interface]] = {}
        self.services: list[ServiceSpec] = []
        self.rules: list[Rule] = list(BASE_RULES)
        self.firewall = False
        self.pki = False  # a CA is made per run and every host trusts it
        self.link_names: dict[str, tuple[str, str]] = {}  # alias -> (host, switch), for capture/sniff
        self.entry: str = ""
        self.entry_address: str = ""  # set when the entry point is a virtual IP, not a host's address
        self.vips: dict[str, list[str]] = {}  # host -> virtual IPs it may hold (VRRP)
        self.zone = ZONE
        self.values = self.resolve_params(params)
        super().__init__(**self.values)

    @classmethod
    def resolve_params(cls, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults merged with given values; unknown or invalid values raise ValueError."""
        unknown = set(given) - set(cls.params)
        if unknown:
            known = ", ".join(sorted(cls.params)) or "none"
            raise ValueError(f"{cls.design}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                             f"known: {known}")
        out = {}
        for name, p in cls.params.items():
            value = given.get(name, p.default)
            if p.kind is bool and isinstance(value, str):
                flag = {"true": True, "on": True, "yes": True, "1": True,
                        "false": False, "off": False, "no": False, "0": False}.get(value.lower())
                if flag is None:
                    raise ValueError(f"{cls.design}: parameter {name}={value!r} must be true or false")
                value = flag
            if value is not None and not isinstance(value, p.kind) and p.kind is not object:
                try:
                    value = p.kind(value)
                except (TypeError, ValueError):
                    raise ValueError(f"{cls.design}: parameter {name}={value!r} is not a "
                                     f"{p.kind.__name__}") from None
            if p.choices and value not in p.choices:
                raise ValueError(f"{cls.design}: parameter {name}={value!r} must be one of "
                                 f"{', '.join(map(str, p.choices))}")
            out[name] = value
        return out

    def add_node(self, name: str, role: str, switch: str, ip: str, prefix: int = 24,
                 **opts: Any) -> str:
        """A host with a role, one leg on switch; more legs with add_leg."""
        self.addHost(name, ip=f"{ip}/{prefix}", mac=mac_for(ip), **opts)
        self.roles[name] = role
        self.addresses[name] = [ip]
        self.interfaces[name] = [ipaddress.ip_interface(f"{ip}/{prefix}")]
        self.addLink(name, switch)
        self.link_names[f"{name}-link"] = (name, switch)
        return name

    def add_leg(self, name: str, switch: str, ip: str, prefix: int = 24) -> None:
        """Another interface of host name, on another network."""
        self.addLink(name, switch, params1={"ip": f"{ip}/{prefix}"}, addr1=mac_for(ip))
        self.addresses[name].append(ip)
        self.interfaces[name].append(ipaddress.ip_interface(f"{ip}/{prefix}"))

    def address_on(self, host: str, peer: str) -> str:
        """host's address on a network it shares with peer (the first one)."""
        for mine in self.interfaces[host]:
            for theirs in self.interfaces[peer]:
                if mine.network == theirs.network:
                    return str(mine.ip)
        raise ValueError(f"{host} and {peer} share no network")

    def add_service(self, host: str, kind: str, **options: Any) -> None:
        """Declare a service; services start in declaration order and stop in reverse."""
        self.services.append(ServiceSpec(host, kind, options))

    def add_dns(self, host: str, **extra: Any) -> None:
        """The lab's authoritative DNS on host: apex -> entry point, www CNAME apex."""
        self.add_service(host, "dns", zone=self.zone, apex=self.entry_address or Ref(self.entry),
                         cnames={"www": f"{self.zone}."}, a_records=HostTable(), **extra)

    def host_role(self, name: str) -> str:
        return self.roles[name]

    def attachments(self) -> list[dict[str, Any]]:
        """Every host interface: its address, MAC, and the switch (dpid) and port it plugs into."""
        out = []
        for _a, _b, info in self.links(withInfo=True):
            host, switch = info["node1"], info["node2"]
            if self.isSwitch(host):
                host, switch = switch, host
            port = info["port2"] if info["node2"] == switch else info["port1"]
            ip = info.get("params1", {}).get("ip") or self.nodeInfo(host)["ip"]
            mac = info.get("addr1") or self.nodeInfo(host)["mac"]
            out.append({"name": host, "role": self.roles.get(host, ""), "ips": [ip.split("/")[0]],
                        "mac": mac, "dpid": dpid_of(switch), "port": port})
        return out

    def policy_document(self) -> dict[str, Any]:
        """What the controller enforces: hosts with attachments and VIPs, switches, rules."""
        hosts = []
        for att in self.attachments():
            nets = [i.network for i in self.interfaces[att["name"]] if str(i.ip) == att["ips"][0]]
            vips = [v for v in self.vips.get(att["name"], [])
                    if any(ipaddress.ip_address(v) in n for n in nets)]
            hosts.append({**att, "vips": vips} if vips else att)
        return {"firewall": bool(self.firewall), "hosts": hosts,
                "switches": [{"dpid": dpid_of(s), "name": s} for s in self.switches()],
                "rules": [r.to_json() for r in self.rules]}


def dpid_of(switch: str) -> int:
    """The datapath id Mininet gives a switch: the number in its name (s2 -> 2)."""
    digits = re.findall(r"\d+", switch)
    if not digits:
        raise ValueError(f"switch {switch!r} has no number in its name; Mininet needs one for its dpid")
    return int(digits[0])
