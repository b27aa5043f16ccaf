"""Changing a daemon's configuration: the editor found and run as sudo and git do, drafts checked by
the daemon's dry run before they are installed, nothing rendered over an edit, the control ops."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from hostapps import editing
from hostapps.base import Service
from hostapps.dns import Dns
from hostapps.haproxy import HAProxy
from hostapps.keepalived import Keepalived
from hostapps.mariadb import MariaDB
from hostapps.nginx import Nginx
from hostapps.prometheus import Prometheus
from weblab import control, editor
from weblab.core.errors import WeblabError
from weblab.core.proc import ProcRef
from weblab.core.state import RunState


# --- the editor --------------------------------------------------------------------------------------
@pytest.mark.parametrize("env, found", [
    ({"SUDO_EDITOR": "nano", "VISUAL": "vim", "EDITOR": "ed"}, "nano"),
    ({"SUDO_EDITOR": " ", "VISUAL": "vim", "EDITOR": "ed"}, "vim"),
    ({"VISUAL": "", "EDITOR": "code --wait"}, "code --wait"),
    ({}, "editor"),
])
def test_the_editor_is_found_as_sudo_users_expect(env, found):
    assert editor.find(env, which=lambda name: "/usr/bin/editor") == found


def test_no_editor_at_all_says_how_to_name_one():
    with pytest.raises(WeblabError, match="set EDITOR"):
        editor.find({}, which=lambda name: None)


def test_the_editor_runs_as_git_runs_it_with_its_arguments(tmp_path):
    target = tmp_path / "a file with spaces.conf"
    target.write_text("listen 8001;\n")
    status = editor.run(target, env={"PATH": "/usr/bin:/bin", "EDITOR": "sed -i -e 's/8001/8000/'"})
    assert status == 0 and target.read_text() == "listen 8000;\n"
    assert editor.argv("vim -n", "/x") == ["sh", "-c", 'vim -n "$@"', "vim -n", "/x"]
    assert editor.run(target, env={"PATH": "/usr/bin:/bin", "EDITOR": "false"}) == 1


# --- drafts, dry runs, install -----------------------------------------------------------------------
class LocalHost:
    """A host handle that runs commands on this machine (the dry runs are real programs)."""

    name = "h1"
    ips = ["10.0.0.1"]

    def run(self, argv, timeout=10, **kw):
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


class Toy(Service):
    """A daemon whose dry run is `grep -q ok FILE` and whose reload we count."""

    kind = "toy"
    defaults = {"text": "ok = 1\n"}

    def __init__(self, *a, running=None, **kw):
        super().__init__(*a, **kw)
        self.applied = 0
        self.restarted = 0
        self.fail_apply = False
        self.ref = running  # a sleeping child of the test stands for the daemon

    def restart(self):
        self.restarted += 1

    @property
    def conf(self) -> Path:
        return self.dir / "toy.conf"

    def render(self):
        self.conf.write_text(self.opts["text"])

    def check_argv(self):
        return ["grep", "-q", "ok", str(self.conf)]

    def config_files(self):
        return [self.conf]

    def apply_config(self):
        if self.fail_apply and "broken" in self.conf.read_text():
            raise WeblabError("toy exited during start-up")
        self.applied += 1


@pytest.fixture
def sleeper():
    """A real process of the test's own, in its own session: what a 'running' toy daemon points at."""
    p = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield ProcRef.of("toy", p.pid)
    p.kill()
    p.wait(timeout=5)


@pytest.fixture
def toy(tmp_path, sleeper):
    svc = Toy(LocalHost(), tmp_path / "toy", running=sleeper)
    svc.configure()
    return svc


def test_a_draft_is_a_copy_and_a_passing_one_is_installed_and_applied(toy):
    begun = editing.begin(toy)
    draft = Path(begun["draft"])
    assert begun["kept"] is False and draft.read_text() == "ok = 1\n" and draft.parent == toy.dir / "drafts"
    draft.write_text("ok = 2\n")
    done = editing.install(toy)
    assert toy.conf.read_text() == "ok = 2\n" and toy.applied == 1 and not draft.exists()
    assert done["checked"] == [f"grep -q ok {draft}"]
    assert toy.edited_files() == [toy.conf]


def test_a_rejected_draft_leaves_the_running_file_and_is_kept_for_the_next_try(toy):
    draft = Path(editing.begin(toy)["draft"])
    draft.write_text("nothing good here\n")
    with pytest.raises(editing.ConfigRejected) as err:
        editing.install(toy)
    message = str(err.value)
    assert "refused it (exit 1)" in message and "is unchanged" in message and str(draft) in message
    assert toy.conf.read_text() == "ok = 1\n" and toy.applied == 0 and draft.exists()
    again = editing.begin(toy)
    assert again["kept"] is True and Path(again["draft"]).read_text() == "nothing good here\n"


