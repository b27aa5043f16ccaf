"""The per-run CA: a real chain that openssl verifies, with the names the site needs."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from weblab.pki import LabCA

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl (Debian package openssl)")


def test_site_certificate_chains_to_the_lab_ca_with_both_names(tmp_path):
    ca = LabCA(tmp_path, "run-x").create()
    pem = ca.issue("site", ["www.foobar.com", "foobar.com"])
    crt = tmp_path / "site.crt"
    ok = subprocess.run(["openssl", "verify", "-CAfile", str(ca.cert), str(crt)], capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    text = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-text"], capture_output=True,
                          text=True).stdout
    assert "DNS:www.foobar.com, DNS:foobar.com" in text and "TLS Web Server Authentication" in text
    assert "BEGIN PRIVATE KEY" in pem.read_text() and oct(pem.stat().st_mode)[-3:] == "600"
    assert ca.bundle.read_text().endswith(ca.cert.read_text())


def test_a_certificate_from_another_ca_does_not_verify(tmp_path):
    ours = LabCA(tmp_path / "a", "a").create()
    other = LabCA(tmp_path / "b", "b").create()
    other.issue("site", ["www.foobar.com"])
    res = subprocess.run(["openssl", "verify", "-CAfile", str(ours.cert), str(tmp_path / "b" / "site.crt")],
                         capture_output=True, text=True)
    assert res.returncode != 0


def test_backend_certificate_carries_its_ip(tmp_path):
    ca = LabCA(tmp_path, "r").create()
    ca.issue("server1", ["server1.foobar.com"], ["10.0.1.11"])
    text = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "server1.crt"), "-noout", "-ext",
                           "subjectAltName"], capture_output=True, text=True).stdout
    assert "DNS:server1.foobar.com" in text and "IP Address:10.0.1.11" in text
