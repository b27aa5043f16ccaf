"""Version detection (weblab.core.versions) on the real outputs of Debian 12 and 13, and what depends on it:
the nginx exporter's flags per release, and doctor's version and distribution lines."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hostapps import exporters
from hostapps.base import HostHandle
from weblab import doctor
from weblab.core import versions

# `X --version` (or -v) as printed on Debian 12 (bookworm) and Debian 13 (trixie), first lines.
OUTPUTS = {
    "nginx": ("nginx version: nginx/1.22.1", "nginx version: nginx/1.26.3"),
    "haproxy": ("HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\nStatus: long-term supported",
                "HAProxy version 3.0.11-1+deb13u5 2026/11/18 - https://haproxy.org/"),
    "mariadbd": ("mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)",
                 "mariadbd  Ver 11.8.9-MariaDB-0+deb13u1 from Debian for debian-linux-gnu on x86_64"),
    "named": ("BIND 9.18.49-1~deb12u3-Debian (Extended Support Version) <id:>",
              "BIND 9.20.30-1~deb13u1-Debian (Stable Release) <id:>"),
    "keepalived": ("Keepalived v2.2.7 (01/16,2022)\n\nCopyright(C) 2001-2022 Alexandre Cassen",
                   "Keepalived v2.3.3 (03/30,2025)"),
    "prometheus": ("prometheus, version 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5+deb12u1)",
                   "prometheus, version 2.53.3+ds1 (branch: debian/sid, revision: 2.53.3+ds1-2)"),
    "prometheus-node-exporter": ("node_exporter, version 1.5.0 (branch: debian/sid, revision: 1.5.0-1+b6)",
                                 "node_exporter, version 1.9.0 (branch: debian/sid, revision: 1.9.0-1+b4)"),
    "prometheus-nginx-exporter": (
        "NGINX Prometheus Exporter version=0.11.0-1+b4 commit= date=, dirty=false, arch=linux/amd64, go=go1.19.8",
        "nginx_exporter, version 1.4.1 (branch: debian/sid, revision: 1.4.1-1+b5)"),
    "prometheus-mysqld-exporter": ("mysqld_exporter, version 0.14.0 (branch: debian/sid, revision: 0.14.0-3+b5)",
                                   "mysqld_exporter, version 0.17.2 (branch: debian/sid, revision: 0.17.2-1+b4)"),
    "prometheus-snmp-exporter": ("snmp_exporter, version 0.21.0 (branch: debian/sid, revision: 0.21.0-1+b5)",
                                 "snmp_exporter, version 0.28.0 (branch: debian/sid, revision: 0.28.0-1+b5)"),
    "ovs-vswitchd": ("ovs-vswitchd (Open vSwitch) 3.1.0", "ovs-vswitchd (Open vSwitch) 3.5.0"),
}


def test_every_probe_has_real_outputs_and_tried_releases():
    assert set(OUTPUTS) == set(versions.PROBES) == set(versions.TRIED)


@pytest.mark.parametrize("program", sorted(OUTPUTS))
def test_outputs_of_both_releases_parse_to_the_tried_versions(program):
    old, new = OUTPUTS[program]
    oldest, newest = versions.TRIED[program]
    assert versions.from_output(program, old) == versions.parse(oldest)
    assert versions.from_output(program, new) == versions.parse(newest)
    assert versions.parse(oldest) < versions.parse(newest)


def test_unrelated_output_is_no_version():
    assert versions.from_output("nginx", "bash: nginx: command not found") is None
    assert versions.from_output("haproxy", "nginx version: nginx/1.22.1") is None


def test_parse_show_and_compare():
    assert versions.parse("2.6.12") == (2, 6, 12)
    assert versions.show((11, 8, 9)) == "11.8.9"
    assert versions.parse("0.11.0") < (1, 0) <= versions.parse("1.4.1")
    assert versions.parse("10.11.19") < versions.parse("11.8.9")  # numbers, not strings
    for bad in ("", "1", "1.x", "v1.2", "1.2 "):
        with pytest.raises(ValueError):
            versions.parse(bad)
    assert versions.at_least("haproxy", "2.8", version=(3, 0, 11)) is True
    assert versions.at_least("haproxy", "2.8", version=(2, 6, 12)) is False


def test_of_runs_the_program_once(monkeypatch):
    calls = []

    def fake_run(argv, **kw):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "nginx version: nginx/1.26.3\n")
    versions.of.cache_clear()
    monkeypatch.setattr(versions.subprocess, "run", fake_run)
    try:
        assert versions.of("nginx") == (1, 26, 3) and versions.of("nginx") == (1, 26, 3)
        assert calls == [["nginx", "-v"]]
    finally:
        versions.of.cache_clear()


def test_of_an_absent_program_is_none(monkeypatch):
    def absent(argv, **kw):
        raise FileNotFoundError(argv[0])
    versions.of.cache_clear()
    monkeypatch.setattr(versions.subprocess, "run", absent)
    try:
        assert versions.of("haproxy") is None and versions.at_least("haproxy", "2.6") is None
    finally:
        versions.of.cache_clear()
    with pytest.raises(KeyError):
        versions.of("no-such-daemon")


def test_distribution_reads_os_release(tmp_path):
    (tmp_path / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\n'
                                         'VERSION_ID="13"\n# a comment\nID=debian\n')
    fields = versions.distribution(tmp_path / "os-release")
    assert fields["ID"] == "debian" and fields["VERSION_ID"] == "13"
    assert fields["PRETTY_NAME"] == "Debian GNU/Linux 13 (trixie)"
    assert versions.distribution(tmp_path / "absent") == {}


# -- the nginx exporter's command line per release ------------------------------------------------

def test_nginx_exporter_0_11_keeps_its_retries():
    argv = exporters.nginx_exporter_argv("http://127.0.0.1/nginx_status", "0.0.0.0:9113", (0, 11, 0))
    assert argv == ["prometheus-nginx-exporter", "-nginx.scrape-uri", "http://127.0.0.1/nginx_status",
                    "-web.listen-address", "0.0.0.0:9113", "-nginx.retries", "5", "-nginx.retry-interval", "1s"]


@pytest.mark.parametrize("version", [(1, 0, 0), (1, 4, 1), None])
def test_nginx_exporter_1_x_has_long_flags_and_no_retries(version):
    argv = exporters.nginx_exporter_argv("http://127.0.0.1/nginx_status", "10.0.1.11:9113", version)
    assert argv == ["prometheus-nginx-exporter", "--nginx.scrape-uri=http://127.0.0.1/nginx_status",
                    "--web.listen-address=10.0.1.11:9113"]
    assert not any("retr" in a for a in argv)  # Debian 13: "unknown long flag '--nginx.retries'"


def test_nginx_exporter_service_asks_the_machine(monkeypatch, tmp_path):
    host = HostHandle("server1", 1, ["10.0.1.11"])
    svc = exporters.NginxExporter(host, tmp_path)
    monkeypatch.setattr(versions, "of", lambda program: (1, 4, 1) if program == "prometheus-nginx-exporter" else None)
    assert "--web.listen-address=0.0.0.0:9113" in svc.argv()
    monkeypatch.setattr(versions, "of", lambda program: (0, 11, 0))
    assert "-nginx.retries" in svc.argv()


# -- doctor's lines -----------------------------------------------------------------------------------

def test_doctor_version_lines():
    assert doctor.check_version("haproxy", (2, 6, 12)).line() == "[ ok ] version haproxy: 2.6.12 (tried)"
    assert doctor.check_version("haproxy", (3, 0, 11)).detail == "3.0.11 (tried)"
    between = doctor.check_version("haproxy", (2, 8, 5))
    assert between.ok and between.detail == "2.8.5 (between the releases tried, 2.6.12 and 3.0.11)"
    newer = doctor.check_version("haproxy", (3, 2, 0))
    assert newer.ok and "newer than 3.0.11" in newer.detail
    older = doctor.check_version("haproxy", (2, 4, 22))
    assert older.status == "warn" and "older than 2.6.12" in older.detail
    unknown = doctor.check_version("nginx", None)
    assert unknown.status == "warn" and "nginx -v" in unknown.detail


@pytest.mark.parametrize("os_id,version_id,status", [("debian", "12", "ok"), ("debian", "13", "ok"),
                                                     ("ubuntu", "24.04", "warn"), ("ubuntu", "22.04", "warn"),
                                                     ("fedora", "41", "warn")])
def test_doctor_distribution_line(os_id, version_id, status):
    c = doctor.check_distribution({"ID": os_id, "VERSION_ID": version_id, "PRETTY_NAME": f"{os_id} {version_id}"})
    assert c.status == status and c.detail.startswith(f"{os_id} {version_id}")
    if os_id == "ubuntu" and version_id == "24.04":
        assert "expected to work" in c.detail
    assert doctor.check_distribution({}).status == "warn"


def test_tried_versions_are_the_readme_s(request):
    """The README's table of tried releases and TRIED say the same."""
    readme = (Path(request.config.rootpath) / "README.md").read_text()
    for program, (oldest, newest) in versions.TRIED.items():
        assert oldest in readme and newest in readme, program
