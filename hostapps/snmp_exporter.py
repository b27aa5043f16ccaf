"""Prometheus' SNMP exporter on the monitor host: turns a scrape of /snmp?target=AGENT into SNMP polls.

It runs beside Prometheus, not on the servers: Prometheus asks it for one agent per scrape, and it
walks that agent's ifXTable (ifName, ifHCInOctets, ifHCOutOctets) with the lab's community. The
module is written by hand (templates/snmp.yml.j2): Debian ships no generated snmp.yml (the MIBs'
licences), and two counters with one lookup need no generator. It listens on loopback only.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hostapps.accounts import SNMP_COMMUNITY
from hostapps.base import render_template
from hostapps.exporters import Exporter
from hostapps.snmpd import IF_X_TABLE
from weblab.core import versions
from weblab.core.errors import WeblabError

MODULE = "if_octets"   # the one module of the rendered snmp.yml: what Prometheus asks for
AUTH = "lab_v2c"       # its credentials, in releases that keep them apart from the modules
# 0.23 split the file: `auths` (version, community) apart from `modules` (what to walk), and a scrape
# names both (?module=..&auth=..). Debian 12 ships 0.21, Debian 13 0.28.
AUTH_SPLIT = (0, 23)
# metric name -> its column of IF-MIB::ifXTable
COUNTERS = {"ifHCInOctets": f"{IF_X_TABLE}.6", "ifHCOutOctets": f"{IF_X_TABLE}.10"}
IF_NAME = f"{IF_X_TABLE}.1"


class SnmpExporter(Exporter):
    """prometheus-snmp-exporter with a hand-written IF-MIB octets module."""

    kind = "snmp_exporter"
    binaries = {"prometheus-snmp-exporter": "prometheus-snmp-exporter"}
    defaults: dict[str, Any] = {"bind": "127.0.0.1", "port": 9116, "community": SNMP_COMMUNITY,
                                "timeout": "1s", "retries": 0}

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        o = self.opts
        if not re.fullmatch(r"\d+(ms|s)", str(o["timeout"])) or not isinstance(o["retries"], int) or o["retries"] < 0:
            raise WeblabError(f"snmp_exporter on {self.host.name}: timeout must be like 1s or 500ms and retries "
                              f"an integer >= 0, got {o['timeout']!r}, {o['retries']!r}")

    @classmethod
    def version(cls) -> versions.Version | None:
        """This machine's exporter release (0.21 on Debian 12, 0.28 on Debian 13), None if unknown."""
        return versions.of("prometheus-snmp-exporter")

    @property
    def conf(self) -> Path:
        return self.dir / "snmp.yml"

    def render(self) -> None:
        o = self.opts
        self.conf.write_text(render_template(
            "snmp.yml.j2", host=self.host.name, module=MODULE, community=o["community"], timeout=o["timeout"],
            retries=o["retries"], counters=COUNTERS, if_name=IF_NAME, auth=AUTH,
            auth_split=auth_split(self.version())))
        self.conf.chmod(0o600)  # it holds the community

    def check_argv(self) -> list[str]:
        return ["prometheus-snmp-exporter", f"--config.file={self.conf}", "--dry-run"]

    def argv(self) -> list[str]:
        return ["prometheus-snmp-exporter", f"--config.file={self.conf}", f"--web.listen-address={self.listen}"]

    def config_files(self) -> list[Path]:
        return [self.conf]


def auth_split(version: versions.Version | None) -> bool:
    """Does this release read `auths` apart from `modules`? A release that does not say: the current format."""
    return version is None or version >= AUTH_SPLIT


def scrape_params(version: versions.Version | None) -> dict[str, list[str]]:
    """The query a Prometheus scrape of this release's /snmp carries besides the target."""
    return {"module": [MODULE], **({"auth": [AUTH]} if auth_split(version) else {})}
