"""The HTTPS entry point: HSTS and AEAD-only suites by default in the designs with TLS, legacy on request."""
import shutil
import subprocess

import pytest

from hostapps.haproxy import AEAD_CIPHERS, HAProxy
from hostapps.base import HostHandle
from topologies import get
from topologies.base import HSTS_MAX_AGE
from weblab.core.errors import WeblabError

SERVERS = [{"name": "server1", "address": "10.0.1.11", "port": 80, "backup": False}]


def cert(tmp_path):
    pem = tmp_path / "site.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(tmp_path / "k"), "-out", str(tmp_path / "c"), "-days", "1",
                    "-subj", "/CN=www.foobar.com"], check=True, capture_output=True)
    pem.write_text((tmp_path / "c").read_text() + (tmp_path / "k").read_text())
    return str(pem)


def rendered(tmp_path, **opts) -> str:
    svc = HAProxy(HostHandle("lb1", pid=1, ips=["10.0.0.10"]), tmp_path, servers=SERVERS, **opts)
    svc.render()
    if shutil.which("haproxy") and opts.get("tls_cert"):
        res = subprocess.run(svc.check_argv(), capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    return svc.conf.read_text()


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl absent")
def test_hsts_and_aead_only_when_asked(tmp_path):
    cfg = rendered(tmp_path, tls_cert=cert(tmp_path), hsts_max_age=HSTS_MAX_AGE)
    assert f'Strict-Transport-Security "max-age={HSTS_MAX_AGE}" if {{ ssl_fc }}' in cfg
    assert f"ssl-default-bind-ciphers {AEAD_CIPHERS}" in cfg and "ssl-min-ver TLSv1.2" in cfg
    assert "CBC" not in AEAD_CIPHERS and all(("GCM" in c or "CHACHA20" in c) for c in AEAD_CIPHERS.split(":"))
    legacy = rendered(tmp_path, tls_cert=cert(tmp_path), tls_ciphers="legacy")
    assert "ssl-default-bind-ciphers " not in legacy and "Strict-Transport-Security" not in legacy
    assert "ssl-default-bind" not in rendered(tmp_path)  # plain HTTP: no TLS settings at all
    with pytest.raises(WeblabError, match="tls_ciphers"):
        HAProxy(HostHandle("lb1", pid=1, ips=[]), tmp_path, servers=SERVERS, tls_ciphers="export")


@pytest.mark.parametrize("design", ["secured", "scaled"])
def test_designs_with_tls_send_hsts_offer_aead_and_inspect_arp_by_default(design):
    topo = get(design)()
    lbs = [s for s in topo.services if s.kind == "haproxy"]
    assert lbs and all(s.options["hsts_max_age"] == HSTS_MAX_AGE and s.options["tls_ciphers"] == "aead"
                       for s in lbs)
    assert topo.policy_document({"haproxy": {"stats_port": 8404}, **_defaults()})["arp_inspection"] is True
    off = get(design)(hsts=False, tls_ciphers="legacy", arp_inspection=False)
    assert all(s.options["hsts_max_age"] == 0 and s.options["tls_ciphers"] == "legacy"
               for s in off.services if s.kind == "haproxy")
    assert off.arp_inspection is False


def _defaults():
    from hostapps import registry
    return {kind: cls.defaults for kind, cls in registry().items()}


@pytest.mark.parametrize("design,position,switch,ip", [
    ("distributed", "front", "s1", "10.0.0.200"), ("secured", "back", "s2", "10.0.1.200"),
    ("scaled", "front", "s1", "10.0.0.200")])
def test_attacker_positions_are_ordinary_hosts_with_no_rules_of_their_own(design, position, switch, ip):
    assert "attacker" not in get(design)().hosts()  # never in a lab unless asked for
    topo = get(design)(attacker=position)
    assert topo.role("attacker") == "attacker" and topo.addresses_of("attacker") == [ip]
    assert topo.legs("attacker")[0]["switch"] == switch
    doc = topo.policy_document(_defaults())
    assert any(h["name"] == "attacker" for h in doc["hosts"])
    assert not [r for r in doc["rules"] if "attacker" in (r["src"], r["dst"])]
    assert {r["id"] for r in doc["rules"] if r["dst"] == "any" or r["dst"] == "role:dns"} >= {"arp", "icmp"}
    assert not any(s.host == "attacker" for s in topo.services)
