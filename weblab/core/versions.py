"""Which release of each daemon this machine has, read from the program itself (`X --version`).

Where a daemon's flags, configuration or output changed between the releases weblab runs on, the
hostapp asks here instead of assuming one; `weblab doctor` prints every version and warns where one is
older than the oldest this project was tried with.
"""
from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

Version = tuple[int, ...]

_DOTTED = r"(\d+(?:\.\d+)+)"


@dataclass(frozen=True)
class Probe:
    """How to ask one program for its version: a command and a pattern whose group 1 is the version."""

    argv: tuple[str, ...]
    pattern: str


# program -> how to read its version (stdout and stderr are both searched: `nginx -v` uses stderr)
PROBES: dict[str, Probe] = {
    "nginx": Probe(("nginx", "-v"), rf"nginx/{_DOTTED}"),
    "haproxy": Probe(("haproxy", "-v"), rf"HA-?Proxy version {_DOTTED}"),
    "mariadbd": Probe(("mariadbd", "--version"), rf"Ver {_DOTTED}-MariaDB"),
    "named": Probe(("named", "-v"), rf"BIND {_DOTTED}"),
    "keepalived": Probe(("keepalived", "--version"), rf"Keepalived v{_DOTTED}"),
    "prometheus": Probe(("prometheus", "--version"), rf"prometheus, version {_DOTTED}"),
    "prometheus-node-exporter": Probe(("prometheus-node-exporter", "--version"),
                                      rf"node_exporter, version {_DOTTED}"),
    # 0.11: "NGINX Prometheus Exporter version=0.11.0-1+b4 ..."; 1.x: "nginx_exporter, version 1.4.1 ..."
    "prometheus-nginx-exporter": Probe(("prometheus-nginx-exporter", "--version"),
                                       rf"[Ee]xporter,? version[= ]{_DOTTED}"),
    "prometheus-mysqld-exporter": Probe(("prometheus-mysqld-exporter", "--version"),
                                        rf"mysqld_exporter, version {_DOTTED}"),
    "prometheus-snmp-exporter": Probe(("prometheus-snmp-exporter", "--version"),
                                      rf"snmp_exporter, version {_DOTTED}"),
    "ovs-vswitchd": Probe(("ovs-vswitchd", "--version"), rf"\(Open vSwitch\) {_DOTTED}"),
}

# The releases this project was tried with, oldest and newest: Debian 12 (bookworm), Debian 13 (trixie).
TRIED: dict[str, tuple[str, str]] = {
    "nginx": ("1.22.1", "1.26.3"),
    "haproxy": ("2.6.12", "3.0.11"),
    "mariadbd": ("10.11.19", "11.8.9"),
    "named": ("9.18.49", "9.20.30"),
    "keepalived": ("2.2.7", "2.3.3"),
    "prometheus": ("2.42.0", "2.53.3"),
    "prometheus-node-exporter": ("1.5.0", "1.9.0"),
    "prometheus-nginx-exporter": ("0.11.0", "1.4.1"),
    "prometheus-mysqld-exporter": ("0.14.0", "0.17.2"),
    "prometheus-snmp-exporter": ("0.21.0", "0.28.0"),
    "ovs-vswitchd": ("3.1.0", "3.5.0"),
}
TRIED_ON = "Debian 12 and 13"
# /etc/os-release (ID, VERSION_ID) of the distributions tried
TRIED_DISTRIBUTIONS = {("debian", "12"), ("debian", "13")}


def parse(text: str) -> Version:
    """'2.6.12' -> (2, 6, 12); raises ValueError on anything that is not dotted numbers."""
    if not re.fullmatch(_DOTTED, text):
        raise ValueError(f"not a dotted version: {text!r}")
    return tuple(int(part) for part in text.split("."))


def show(version: Version) -> str:
    """(2, 6, 12) -> '2.6.12'."""
    return ".".join(map(str, version))


def from_output(program: str, output: str) -> Version | None:
    """The version in a program's --version output, or None if its probe's pattern is not there."""
    match = re.search(PROBES[program].pattern, output)
    return parse(match.group(1)) if match else None


@functools.cache
def of(program: str) -> Version | None:
    """This machine's version of program (asked once per process), or None: absent, or unreadable."""
    if program not in PROBES:
        raise KeyError(f"no version probe for {program!r}; known: {sorted(PROBES)}")
    try:
        res = subprocess.run(list(PROBES[program].argv), capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return from_output(program, res.stdout + "\n" + res.stderr)


def at_least(program: str, minimum: str, version: Version | None = None) -> bool | None:
    """Is program (or the given version) at least minimum? None when the version is unknown."""
    version = of(program) if version is None else version
    return None if version is None else version >= parse(minimum)


def distribution(os_release: Path = Path("/etc/os-release")) -> dict[str, str]:
    """The fields of os-release (ID, VERSION_ID, PRETTY_NAME, ...); empty if it is unreadable."""
    fields: dict[str, str] = {}
    try:
        text = os_release.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            fields[key.strip()] = value.strip().strip('"').strip("'")
    return fields
