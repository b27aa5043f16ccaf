"""A private Open vSwitch per run: its own ovsdb-server and ovs-vswitchd, database, sockets and logs."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from weblab.core.errors import WeblabError
from weblab.core import cores
from weblab.core.proc import ProcRef
from weblab.core.wait import wait_for

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


class PrivateOVS:
    """ovsdb-server + ovs-vswitchd under run_dir/ovs, never touching a system Open vSwitch."""

    def __init__(self, run_dir: Path, datapath: str, cpus: str | None = None):
        if datapath not in ("user", "kernel"):
            raise WeblabError(f"unknown datapath {datapath!r}: use 'user' or 'kernel'")
        self.dir = run_dir / "ovs"
        self.datapath = datapath
        self.procs: list[ProcRef] = []
        self.cpus = cpus  # the CPUs both daemons run on (weblab.cores), None for any

    @property
    def db_sock(self) -> Path:
        return self.dir / "db.sock"

    def env(self) -> dict[str, str]:
        """Variables that point every OVS tool (and Mininet's ovs-vsctl calls) at this instance."""
        d = str(self.dir)
        return {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d}

    def _run(self, argv: list[str], timeout: float = 10) -> str:
        res = subprocess.run(argv, env={**os.environ, **self.env()}, capture_output=True,
                             text=True, timeout=timeout)
        if res.returncode != 0:
            raise WeblabError(f"{' '.join(argv)} failed: {res.stderr.strip()} (logs in {self.dir})")
        return res.stdout

    def _spawn(self, name: str, argv: list[str], record) -> ProcRef:
        log = open(self.dir / f"{name}.out", "ab")
        p = subprocess.Popen(cores.wrap(argv, self.cpus), env={**os.environ, **self.env()}, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        ref = ProcRef.of(name, p.pid)
        self.procs.append(ref)
        record(ref)
        return ref

    def start(self, record) -> None:
        """Create the database and start both daemons; record(ref) is called for each process."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.datapath == "kernel" and not Path("/sys/module/openvswitch").exists():
            self._run(["modprobe", "openvswitch"])
        if not SCHEMA.exists():
            raise WeblabError(f"{SCHEMA} missing: install Open vSwitch with: sudo make install")
        db = self.dir / "conf.db"
        if not db.exists():
            self._run(["ovsdb-tool", "create", str(db), str(SCHEMA)])
        self._spawn("ovsdb-server", [
            "ovsdb-server", str(db), f"--remote=punix:{self.db_sock}",
            f"--pidfile={self.dir / 'ovsdb-server.pid'}", f"--unixctl={self.dir / 'ovsdb-server.ctl'}",
            f"--log-file={self.dir / 'ovsdb-server.log'}", "-vconsole:off"], record)
        wait_for(lambda: self.db_sock.exists(), 10, f"ovsdb-server socket {self.db_sock}",
                 self.dir / "ovsdb-server.log", self.procs[-1])
        init = ["ovs-vsctl", f"--db=unix:{self.db_sock}", "--no-wait", "init"]
        if self.datapath == "user":
            # Read only when ovs-vswitchd starts: tap ports then carry TSO super-segments and
            # offloaded checksums (weblab.netdev). No AF_PACKET (veth) port may join such a switch.
            init += ["--", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true"]
        self._run(init)
        argv = ["ovs-vswitchd", f"unix:{self.db_sock}", f"--pidfile={self.dir / 'ovs-vswitchd.pid'}",
                f"--unixctl={self.dir / 'ovs-vswitchd.ctl'}",
                f"--log-file={self.dir / 'ovs-vswitchd.log'}", "-vconsole:off", "--disable-system-route"]
        if self.datapath == "user":
            argv.append("--disable-system")
        vswitchd = self._spawn("ovs-vswitchd", argv, record)
        ctl = self.dir / "ovs-vswitchd.ctl"
        wait_for(lambda: ctl.exists(), 10, "ovs-vswitchd control socket",
                 self.dir / "ovs-vswitchd.log", vswitchd)
        self._run(["ovs-appctl", "-t", str(ctl), "version"])

    def alive(self) -> bool:
        """True while both daemons run (ovs-vsctl waits for ovs-vswitchd forever when it is gone)."""
        return bool(self.procs) and all(ref.alive() for ref in self.procs)

    def vsctl(self, *args: str) -> str:
        """Run ovs-vsctl against this instance."""
        return self._run(["ovs-vsctl", f"--db=unix:{self.db_sock}", "--timeout=5", *args])

    def ofctl(self, *args: str) -> str:
        """Run ovs-ofctl (OpenFlow 1.3, what the lab's bridges speak) against this instance."""
        return self._run(["ovs-ofctl", "-O", "OpenFlow13", *args])

    def stop(self) -> list[str]:
        """Stop the daemons in reverse start order; returns problems met."""
        problems = []
        ctl = self.dir / "ovs-vswitchd.ctl"
        if self.datapath == "kernel" and ctl.exists():
            # Kernel datapath ports outlive the daemon unless it is told to clean them up.
            subprocess.run(["ovs-appctl", "-t", str(ctl), "exit", "--cleanup"],
                           capture_output=True, timeout=10)
        for ref in reversed(self.procs):
            if not ref.stop(timeout=5):
                problems.append(f"{ref.name} needed SIGKILL")
        self.procs.clear()
        return problems


def parse_port_stats(text: str) -> dict[str, int]:
    """`ovs-ofctl dump-ports BRIDGE PORT` as numbers: rx_/tx_ packets, bytes, dropped, errors (one port)."""
    out: dict[str, int] = {}
    for side in ("rx", "tx"):
        m = re.search(side + r" pkts=(\d+|\?), bytes=(\d+|\?), drop=(\d+|\?), errs=(\d+|\?)", text)
        if not m:
            raise WeblabError(f"unexpected ovs-ofctl dump-ports output: {text.strip()[:200]!r}")
        for key, value in zip(("packets", "bytes", "dropped", "errors"), m.groups()):
            out[f"{side}_{key}"] = int(value) if value != "?" else -1
    return out
