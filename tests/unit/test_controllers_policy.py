"""The policy model: strict validation with errors naming the field, and rule matches."""
import copy
import json

import pytest

from controllers.policy import PolicyError, load_policy, parse_policy, parse_rule


def example() -> dict:
    """A small valid policy in the runtime's format (two switches, a multi-homed router)."""
    return {
        "firewall": True,
        "hosts": [
            {"name": "client", "role": "client", "ips": ["10.0.0.1"],
             "mac": "00:00:00:00:00:01", "dpid": 1, "port": 1},
            {"name": "dns", "role": "dns", "ips": ["10.0.0.2"],
             "mac": "00:00:00:00:00:02", "dpid": 1, "port": 2},
            {"name": "lb1", "role": "lb", "ips": ["10.0.0.10"], "vips": ["10.0.0.100"],
             "mac": "00:00:00:00:00:0a", "dpid": 1, "port": 4},
            {"name": "lb2", "role": "lb", "ips": ["10.0.0.11"], "vips": ["10.0.0.100"],
             "mac": "00:00:00:00:00:0b", "dpid": 1, "port": 5},
            {"name": "server1", "role": "web", "ips": ["10.0.1.3"],
             "mac": "00:00:00:00:01:03", "dpid": 2, "port": 3},
            {"name": "server2", "role": "web", "ips": ["10.0.1.4"],
             "mac": "00:00:00:00:01:04", "dpid": 2, "port": 4},
            {"name": "router", "role": "router", "ips": ["10.0.0.254"],
             "mac": "00:00:00:00:00:fe", "dpid": 1, "port": 9},
            {"name": "router", "role": "router", "ips": ["10.0.1.254"],
             "mac": "00:00:00:00:01:fe", "dpid": 2, "port": 9},
        ],
        "switches": [{"dpid": 1, "name": "s1"}, {"dpid": 2, "name": "s2"}],
        "rules": [
            {"id": "arp", "src": "any", "dst": "any", "proto": "arp", "action": "allow"},
            {"id": "icmp", "src": "any", "dst": "any", "proto": "icmp", "action": "allow"},
            {"id": "dns", "src": "any", "dst": "dns", "proto": "udp", "port": 53,
             "action": "allow"},
            {"id": "web-http", "src": "role:lb", "dst": "role:web", "proto": "tcp", "port": 80,
             "action": "allow"},
            {"id": "vrrp", "src": "role:lb", "dst": "any", "proto": "vrrp", "action": "allow"},
            {"id": "no-telnet", "src": "10.0.0.0/24", "dst": "any", "proto": "tcp", "port": 23,
             "action": "deny"},
            {"id": "lan", "src": "any", "dst": "10.0.1.0/24", "proto": "ip", "action": "deny"},
        ],
    }


def test_example_parses_into_frozen_model():
    policy = parse_policy(example())
    assert policy.firewall is True
    assert [r.id for r in policy.rules] == ["arp", "icmp", "dns", "web-http", "vrrp",
                                            "no-telnet", "lan"]
    assert [r.number for r in policy.rules] == [1, 2, 3, 4, 5, 6, 7]
    assert [h.name for h in policy.hosts_on(2)] == ["server1", "server2", "router"]
    with pytest.raises(AttributeError):
        policy.rules[0].action = "deny"


def test_load_policy_reads_file_and_reports_json_position(tmp_path):
    good = tmp_path / "p.json"
    good.write_text(json.dumps(example()))
    assert len(load_policy(str(good)).hosts) == 8
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "firewall": true,\n  "hosts": [,]\n}')
    with pytest.raises(PolicyError, match=r"not JSON: line 3"):
        load_policy(str(bad))
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(str(tmp_path / "missing.json"))


def _mutated(path: str, value, delete: bool = False) -> dict:
    """The example with one field (dotted path, list indexes as numbers) changed or deleted."""
    doc = copy.deepcopy(example())
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if delete:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return doc


