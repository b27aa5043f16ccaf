"""How host interfaces plug into the private Open vSwitch: veth pairs on the kernel datapath, tap
ports on the userspace datapath.

The userspace datapath reads a veth port through AF_PACKET, one frame at a time (~0.7 Gbit/s). A
tap port is read through its file descriptor, and with `other_config:userspace-tso-enable=true`
OVS and the kernel pass TSO super-segments and offloaded checksums through it (~12 Gbit/s here,
PITFALLS.md). So on the userspace datapath every host interface is the OVS tap itself: created by
ovs-vswitchd as a port of its bridge with the topology's port number (`ofport_request`; the
controller's proactive flows name those ports), moved into the host's namespace under the name
Mininet gives it (server1-eth0), then configured there by Mininet's Intf (MAC, IP, up).

A tap has one end: its file descriptor stays with ovs-vswitchd, and the device vanishes when that
daemon closes it (port deleted, bridge deleted, daemon stopped or killed), or with the host's
namespace. The run's state records such a link with no interface at its switch end (link_record).
"""
from __future__ import annotations

import subprocess
from functools import partial
from pathlib import Path
from typing import Any, Callable

from mininet.link import Intf, Link
from mininet.node import OVSSwitch

from weblab.core.errors import WeblabError

Vsctl = Callable[..., str]


def link_record(link) -> tuple[str, str, str, str]:
    """(node1, intf1, node2, intf2) of a built Mininet link for the run's state: a tap port's switch
    end has no interface of its own ("")."""
    ends = []
    for intf in (link.intf1, link.intf2):
        ends += [intf.node.name, "" if isinstance(intf, TapPort) else intf.name]
    return tuple(ends)


def tap_ports(topo) -> dict[str, list[tuple[str, int]]]:
    """switch -> [(tap name, OpenFlow port)] for every host link of the topology, in port order."""
    out: dict[str, list[tuple[str, int]]] = {s: [] for s in topo.switches()}
    for _a, _b, info in topo.links(withInfo=True):
        n1, n2 = info["node1"], info["node2"]
        if topo.isSwitch(n1) and topo.isSwitch(n2):
            raise WeblabError(f"link {n1}-{n2}: switch-to-switch links are not supported with tap "
                              f"ports (userspace datapath); join the hosts to one switch instead")
        if topo.isSwitch(n1):
            n1, n2, p_host, p_sw = n2, n1, info["port2"], info["port1"]
        else:
            p_host, p_sw = info["port1"], info["port2"]
        out[n2].append((f"{n1}-eth{p_host}", p_sw))
    return {s: sorted(v, key=lambda x: x[1]) for s, v in out.items()}


def bridge_args(name: str, dpid: int, protocols: str = "OpenFlow13", fail_mode: str = "secure") -> list[str]:
    """ovs-vsctl arguments that create one userspace bridge as Mininet's OVSSwitch would configure it."""
    return ["--", "--may-exist", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
            f"fail_mode={fail_mode}", f"protocols={protocols}", f"other-config:datapath-id={dpid:016x}",
            "other-config:disable-in-band=true", f"other-config:dp-desc={name}"]


def tap_args(bridge: str, tap: str, ofport: int) -> list[str]:
    """ovs-vsctl arguments that add one tap port with a fixed OpenFlow port number."""
    return ["--", "add-port", bridge, tap, "--", "set", "interface", tap, "type=tap",
            f"ofport_request={ofport}"]


def create_taps(topo, vsctl: Vsctl, fail_mode: str = "secure",
                protocols: str = "OpenFlow13") -> dict[str, list[tuple[str, int]]]:
    """Every bridge and every host tap of topo in one ovs-vsctl transaction; checks each port.

    ovs-vsctl returns once ovs-vswitchd has applied the change, so the taps exist in the root
    namespace afterwards. Returns tap_ports(topo)."""
    from topologies.base import dpid_of
    ports = tap_ports(topo)
    for name in (tap for taps in ports.values() for tap, _ in taps):
        if Path("/sys/class/net", name).exists():
            raise WeblabError(f"an interface {name} already exists in the root namespace (a leftover?); "
                              f"remove it with: sudo weblab clean, or: sudo ip link del {name}")
    args: list[str] = []
    for sw, taps in ports.items():
        args += bridge_args(sw, dpid_of(sw), protocols, fail_mode)
        for tap, ofport in taps:
            args += tap_args(sw, tap, ofport)
    vsctl(*args[1:])
    want = {tap: ofport for taps in ports.values() for tap, ofport in taps}
    got = parse_interfaces(vsctl("--format=csv", "--data=bare", "--no-headings",
                                 "--columns=name,ofport,error", "list", "Interface"))
    for tap, ofport in want.items():
        have, error = got.get(tap, (None, "not in the database"))
        if error or have != ofport:
            raise WeblabError(f"tap port {tap}: OpenFlow port {have} instead of {ofport}"
                              f"{f' ({error})' if error else ''}; see ovs-vswitchd.log in the run directory")
    return ports


