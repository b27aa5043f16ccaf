"""The shared vocabulary of designs: roles, addressing, services and firewall policy, as pure data.

A design is a Mininet Topo subclass (so `mn --custom` works) that also declares which services
run on which host, which host is the entry point, and which traffic its firewall allows. It
starts nothing: weblab.lab reads these declarations and brings them to life.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
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
class Port:
    """Stands for a service's port number (its option `option`, e.g. node_exporter's "port"): the one
    home of a port is the hostapp's defaults, or the design's option for that service."""

    kind: str
    option: str = "port"

    def __str__(self) -> str:
        return f"the {self.option} of {self.kind}"


@dataclass(frozen=True)
class ServiceSpec:
    """One daemon on one host: its kind (a hostapp), options, and the services it waits for
    (`after`, as "kind@host"): it starts once those are ready, at the same time as every other
    service whose prerequisites are."""

    host: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    standby: bool = False  # a spare host's service: configured at `up`, started by `weblab lb add`

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.host}"


@dataclass(frozen=True)
class RuleSpec:
    """A firewall rule: src/dst are "any", a host, "role:NAME" or a CIDR; default is deny."""

    id: str
    src: str
    dst: str
    proto: str
    port: "int | Port | None" = None
    action: str = "allow"

    def to_json(self) -> dict[str, Any]:
        d = {"id": self.id, "src": self.src, "dst": self.dst, "proto": self.proto,
             "action": self.action}
        if self.port is not None:
            d["port"] = self.port
        return d


# ARP, ICMP and DNS are explicit rules, not holes.
BASE_RULES = (
    RuleSpec("arp", "any", "any", "arp"),
    RuleSpec("icmp", "any", "any", "icmp"),
    RuleSpec("dns-udp", "any", "role:dns", "udp", 53),
    RuleSpec("dns-tcp", "any", "role:dns", "tcp", 53),
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


MAX_SERVERS = 16
SERVER_COUNTS = tuple(range(1, MAX_SERVERS + 1))  # what `servers`, `web` and `app` may be


SPARE_ROLE = "spare"  # a host built at `up` with its services stopped, for `weblab lb add`


def spare_param() -> Param:
    """`--param spare=N`: hosts built at `up`, services stopped, that `weblab lb add` puts in rotation."""
    return Param(0, "spare servers built at up with their services stopped, for `weblab lb add` "
                 f"(0..{MAX_SERVERS - 1})", tuple(range(MAX_SERVERS)), int)


def footprint(servers: int) -> dict[str, int]:
    """Per-server resources that shrink as a design grows, so a 16-server lab stays lean: the InnoDB
    buffer pool (MiB) and the app server's worker processes."""
    return {"buffer_pool_mb": max(16, min(64, 128 // max(1, servers))), "app_workers": 2 if servers <= 4 else 1}


# The client's link ("the internet"), shaped each way by the lab (weblab.shaping); every design has it.
LINK_PARAMS = {
    "client_bw": Param(None, "client link bandwidth, Mbit/s each way (up to 10000; default unshaped)",
                       kind=float),
    "client_delay": Param(None, "client link delay, ms each way (needs the netem qdisc)", kind=float),
    "client_jitter": Param(None, "client link delay jitter, ms (needs netem and a delay)", kind=float),
    "client_loss": Param(None, "client link loss, % each way (needs the netem qdisc)", kind=float),
}


def mac_for(ip: str) -> str:
    """A stable, locally administered MAC derived from an IPv4 address."""
    o = ipaddress.ip_address(ip).packed
    return "02:00:" + ":".join(f"{b:02x}" for b in o)


@dataclass(frozen=True)
class AttackPosition:
    """Where an attack runs: the attacker, its interface and address, the victims, the lab networks."""

    attacker: str
    iface: str
    address: str
    victims: tuple[tuple[str, str], ...]   # (name, address on the shared network)
    lab_nets: tuple[str, ...]


class LabTopo(Topo):
    """A design: the Mininet graph (whose node and link options hold every node and link fact: role,
    addresses, MAC, link aliases, VIPs) plus the services, the entry point and the firewall policy."""

    design: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}

    def __init_subclass__(cls, **kw: Any):
        super().__init_subclass__(**kw)
        cls.params = {**cls.params, **{k: v for k, v in LINK_PARAMS.items() if k not in cls.params}}

    def __init__(self, **params: Any):
        self.services: list[ServiceSpec] = []
        self.rules: list[RuleSpec] = list(BASE_RULES)
        self.firewall = False
        self.pki = False  # a CA is made per run and every host trusts it
        self.arp_inspection = False  # the controller drops ARP whose sender contradicts the design
        self.entry: str = ""
        self.entry_address: str = ""  # set when the entry point is a virtual IP, not a host's address
        self.zone = ZONE
        self.wait_entry = True  # the lab is ready once the client loads the site (a scenario may break it)
        self.certs: list[Cert] = []  # certificates the run's CA issues beside those services name
        self.values = self.resolve_params(params)
        super().__init__(**self.values)
        client = {k.split("_", 1)[1]: v for k, v in self.values.items() if k in LINK_PARAMS and v is not None}
        if client and "client-link" in self.link_names():
            self.shape_link(*self.link_names()["client-link"], **client)

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

    # --- building: every fact goes into the graph's own options ----------------------------------
    def add_node(self, name: str, role: str, switch: str, ip: str, prefix: int = 24,
                 link: str | None = None, vips: tuple[str, ...] = (), **opts: Any) -> str:
        """A host with a role and its first leg on switch (link: the leg's alias, default NAME-link);
        vips: virtual addresses it may hold (VRRP). More legs with add_leg."""
        self.addHost(name, ip=f"{ip}/{prefix}", mac=mac_for(ip), role=role, vips=list(vips), **opts)
        self.add_leg(name, switch, ip, prefix, link=link or f"{name}-link")
        return name

    def add_leg(self, name: str, switch: str, ip: str, prefix: int = 24, link: str | None = None,
                **opts: Any) -> None:
        """Another interface of host name, on another network (link: an alias for capture/sniff)."""
        self.addLink(name, switch, params1={"ip": f"{ip}/{prefix}"}, addr1=mac_for(ip), alias=link, **opts)

    # --- reading the graph --------------------------------------------------------------------------
    def role(self, host: str) -> str:
        """The role a design gave host (client, dns, lb, web, ...)."""
        return self.nodeInfo(host).get("role", "")

    def legs(self, host: str) -> list[dict[str, Any]]:
        """host's interfaces in port order: switch, address (ip_interface), MAC, switch port, alias."""
        out = []
        for _a, _b, info in self.links(sort=False, withInfo=True):
            if info["node1"] != host:
                continue
            out.append({"switch": info["node2"], "port": info["port2"], "host_port": info["port1"],
                        "ip": ipaddress.ip_interface(info["params1"]["ip"]), "mac": info["addr1"],
                        "alias": info.get("alias")})
        return sorted(out, key=lambda leg: leg["host_port"])

    def addresses_of(self, host: str) -> list[str]:
        """host's addresses, its first leg's first."""
        return [str(leg["ip"].ip) for leg in self.legs(host)]

    def vips_of(self, host: str) -> list[str]:
        """The virtual addresses host may hold."""
        return list(self.nodeInfo(host).get("vips", []))

    @property
    def roles(self) -> dict[str, str]:
        """host -> role (read from the graph)."""
        return {h: self.role(h) for h in self.hosts()}

    @property
    def addresses(self) -> dict[str, list[str]]:
        """host -> its addresses (read from the graph)."""
        return {h: self.addresses_of(h) for h in self.hosts()}

    def link_names(self) -> dict[str, tuple[str, str]]:
        """alias -> (host, switch) of every link the design named (lb-back, client-link, ...)."""
        return {info["alias"]: (info["node1"], info["node2"])
                for _a, _b, info in self.links(sort=True, withInfo=True) if info.get("alias")}

    def networks(self) -> list[str]:
        """Every network of the lab (CIDR), sorted: what the attack tools may aim at, and nothing else."""
        return sorted({str(leg["ip"].network) for h in self.hosts() for leg in self.legs(h)})

    def leg_towards(self, host: str, peers: list[str]) -> dict[str, Any] | None:
        """host's first leg on a network where every peer has an address too (one link: ARP reaches them)."""
        for leg in self.legs(host):
            if all(any(l["ip"].network == leg["ip"].network for l in self.legs(p)) for p in peers):
                return leg
        return None

    def attack_position(self, attacker: str, victims: list[str]) -> "AttackPosition | None":
        """Where an ARP-spoofing attack from `attacker` between `victims` runs: its interface and address
        on the one network it shares with every victim, their addresses there, the lab's networks (the
        only ones the tools may aim at); None when no such network exists."""
        leg = self.leg_towards(attacker, victims)
        if leg is None:
            return None
        return AttackPosition(attacker, f"{attacker}-eth{leg['host_port']}", str(leg["ip"].ip),
                              tuple((v, self.address_on(v, attacker)) for v in victims), tuple(self.networks()))

    def shape_link(self, host: str, switch: str, **shape: Any) -> None:
        """Bandwidth (bw, Mbit/s), delay and jitter (ms), loss (%) on a link, each way: a `shape`
        link option the lab applies at the host end (weblab.shaping)."""
        info = self.linkInfo(host, switch)
        info["shape"] = {**info.get("shape", {}), **shape}

    def address_on(self, host: str, peer: str) -> str:
        """host's address on a network it shares with peer (the first one)."""
        for mine in self.legs(host):
            for theirs in self.legs(peer):
                if mine["ip"].network == theirs["ip"].network:
                    return str(mine["ip"].ip)
        raise ValueError(f"{host} and {peer} share no network")

    def add_service(self, host: str, kind: str, after: tuple[str, ...] | list[str] = (), standby: bool = False,
                    **options: Any) -> None:
        """Declare a service that starts once every service named in `after` ("kind@host") is ready
        (standby: not at `up`; a spare's service, started when the spare joins the pool); teardown stops
        services in the reverse of declaration order."""
        self.services.append(ServiceSpec(host, kind, options, tuple(after), standby))

    def check_services(self) -> None:
        """Every `after` names a declared service, and no service waits for itself through others."""
        names = [s.name for s in self.services]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"{self.design}: service(s) declared twice: {', '.join(sorted(dupes))}")
        deps = {s.name: set(s.after) for s in self.services}
        for name, wanted in deps.items():
            unknown = wanted - set(deps)
            if unknown:
                raise ValueError(f"{self.design}: {name} waits for {', '.join(sorted(unknown))}, "
                                 f"which the design does not declare")
        standby = {s.name for s in self.services if s.standby}
        for s in self.services:
            if not s.standby and set(s.after) & standby:
                raise ValueError(f"{self.design}: {s.name} waits for standby service(s) "
                                 f"{', '.join(sorted(set(s.after) & standby))}, which `up` does not start")
        done: set[str] = set()
        while len(done) < len(deps):
            ready = {n for n, w in deps.items() if n not in done and w <= done}
            if not ready:
                raise ValueError(f"{self.design}: services wait for each other in a circle: "
                                 f"{', '.join(sorted(set(deps) - done))}")
            done |= ready

    def start_waves(self) -> list[list[ServiceSpec]]:
        """The services in the order they can start: each wave waits only for earlier ones (for
        people and tests; the lab starts each service as soon as its own prerequisites are ready)."""
        self.check_services()
        done: set[str] = set()
        waves = []
        while len(done) < len(self.services):
            wave = [s for s in self.services if s.name not in done and set(s.after) <= done]
            waves.append(wave)
            done |= {s.name for s in wave}
        return waves

    def add_dns(self, host: str, **extra: Any) -> None:
        """The lab's authoritative DNS on host: apex -> entry point, www CNAME apex; with a mail host, the
        zone's MX names it (unless `mail_mx` is off) and SPF says only the MX sends for the domain."""
        if MAIL in self.hosts():
            if self.values.get("mail_mx", True):
                extra.setdefault("mx", [[10, MAIL]])
            extra.setdefault("apex_txt", ["v=spf1 mx -all"])
        self.add_service(host, "dns", zone=self.zone, apex=self.entry_address or Ref(self.entry),
                         cnames={"www": f"{self.zone}."}, a_records=HostTable(), **extra)

    def add_mail(self, switch: str, net: "Subnet") -> None:
        """The domain's mail host on the client-facing network (net): Postfix for @zone, and SMTP to it
        admitted from that network only. Call it before add_dns (the zone's MX names it)."""
        self.add_node(MAIL, MAIL, switch, net.ip(MAIL_HOST))
        self.add_service(MAIL, "mail", domain=self.zone, hostname=f"{MAIL}.{self.zone}", port=SMTP_PORT)
        self.rules.append(RuleSpec("mail-smtp", str(net.net), MAIL, "tcp", SMTP_PORT))

    def service_spec(self, host: str, kind: str) -> ServiceSpec | None:
        """The declaration of a kind of service on host, if the design has one."""
        return next((s for s in self.services if (s.host, s.kind) == (host, kind)), None)

    def port_of(self, port: Port, host: str | None, defaults: dict[str, dict[str, Any]]) -> int:
        """The number a Port stands for: the option as the design sets it for that service on host,
        else the service's default (defaults: kind -> the hostapp's default options)."""
        spec = self.service_spec(host, port.kind) if host else None
        if spec is not None and port.option in spec.options:
            return int(spec.options[port.option])
        try:
            return int(defaults[port.kind][port.option])
        except KeyError:
            raise ValueError(f"{self.design}: {port} names no service option with a default") from None

    def attachments(self) -> list[dict[str, Any]]:
        """Every host interface: its address, MAC, and the switch (dpid) and port it plugs into."""
        out = []
        for host in self.hosts():
            for leg in self.legs(host):
                out.append({"name": host, "role": self.role(host), "ips": [str(leg["ip"].ip)],
                            "mac": leg["mac"], "dpid": dpid_of(leg["switch"]), "port": leg["port"]})
        return out

    def policy_document(self, defaults: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """What the controller enforces: hosts with attachments and VIPs, switches, rules (a Port in a
        rule is resolved with defaults: kind -> the hostapp's default options)."""
        hosts = []
        for att in self.attachments():
            net = next(leg["ip"].network for leg in self.legs(att["name"]) if str(leg["ip"].ip) == att["ips"][0])
            vips = [v for v in self.vips_of(att["name"]) if ipaddress.ip_address(v) in net]
            hosts.append({**att, "vips": vips} if vips else att)
        rules = []
        for r in self.rules:
            if isinstance(r.port, Port):
                if defaults is None:
                    raise ValueError(f"rule {r.id} names {r.port}: policy_document needs the services' defaults")
                host = r.dst if r.dst in self.hosts() else None
                r = replace(r, port=self.port_of(r.port, host, defaults))
            rules.append(r.to_json())
        return {"firewall": bool(self.firewall), "arp_inspection": bool(self.arp_inspection), "hosts": hosts,
                "switches": [{"dpid": dpid_of(s), "name": s} for s in self.switches()],
                "rules": rules}


MAIL = "mail"
SMTP_PORT = 25  # where other MTAs deliver (RFC 5321): the design's, not a choice of the daemon
MAIL_HOST = 25  # the mail host's number on the client-facing network (below every server range there)


def mail_params(default: bool) -> dict[str, Param]:
    """`--param mail=...`: the domain's mail host; `mail_mx=false` leaves the MX record out of the zone."""
    return {"mail": Param(default, "a mail host (Postfix) for @foobar.com, named by the zone's MX record",
                          kind=bool),
            "mail_mx": Param(True, "publish the MX record (false: senders fall back to the domain's A "
                             "record, RFC 5321 5.1)", kind=bool)}


ATTACKER = "attacker"
ATTACKER_HOST = 200  # its host number on the network it joins (above every server range)
ATTACKER_POSITIONS = ("none", "front", "back")


def static_param() -> Param:
    """`--param static=nginx|app`: who serves /static/ (C18 static-offload)."""
    return Param("nginx", "who serves /static/: nginx from disk (offloaded) or the app server (nginx proxies it)",
                 ("nginx", "app"))


def cache_params() -> dict[str, Param]:
    """`--param cache=on cache_ttl=S`: nginx's proxy cache for the DB-backed pages (C19 caching)."""
    return {"cache": Param(False, "nginx proxy cache for the DB-backed pages (/ and /api/items), with an "
                                  "X-Cache-Status header", kind=bool),
            "cache_ttl": Param(1, "seconds a cached page is served (nginx counts whole seconds: up to "
                                  "cache_ttl + 1 s)", tuple(range(1, 61)), int)}


def nginx_design_options(p: dict[str, Any]) -> dict[str, Any]:
    """The nginx options of the static/cache design parameters a design declares."""
    return {k: p[k] for k in ("static", "cache", "cache_ttl") if k in p}


def attacker_param() -> Param:
    """`--param attacker=front|back`: an attacker host on the client network, or a rogue host on the back one."""
    return Param("none", "an attacker host on the client network (front) or a rogue host on the back network "
                 "(back); no allow rules of its own", ATTACKER_POSITIONS)


def https_params() -> dict[str, Param]:
    """The HTTPS entry point's hardening knobs (designs with TLS at the load balancer)."""
    return {"hsts": Param(True, "send Strict-Transport-Security over HTTPS", kind=bool),
            "tls_ciphers": Param("aead", "TLS 1.2 suites offered: aead (GCM, ChaCha20-Poly1305) or legacy "
                                 "(also CBC)", ("aead", "legacy")),
            "arp_inspection": Param(True, "the controller drops ARP whose sender IP/MAC contradicts the design",
                                    kind=bool)}


def tls_hardening(p: dict[str, Any]) -> dict[str, Any]:
    """HAProxy options for the design's HTTPS parameters."""
    return {"hsts_max_age": HSTS_MAX_AGE if p["hsts"] else 0, "tls_ciphers": p["tls_ciphers"]}


HSTS_MAX_AGE = 31536000  # one year, as commonly deployed


def dpid_of(switch: str) -> int:
    """The datapath id Mininet gives a switch: the number in its name (s2 -> 2)."""
    digits = re.findall(r"\d+", switch)
    if not digits:
        raise ValueError(f"switch {switch!r} has no number in its name; Mininet needs one for its dpid")
    return int(digits[0])