def test_a_daemon_that_does_not_take_the_file_gets_the_previous_one_back(toy):
    toy.fail_apply = True
    draft = Path(editing.begin(toy)["draft"])
    draft.write_text("ok but broken\n")
    with pytest.raises(WeblabError, match="did not take the new toy.conf: toy exited") as err:
        editing.install(toy)
    assert "previous toy.conf is back" in str(err.value)
    assert toy.conf.read_text() == "ok = 1\n" and draft.exists() and toy.applied == 1  # restored, applied again


def test_an_edited_file_is_never_rendered_over(toy):
    toy.conf.write_text("ok = by hand\n")
    toy.opts["text"] = "ok = rendered again\n"
    toy.configure()
    assert toy.conf.read_text() == "ok = by hand\n"
    done = editing.reload(toy)
    assert done["edited"] == ["toy.conf"] and toy.restarted == 1  # no reload signal: a restart
    untouched = Toy(LocalHost(), toy.dir.parent / "other")
    untouched.configure()
    untouched.opts["text"] = "ok = new\n"
    untouched.configure()
    assert untouched.conf.read_text() == "ok = new\n" and untouched.edited_files() == []


def test_reload_refuses_a_file_the_daemon_rejects(toy):
    toy.conf.write_text("bad\n")
    with pytest.raises(editing.ConfigRejected, match="nothing was reloaded"):
        editing.reload(toy)


def test_abort_keeps_or_drops_the_draft(toy):
    draft = Path(editing.begin(toy)["draft"])
    assert editing.abort(toy, keep=True)["draft"] == str(draft) and draft.exists()
    editing.abort(toy, keep=False)
    assert not draft.exists()


def test_files_by_name_and_services_without_any(toy, tmp_path):
    assert editing.config_file(toy, "toy.conf") == toy.conf
    with pytest.raises(WeblabError, match="no config file 'x.conf'; its files: toy.conf"):
        editing.config_file(toy, "x.conf")

    class Bare(Service):
        kind = "bare"
    with pytest.raises(WeblabError, match="has no configuration file to edit"):
        editing.config_file(Bare(LocalHost(), tmp_path / "b"))


def test_install_keeps_the_mode_of_the_file(toy):
    toy.conf.chmod(0o640)
    draft = Path(editing.begin(toy)["draft"])
    draft.write_text("ok = 3\n")
    draft.chmod(0o666)
    editing.install(toy)
    assert toy.conf.stat().st_mode & 0o777 == 0o640


def test_what_the_daemon_said_is_its_error_lines():
    mariadb = "2026 0 [ERROR] mariadbd: unknown variable 'bind-adress=127.0.0.1'\n  --help text about errors\n"
    assert editing.said(mariadb) == "  2026 0 [ERROR] mariadbd: unknown variable 'bind-adress=127.0.0.1'"
    zone = "dns_rdata_fromtext: db:12: near '10.0.0.999': bad dotted quad\nzone foobar.com/IN: not loaded\n"
    assert editing.said(zone).count("\n") == 1
    assert "more lines" in editing.said("\n".join(f"line {i}" for i in range(50)))


# --- each daemon's files, dry runs and reload ---------------------------------------------------------
class Handle:
    name, ips, pid = "h1", ["10.0.0.1"], 1


def test_every_daemon_names_its_files_and_checks_a_draft_with_its_own_tool(tmp_path):
    d = Path("/x/drafts/f")
    nginx = Nginx(Handle(), tmp_path / "n")
    assert nginx.config_files() == [nginx.conf]
    assert nginx.check_file_argv(nginx.conf, d)[0][:5] == ["nginx", "-p", f"{tmp_path / 'n'}/", "-c", str(d)]
    hap = HAProxy(Handle(), tmp_path / "h", servers=[{"name": "s", "address": "1.2.3.4", "port": 80}])
    assert hap.check_file_argv(hap.conf, d) == [["haproxy", "-c", "-f", str(d)]]
    dns = Dns(Handle(), tmp_path / "d", apex="10.0.0.11")
    assert [p.name for p in dns.config_files()] == ["db.foobar.com", "named.conf"]
    assert dns.check_file_argv(dns.zonefile, d) == [["named-checkzone", "foobar.com", str(d)]]
    assert dns.check_file_argv(dns.conf, d) == [["named-checkconf", "-z", str(d)]]
    db = MariaDB(Handle(), tmp_path / "m")
    assert db.check_file_argv(db.conf, d) == [["mariadbd", f"--defaults-file={d}", "--help", "--verbose"]]
    ka = Keepalived(Handle(), tmp_path / "k", vip="10.0.0.9", interface="lb1-eth0", src_ip="10.0.0.10")
    assert ka.check_file_argv(ka.conf, d)[0][-1] == str(d)
    prom = Prometheus(Handle(), tmp_path / "p", targets=[{"job": "node", "host": "h1", "address": "10.0.0.1"}])
    assert prom.check_file_argv(prom.rules, d) == [["promtool", "check", "rules", str(d)]]
    assert prom.check_file_argv(prom.conf, d) == [["promtool", "check", "config", str(d)]]


