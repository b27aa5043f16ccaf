"""Link shaping: bandwidth (htb), delay, jitter and loss (netem) on a host's link, both directions.

A design puts a `shape` option on a link of its graph (LabTopo.shape_link; the `client_*` design
parameters do it for the client's link). Everything happens at the host end, inside the host's
namespace, because on the userspace datapath the host interface is an OVS tap and has no switch-side
device to shape (weblab.netdev):
- host -> switch: the host interface's own egress, an htb class at the rate (netem under it);
- switch -> host: the interface's ingress redirected (u32 match-all + mirred) to an ifb device in
  the same namespace, shaped like an egress.
OVS ingress policing was not used: it drops what exceeds the rate instead of queueing it (TCP
through a policer runs well below the rate), and OVS applies it with tc on the device by name in
its own namespace, where a tap moved into a host no longer is.

Mininet's TCLink logs an error above 1000 Mb/s and leaves the link unshaped; here any rate up to
10 Gbit/s is shaped, and anything else is refused before the lab starts. So are delay, jitter and
loss on a kernel without netem (detected in a throwaway namespace, as doctor does).
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any, Callable

from weblab.core.errors import WeblabError

MAX_MBIT = 10_000.0
KEYS = ("bw", "delay", "jitter", "loss")


@dataclass(frozen=True)
class Shape:
    """A link's shaping, each direction: Mbit/s, ms, ms, percent (None: not shaped that way)."""

    bw: float | None = None
    delay: float | None = None
    jitter: float | None = None
    loss: float | None = None

    @classmethod
    def of(cls, options: dict[str, Any], where: str) -> "Shape":
        unknown = set(options) - set(KEYS)
        if unknown:
            raise WeblabError(f"{where}: unknown shaping option(s) {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(KEYS)}")
        values = {}
        for k, v in options.items():
            if v is None:
                continue
            try:
                values[k] = float(v)
            except (TypeError, ValueError):
                raise WeblabError(f"{where}: {k}={v!r} is not a number") from None
        shape = cls(**values)
        shape.validate(where)
        return shape

    def validate(self, where: str) -> None:
        if self.bw is not None and not 0 < self.bw <= MAX_MBIT:
            raise WeblabError(f"{where}: bandwidth {self.bw:g} Mbit/s is out of range: give 0 < bw <= "
                              f"{MAX_MBIT:g} (10 Gbit/s; above that the datapath itself is the limit)")
        if self.delay is not None and self.delay < 0:
            raise WeblabError(f"{where}: delay {self.delay:g} ms must be >= 0")
        if self.jitter is not None and (self.jitter < 0 or not self.delay):
            raise WeblabError(f"{where}: jitter {self.jitter:g} ms needs a delay > 0 and must be >= 0")
        if self.loss is not None and not 0 <= self.loss <= 100:
            raise WeblabError(f"{where}: loss {self.loss:g}% must be between 0 and 100")

    @property
    def needs_netem(self) -> bool:
        return any(v for v in (self.delay, self.jitter, self.loss))

    @property
    def empty(self) -> bool:
        return self.bw is None and not self.needs_netem


def _num(x: float) -> str:
    return f"{x:g}"


def burst_bytes(mbit: float) -> int:
    """htb burst: 1 ms at the rate, at least two 64 KiB TSO super-segments."""
    return max(2 * 65536 + 2 * 1514, int(mbit * 1e6 / 8 / 1000))


def netem_args(shape: Shape, bw: float | None = None) -> list[str]:
    """netem's arguments for shape's delay, jitter and loss (a queue long enough for bw x delay)."""
    args = []
    if shape.delay:
        args += ["delay", f"{_num(shape.delay)}ms"]
        if shape.jitter:
            args += [f"{_num(shape.jitter)}ms"]
    if shape.loss:
        args += ["loss", f"{_num(shape.loss)}%"]
    packets = int((bw or MAX_MBIT) * 1e6 / 8 * ((shape.delay or 0) + (shape.jitter or 0)) / 1000 / 1500)
    return args + ["limit", str(max(1000, 2 * packets))]


