"""The programs a lab needs, from one declaration: the runtime's own, and each service's `binaries`.

Preflight (`weblab up`), `weblab doctor` and the test suite's skip rule all read these functions, so
"doctor says ready" and "up starts" cannot disagree.
"""
from __future__ import annotations

import shutil
from typing import Any

# program -> the Debian package that ships it
RUNTIME = {  # every lab: switches, hosts, their configuration, readiness probes
    "mnexec": "mininet", "ovsdb-server": "openvswitch-switch", "ovs-vswitchd": "openvswitch-switch",
    "ovs-vsctl": "openvswitch-common", "ovs-appctl": "openvswitch-common", "ovs-ofctl": "openvswitch-common",
    "ovsdb-tool": "openvswitch-common", "ip": "iproute2", "ethtool": "ethtool", "mount": "mount",
    "curl": "curl", "taskset": "util-linux",
}
PKI = {"openssl": "openssl"}  # designs with HTTPS make a CA per run
# what `weblab run`, capture, sniff and the experiments' tools start inside hosts
TOOLS = {"tcpdump": "tcpdump", "wrk": "wrk", "iperf3": "iperf3", "nmap": "nmap", "dig": "bind9-dnsutils",
         "nft": "nftables",  # the attack tools redirect to their proxy with nftables
         "swaks": "swaks"}   # the client's mail sender (weblab mail send, C26); MX lookups need libnet-dns-perl


def for_design(design_cls: type, params: dict[str, Any] | None = None) -> dict[str, str]:
    """Every program a lab of this design (with these parameters) runs, and its package."""
    from hostapps import registry
    kinds = registry()
    topo = design_cls(**design_cls.resolve_params(dict(params or {})))
    out = dict(RUNTIME)
    if topo.pki:
        out.update(PKI)
    for spec in topo.services:
        if spec.kind in kinds:
            out.update(kinds[spec.kind].binaries)
    return out


def for_every_design() -> dict[str, str]:
    """Every program any design may need (every service kind, HTTPS), plus the experiments' tools."""
    from hostapps import registry
    out = {**RUNTIME, **PKI}
    for cls in registry().values():
        out.update(cls.binaries)
    out.update(TOOLS)
    return out


def missing(programs: dict[str, str]) -> dict[str, str]:
    """The programs not found on PATH, with their packages."""
    return {p: pkg for p, pkg in programs.items() if shutil.which(p) is None}
