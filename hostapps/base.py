"""The hostapp contract: one daemon in one host, with config, dry run, start, readiness and stop."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import jinja2

from weblab.core import cores
from weblab.core.errors import NotReady, WeblabError
from weblab.core.proc import ProcRef, wait_gone

TEMPLATES = Path(__file__).resolve().parent / "templates"
_jinja = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                            undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render_template(name: str, **values: Any) -> str:
    """Render one of hostapps/templates with every variable required."""
    return _jinja.get_template(name).render(**values)


@dataclass
class HostHandle:
    """How a hostapp reaches its host: the pid whose namespaces it enters, and its addresses."""

    name: str
    pid: int
    ips: list[str]
    record: Callable[[ProcRef], None] = field(default=lambda ref: None)
    cgroup: str | None = None  # daemons started here join it (per-server CPU limits)
    cores: str | None = None   # every process started here runs on these CPUs (weblab.cores)

    def argv(self, argv: list[str]) -> list[str]:
        """Prefix that runs argv inside this host's network and mount namespaces (on its CPUs)."""
        return cores.wrap(["mnexec", "-a", str(self.pid), *argv], self.cores)

    def run(self, argv: list[str], timeout: float = 10, **kw: Any) -> subprocess.CompletedProcess:
        """Run argv in the host and wait (bounded); never raises on a non-zero exit."""
        return subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, **kw)

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        """Start argv in the host in a process group of its own."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        full = self.argv(argv)
        if self.cgroup:
            # Join the cgroup before exec, so every child the daemon forks is limited too. From the
            # root namespace: inside a host, /sys is a sysfs of its own, without the cgroup mounts.
            full = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self.cgroup, *full]
        return subprocess.Popen(full, start_new_session=True, **kw)


class Service:
    """Base of every hostapp; subclasses say what to render, how to start it and when it is ready."""

    kind: ClassVar[str] = ""
    # program -> the Debian package that ships it: what preflight and `weblab doctor` check for this daemon
    # (every program a hostapp runs, in the host or for its dry run; curl is the lab's own, for probes)
    binaries: ClassVar[dict[str, str]] = {}
    # how the running daemon takes a new configuration: this signal to its main process, or (None)
    # a restart
    reload_signal: ClassVar[int | None] = None
    ready_timeout: ClassVar[float] = 15.0
    stop_timeout: ClassVar[float] = 5.0
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, host: HostHandle, workdir: Path, **options: Any):
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise WeblabError(f"{self.kind} on {host.name}: unknown option(s) {sorted(unknown)}; "
                              f"known: {sorted(self.defaults)}")
        self.host = host
        self.dir = workdir
        self.opts: dict[str, Any] = {**self.defaults, **options}
        self.ref: ProcRef | None = None
        self.popen_obj: subprocess.Popen | None = None
        self.rendered: dict[str, str] = {}  # config file name -> digest of the text weblab wrote

    # --- what subclasses provide -------------------------------------------------------------
    def render(self) -> None:
        """Write configuration files into self.dir."""

    def prepare(self) -> None:
        """Anything needed before the first start (data directories)."""

    def check_argv(self) -> list[str] | None:
        """A dry-run that validates the configuration, where the daemon has one."""
        return None

    def argv(self) -> list[str]:
        """The foreground command line of the daemon."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Extra environment for the daemon."""
        return {}

    def probe(self) -> bool:
        """One quick readiness check (bounded)."""
        raise NotImplementedError

    def after_ready(self) -> None:
        """Work once the daemon answers (users, schema)."""

    # --- the configuration a person may change (weblab config / edit / reload) -----------------
    def config_files(self) -> list[Path]:
        """The rendered configuration files a person may edit, the one edited most first."""
        return []

    def check_file_argv(self, path: Path, text_at: Path) -> list[list[str]]:
        """The dry runs that validate config file `path` if it held the text of `text_at` (a draft):
        by default the daemon's own check with the draft in place of that file."""
        check = self.check_argv()
        if not check or str(path) not in check:
            return []
        return [[str(text_at) if a == str(path) else a for a in check]]

    def apply_config(self) -> None:
        """Make the running daemon load its configuration files as they are, the way it is done in
        production: its reload signal to the main process, or a restart where it has none."""
        if self.reload_signal is None:
            self.restart()
        else:
            os.kill(self.ref.pid, self.reload_signal)

    def edit_begins(self, path: Path) -> None:
        """Before a draft of `path` is taken (a zone that takes dynamic updates is frozen here)."""

    def edit_ends(self, path: Path) -> None:
        """Once an edit of `path` is installed or given up."""

    def reload_effect(self) -> str:
        """What applying a new configuration does to the running daemon, for people."""
        if self.reload_signal is None:
            return f"{self.kind} restarts: it is unavailable until it answers again"
        return (f"{signal.Signals(self.reload_signal).name} to {self.kind}'s main process: it reloads in "
                "place, connections in progress are not cut")

    def edited_files(self) -> list[Path]:
        """Config files whose text is no longer what weblab rendered (weblab edit, or by hand)."""
        return [p for p in self.config_files()
                if p.name in self.rendered and p.exists() and digest(p) != self.rendered[p.name]]

    # --- the lifecycle -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"{self.kind}@{self.host.name}"

    @property
    def log(self) -> Path:
        return self.dir / f"{self.kind}.log"

    @property
    def pid(self) -> int | None:
        return self.ref.pid if self.ref and self.ref.alive() else None

    def configure(self) -> None:
        """Render and dry-run the configuration."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.edited_files():  # an edited configuration is never rendered over
            self.render()
            self.rendered = {p.name: digest(p) for p in self.config_files() if p.exists()}
        check = self.check_argv()
        if check:
            res = self.host.run(check, timeout=20)
            if res.returncode != 0:
                raise WeblabError(f"{self.name}: configuration check `{' '.join(check)}` failed:\n"
                                  f"{(res.stdout + res.stderr).strip()}\n(config in {self.dir})")

    def start(self) -> None:
        """Configure, start in the host, and wait until ready."""
        if self.pid:
            raise WeblabError(f"{self.name} is already running (pid {self.pid})")
        self.configure()
        self.prepare()
        with open(self.log, "ab") as out:
            self.popen_obj = self.host.popen(self.argv(), stdout=out, stderr=subprocess.STDOUT,
                                             env={**os.environ, **self.env()})
        self.ref = ProcRef.of(self.kind, self.popen_obj.pid, host=self.host.name)
        self.host.record(self.ref)
        self.wait_ready(self.ready_timeout)
        self.after_ready()

    def wait_ready(self, timeout: float | None = None) -> float:
        """Poll the probe until it passes; returns seconds waited; raises NotReady with the log."""
        timeout = self.ready_timeout if timeout is None else timeout
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            if self.ref is None or not self.ref.alive():
                raise NotReady(f"{self.name} exited during start-up; last log lines:\n"
                               f"{tail(self.log)}\n(log: {self.log})")
            if self.probe():
                return time.monotonic() - t0
            if time.monotonic() >= deadline:
                raise NotReady(f"{self.name} did not become ready within {timeout:.0f} s (log: {self.log})")
            time.sleep(0.05)

    def stop(self) -> None:
        """Graceful stop: SIGTERM to its group, bounded wait, then SIGKILL."""
        if self.ref:
            self.ref.stop(timeout=self.stop_timeout)
        self._reap()

    def kill(self) -> None:
        """Crash it: SIGKILL to its whole process group, now."""
        if self.ref:
            self.ref.signal(signal.SIGKILL)
            wait_gone(self.ref, 5)
        self._reap()

    def restart(self) -> None:
        """Stop gracefully and start again."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """Render (unless a person edited it) and dry-run the configuration again, then make the
        running daemon load it the way it is reloaded in production (apply_config)."""
        if not self.pid:
            raise WeblabError(f"{self.name} is not running: start it first")
        if self.reload_signal is None:
            self.restart()
            return
        self.configure()
        self.apply_config()

    def _reap(self) -> None:
        if self.popen_obj is not None:
            try:
                self.popen_obj.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self.popen_obj = None

    def http_ok(self, url: str, timeout: float = 1.0) -> bool:
        """Probe helper: curl from inside the host, True on a 2xx/3xx answer."""
        try:
            res = self.host.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                 "--max-time", str(timeout), url], timeout=timeout + 2)
        except subprocess.TimeoutExpired:
            return False
        return res.stdout.strip()[:1] in ("2", "3")


def digest(path: Path) -> str:
    """A file's content hash (is it still what was rendered?)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, or a note that it is empty."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(log empty)"
