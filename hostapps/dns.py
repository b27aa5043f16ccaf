"""DNS: BIND 9 authoritative for the lab's zone (foobar.com A -> entry point, www CNAME foobar.com)."""
from __future__ import annotations

import base64
import secrets
import signal
import subprocess
import time
from pathlib import Path

from hostapps.base import Service, render_template
from weblab.core.errors import WeblabError


class Dns(Service):
    """named -g with a real zone file, checked by named-checkconf and named-checkzone."""

    kind = "dns"
    binaries = {"named": "bind9", "named-checkconf": "bind9-utils", "named-checkzone": "bind9-utils",
                "rndc": "bind9-utils", "dig": "bind9-dnsutils"}
    reload_signal = signal.SIGHUP
    defaults = {"zone": "foobar.com", "apex": "", "ns_ip": "", "cnames": {"www": "foobar.com."},
                "a_records": {}, "ttl": 60, "extra_a": {}, "allow_update": [],
                # mail for the zone: [[preference, exchange host name]] (MX), and TXT records of the apex (SPF)
                "mx": [], "apex_txt": []}

    @property
    def conf(self) -> Path:
        return self.dir / "named.conf"

    @property
    def zonefile(self) -> Path:
        return self.dir / f"db.{self.opts['zone']}"

    @property
    def rndc_conf(self) -> Path:
        return self.dir / "rndc.conf"

    @property
    def dynamic(self) -> bool:
        """The zone takes dynamic updates (RFC 2136): its file is edited only while it is frozen."""
        return bool(self.opts["allow_update"])

    def render(self) -> None:
        o = self.opts
        # rndc's key, made per run: the control channel listens on this host's own loopback only
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        keyfile = self.dir / "rndc.key"
        keyfile.write_text(f'key "weblab-rndc" {{\n    algorithm hmac-sha256;\n    secret "{key}";\n}};\n')
        keyfile.chmod(0o600)
        self.rndc_conf.write_text(f'include "{keyfile}";\noptions {{\n    default-key "weblab-rndc";\n'
                                  '    default-server 127.0.0.1;\n    default-port 953;\n};\n')
        self.conf.write_text(render_template("named.conf.j2", dir=self.dir, zone=o["zone"],
                                             allow_update=o["allow_update"], rndc_key=str(keyfile)))
        self.zonefile.write_text(render_template(
            "zone.j2", zone=o["zone"], ttl=o["ttl"], serial=int(time.time()),
            ns_ip=o["ns_ip"] or self.host.ips[0], apex=o["apex"], cnames=o["cnames"],
            a_records=o["a_records"], extra_a=o["extra_a"], mx=o["mx"], apex_txt=o["apex_txt"]))

    def configure(self) -> None:
        super().configure()
        res = self.host.run(["named-checkzone", "-q", self.opts["zone"], str(self.zonefile)])
        if res.returncode != 0:
            res = self.host.run(["named-checkzone", self.opts["zone"], str(self.zonefile)])
            raise WeblabError(f"{self.name}: zone check failed: {res.stdout.strip()} ({self.zonefile})")

    def check_argv(self) -> list[str]:
        return ["named-checkconf", str(self.conf)]

    # --- changing it while it runs ----------------------------------------------------------------
    def config_files(self) -> list[Path]:
        return [self.zonefile, self.conf]

    def check_file_argv(self, path: Path, text_at: Path) -> list[list[str]]:
        if path == self.zonefile:
            return [["named-checkzone", self.opts["zone"], str(text_at)]]
        return [["named-checkconf", "-z", str(text_at)]] if path == self.conf else []

    def rndc(self, *args: str) -> str:
        """One rndc command over the run's own key; named's refusal is an error."""
        res = self.host.run(["rndc", "-c", str(self.rndc_conf), *args], timeout=15)
        if res.returncode != 0:
            raise WeblabError(f"{self.name}: rndc {' '.join(args)} failed: "
                              f"{(res.stdout + res.stderr).strip()} (log: {self.log})")
        return res.stdout.strip()

    def edit_begins(self, path: Path) -> None:
        # journal written into the file and updates held off until thaw: no update is lost or undone
        if self.dynamic and path == self.zonefile:
            self.rndc("freeze", self.opts["zone"])

    def edit_ends(self, path: Path) -> None:
        if self.dynamic and path == self.zonefile:
            self.rndc("thaw", self.opts["zone"])

    def apply_config(self) -> None:
        self.rndc("reload")

    def reload_effect(self) -> str:
        text = (f"rndc reload: named reads named.conf and the zone again; resolvers that cached an "
                f"old answer keep it until its TTL ({self.opts['ttl']} s) runs out")
        if self.dynamic:
            text += ("; the zone takes dynamic updates, so it was frozen while you edited it (updates "
                     "refused) and is thawed now")
        return text

    def argv(self) -> list[str]:
        return ["named", "-g", "-c", str(self.conf), "-n", "1"]

    def probe(self) -> bool:
        try:
            res = self.host.run(["dig", "+short", "+time=1", "+tries=1", f"@{self.host.ips[0]}",
                                 self.opts["zone"], "A"], timeout=3)
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0 and self.opts["apex"] in res.stdout.split()