@pytest.mark.parametrize("path,value,message", [
    ("firewall", "yes", r"^firewall: must be true or false"),
    ("extra", 1, r"^policy\.extra: unknown field"),
    ("hosts.0.mac", "00:00:00:00:01", r"^hosts\[0\]\.mac: must look like"),
    ("hosts.0.mac", "01:00:5e:00:00:01", r"^hosts\[0\]\.mac: .* multicast"),
    ("hosts.0.ips", ["10.0.0.300"], r"^hosts\[0\]\.ips\[0\]: not an IPv4 address"),
    ("hosts.0.ips", [], r"^hosts\[0\]\.ips: a host needs at least one address"),
    ("hosts.0.dpid", 7, r"^hosts\[0\]\.dpid: no switch with dpid 7"),
    ("hosts.0.dpid", True, r"^hosts\[0\]\.dpid: must be an integer"),
    ("hosts.1.port", 1, r"^hosts\[1\]\.port: 1 used twice on dpid 1"),
    ("hosts.1.ips", ["10.0.0.1"], r"^hosts\[1\]\.ips: 10\.0\.0\.1 also belongs to client"),
    ("hosts.7.role", "lb", r"^hosts\[7\]\.role: host router has roles router and lb"),
    ("hosts.0.vip", ["10.0.0.9"], r"^hosts\[0\]\.vip: unknown field"),
    ("switches.1.dpid", 1, r"^switches\[1\]\.dpid: duplicate 1"),
    ("rules.0.id", "arp two", r"^rules\[0\]\.id: must be"),
    ("rules.1.id", "arp", r"^rules\[1\]\.id: duplicate rule id 'arp'"),
    ("rules.1.proto", "sctp", r"^rules\[1\]\.proto: must be one of"),
    ("rules.1.port", 7, r"^rules\[1\]\.port: only tcp and udp rules take a port"),
    ("rules.2.port", 70000, r"^rules\[2\]\.port: must be an integer 1-65535"),
    ("rules.2.port", "53", r"^rules\[2\]\.port: must be an integer 1-65535"),
    ("rules.2.action", "reject", r"^rules\[2\]\.action: must be allow or deny"),
    ("rules.2.dst", "ns1", r"^rules\[2\]\.dst: unknown host 'ns1'"),
    ("rules.3.src", "role:app", r"^rules\[3\]\.src: no host has role 'app'"),
    ("rules.5.src", "10.0.0.1/24", r"^rules\[5\]\.src: bad IPv4 address or CIDR"),
    ("rules.5.prot", "tcp", r"^rules\[5\]\.prot: unknown field"),
])
def test_validation_errors_name_the_field(path, value, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy(_mutated(path, value))


@pytest.mark.parametrize("path,message", [
    ("rules", r"^policy\.rules: missing"),
    ("hosts.0.mac", r"^hosts\[0\]\.mac: missing"),
    ("rules.2.action", r"^rules\[2\]\.action: missing"),
])
def test_missing_fields_are_named(path, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy(_mutated(path, None, delete=True))


def test_shared_vips_are_accepted_and_resolve_for_both_hosts():
    policy = parse_policy(example())
    assert policy.resolve("lb1") == policy.resolve("10.0.0.10/32") + policy.resolve("10.0.0.100")
    lb_ips = [str(n.network_address) for n in policy.resolve("role:lb")]
    assert lb_ips == ["10.0.0.10", "10.0.0.11", "10.0.0.100"]


def test_multi_homed_host_resolves_to_every_attachment():
    policy = parse_policy(example())
    assert [str(n) for n in policy.resolve("router")] == ["10.0.0.254/32", "10.0.1.254/32"]


def test_tcp_rule_matches_carry_prerequisites_per_address_pair():
    policy = parse_policy(example())
    matches = policy.rule("web-http").matches(policy.resolve)
    assert len(matches) == 3 * 2  # lb1, lb2, the VIP  x  server1, server2
    for match in matches:
        assert match["eth_type"] == 0x0800 and match["ip_proto"] == 6
        assert match["tcp_dst"] == 80
        assert match["ipv4_dst"] in ("10.0.1.3", "10.0.1.4")


@pytest.mark.parametrize("rule_id,expected", [
    ("icmp", [{"eth_type": 0x0800, "ip_proto": 1}]),
    ("dns", [{"eth_type": 0x0800, "ip_proto": 17, "ipv4_dst": "10.0.0.2", "udp_dst": 53}]),
    ("lan", [{"eth_type": 0x0800, "ipv4_dst": ("10.0.1.0", "255.255.255.0")}]),
    ("no-telnet", [{"eth_type": 0x0800, "ip_proto": 6,
                    "ipv4_src": ("10.0.0.0", "255.255.255.0"), "tcp_dst": 23}]),
])
def test_single_matches(rule_id, expected):
    policy = parse_policy(example())
    assert policy.rule(rule_id).matches(policy.resolve) == expected


def test_vrrp_is_ip_proto_112():
    policy = parse_policy(example())
    matches = policy.rule("vrrp").matches(policy.resolve)
    assert {m["ip_proto"] for m in matches} == {112}
    assert all(m["eth_type"] == 0x0800 and "ipv4_dst" not in m for m in matches)


def test_arp_rule_covers_request_and_reply_direction():
    policy = parse_policy(example())
    rule = parse_rule({"id": "a", "src": "client", "dst": "dns", "proto": "arp",
                       "action": "allow"}, policy, "rule", 99)
    assert rule.matches(policy.resolve) == [
        {"eth_type": 0x0806, "arp_spa": "10.0.0.1", "arp_tpa": "10.0.0.2"},
        {"eth_type": 0x0806, "arp_spa": "10.0.0.2", "arp_tpa": "10.0.0.1"},
    ]


def test_live_rule_gets_default_id_and_policy_keeps_ids_unique():
    policy = parse_policy(example())
    rule = parse_rule({"src": "client", "dst": "role:web", "proto": "tcp", "port": 22,
                       "action": "allow"}, policy, "rule", 8, default_id="live-8")
    assert (rule.id, rule.number) == ("live-8", 8)
    grown = policy.with_rule(rule)
    assert grown.rule("live-8") == rule and policy.rule("live-8") is None
    with pytest.raises(PolicyError, match="already exists"):
        grown.with_rule(rule)
    assert grown.without_rule("live-8").rules == policy.rules
    with pytest.raises(PolicyError, match="^id: no rule 'nope'"):
        policy.without_rule("nope")


def test_admits_mirrors_the_compiled_priorities():
    from controllers.policy import parse_policy
    doc = {"firewall": True, "switches": [{"dpid": 1, "name": "s1"}],
           "hosts": [{"name": "a", "role": "web", "ips": ["10.0.0.1"], "mac": "02:00:0a:00:00:01", "dpid": 1, "port": 1},
                     {"name": "b", "role": "db", "ips": ["10.0.0.2"], "mac": "02:00:0a:00:00:02", "dpid": 1, "port": 2,
                      "vips": ["10.0.0.9"]}],
           "rules": [{"id": "web-db", "src": "role:web", "dst": "role:db", "proto": "tcp", "port": 3306, "action": "allow"},
                     {"id": "any-ip", "src": "a", "dst": "10.0.0.9/32", "proto": "ip", "action": "allow"},
                     {"id": "no-ssh", "src": "any", "dst": "b", "proto": "tcp", "port": 22, "action": "deny"},
                     {"id": "arp", "src": "any", "dst": "any", "proto": "arp", "action": "allow"}]}
    p = parse_policy(doc)
    assert p.admits("10.0.0.1", "10.0.0.2", "tcp", 3306) and not p.admits("10.0.0.2", "10.0.0.1", "tcp", 3306)
    assert p.admits("10.0.0.1", "10.0.0.9", "udp", 53)           # "ip" covers every protocol, to the VIP only
    assert not p.admits("10.0.0.1", "10.0.0.2", "udp", 53)
    assert not p.admits("10.0.0.1", "10.0.0.9", "tcp", 22)       # deny wins over allow
    assert p.admits("10.0.0.2", "10.0.0.1", "arp")               # ARP both ways
    assert parse_policy({**doc, "firewall": False}).admits("10.0.0.2", "10.0.0.1", "tcp", 22)
