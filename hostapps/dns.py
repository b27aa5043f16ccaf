"""DNS: BIND 9 authoritative for the lab's zone (foobar.com A -> entry point, www CNAME foobar.com)."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from hostapps.base import Service, render_template
from weblab.core.errors import WeblabError


class Dns(Service):
    """named -g with a real zone file, checked by named-checkconf and named-checkzone."""

    kind = "dns"
    binaries = {"named": "bind9", "named-checkconf": "bind9-utils", "named-checkzone": "bind9-utils", "dig": "bind9-dnsutils"}
    reload_signal = signal.SIGHUP
    defaults = {"zone": "foobar.com", "apex": "", "ns_ip": "", "cnames": {"www": "foobar.com."},
                "a_records": {}, "ttl": 60, "extra_a": {}, "allow_update": []}

    @property
    def conf(self) -> Path:
        return self.dir / "named.conf"

    @property
    def zonefile(self) -> Path:
        return self.dir / f"db.{self.opts['zone']}"

    def render(self) -> None:
        o = self.opts
        self.conf.write_text(render_template("named.conf.j2", dir=self.dir, zone=o["zone"],
                                             allow_update=o["allow_update"]))
        self.zonefile.write_text(render_template(
            "zone.j2", zone=o["zone"], ttl=o["ttl"], serial=int(time.time()),
            ns_ip=o["ns_ip"] or self.host.ips[0], apex=o["apex"], cnames=o["cnames"],
            a_records=o["a_records"], extra_a=o["extra_a"]))

    def configure(self) -> None:
        super().configure()
        res = self.host.run(["named-checkzone", "-q", self.opts["zone"], str(self.zonefile)])
        if res.returncode != 0:
            res = self.host.run(["named-checkzone", self.opts["zone"], str(self.zonefile)])
            raise WeblabError(f"{self.name}: zone check failed: {res.stdout.strip()} ({self.zonefile})")

    def check_argv(self) -> list[str]:
        return ["named-checkconf", str(self.conf)]

    def argv(self) -> list[str]:
        return ["named", "-g", "-c", str(self.conf), "-n", "1"]

    def probe(self) -> bool:
        try:
            res = self.host.run(["dig", "+short", "+time=1", "+tries=1", f"@{self.host.ips[0]}",
                                 self.opts["zone"], "A"], timeout=3)
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0 and self.opts["apex"] in res.stdout.split()
