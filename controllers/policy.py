"""The firewall policy model: hosts, switches and rules, parsed and strictly validated.

Pure Python (no os-ken): the runtime writes the policy as JSON, `load_policy` turns it into
frozen dataclasses, and a `Rule` knows the OpenFlow matches (with their prerequisites) it
stands for. Endpoints (`src`/`dst`) are "any", a host name, "role:NAME", a CIDR, or a single
IPv4 address; a host's addresses are its `ips` plus its `vips` (keepalived virtual IPs).
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
IP_PROTOS = {"icmp": 1, "tcp": 6, "udp": 17, "vrrp": 112}
PROTOS = ("tcp", "udp", "icmp", "arp", "vrrp", "ip")
ACTIONS = ("allow", "deny")
RULE_KEYS = {"id", "src", "dst", "proto", "port", "action"}
HOST_KEYS = {"name", "role", "ips", "mac", "dpid", "port", "vips"}
TOP_KEYS = {"firewall", "hosts", "switches", "rules", "arp_inspection"}
TOP_REQUIRED = TOP_KEYS - {"arp_inspection"}
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")

Network = ipaddress.IPv4Network
Resolver = Callable[[str], tuple[Optional[Network], ...]]


class PolicyError(ValueError):
    """A policy or rule that does not validate; the message starts with the bad field."""


@dataclass(frozen=True)
class Switch:
    """One OpenFlow switch of the lab."""

    dpid: int
    name: str


@dataclass(frozen=True)
class Host:
    """One attachment of a host to a switch port (a multi-homed host has several)."""

    name: str
    role: str
    ips: tuple[str, ...]
    mac: str
    dpid: int
    port: int
    vips: tuple[str, ...] = ()

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every IPv4 address that reaches this host here: its own and its virtual IPs."""
        return self.ips + self.vips


@dataclass(frozen=True)
class Rule:
    """One firewall rule: ingress policy of the destination host(s)."""

    id: str
    src: str
    dst: str
    proto: str
    action: str
    port: Optional[int] = None
    number: int = 0  # stable per controller run; the rule's flow cookie is derived from it

    def matches(self, resolve: Resolver) -> list[dict[str, Any]]:
        """OpenFlow match dicts (os-ken OFPMatch field names) this rule stands for."""
        pairs = [(s, d) for s in resolve(self.src) for d in resolve(self.dst)]
        if self.proto == "arp":
            # ARP is request/response and not conntracked: a rule covers both directions.
            pairs += [(d, s) for s, d in pairs]
            found = [_arp_match(s, d) for s, d in pairs]
        else:
            found = [self._ip_match(s, d) for s, d in pairs]
        unique: dict[tuple, dict[str, Any]] = {}
        for match in found:
            unique.setdefault(tuple(sorted(match.items(), key=str)), match)
        return list(unique.values())

    def to_dict(self) -> dict[str, Any]:
        """The rule in the policy file's JSON shape."""
        out: dict[str, Any] = {"id": self.id, "src": self.src, "dst": self.dst,
                               "proto": self.proto, "action": self.action}
        if self.port is not None:
            out["port"] = self.port
        return out

    def _ip_match(self, src: Optional[Network], dst: Optional[Network]) -> dict[str, Any]:
        """An IPv4 match with eth_type and ip_proto prerequisites in place."""
        match: dict[str, Any] = {"eth_type": ETH_TYPE_IP}
        if self.proto in IP_PROTOS:
            match["ip_proto"] = IP_PROTOS[self.proto]
        if src is not None:
            match["ipv4_src"] = _of_address(src)
        if dst is not None:
            match["ipv4_dst"] = _of_address(dst)
        if self.port is not None:
            match[f"{self.proto}_dst"] = self.port
        return match


