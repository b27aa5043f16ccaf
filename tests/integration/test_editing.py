"""Changing a running lab's configuration as a student does: weblab config, edit (the daemon's dry run
first, the production reload after, the draft kept when refused), reload, sql, and the status mark."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.conftest import in_host, service_info, weblab

DESIGN = "distributed"


def edit(*args: str, editor: str, check: bool = False):
    """`weblab edit ...` with EDITOR set to a command (run on the draft as git runs an editor)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SUDO_EDITOR", "VISUAL")}
    env["EDITOR"] = editor
    import subprocess
    import sys
    res = subprocess.run([sys.executable, "-m", "weblab", "edit", *args], capture_output=True, text=True,
                         timeout=120, env=env)
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def site_answers() -> bool:
    return in_host("client", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                   "http://www.foobar.com/").stdout == "200"


@pytest.fixture
def haproxy_cfg(detached_lab):
    cfg = Path(service_info(detached_lab, "lb1", "haproxy")["dir"]) / "haproxy.cfg"
    before = cfg.read_bytes()
    yield cfg
    import shutil
    shutil.rmtree(cfg.parent / "drafts", ignore_errors=True)  # no draft kept for the next test
    if cfg.read_bytes() != before:  # put the design's file back for the next test
        cfg.write_bytes(before)
        weblab("reload", "lb1", "haproxy")


def test_config_names_every_file_of_a_host(detached_lab):
    out = weblab("config", "dns").stdout
    folder = service_info(detached_lab, "dns", "dns")["dir"]
    assert f"dns@dns: {folder}/db.foobar.com" in out and f"dns@dns: {folder}/named.conf" in out
    assert "haproxy@lb1: " in weblab("config", "lb1").stdout and "haproxy.cfg" in weblab("config", "lb1").stdout
    assert "webapp@server1: no config file" in weblab("config", "server1", "webapp").stdout
    bad = weblab("config", "nosuch", check=False)
    assert bad.returncode == 2 and "unknown host 'nosuch'" in bad.stderr


def test_a_draft_the_daemon_refuses_changes_nothing_and_is_kept(detached_lab, haproxy_cfg):
    before = haproxy_cfg.read_bytes()
    pid = service_info(detached_lab, "lb1", "haproxy")["pid"]
    res = edit("lb1", "haproxy", editor="sed -i 's/balance roundrobin/balance nonsense/'")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "`haproxy -c -f" in res.stderr and "refused it" in res.stderr and "balance only supports" in res.stderr
    assert "the running haproxy.cfg is unchanged" in res.stderr and "draft is kept" in res.stderr
    assert haproxy_cfg.read_bytes() == before and site_answers()
    assert Path(f"/proc/{pid}").exists()  # the same HAProxy master, never signalled
    assert "draft kept:" in weblab("config", "lb1").stdout
    # the next edit opens the kept draft: fix it there
    res = edit("lb1", "haproxy", editor="sed -i 's/balance nonsense/balance leastconn/'", check=True)
    assert "editing the draft kept from your last try" in res.stdout
    assert "checked (haproxy -c" in res.stdout and "SIGUSR2 to HAProxy's master" in res.stdout
    assert "balance leastconn" in haproxy_cfg.read_text() and Path(f"/proc/{pid}").exists()  # reloaded, not restarted
    assert "haproxy@lb1: up" in weblab("status").stdout and "[config edited: haproxy.cfg]" in weblab("status").stdout
    assert "draft kept" not in weblab("config", "lb1").stdout
    assert site_answers()


def test_an_editor_that_fails_or_changes_nothing_installs_nothing(detached_lab, haproxy_cfg):
    before = haproxy_cfg.read_bytes()
    res = edit("lb1", "haproxy", editor="false")
    assert res.returncode == 1 and "nothing installed" in res.stdout and haproxy_cfg.read_bytes() == before
    res = edit("lb1", "haproxy", editor="true")
    assert res.returncode == 0 and "no change" in res.stdout
    assert "draft kept" not in weblab("config", "lb1").stdout


def test_reload_after_an_edit_by_other_means_checks_first(detached_lab, haproxy_cfg):
    text = haproxy_cfg.read_text()
    haproxy_cfg.write_text(text + "# a comment added by hand\n")
    out = weblab("reload", "lb1", "haproxy").stdout
    assert "checked (haproxy -c" in out and "edited: haproxy.cfg" in out
    haproxy_cfg.write_text(text.replace("balance roundrobin", "balance sideways"))
    res = weblab("reload", "lb1", "haproxy", check=False)
    assert res.returncode == 2 and "nothing was reloaded" in res.stderr and site_answers()


def test_a_replica_restarts_for_my_cnf_and_keeps_replicating(detached_lab):
    old_pid = service_info(detached_lab, "server2", "mariadb")["pid"]
    res = edit("server2", "mariadb", editor="sed -i 's/^max_connections = .*/max_connections = 200/'", check=True)
    assert "MariaDB restarts" in res.stdout and "this replica reconnects to its primary" in res.stdout
    assert "mariadb@server2: up" in weblab("status").stdout  # the state follows the new process
    assert not Path(f"/proc/{old_pid}").exists()
    assert "200" in weblab("sql", "server2", "SELECT @@max_connections").stdout
    weblab("sql", "server1", "INSERT INTO foobar.items (name) VALUES ('after-restart')")
    from weblab.core.wait import wait_for
    wait_for(lambda: "after-restart" in weblab("sql", "server2", "SELECT name FROM foobar.items").stdout, 10,
             "the row on the restarted replica")
    bad = edit("server2", "mariadb", editor="sed -i 's/^max_connections/max_conections/'")
    assert bad.returncode == 2 and "[ERROR]" in bad.stderr and "unknown variable" in bad.stderr
    assert "200" in weblab("sql", "server2", "SELECT @@max_connections").stdout


def test_check_refuses_a_lab_of_another_design(detached_lab):
    res = weblab("check", "dns-cname", check=False)
    assert res.returncode == 2 and "is for one-server --scenario www-unreachable" in res.stderr
    assert "the running lab is distributed" in res.stderr