def egress_lines(dev: str, shape: Shape) -> list[str]:
    """`tc -batch` lines that shape what leaves dev."""
    lines = []
    netem_parent = "root"
    if shape.bw is not None:
        burst = burst_bytes(shape.bw)
        lines += [f"qdisc replace dev {dev} root handle 1: htb default 1",
                  f"class replace dev {dev} parent 1: classid 1:1 htb rate {_num(shape.bw)}mbit "
                  f"ceil {_num(shape.bw)}mbit burst {burst} cburst {burst} quantum 65536"]
        netem_parent = "parent 1:1"
    if shape.needs_netem:
        lines.append(f"qdisc replace dev {dev} {netem_parent} handle 10: netem "
                     + " ".join(netem_args(shape, shape.bw)))
    return lines


def ifb_name(dev: str) -> str:
    """The ifb device that carries dev's ingress (in dev's namespace; at most 15 characters)."""
    return "ifb" + dev.rpartition("-")[2][-12:]


def commands(dev: str, shape: Shape) -> tuple[list[str], list[str]]:
    """(`ip -batch` lines, `tc -batch` lines) that shape dev both ways, run in dev's namespace."""
    if shape.empty:
        return [], []
    ifb = ifb_name(dev)
    ip_lines = [f"link add {ifb} type ifb", f"link set {ifb} up"]
    tc_lines = egress_lines(dev, shape) + [
        f"qdisc replace dev {dev} handle ffff: ingress",
        # matchall is missing on some kernels (this one): u32 matching every packet works everywhere.
        f"filter replace dev {dev} parent ffff: protocol all prio 1 u32 match u32 0 0 "
        f"action mirred egress redirect dev {ifb}",
    ] + egress_lines(ifb, shape)
    return ip_lines, tc_lines


Runner = Callable[[list[str], str], subprocess.CompletedProcess]


def apply(run: Runner, dev: str, shape: Shape, where: str) -> None:
    """Shape dev with run(argv, stdin) executing inside its namespace; errors name the link."""
    ip_lines, tc_lines = commands(dev, shape)
    for argv, lines in ((["ip", "-batch", "-"], ip_lines), (["tc", "-batch", "-"], tc_lines)):
        if not lines:
            continue
        res = run(argv, "\n".join(lines) + "\n")
        if res.returncode != 0:
            raise WeblabError(f"shaping {where} ({dev}) failed: {(res.stderr or res.stdout).strip()}")


def link_shapes(topo) -> list[tuple[str, str, str, Shape]]:
    """(host, switch, host interface, shape) of every link of topo with a `shape` option."""
    out = []
    for _a, _b, info in topo.links(withInfo=True):
        opts = info.get("shape")
        if not opts:
            continue
        n1, n2 = info["node1"], info["node2"]
        if topo.isSwitch(n1):
            n1, n2, port = n2, n1, info["port2"]
        else:
            port = info["port1"]
        where = f"link {n1}:{n2}"
        shape = Shape.of(dict(opts), where)
        if not shape.empty:
            out.append((n1, n2, f"{n1}-eth{port}", shape))
    return out


def check(topo, qdiscs: Callable[[], dict[str, tuple[bool, str]]]) -> list[tuple[str, str, str, Shape]]:
    """Validate every shaped link of topo before anything starts; qdiscs() -> {name: (works, detail)}
    is asked only when some link is shaped. Returns link_shapes(topo)."""
    shapes = link_shapes(topo)
    if not shapes:
        return shapes
    have = qdiscs()
    for host, switch, _dev, shape in shapes:
        for needed, want in (("htb", shape.bw is not None), ("ifb", True), ("netem", shape.needs_netem)):
            ok, detail = have.get(needed, (False, "not checked"))
            if want and not ok:
                asked = {"netem": "delay, jitter and loss", "htb": "a bandwidth limit",
                         "ifb": "shaping the switch -> host direction"}[needed]
                raise WeblabError(f"link {host}:{switch}: {asked} needs the {needed} "
                                  f"{'device' if needed == 'ifb' else 'qdisc'}, which this kernel lacks "
                                  f"({detail}); drop that parameter, or use a kernel with it "
                                  f"(check with: sudo weblab doctor)")
    return shapes