@dataclass(frozen=True)
class Policy:
    """The whole policy: firewall switch, host attachments, switches, rules in order, ARP inspection."""

    firewall: bool
    hosts: tuple[Host, ...]
    switches: tuple[Switch, ...]
    rules: tuple[Rule, ...] = ()
    arp_inspection: bool = False  # drop ARP whose sender IP/MAC contradicts the hosts above

    def own_ips(self, name: str) -> tuple[str, ...]:
        """Every address of a host, over all its attachments (without virtual IPs)."""
        return tuple(dict.fromkeys(ip for h in self.hosts if h.name == name for ip in h.ips))

    def host_at(self, dpid: int, port: int) -> Optional[Host]:
        """The host attachment plugged into a switch port, if the design has one there."""
        return next((h for h in self.hosts if (h.dpid, h.port) == (dpid, port)), None)

    def resolve(self, endpoint: str) -> tuple[Optional[Network], ...]:
        """Networks an endpoint stands for; (None,) means any address."""
        if endpoint == "any":
            return (None,)
        if endpoint.startswith("role:"):
            role = endpoint[len("role:"):]
            found = [h for h in self.hosts if h.role == role]
            if not found:
                raise PolicyError(f"no host has role {role!r} "
                                  f"(roles: {', '.join(sorted({h.role for h in self.hosts}))})")
            return _networks(ip for h in found for ip in h.addresses)
        if "/" in endpoint or _is_ipv4(endpoint):
            try:
                return (ipaddress.IPv4Network(endpoint, strict=True),)
            except ValueError as err:
                raise PolicyError(f"bad IPv4 address or CIDR {endpoint!r}: {err}") from None
        found = [h for h in self.hosts if h.name == endpoint]
        if not found:
            raise PolicyError(f"unknown host {endpoint!r} (hosts: "
                              f"{', '.join(sorted({h.name for h in self.hosts}))}; "
                              "use role:NAME for a role)")
        return _networks(ip for h in found for ip in h.addresses)

    def hosts_on(self, dpid: int) -> tuple[Host, ...]:
        """Host attachments on one switch."""
        return tuple(h for h in self.hosts if h.dpid == dpid)

    def rule(self, rule_id: str) -> Optional[Rule]:
        """The rule with this id, if any."""
        return next((r for r in self.rules if r.id == rule_id), None)

    def rule_by_number(self, number: int) -> Optional[Rule]:
        """The rule with this number (cookie), if any."""
        return next((r for r in self.rules if r.number == number), None)

    def next_number(self) -> int:
        """A rule number never used by this policy's rules."""
        return max((r.number for r in self.rules), default=0) + 1

    def with_rule(self, rule: Rule) -> "Policy":
        """This policy plus one rule (ids stay unique)."""
        if self.rule(rule.id):
            raise PolicyError(f"rule.id: a rule {rule.id!r} already exists")
        return replace(self, rules=self.rules + (rule,))

    def without_rule(self, rule_id: str) -> "Policy":
        """This policy minus one rule."""
        if not self.rule(rule_id):
            raise PolicyError(f"id: no rule {rule_id!r}")
        return replace(self, rules=tuple(r for r in self.rules if r.id != rule_id))

    def admits(self, src: str, dst: str, proto: str, port: Optional[int] = None) -> bool:
        """Would the compiled flows let a new src -> dst connection (IPv4 addresses) of proto/port
        through? Firewall off: yes. On: a matching deny rule wins over allow rules (it sits in a higher
        priority band), an allow rule admits, and nothing matching is the default deny. "ip" rules
        match every IP protocol; ARP rules cover both directions (compiler.py)."""
        if not self.firewall:
            return True
        s, d = ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst)

        def covers(endpoint: str, addr: ipaddress.IPv4Address) -> bool:
            return any(net is None or addr in net for net in self.resolve(endpoint))

        def hit(rule: Rule) -> bool:
            if rule.proto == "arp" or proto == "arp":
                ends = ((s, d), (d, s)) if rule.proto == proto == "arp" else ()
            else:
                ends = ((s, d),) if rule.proto in (proto, "ip") and rule.port in (None, port) else ()
            return any(covers(rule.src, a) and covers(rule.dst, b) for a, b in ends)
        hits = [r for r in self.rules if hit(r)]
        return any(r.action == "allow" for r in hits) and not any(r.action == "deny" for r in hits)