def test_what_a_reload_does_is_said_per_daemon(tmp_path):
    primary = MariaDB(Handle(), tmp_path / "a", binlog=True)
    replica = MariaDB(Handle(), tmp_path / "b", binlog=True, replicate_from="10.0.1.11")
    assert "replicas lose their connection" in primary.reload_effect()
    assert "this replica reconnects to its primary" in replica.reload_effect()
    assert "SIGUSR2 to HAProxy's master" in HAProxy(
        Handle(), tmp_path / "h", servers=[{"name": "s", "address": "1.2.3.4", "port": 80}]).reload_effect()
    dyn = Dns(Handle(), tmp_path / "d", apex="10.0.0.9", allow_update=["10.0.1.50"])
    assert dyn.dynamic and "frozen while you edited it" in dyn.reload_effect()
    assert not Dns(Handle(), tmp_path / "e", apex="10.0.0.9").dynamic


class RndcHost:
    name, ips, pid = "dns", ["10.0.0.2"], 1

    def __init__(self):
        self.ran = []

    def run(self, argv, timeout=10, **kw):
        self.ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_a_dynamic_zone_is_frozen_for_the_edit_and_thawed_after(tmp_path):
    host = RndcHost()
    dns = Dns(host, tmp_path, apex="10.0.0.9", allow_update=["10.0.1.50"])
    dns.dir.mkdir(exist_ok=True)
    dns.render()
    dns.edit_begins(dns.zonefile)
    dns.apply_config()
    dns.edit_ends(dns.zonefile)
    dns.edit_begins(dns.conf)  # named.conf: no freeze
    assert [a[3:] for a in host.ran] == [["freeze", "foobar.com"], ["reload"], ["thaw", "foobar.com"]]
    assert all(a[:3] == ["rndc", "-c", str(dns.rndc_conf)] for a in host.ran)
    conf = dns.conf.read_text()
    assert 'keys { "weblab-rndc"; }' in conf and "inet 127.0.0.1 port 953 allow { 127.0.0.1; }" in conf
    assert (tmp_path / "rndc.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(shutil.which("named-checkconf") is None, reason="needs named-checkconf (bind9-utils)")
def test_the_rndc_channel_passes_named_checkconf(tmp_path):
    dns = Dns(RndcHost(), tmp_path, apex="10.0.0.9")
    dns.render()
    res = subprocess.run(["named-checkconf", str(dns.conf)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


# --- the control ops ------------------------------------------------------------------------------------
class OneServiceLab:
    """The part of a Lab the config ops use: one service, a state file."""

    def __init__(self, svc, state):
        self.svc, self.state = svc, state

    def service(self, host, kind):
        if (host, kind) != ("h1", "toy"):
            raise WeblabError(f"no service {kind} on {host}")
        return self.svc

    def services(self, kind=None):
        return [("h1", "toy")]

    def handle(self, host):
        if host != "h1":
            raise WeblabError(f"unknown host {host!r}")


@pytest.fixture
def served(toy, tmp_path, monkeypatch):
    from weblab.core import paths
    monkeypatch.setattr(paths, "RUN_ROOT", tmp_path / "run")
    state = RunState("r1")
    state.add_service("h1", "toy", toy.dir, toy.log, toy.ref)
    sock = Path(tempfile.mkdtemp(prefix="wl-ctl-")) / "control.sock"
    state.set(control=str(sock))
    ctl = control.ControlServer(OneServiceLab(toy, state), sock).start()
    try:
        yield toy, state
    finally:
        ctl.stop()
        sock.parent.rmdir()


def test_config_edit_and_install_through_the_control_socket(served):
    toy, state = served
    files = control.request(state, {"op": "config", "host": "h1"})["services"][0]["files"]
    assert files == [{"name": "toy.conf", "path": str(toy.conf), "edited": False, "draft": ""}]
    draft = Path(control.request(state, {"op": "edit-begin", "host": "h1", "kind": "toy"})["draft"])
    draft.write_text("bad\n")
    with pytest.raises(WeblabError, match="refused it"):
        control.request(state, {"op": "install-config", "host": "h1", "kind": "toy"})
    assert control.request(state, {"op": "config", "host": "h1", "kind": "toy"})["services"][0]["files"][0]["draft"]
    draft.write_text("ok = edited\n")
    done = control.request(state, {"op": "install-config", "host": "h1", "kind": "toy"})
    assert "restarts" in done["effect"] and toy.conf.read_text() == "ok = edited\n"
    assert RunState.load("r1").services[0].edited == ("toy.conf",)


def test_config_ops_refuse_unknown_hosts_and_files(served):
    _, state = served
    with pytest.raises(WeblabError, match="unknown host 'nope'"):
        control.request(state, {"op": "config", "host": "nope"})
    with pytest.raises(WeblabError, match="no config file 'x'"):
        control.request(state, {"op": "edit-begin", "host": "h1", "kind": "toy", "file": "x"})
    with pytest.raises(WeblabError, match="no draft of toy.conf"):
        control.request(state, {"op": "install-config", "host": "h1", "kind": "toy"})
