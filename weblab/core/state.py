"""The state file of a run: what exec, status, down and clean read, through typed accessors.

The file is JSON (state.json in the run directory), rewritten atomically after every change, so a
crash at any moment leaves a record of everything the run had created until then.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weblab.core import paths
from weblab.core.proc import ProcRef


@dataclass(frozen=True)
class HostRecord:
    """A host of the lab: the pid of its shell (whose namespaces commands enter), role, addresses."""

    name: str
    pid: int
    role: str
    ips: list[str]
    intfs: list[str]


@dataclass(frozen=True)
class ServiceRecord:
    """A daemon the lab started: where its files and log are, and its process (if it is running)."""

    host: str
    kind: str
    dir: Path
    log: Path
    proc: ProcRef | None
    edited: tuple[str, ...] = ()  # config files a person changed (weblab edit / reload)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()


@dataclass(frozen=True)
class LinkRecord:
    """One link: its two ends (node, interface); a switch-side end may have no interface of its own."""

    node1: str
    intf1: str
    node2: str
    intf2: str


@dataclass(frozen=True)
class ControllerRecord:
    """The SDN controller of the run: its OpenFlow port, control socket and log."""

    port: int
    control: Path
    log: Path
    pid: int


class RunState:
    """A run's record of everything it created, saved atomically after every change."""

    def __init__(self, run_id: str, data: dict[str, Any] | None = None):
        self.run_id = run_id
        self.dir = paths.run_dir(run_id)
        self._lock = threading.RLock()  # services start in parallel threads, each recording itself
        self.data: dict[str, Any] = data or {
            "run_id": run_id, "status": "starting", "processes": [], "links": [],
            "switches": [], "hosts": {}, "services": [], "cgroups": [], "mounts": [],
        }

    @property
    def path(self) -> Path:
        return self.dir / "state.json"

    # --- persistence -----------------------------------------------------------------------------
    def save(self) -> None:
        """Write the state atomically (readers never see a half-written file)."""
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".state.")
            with os.fdopen(fd, "w") as f:
                json.dump(self.data, f, indent=2, sort_keys=True, default=str)
            os.replace(tmp, self.path)

    def add(self, key: str, item: Any) -> None:
        """Append to a list in the state and save."""
        with self._lock:
            self.data.setdefault(key, []).append(item)
            self.save()

    def set(self, **kw: Any) -> None:
        """Set top-level fields and save."""
        with self._lock:
            self.data.update(kw)
            self.save()

    @classmethod
    def load(cls, run_id: str) -> "RunState":
        """Read the state of a run; FileNotFoundError if it has none, ValueError if it is garbled."""
        path = paths.run_dir(run_id) / "state.json"
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a run state")
        return cls(run_id, data)

    # --- what a run records ------------------------------------------------------------------------
    def add_process(self, ref: ProcRef) -> None:
        self.add("processes", ref.to_dict())

    def add_service(self, host: str, kind: str, directory: Path, log: Path, ref: ProcRef | None) -> None:
        self.add("services", {**(ref.to_dict() if ref else {}), "host": host, "kind": kind,
                              "dir": str(directory), "log": str(log)})

    def update_service(self, host: str, kind: str, ref: ProcRef | None) -> None:
        """A service's process changed (started again, restarted): what status and clean read."""
        with self._lock:
            for s in self.data.get("services") or []:
                if (s["host"], s["kind"]) == (host, kind) and ref is not None:
                    s.update(pid=ref.pid, start=ref.start, group=ref.group)
            self.save()

    def mark_edited(self, host: str, kind: str, files: list[str]) -> None:
        """Record that these config files of a service were changed by a person (weblab status)."""
        with self._lock:
            for s in self.data.get("services") or []:
                if (s["host"], s["kind"]) == (host, kind):
                    s["edited"] = sorted(set(s.get("edited", [])) | set(files))
            self.save()

    def add_cgroup(self, path: Path | str) -> None:
        if str(path) not in self.data.setdefault("cgroups", []):
            self.add("cgroups", str(path))

    def set_network(self, hosts: dict[str, HostRecord], switches: list[str], links: list[LinkRecord],
                    link_names: dict[str, tuple[str, str]]) -> None:
        """The network Mininet built: hosts, switches, links and the design's link aliases."""
        self.set(hosts={h.name: {"pid": h.pid, "role": h.role, "ips": list(h.ips), "intfs": list(h.intfs)}
                        for h in hosts.values()},
                 switches=list(switches),
                 links=[[l.node1, l.intf1, l.node2, l.intf2] for l in links],
                 link_names={k: list(v) for k, v in link_names.items()})

    # --- typed reading -----------------------------------------------------------------------------
    @property
    def design(self) -> str:
        return self.data.get("design", "")

    @property
    def scenario(self) -> str:
        """The scenario the lab was started with ("" for the design as it is)."""
        return self.data.get("scenario") or ""

    @property
    def status(self) -> str:
        return self.data.get("status", "")

    @property
    def datapath(self) -> str:
        return self.data.get("datapath", "")

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.data.get("params") or {})

    @property
    def cpu(self) -> dict[str, float]:
        return dict(self.data.get("cpu") or {})

    @property
    def cores(self) -> dict[str, str]:
        return dict(self.data.get("cores") or {})

    @property
    def timings(self) -> dict[str, float]:
        return dict(self.data.get("timings") or {})

    @property
    def hosts(self) -> dict[str, HostRecord]:
        return {name: HostRecord(name, h["pid"], h.get("role", ""), list(h.get("ips", [])),
                                 list(h.get("intfs", [])))
                for name, h in (self.data.get("hosts") or {}).items()}

    def host(self, name: str) -> HostRecord:
        """One host, or a KeyError naming the hosts there are."""
        hosts = self.hosts
        if name not in hosts:
            raise KeyError(f"unknown host {name!r}; hosts of this lab: {', '.join(hosts) or 'none'}")
        return hosts[name]

    @property
    def switches(self) -> list[str]:
        return list(self.data.get("switches") or [])

    @property
    def links(self) -> list[LinkRecord]:
        return [LinkRecord(*l) for l in self.data.get("links") or []]

    @property
    def link_names(self) -> dict[str, tuple[str, str]]:
        return {k: (v[0], v[1]) for k, v in (self.data.get("link_names") or {}).items()}

    @property
    def services(self) -> list[ServiceRecord]:
        out = []
        for s in self.data.get("services") or []:
            ref = ProcRef(s["kind"], s["pid"], s["start"], s.get("group", True), s.get("host", "")) \
                if s.get("pid") else None
            out.append(ServiceRecord(s["host"], s["kind"], Path(s["dir"]), Path(s["log"]), ref,
                                     tuple(s.get("edited", ()))))
        return out

    @property
    def processes(self) -> list[ProcRef]:
        return [ProcRef(**d) for d in self.data.get("processes") or []]

    @property
    def holder(self) -> ProcRef | None:
        h = self.data.get("holder")
        return ProcRef(**h) if h else None

    @property
    def controller(self) -> ControllerRecord | None:
        c = self.data.get("controller")
        return ControllerRecord(c["port"], Path(c["control"]), Path(c["log"]), c["pid"]) if c else None

    @property
    def control_socket(self) -> Path | None:
        """The lab's own control socket (start/stop services, run recorded processes), if it has one."""
        sock = self.data.get("control")
        return Path(sock) if sock else None

    @property
    def cgroups(self) -> list[Path]:
        return [Path(p) for p in self.data.get("cgroups") or []]

    def holder_alive(self) -> bool:
        """True if the process holding the run (supervisor, interactive CLI, weblab run) still lives."""
        holder = self.holder
        return holder is not None and holder.alive()


def all_runs() -> list[str]:
    """Run ids that have a directory under the run root."""
    if not paths.RUN_ROOT.is_dir():
        return []
    return sorted(p.name for p in paths.RUN_ROOT.iterdir() if p.is_dir())