def load_policy(path: str) -> Policy:
    """Read and validate a policy file."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as err:
        raise PolicyError(f"cannot read policy: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise PolicyError(f"not JSON: line {err.lineno} column {err.colno}: {err.msg}") from None
    return parse_policy(raw)


def parse_policy(raw: Any) -> Policy:
    """Validate a decoded policy document."""
    obj = _object(raw, "policy", TOP_KEYS, TOP_REQUIRED)
    firewall, inspection = obj["firewall"], obj.get("arp_inspection", False)
    if not isinstance(firewall, bool):
        raise PolicyError("firewall: must be true or false")
    if not isinstance(inspection, bool):
        raise PolicyError("arp_inspection: must be true or false")
    switches = tuple(_switch(s, f"switches[{i}]") for i, s in enumerate(_list(obj, "switches")))
    _unique([s.dpid for s in switches], "switches", "dpid")
    hosts = tuple(_host(h, f"hosts[{i}]") for i, h in enumerate(_list(obj, "hosts")))
    _check_hosts(hosts, {s.dpid for s in switches})
    policy = Policy(firewall=firewall, hosts=hosts, switches=switches, arp_inspection=inspection)
    for i, raw_rule in enumerate(_list(obj, "rules")):
        rule = parse_rule(raw_rule, policy, f"rules[{i}]", number=i + 1)
        if policy.rule(rule.id):
            raise PolicyError(f"rules[{i}].id: duplicate rule id {rule.id!r}")
        policy = replace(policy, rules=policy.rules + (rule,))
    return policy


def parse_rule(raw: Any, policy: Policy, where: str, number: int,
               default_id: Optional[str] = None) -> Rule:
    """Validate one rule against the policy's hosts; `where` prefixes error messages."""
    required = {"src", "dst", "proto", "action"} | ({"id"} if default_id is None else set())
    obj = _object(raw, where, RULE_KEYS, required)
    rule_id = obj.get("id", default_id)
    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        raise PolicyError(f"{where}.id: must be 1-64 letters, digits, '_.:-', got {rule_id!r}")
    for key in ("src", "dst"):
        if not isinstance(obj[key], str) or not obj[key]:
            raise PolicyError(f"{where}.{key}: must be a non-empty string")
        try:
            policy.resolve(obj[key])
        except PolicyError as err:
            raise PolicyError(f"{where}.{key}: {err}") from None
    proto, action, port = obj["proto"], obj["action"], obj.get("port")
    if proto not in PROTOS:
        raise PolicyError(f"{where}.proto: must be one of {', '.join(PROTOS)}, got {proto!r}")
    if action not in ACTIONS:
        raise PolicyError(f"{where}.action: must be allow or deny, got {action!r}")
    if port is not None:
        if proto not in ("tcp", "udp"):
            raise PolicyError(f"{where}.port: only tcp and udp rules take a port (proto {proto})")
        if not _is_int(port) or not 1 <= port <= 65535:
            raise PolicyError(f"{where}.port: must be an integer 1-65535, got {port!r}")
    return Rule(id=rule_id, src=obj["src"], dst=obj["dst"], proto=proto, action=action,
                port=port, number=number)


def _switch(raw: Any, where: str) -> Switch:
    """Validate one switch entry."""
    obj = _object(raw, where, {"dpid", "name"}, {"dpid", "name"})
    return Switch(dpid=_dpid(obj["dpid"], f"{where}.dpid"),
                  name=_name(obj["name"], f"{where}.name"))


def _host(raw: Any, where: str) -> Host:
    """Validate one host attachment."""
    obj = _object(raw, where, HOST_KEYS, HOST_KEYS - {"vips"})
    mac = obj["mac"]
    if not isinstance(mac, str) or not _MAC.match(mac.lower()):
        raise PolicyError(f"{where}.mac: must look like 00:00:00:00:00:01, got {mac!r}")
    if int(mac[:2], 16) & 1:
        raise PolicyError(f"{where}.mac: {mac} is a multicast address")
    port = obj["port"]
    if not _is_int(port) or not 1 <= port <= 0xFFFFFF00:
        raise PolicyError(f"{where}.port: must be an OpenFlow port number >= 1, got {port!r}")
    ips = _ips(obj["ips"], f"{where}.ips")
    if not ips:
        raise PolicyError(f"{where}.ips: a host needs at least one address")
    return Host(name=_name(obj["name"], f"{where}.name"), role=_name(obj["role"], f"{where}.role"),
                ips=ips, mac=mac.lower(), dpid=_dpid(obj["dpid"], f"{where}.dpid"), port=port,
                vips=_ips(obj.get("vips", []), f"{where}.vips"))


