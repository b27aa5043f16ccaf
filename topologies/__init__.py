"""Designs: one module each; DESIGNS maps the CLI name to its Topo class (like Mininet's TOPOS)."""
from __future__ import annotations

from topologies.base import LabTopo
from topologies.distributed import Distributed
from topologies.one_server import OneServer
from topologies.scaled import Scaled
from topologies.secured import Secured

DESIGNS: dict[str, type[LabTopo]] = {cls.design: cls for cls in (OneServer, Distributed, Secured, Scaled)}


def get(name: str) -> type[LabTopo]:
    """The design class by name, or a ValueError listing the known ones."""
    try:
        return DESIGNS[name]
    except KeyError:
        raise ValueError(f"unknown design {name!r}; known: {', '.join(sorted(DESIGNS))} "
                         f"(see: weblab list)") from None
