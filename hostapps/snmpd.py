"""snmpd (Net-SNMP): the SNMP agent a server runs so a monitor can poll its interface counters.

Agentless in the sense monitoring people use: nothing of the monitoring system runs on the server,
only the standard agent of the operating system, polled over the network. It answers SNMPv2c on the
server's lab address only, for one read-only community, and shows only IF-MIB's ifXTable (ifName and
the 64-bit octet counters): the load figures a Mininet host could give (CPU, memory) are the whole
machine's, so they are not offered. Net-SNMP caches the interface table for a few seconds: a poll
returns figures up to that old (C25 measures the delay).
"""
from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path
from typing import Any

from hostapps.accounts import SNMP_COMMUNITY
from hostapps.base import Service, render_template
from weblab.core.errors import WeblabError

IF_X_TABLE = "1.3.6.1.2.1.31.1.1.1"           # IF-MIB::ifXEntry: ifName (.1), ifHCInOctets (.6), ifHCOutOctets (.10)
IF_NAME_1 = f"{IF_X_TABLE}.1.1"               # ifName of the first interface: what the readiness probe asks


class Snmpd(Service):
    """snmpd -f with its config, pid file and persistent state in the run directory."""

    kind = "snmpd"
    binaries = {"snmpd": "snmpd", "snmpget": "snmp"}
    ready_timeout = 10.0
    # address: the server's lab address (the only one it listens on); pollers: the addresses allowed
    # to read (the monitor's); the agent's own address is allowed too, for the readiness probe
    defaults: dict[str, Any] = {"address": "", "port": 161, "community": SNMP_COMMUNITY, "pollers": []}

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        where = f"snmpd on {self.host.name}"
        o = self.opts
        try:
            ipaddress.ip_address(o["address"])
            for p in o["pollers"]:
                ipaddress.ip_address(p)
        except ValueError as e:
            raise WeblabError(f"{where}: address and pollers must be IP addresses ({e})") from None
        if not o["pollers"]:
            raise WeblabError(f"{where}: no pollers: nothing would be allowed to read it")
        if not isinstance(o["port"], int) or not 0 < o["port"] < 65536:
            raise WeblabError(f"{where}: port must be 1..65535, got {o['port']!r}")
        if not o["community"] or any(c.isspace() for c in o["community"]):
            raise WeblabError(f"{where}: community must be one word")

    @property
    def conf(self) -> Path:
        return self.dir / "snmpd.conf"

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    def render(self) -> None:
        o = self.opts
        self.conf.write_text(render_template(
            "snmpd.conf.j2", host=self.host.name, dir=self.dir, address=o["address"], port=o["port"],
            community=o["community"], sources=sorted({*o["pollers"], o["address"]}), view=IF_X_TABLE,
            state_dir=self.state_dir))
        self.conf.chmod(0o600)  # it holds the community

    def prepare(self) -> None:
        self.state_dir.mkdir(exist_ok=True)

    def env(self) -> dict[str, str]:
        # Its persistent state (it writes it at exit) under the run directory, not /var/lib/snmp; no MIB
        # files parsed: the agent needs none to answer by number, and parsing them only fills the log.
        return {"SNMP_PERSISTENT_DIR": str(self.state_dir), "MIBS": "", "MIBDIRS": str(self.dir / "no-mibs")}

    def argv(self) -> list[str]:
        # -C: only this config (not /etc/snmp); -Lo: log to stdout (the service log); -f: foreground
        return ["snmpd", "-f", "-C", "-c", str(self.conf), "-Lo", "-p", str(self.dir / "snmpd.pid")]

    def config_files(self) -> list[Path]:
        return [self.conf]

    def get_argv(self, oid: str) -> list[str]:
        """snmpget of one OID from this agent, as the monitor asks it (one try, 1 s)."""
        o = self.opts
        return ["snmpget", "-v2c", "-c", o["community"], "-t", "1", "-r", "0", "-On", "-Oq",
                f"udp:{o['address']}:{o['port']}", oid]

    def probe(self) -> bool:
        try:
            res = self.host.run(self.get_argv(IF_NAME_1), timeout=3,
                                env={"MIBS": "", "MIBDIRS": str(self.dir / "no-mibs"), "PATH": "/usr/bin:/bin"})
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0 and res.stdout.startswith(f".{IF_NAME_1} ")