def _check_hosts(hosts: tuple[Host, ...], dpids: set[int]) -> None:
    """Cross-entry checks: known switches, free ports, one role per name, unique addresses."""
    roles: dict[str, str] = {}
    owners: dict[str, str] = {}
    seen: set[tuple[int, Any]] = set()
    for i, h in enumerate(hosts):
        where = f"hosts[{i}]"
        if h.dpid not in dpids:
            raise PolicyError(f"{where}.dpid: no switch with dpid {h.dpid} in switches")
        for key, value in (("port", h.port), ("mac", h.mac)):
            if (h.dpid, value) in seen:
                raise PolicyError(f"{where}.{key}: {value} used twice on dpid {h.dpid}")
            seen.add((h.dpid, value))
        if roles.setdefault(h.name, h.role) != h.role:
            raise PolicyError(f"{where}.role: host {h.name} has roles {roles[h.name]} and {h.role}")
        for ip in h.ips:  # vips are shared on purpose (they move); own ips are not
            if owners.setdefault(ip, h.name) != h.name:
                raise PolicyError(f"{where}.ips: {ip} also belongs to {owners[ip]}")


def _object(raw: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    """A JSON object with exactly the allowed keys and at least the required ones."""
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: must be an object")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}: unknown field (allowed: "
                          f"{', '.join(sorted(allowed))})")
    missing = sorted(required - set(raw))
    if missing:
        raise PolicyError(f"{where}.{missing[0]}: missing")
    return raw


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    """A list-valued field."""
    if not isinstance(obj[key], list):
        raise PolicyError(f"{key}: must be a list")
    return obj[key]


def _unique(values: list[Any], where: str, key: str) -> None:
    """Fail on the first duplicate value."""
    seen: set[Any] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise PolicyError(f"{where}[{i}].{key}: duplicate {value}")
        seen.add(value)


def _name(value: Any, where: str) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(f"{where}: must be a non-empty string")
    return value


def _dpid(value: Any, where: str) -> int:
    """A datapath id."""
    if not _is_int(value) or not 0 < value < 2 ** 64:
        raise PolicyError(f"{where}: must be an integer datapath id > 0, got {value!r}")
    return value


def _ips(value: Any, where: str) -> tuple[str, ...]:
    """A list of IPv4 addresses, normalised."""
    if not isinstance(value, list):
        raise PolicyError(f"{where}: must be a list of IPv4 addresses")
    out = []
    for i, ip in enumerate(value):
        if not isinstance(ip, str) or not _is_ipv4(ip):
            raise PolicyError(f"{where}[{i}]: not an IPv4 address: {ip!r}")
        out.append(str(ipaddress.IPv4Address(ip)))
    return tuple(out)


def _is_ipv4(text: str) -> bool:
    """True for a plain dotted-quad IPv4 address."""
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _is_int(value: Any) -> bool:
    """True for an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _networks(ips: Any) -> tuple[Network, ...]:
    """Sorted, de-duplicated /32 networks."""
    return tuple(sorted({ipaddress.IPv4Network(ip) for ip in ips}))


def _of_address(net: Network) -> Any:
    """An OFPMatch value: a plain address for /32, (address, netmask) otherwise."""
    if net.prefixlen == 32:
        return str(net.network_address)
    return (str(net.network_address), str(net.netmask))


def _arp_match(src: Optional[Network], dst: Optional[Network]) -> dict[str, Any]:
    """An ARP match: sender address from src, target address from dst."""
    match: dict[str, Any] = {"eth_type": ETH_TYPE_ARP}
    if src is not None:
        match["arp_spa"] = _of_address(src)
    if dst is not None:
        match["arp_tpa"] = _of_address(dst)
    return match
