"""Configs rendered by the hostapps: content, and the daemons' own checkers where installed."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from hostapps.base import HostHandle
from hostapps.dns import Dns
from hostapps.mariadb import MariaDB
from hostapps.nginx import Nginx
from weblab.core.errors import WeblabError


def handle(name="server1", ips=("10.0.0.11",)):
    return HostHandle(name, pid=1, ips=list(ips))


@pytest.fixture
def dns(tmp_path):
    svc = Dns(handle("dns", ["10.0.0.2"]), tmp_path, apex="10.0.0.11",
              a_records={"server1": "10.0.0.11", "client": "10.0.0.100"})
    svc.dir.mkdir(exist_ok=True)
    svc.render()
    return svc


def test_zone_has_apex_a_and_www_cname(dns):
    zone = dns.zonefile.read_text()
    lines = [l.split() for l in zone.splitlines() if l and not l.startswith(";")]
    assert ["@", "IN", "A", "10.0.0.11"] in lines
    assert ["www", "IN", "CNAME", "foobar.com."] in lines
    assert ["server1", "IN", "A", "10.0.0.11"] in lines
    assert ["ns1", "IN", "A", "10.0.0.2"] in lines
    assert "$TTL 60" in zone


def test_named_conf_is_authoritative_only(dns):
    conf = dns.conf.read_text()
    assert "recursion no;" in conf and f'file "{dns.zonefile}"' in conf and 'controls {' in conf and '"weblab-rndc"' in conf


@pytest.mark.skipif(shutil.which("named-checkzone") is None, reason="needs named-checkzone (bind9-utils)")
def test_zone_passes_named_checkzone(dns):
    res = subprocess.run(["named-checkzone", "foobar.com", str(dns.zonefile)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
    assert "loaded serial" in res.stdout


@pytest.mark.skipif(shutil.which("named-checkconf") is None, reason="needs named-checkconf (bind9-utils)")
def test_named_conf_passes_named_checkconf(dns):
    res = subprocess.run(["named-checkconf", str(dns.conf)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_nginx_conf_proxies_to_app_and_serves_static(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "chown", lambda *a, **k: None)
    svc = Nginx(handle(), tmp_path, app="127.0.0.1:8000", server_name="server1")
    svc.render()
    conf = svc.conf.read_text()
    assert "server 127.0.0.1:8000 max_fails=1 fail_timeout=2s;" in conf
    assert f"alias {tmp_path}/static/;" in conf and (tmp_path / "static" / "hello.txt").exists()
    assert "listen 80 default_server;" in conf and "stub_status;" in conf
    assert f"pid {tmp_path}/nginx.pid;" in conf
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{temp}_temp_path {tmp_path}/tmp/{temp};" in conf
    assert svc.argv()[-2:] == ["-g", "daemon off;"]


def test_mariadb_cnf_per_run_paths_and_replication_switches(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "chown", lambda *a, **k: None)
    svc = MariaDB(handle(), tmp_path, server_id=2, binlog=True, read_only=True)
    svc.render()
    cnf = (tmp_path / "my.cnf").read_text()
    for line in (f"datadir = {tmp_path}/data", f"socket = {tmp_path}/mysqld.sock", "port = 3306",
                 "server-id = 2", f"log-bin = {tmp_path}/data/binlog", "read_only = ON", "user = mysql",
                 "skip-name-resolve"):
        assert line in cnf
    plain = MariaDB(handle(), tmp_path / "p")
    plain.dir.mkdir()
    plain.render()
    assert "log-bin" not in (plain.dir / "my.cnf").read_text()


def test_unknown_service_option_is_an_early_error(tmp_path):
    with pytest.raises(WeblabError, match=r"nginx on server1: unknown option\(s\) \['listen'\]"):
        Nginx(handle(), tmp_path, listen=8080)


def test_host_handle_runs_inside_the_namespace_and_joins_cgroup():
    h = HostHandle("server1", pid=4242, ips=["10.0.0.11"], cgroup="/sys/fs/cgroup/cpu/x")
    assert h.argv(["true"]) == ["mnexec", "-a", "4242", "true"]


def test_haproxy_cfg_balances_checks_and_marks_backup(tmp_path):
    from hostapps.haproxy import HAProxy
    svc = HAProxy(handle("lb1"), tmp_path, algorithm="leastconn", inter=200, fall=2, rise=1, retries=3,
                  servers=[{"name": "server1", "address": "10.0.1.11", "port": 80, "backup": False},
                           {"name": "server2", "address": "10.0.1.12", "port": 80, "backup": True}])
    svc.render()
    cfg = svc.conf.read_text()
    for line in ("balance leastconn", "default-server check inter 200 fall 2 rise 1", "retries 3",
                 "option redispatch", "server server1 10.0.1.11:80\n", "server server2 10.0.1.12:80 backup",
                 f"stats socket {tmp_path}/admin.sock", "use-service prometheus-exporter",
                 "option httpchk GET /health"):
        assert line in cfg, line
    if shutil.which("haproxy"):
        res = subprocess.run(svc.check_argv(), capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


def test_haproxy_rejects_unknown_algorithm(tmp_path):
    from hostapps.haproxy import HAProxy
    with pytest.raises(WeblabError, match="algorithm 'random-ish' is not one of"):
        HAProxy(handle("lb1"), tmp_path, algorithm="random-ish", servers=[{"name": "s"}])


def test_parse_haproxy_show_stat():
    from hostapps.haproxy import parse_stat
    csv = ("# pxname,svname,qcur,scur,stot,status\n"
           "web,FRONTEND,,3,100,OPEN\nservers,server1,0,2,60,UP\nservers,server2,0,0,40,DOWN 1/2\n"
           "servers,BACKEND,0,2,100,UP\n")
    stats = parse_stat(csv)
    assert set(stats) == {"server1", "server2"}
    assert stats["server1"]["stot"] == "60" and stats["server2"]["status"] == "DOWN 1/2"


def test_nginx_static_app_proxies_static_files_to_the_app(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "chown", lambda *a, **k: None)
    svc = Nginx(handle(), tmp_path, server_name="server1", static="app")
    svc.render()
    conf = svc.conf.read_text()
    static = conf.split("location /static/ {", 1)[1].split("}", 1)[0]
    assert "proxy_pass http://app;" in static and "alias" not in static
    assert "proxy_cache" not in conf  # cache off by default


def test_nginx_cache_on_caches_the_db_pages_with_a_ttl_in_the_run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "chown", lambda *a, **k: None)
    svc = Nginx(handle(), tmp_path, server_name="server1", cache=True, cache_ttl=3)
    svc.render()
    conf = svc.conf.read_text()
    assert f"proxy_cache_path {tmp_path}/cache " in conf and (tmp_path / "cache").is_dir()
    cached = conf.split("location ~ ^/(api/items)?$ {", 1)[1].split("}", 1)[0]
    assert "proxy_cache pages;" in cached and "proxy_cache_valid 200 3s;" in cached
    assert "add_header X-Cache-Status $upstream_cache_status always;" in cached
    # add_header in a location drops the server's: the backend's name must be repeated there
    assert "add_header X-Web-Server server1 always;" in cached and "proxy_no_cache $cookie_session;" in cached
    assert f"alias {tmp_path}/static/;" in conf  # static offload is independent of the cache


@pytest.mark.parametrize("opts,match", [({"static": "disk"}, "static='disk' must be one of nginx, app"),
                                        ({"cache_ttl": 0}, "cache_ttl=0 must be whole seconds"),
                                        ({"cache_ttl": "2"}, "cache_ttl='2' must be whole seconds")])
def test_nginx_refuses_bad_static_and_cache_options(tmp_path, monkeypatch, opts, match):
    monkeypatch.setattr(shutil, "chown", lambda *a, **k: None)
    with pytest.raises(WeblabError, match=re.escape(match)):
        Nginx(handle(), tmp_path, **opts).render()


@pytest.mark.skipif(shutil.which("nginx") is None or os.geteuid() != 0, reason="needs nginx and root")
def test_nginx_accepts_the_cache_and_static_app_config(tmp_path):
    svc = Nginx(handle(), tmp_path, server_name="server1", static="app", cache=True, cache_ttl=1)
    svc.render()
    res = subprocess.run([*svc.base_argv(), "-t", "-g", "daemon off;"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_nginx_balances_a_separate_app_tier(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "chown", lambda *a, **k: None)
    svc = Nginx(handle("web1"), tmp_path, app=["10.0.1.31:8000", "10.0.1.32:8000"])
    svc.render()
    conf = svc.conf.read_text()
    assert "server 10.0.1.31:8000 " in conf and "server 10.0.1.32:8000 " in conf


def test_semi_sync_primary_and_replica(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "chown", lambda *a, **k: None)
    MariaDB(handle(), tmp_path, binlog=True, semi_sync="primary").render()
    cnf = (tmp_path / "my.cnf").read_text()
    assert "rpl_semi_sync_master_enabled = ON" in cnf and "rpl_semi_sync_master_wait_point = AFTER_SYNC" in cnf
    (tmp_path / "r").mkdir()
    MariaDB(handle(), tmp_path / "r", semi_sync="replica").render()
    assert "rpl_semi_sync_slave_enabled = ON" in (tmp_path / "r" / "my.cnf").read_text()


def test_keepalived_check_script_asks_haproxy_over_http_without_curl(tmp_path):
    import http.server
    import threading
    from hostapps.keepalived import check_script

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200 if self.path == "/alive" else 503)
            self.end_headers()

        def log_message(self, *a):
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        for path, want in (("/alive", 0), ("/down", 1)):
            script = tmp_path / f"check{want}.sh"
            script.write_text(check_script(port, path))
            script.chmod(0o755)
            assert "curl" not in script.read_text()
            assert subprocess.run([str(script)], timeout=10).returncode == want, path
    finally:
        server.shutdown()
        server.server_close()
    assert subprocess.run([str(tmp_path / "check0.sh")], timeout=10, stderr=subprocess.DEVNULL).returncode == 1  # nobody listens