def parse_interfaces(csv_text: str) -> dict[str, tuple[int | None, str]]:
    """`ovs-vsctl --format=csv --data=bare --columns=name,ofport,error list Interface` -> name -> (ofport, error)."""
    import csv
    out = {}
    for row in csv.reader(csv_text.splitlines()):
        if len(row) < 3:
            continue
        name, ofport, error = row[0], row[1].strip(), row[2].strip()
        try:
            port = int(ofport)
        except ValueError:
            port = None
        out[name] = (port if port is not None and port > 0 else None, error)
    return out


class TapSwitch(OVSSwitch):
    """An OVS bridge created with its tap ports before Mininet builds links (create_taps).

    Mininet's OVSSwitch.start deletes and re-creates the bridge, then adds the ports it finds:
    that would close every tap. This one leaves the bridge alone; the lab sets the controller."""

    def __init__(self, name: str, **params: Any):
        params["datapath"] = "user"
        params["batch"] = False
        super().__init__(name, **params)

    def start(self, controllers) -> None:
        if controllers:
            raise WeblabError("TapSwitch takes its controller from the lab (set-controller), not Mininet")

    @classmethod
    def batchStartup(cls, switches, run=None):
        return switches


class TapPort(Intf):
    """The switch's view of a tap: the OVS port, with no device in the root namespace to configure."""

    def config(self, **_params: Any) -> dict:
        return {}

    def ifconfig(self, *args: str) -> str:
        return ""

    def isUp(self, setUp: bool = False) -> bool:
        return True

    def delete(self) -> None:
        # The port goes with its bridge (del-br) or with ovs-vswitchd; only forget it here.
        self.node.delIntf(self)
        self.link = None


class TapLink(Link):
    """A host-switch link that is one device: the switch's tap port, moved into the host."""

    def __init__(self, node1, node2, port1=None, port2=None, intfName1=None, intfName2=None,
                 addr1=None, addr2=None, intf=Intf, cls1=None, cls2=None, params1=None, params2=None,
                 **params: Any):
        if isinstance(node1, OVSSwitch) == isinstance(node2, OVSSwitch):
            raise WeblabError(f"link {node1.name}-{node2.name}: a tap link joins one host and one switch")
        host_first = isinstance(node2, OVSSwitch)
        host, switch = (node1, node2) if host_first else (node2, node1)
        p_host, p_sw = (port1, port2) if host_first else (port2, port1)
        hparams = dict((params1 if host_first else params2) or {})
        hmac = addr1 if host_first else addr2
        hparams.update(params)
        hparams.pop("moveIntfFn", None)
        name = (intfName1 if host_first else intfName2) or f"{host.name}-eth{p_host}"
        self.fast = True
        move_into(name, host.pid)
        hintf = (cls1 if host_first else cls2) or intf
        host_intf = hintf(name=name, node=host, port=p_host, link=self, mac=hmac,
                          moveIntfFn=self._ignore, **hparams)
        if hmac:  # a veth pair is made with its MACs; a tap comes with a random one: set the design's
            host_intf.setMAC(hmac)
        sw_intf = TapPort(name=name, node=switch, port=p_sw, link=self)
        self.intf1, self.intf2 = (host_intf, sw_intf) if host_first else (sw_intf, host_intf)

    def stop(self) -> None:
        # Mininet stops links before switches: the bridge's deletion takes the taps with it.
        pass


def move_into(name: str, pid: int, timeout: float = 10) -> None:
    """Move root-namespace interface name into the network namespace of process pid."""
    res = subprocess.run(["ip", "link", "set", name, "netns", str(pid)], capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode != 0:
        raise WeblabError(f"cannot move tap {name} into its host (pid {pid}): {res.stderr.strip()}")


def mininet(topo, datapath: str, vsctl: Vsctl, fail_mode: str = "secure", **kw: Any):
    """A built (not started) Mininet network of topo on the private OVS: tap ports on the userspace
    datapath, veth pairs on the kernel datapath; shaped links shaped (weblab.shaping)."""
    from mininet.net import Mininet
    opts = dict(controller=None, build=False, autoSetMacs=False, autoStaticArp=False,
                waitConnected=False, **kw)
    if datapath == "user":
        create_taps(topo, vsctl, fail_mode=fail_mode)
        net = Mininet(topo=topo, switch=partial(TapSwitch, protocols="OpenFlow13", failMode=fail_mode),
                      link=TapLink, **opts)
    else:
        net = Mininet(topo=topo, switch=partial(OVSSwitch, datapath=datapath, protocols="OpenFlow13",
                                                failMode=fail_mode), **opts)
    net.build()
    shape_links(net, topo)
    return net


def shape_links(net, topo) -> None:
    """Apply every link's `shape` option at its host end (weblab.shaping), inside the host."""
    from weblab import shaping
    for host, switch, dev, shape in shaping.link_shapes(topo):
        pid = net[host].pid

        def run(argv: list[str], stdin: str, pid: int = pid) -> subprocess.CompletedProcess:
            return subprocess.run(["mnexec", "-a", str(pid), *argv], input=stdin, capture_output=True,
                                  text=True, timeout=10)
        shaping.apply(run, dev, shape, f"link {host}:{switch}")


def ports_kind(datapath: str) -> str:
    """What a host interface is on this datapath, for status and doctor."""
    return ("tap ports (OVS userspace, TSO on)" if datapath == "user"
            else "veth pairs (OVS kernel datapath)")

