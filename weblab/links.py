"""Naming links the way users think of them: an alias the design gives, A:B, or an interface name."""
from __future__ import annotations

from weblab.core.errors import WeblabError
from weblab.core.state import RunState


def resolve(state: RunState, spec: str) -> tuple[str, str]:
    """(host, interface) of the host end of the link named spec, in a run's state."""
    links = [(l.node1, l.intf1, l.node2, l.intf2) for l in state.links]
    hosts = state.hosts
    aliases = state.link_names
    if spec in aliases:
        spec = ":".join(aliases[spec])
    if ":" in spec:
        a, b = spec.split(":", 1)
        for n1, i1, n2, i2 in links:
            if {n1, n2} == {a, b}:
                return (n1, i1) if n1 in hosts else (n2, i2)
    else:
        for n1, i1, n2, i2 in links:
            for node, intf in ((n1, i1), (n2, i2)):
                if intf == spec:
                    return (n1, i1) if n1 in hosts else (n2, i2)
    known = ", ".join(sorted(aliases)) or "none"
    raise WeblabError(f"no link {spec!r}; name one as an alias ({known}), as HOST:SWITCH "
                      f"(e.g. client:s1) or by interface (e.g. client-eth0)")


def describe(state: RunState) -> list[str]:
    """One line per named link: alias, the two ends, the interface to capture on."""
    out = []
    for alias, (a, b) in sorted(state.link_names.items()):
        host, intf = resolve(state, alias)
        out.append(f"{alias:14} {a} <-> {b}  (capture on {host}:{intf})")
    return out
