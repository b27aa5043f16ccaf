"""Lab: builds a design (private OVS, switches, hosts), starts its controller and services, waits
until everything answers, and tears it all down in reverse order, always."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from weblab import clean, programs
from weblab.core import cgroups, cores, paths
from weblab.core.errors import NotReady, WeblabError
from weblab.core.proc import ProcRef
from weblab.core.state import HostRecord, LinkRecord, RunState
from weblab.core.wait import wait_for
from weblab.datapath import choose_datapath
from weblab.lock import LabLock
from weblab.ovs import PrivateOVS

def new_run_id() -> str:
    """A run id: time of start plus a random suffix."""
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def build_topo(design_cls, values: dict[str, Any], scenario: str | None = None):
    """The design's graph and declarations, with the scenario's fault if one is named."""
    from topologies import scenarios
    topo = design_cls(**values)
    if scenario:
        try:
            scenarios.get(scenario).apply(topo)
        except ValueError as e:
            raise WeblabError(str(e)) from None
    return topo


def preflight(design_cls, params: dict[str, Any], cpu: dict[str, float] | None = None,
              cpus: dict[str, str] | None = None, scenario: str | None = None) -> dict[str, Any]:
    """Everything checkable before anything is started: root, binaries, parameters, scenario, lock,
    leftovers."""
    if os.geteuid() != 0:
        raise WeblabError("weblab needs root to build networks: run it with sudo")
    try:
        values = design_cls.resolve_params(params)
    except ValueError as e:
        raise WeblabError(str(e)) from None
    try:
        topo = build_topo(design_cls, values, scenario)
        topo.check_services()
    except ValueError as e:
        raise WeblabError(str(e)) from None
    unknown_cpu = set(cpu or {}) - set(topo.hosts())
    if unknown_cpu:
        raise WeblabError(f"--cpu for unknown host(s) {', '.join(sorted(unknown_cpu))}; hosts of "
                          f"{design_cls.design}: {', '.join(sorted(topo.hosts()))}")
    bad = {h: f for h, f in (cpu or {}).items() if not 0 < f <= 1}
    if bad:
        raise WeblabError(f"--cpu fractions must be in (0, 1] of the machine: {bad}")
    cores.validate(cpus or {}, topo.hosts())
    from weblab import doctor, shaping
    shaping.check(topo, doctor.shaping_support)  # delay/loss without netem: refused here, never ignored
    absent = programs.missing(programs.for_design(design_cls, values))
    if absent:
        raise WeblabError(f"missing programs: {', '.join(f'{p} (package {pkg})' for p, pkg in absent.items())}; "
                          f"install them with: sudo make install (check with: sudo weblab doctor --design "
                          f"{design_cls.design})")
    leftovers = clean.crashed_runs()
    if leftovers:
        raise WeblabError(f"lab {leftovers[0]} did not shut down cleanly; remove what it left with: "
                          f"sudo weblab clean")
    return values


class Lab:
    """A running design. Use as a context manager, or call start() and stop() (stop is idempotent)."""

    def __init__(self, design: str, params: dict[str, Any] | None = None, run_id: str | None = None,
                 datapath: str = "auto", cpu: dict[str, float] | None = None, firewall: bool | None = None,
                 lock: LabLock | None = None, cores: dict[str, str] | None = None,
                 scenario: str | None = None):
        from topologies import get
        try:
            self.design_cls = get(design)
        except ValueError as e:
            raise WeblabError(str(e)) from None
        self.design = design
        self.params = dict(params or {})
        self.cpu = dict(cpu or {})
        self.cores = {h: str(c) for h, c in (cores or {}).items()}  # host (or "*") -> CPU list
        self.firewall_override = firewall
        self.scenario = scenario or ""
        self.requested_datapath = datapath
        self.run_id = run_id or new_run_id()
        self.run_dir = paths.run_dir(self.run_id)
        self.state = RunState(self.run_id)
        # A caller running several labs in a row (weblab run) holds the lock across all of them.
        self.lock = lock or LabLock()
        self.owns_lock = lock is None
        self.net = None
        self.topo = None
        self.ovs: PrivateOVS | None = None
        self.controller: ProcRef | None = None
        self.ca = None
        self.daemons: dict[tuple[str, str], Any] = {}
        self.started_services: list[Any] = []
        self.popens: list[subprocess.Popen] = []
        self.control = None  # the lab's control socket (weblab.control), served once it is ready
        self.failed = False
        self.stopped = False
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ bring-up
    def __enter__(self) -> "Lab":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self.failed = True
        self.stop()

    def start(self) -> "Lab":
        """Bring the lab up; on any failure tear down what was started and re-raise."""
        values = preflight(self.design_cls, self.params, self.cpu, self.cores, self.scenario)
        self.params = values
        if self.owns_lock:
            self.lock.acquire(self.run_id, self.design)
        t0 = time.monotonic()
        try:
            self._start(values)
        except BaseException:
            self.failed = True
            self.stop()
            raise
        self.timings["up"] = time.monotonic() - t0
        self.state.set(status="ready", ready_at=time.time(), timings=self.timings)
        return self

    def _start(self, values: dict[str, Any]) -> None:
        from mininet.log import setLogLevel

        from weblab import netdev

        setLogLevel(os.environ.get("WEBLAB_MININET_LOG", "warning"))
        datapath, why = choose_datapath(self.requested_datapath)
        self.state.set(design=self.design, scenario=self.scenario, params=values, cpu=self.cpu, cores=self.cores,
                       datapath=datapath, datapath_reason=why, created=time.time(),
                       holder=ProcRef.of("holder", os.getpid(), group=False).to_dict(),
                       python=sys.executable, repo=str(paths.REPO))
        self.topo = build_topo(self.design_cls, values, self.scenario)
        if self.firewall_override is not None:
            self.topo.firewall = self.firewall_override

        mark = self._stage_timer()
        self.ovs = PrivateOVS(self.run_dir, datapath, cpus=self.cores.get(cores.REST))
        self.ovs.start(self.state.add_process)
        mark("ovs")
        os.environ.update(self.ovs.env())  # Mininet's ovs-vsctl calls now reach the private instance

        # Tap ports on the userspace datapath, veth pairs on the kernel one (weblab.netdev).
        self.net = netdev.mininet(self.topo, datapath, self.ovs.vsctl)
        self._record_nodes()
        mark("mininet")
        self._configure_hosts(datapath)
        mark("hosts")
        self._start_controller()
        mark("controller")
        self.net.start()
        mark("mininet-start")
        self._connect_switches()
        mark("switches")

        self._start_services()
        mark("services")
        self._wait_entry()
        mark("entry")
        from weblab.control import ControlServer
        self.control = ControlServer(self, self.run_dir / "control.sock").start()
        self.state.set(control=str(self.control.path))

    def _start_services(self) -> None:
        """Start every service as soon as the services it waits for (`after`) are ready, many at once;
        each start is bounded by its own readiness timeout. The first failure stops new starts, lets
        those under way finish, and is raised (teardown then stops everything that started)."""
        specs = self.topo.services
        made = {s.name: self._make_service(s) for s in specs}  # configs and certificates, one at a time
        self.started_services = [made[s.name] for s in specs]  # teardown stops them in reverse, started or not
        for spec in specs:  # a spare's services: recorded (status shows them stopped), started by `lb add`
            if spec.standby:
                self.state.add_service(spec.host, spec.kind, made[spec.name].dir, made[spec.name].log, None)
        specs = [s for s in specs if not s.standby]
        done: set[str] = set()
        pending = list(specs)
        failures: list[BaseException] = []

        def start(spec) -> None:
            t = time.monotonic()
            svc = made[spec.name]
            try:
                svc.start()
            finally:
                if svc.ref is not None:
                    self.state.add_service(spec.host, spec.kind, svc.dir, svc.log, svc.ref)
            self.timings[spec.name] = round(time.monotonic() - t, 3)

        with ThreadPoolExecutor(max_workers=max(1, len(specs)), thread_name_prefix="start") as pool:
            running: dict[Future, Any] = {}
            while pending or running:
                if not failures:
                    for spec in [s for s in pending if set(s.after) <= done]:
                        pending.remove(spec)
                        running[pool.submit(start, spec)] = spec
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    spec = running.pop(future)
                    if future.exception() is not None:
                        failures.append(future.exception())
                    else:
                        done.add(spec.name)
        if failures:
            raise failures[0]

    def _stage_timer(self):
        """A function that records the seconds since its last call under a stage name."""
        last = [time.monotonic()]

        def mark(stage: str) -> None:
            now = time.monotonic()
            self.timings[f"stage:{stage}"] = round(now - last[0], 3)
            last[0] = now
        return mark

    def _record_nodes(self) -> None:
        for node in self.net.hosts + self.net.switches:
            host = node.name if node in self.net.hosts else ""
            self.state.add_process(ProcRef.of(f"shell:{node.name}", node.pid, host=host))
        hosts = {h.name: HostRecord(h.name, h.pid, self.topo.role(h.name), self.topo.addresses_of(h.name),
                                    [i.name for i in h.intfList() if i.name != "lo"]) for h in self.net.hosts}
        from weblab.netdev import link_record  # a tap port's switch end has no interface of its own
        links = [LinkRecord(*link_record(l)) for l in self.net.links]
        self.state.set_network(hosts, [s.name for s in self.net.switches], links, self.topo.link_names())

    def _configure_hosts(self, datapath: str) -> None:
        """Resolver through the lab DNS, private to each host; the lab CA trusted inside it."""
        dns_host = next((s.host for s in self.topo.services if s.kind == "dns"), None)
        if self.topo.pki:
            from weblab.pki import LabCA
            self.ca = LabCA(self.run_dir / "pki", self.run_id).create()
            for cert in self.topo.certs:  # no service names them (yet): a scenario's spare
                self.ca.issue(cert.name, list(cert.dns_names))
        for h in self.net.hosts:
            handle = self.handle(h.name)
            if handle.cores:  # the host's shell too: what Mininet's CLI runs there stays on its CPUs
                os.sched_setaffinity(h.pid, cores.parse_cpulist(handle.cores))
            if dns_host:
                self._private_etc(handle, self.topo.address_on(dns_host, h.name))
            if self.ca is not None:
                # Every host of the lab trusts the run's CA, and only inside the lab.
                res = handle.run(["mount", "--bind", str(self.ca.bundle), "/etc/ssl/certs/ca-certificates.crt"])
                if res.returncode != 0:
                    raise WeblabError(f"cannot install the lab CA in {h.name}: {res.stderr.strip()}")

    def _private_etc(self, handle, nameserver: str) -> None:
        """Resolver files bind-mounted inside the host's private mount namespace only."""
        etc = self.run_dir / "hosts" / handle.name / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(
            f"# weblab run {self.run_id}\nnameserver {nameserver}\nsearch {self.topo.zone}\n"
            "options timeout:1 attempts:2\n")
        # Only files and DNS: no NSS module may answer from (or leak to) the real network.
        (etc / "nsswitch.conf").write_text("hosts: files dns\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
        for name in ("resolv.conf", "nsswitch.conf", "hosts"):
            res = handle.run(["mount", "--bind", str(etc / name), f"/etc/{name}"])
            if res.returncode != 0:
                raise WeblabError(f"cannot set /etc/{name} in {handle.name}: {res.stderr.strip()}")

    # ------------------------------------------------------------------ controller and switches
    def _start_controller(self) -> None:
        cdir = self.run_dir / "controller"
        cdir.mkdir(parents=True, exist_ok=True)
        (cdir / "policy.json").write_text(json.dumps(self.policy(), indent=2))
        port = free_port()
        log = cdir / "controller.log"
        argv = [sys.executable, "-m", "controllers.run", "--listen", "127.0.0.1", "--port", str(port),
                "--policy", str(cdir / "policy.json"), "--log", str(log),
                "--control", str(cdir / "control.sock")]
        with open(cdir / "controller.out", "ab") as out:
            p = subprocess.Popen(cores.wrap(argv, self.cores.get(cores.REST)), stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=paths.REPO)
        self.popens.append(p)
        self.controller = ProcRef.of("controller", p.pid)
        self.state.add_process(self.controller)
        self.state.set(controller={"port": port, "control": str(cdir / "control.sock"), "log": str(log),
                                   "pid": p.pid})
        wait_for(lambda: port_open("127.0.0.1", port), 20, "the SDN controller (controllers.run)",
                 cdir / "controller.out", self.controller)

    def _connect_switches(self) -> None:
        port = self.state.controller.port
        for s in self.net.switches:
            self.ovs.vsctl("set-controller", s.name, f"tcp:127.0.0.1:{port}", "--", "set", "bridge",
                           s.name, f"external_ids:weblab-run={self.run_id}")

        from controllers.client import ControlError, request
        sock = str(self.state.controller.control)

        def connected() -> bool:
            # The controller knows first: OVS updates is_connected in its database only every ~5 s.
            try:
                reply = request(sock, {"op": "status"}, timeout=2)
            except ControlError:
                return False
            if reply.get("status") == "error":
                raise WeblabError(f"the controller reported OpenFlow errors: {reply.get('errors')} "
                                  f"(log: {self.state.controller.log})")
            return reply.get("status") == "ok"
        wait_for(connected, 15, "switches connecting to the controller",
                 self.run_dir / "controller" / "controller.log", self.controller)

    # ------------------------------------------------------------------ services
    def handle(self, host: str, cgroup: bool = False):
        """A HostHandle for hostapps and exec."""
        from hostapps.base import HostHandle
        try:
            info = self.state.host(host)
        except KeyError as e:
            raise WeblabError(e.args[0]) from None
        cg = self._cgroup(host) if cgroup and host in self.cpu else None
        return HostHandle(host, info.pid, info.ips, record=self.state.add_process, cgroup=cg,
                          cores=cores.for_host(self.cores, host))

    def _cgroup(self, host: str) -> str:
        path = str(cgroups.create(self.run_id, host, self.cpu[host]))
        self.state.add_cgroup(path)
        return path

    def _make_service(self, spec):
        from hostapps import registry
        from topologies.base import CAFile, Cert, HostTable, Port, Ref
        kinds = registry()
        if spec.kind not in kinds:
            raise WeblabError(f"design {self.design}: unknown service kind {spec.kind!r}")

        def resolve(v):
            if isinstance(v, Ref):
                return self.topo.address_on(v.host, v.on) if v.on else self.ip(v.host)
            if isinstance(v, Port):
                raise WeblabError(f"{spec.kind}@{spec.host}: {v} outside a target (host unknown)")
            if isinstance(v, Cert):
                ips = self.topo.addresses_of(v.host) if v.host else []
                return str(self.ca.issue(v.name, list(v.dns_names), ips))
            if isinstance(v, CAFile):
                return str(self.ca.cert)
            if isinstance(v, HostTable):
                return {h: self.ip(h) for h in self.hosts()}
            if isinstance(v, dict):
                if isinstance(v.get("port"), Port):  # a target: the port of that service on its host
                    v = {**v, "port": self.topo.port_of(v["port"], v.get("host"), service_defaults())}
                return {k: resolve(x) for k, x in v.items()}
            if isinstance(v, list):
                return [resolve(x) for x in v]
            return v
        opts = {k: resolve(v) for k, v in spec.options.items()}
        svc = kinds[spec.kind](self.handle(spec.host, cgroup=True),
                               self.run_dir / "hosts" / spec.host / spec.kind, **opts)
        self.daemons[(spec.host, spec.kind)] = svc
        return svc

    def _wait_entry(self) -> None:
        """The lab is ready when the client reaches the site by name, through DNS and the network."""
        probe = next((h for h in ("client",) if h in self.hosts()), None)
        if probe is None or not self.topo.wait_entry:  # a scenario that breaks the way in
            return
        scheme = "https" if self.ca is not None else "http"
        url = f"{scheme}://www.{self.topo.zone}/health"
        last = {"answer": "nothing yet"}

        def answers() -> bool:
            res = self.exec(probe, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                    "--max-time", "1", url], timeout=5)
            last["answer"] = f"HTTP {res.stdout.strip()}, curl exit {res.returncode}"
            return res.stdout.strip() == "200"
        try:
            wait_for(answers, 15, f"{url} from {probe}")
        except NotReady as e:
            raise NotReady(f"{e}; last answer: {last['answer']}") from None

    # ------------------------------------------------------------------ the handle experiments use
    def hosts(self) -> list[str]:
        return list(self.state.hosts)

    def ip(self, host: str) -> str:
        return self.topo.addresses_of(self._known(host))[0]

    def role(self, host: str) -> str:
        return self.topo.role(self._known(host))

    def _known(self, host: str) -> str:
        if host not in self.topo.hosts():
            raise WeblabError(f"unknown host {host!r}; hosts: {', '.join(self.topo.hosts())}")
        return host

    def address_on(self, host: str, peer: str) -> str:
        """host's address on a network it shares with peer."""
        try:
            return self.topo.address_on(host, peer)
        except (KeyError, ValueError) as e:
            raise WeblabError(f"no address of {host} facing {peer}: {e}") from None

    @property
    def cgroups(self) -> dict[str, Path]:
        """host -> its CPU cgroup (only CPU-limited hosts have one)."""
        return {p.name: p for p in self.state.cgroups}

    def services(self, kind: str | None = None) -> list[tuple[str, str]]:
        """(host, kind) of every service of the design, in start order; only one kind if given."""
        return [(s.host, s.kind) for s in self.topo.services if kind is None or s.kind == kind]

    def policy(self) -> dict[str, Any]:
        """The policy document the controller is given."""
        return self.topo.policy_document(service_defaults())

    def firewall(self, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """One request to the controller's control socket (show, allow, deny, remove, enable, disable)."""
        from weblab.firewall import control
        return control(self.state, request, timeout=timeout)

    @property
    def entry_ip(self) -> str:
        return self.topo.entry_address or self.ip(self.topo.entry)

    @property
    def python(self) -> str:
        return sys.executable

    def exec(self, host: str, argv: list[str], timeout: float = 30,
             input: str | None = None) -> subprocess.CompletedProcess:
        """Run argv inside host and wait (bounded); never raises on a non-zero exit."""
        return subprocess.run(self.handle(host).argv(argv), capture_output=True, text=True,
                              timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def popen(self, host: str, argv: list[str], **kw: Any) -> subprocess.Popen:
        """Start argv inside host in its own process group; stopped at teardown if still running."""
        p = self.handle(host).popen(argv, **kw)
        self.popens.append(p)
        self.state.add_process(ProcRef.of(f"popen:{argv[0]}", p.pid, host=host))
        return p

    def service(self, host: str, kind: str):
        """The running service object (start, stop, kill, restart, wait_ready, pid)."""
        try:
            return self.daemons[(host, kind)]
        except KeyError:
            have = ", ".join(f"{k}@{h}" for h, k in self.daemons)
            raise WeblabError(f"no service {kind} on {host}; services: {have}") from None

    def link_intfs(self, a: str, b: str) -> tuple[str, str]:
        """Interface names of the link between nodes a and b."""
        for link in self.state.links:
            if (link.node1, link.node2) == (a, b):
                return link.intf1, link.intf2
            if (link.node1, link.node2) == (b, a):
                return link.intf2, link.intf1
        raise WeblabError(f"no link between {a} and {b}")

    def _link_set(self, a: str, b: str, state: str) -> None:
        for node, intf in zip((a, b), self.link_intfs(a, b)):
            if not intf:
                continue  # the switch end of a tap port: the tap is one device, in the host
            if node in self.state.hosts:
                self.exec(node, ["ip", "link", "set", intf, state], timeout=5)
            else:
                subprocess.run(["ip", "link", "set", intf, state], check=True, timeout=5)

    def link_down(self, a: str, b: str) -> None:
        """Cut the link between a and b (both ends of a veth pair, the host end of a tap down)."""
        self._link_set(a, b, "down")

    def link_up(self, a: str, b: str) -> None:
        """Restore the link between a and b."""
        self._link_set(a, b, "up")

    def capture(self, host: str, intf: str, pcap: str | Path, bpf: str | None = None, snaplen: int = 0,
                buffer_kib: int = 0):
        """Start tcpdump on intf inside host, writing pcap; returns a Capture to stop()."""
        from weblab.tcpdump import Capture
        return Capture.start(self, host, intf, Path(pcap), bpf, snaplen=snaplen, buffer_kib=buffer_kib)

    def port_counters(self, host: str, switch: str) -> dict[str, int]:
        """The OpenFlow counters of switch's port facing host, read live from the switch: rx_* is what
        the switch received from host (what host sent), tx_* what it sent to host."""
        from weblab.ovs import parse_port_stats
        host_intf, switch_intf = self.link_intfs(host, switch)
        if not switch_intf:
            return self._tap_counters(host, host_intf)
        return parse_port_stats(self.ovs.ofctl("dump-ports", switch, switch_intf))

    def _tap_counters(self, host: str, intf: str) -> dict[str, int]:
        """A tap port's counters, read from the tap itself in its host: OVS reads a tap's statistics from
        the kernel device by name in its own namespace, where a tap moved into a host is not (it says 0).
        The tap is one device: what the switch received (rx) is what the host sent into it (tx)."""
        res = self.exec(host, ["ip", "-s", "-j", "link", "show", "dev", intf], timeout=5)
        if res.returncode != 0:
            raise WeblabError(f"cannot read the counters of {intf} in {host}: {res.stderr.strip()}")
        stats = json.loads(res.stdout)[0]["stats64"]
        out = {}
        for side, dev_side in (("rx", "tx"), ("tx", "rx")):
            for key in ("packets", "bytes", "dropped", "errors"):
                out[f"{side}_{key}"] = int(stats[dev_side][key])
        return out

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        """Tear everything down in reverse order; safe to call twice and after a partial start."""
        if self.stopped:
            return
        self.stopped = True
        problems: list[str] = []
        if self.state.path.exists():
            self.state.set(status="stopping")

        def step(what: str, fn) -> None:
            try:
                fn()
            except BaseException as e:  # teardown must go on whatever one step did
                problems.append(f"{what}: {e}")
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
        kept = None
        try:
            if self.control is not None:
                step("stop the control socket", self.control.stop)
            for p in reversed(self.popens):
                step("stop process", partial(stop_popen, p))
            for svc in reversed(self.started_services):
                step(f"stop {svc.name}", svc.stop)
            if self.net is not None and self.ovs is not None and not self.ovs.alive():
                # Mininet's switch stop is an ovs-vsctl that waits for a dead ovs-vswitchd forever; the
                # sweep below removes the hosts and links from the record instead.
                problems.append("the switch daemons had died: their switches were not stopped cleanly")
            elif self.net is not None:
                step("stop mininet", self.net.stop)
            if self.ovs is not None:  # guarded too: its stop can time out (kernel datapath's exit --cleanup)
                step("stop ovs", lambda: problems.extend(self.ovs.stop()))
            # Whatever the steps above missed, the state file still names: remove exactly that.
            step("sweep", lambda: problems.extend(clean.sweep(self.state)))
            for k in self.ovs.env() if self.ovs else ():
                os.environ.pop(k, None)
            if self.failed or problems:
                kept = clean.keep_logs(self.run_dir, self.run_id)
            shutil.rmtree(self.run_dir, ignore_errors=True)
        finally:
            if self.owns_lock:
                self.lock.release()
            if old is not None:
                signal.signal(signal.SIGINT, old)
        if problems:
            raise WeblabError("teardown problems: " + "; ".join(problems) +
                              (f" (logs kept in {kept})" if kept else ""))
        if kept:
            print(f"weblab: the run failed; its logs are kept in {kept}", file=sys.stderr)


def factory_holding(lock: LabLock):
    """What experiments get labs from (`weblab run`): real Labs, each started and always torn down,
    all under one held lab lock, so no other lab slips in between two cases or repeats of a run."""
    def factory(design: str, lab_params: dict[str, Any]) -> Lab:
        known = {"params", "cpu", "cores", "firewall", "datapath"}
        unknown = set(lab_params) - known
        if unknown:
            raise WeblabError(f"experiment asked for unknown lab settings {sorted(unknown)}")
        return Lab(design, lock=lock, **lab_params)
    return factory


def service_defaults() -> dict[str, dict[str, Any]]:
    """kind -> the hostapp's default options: where a Port in a design finds its number."""
    from hostapps import registry
    return {kind: cls.defaults for kind, cls in registry().items()}


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def stop_popen(p: subprocess.Popen, timeout: float = 5) -> None:
    """TERM a process group we started, bounded wait, then KILL."""
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=5)
    except ProcessLookupError:
        pass


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
