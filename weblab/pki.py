"""A certificate authority made per run: the site certificate for www.foobar.com and backend ones.

Keys and certificates are made with the openssl command line (what a course would show), under
the run directory; nothing is added to the machine's trust store. Hosts of the lab trust the CA
through a bundle bind-mounted inside each host's private mount namespace.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from weblab.core.errors import WeblabError

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _openssl(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise WeblabError(f"openssl {args[0]} failed: {res.stderr.strip()} (in {cwd})")


class LabCA:
    """The run's CA: ca.key/ca.crt, and leaf certificates it issues on request."""

    def __init__(self, directory: Path, run_id: str):
        self.dir = directory
        self.run_id = run_id

    @property
    def cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def bundle(self) -> Path:
        """The machine's trusted CAs plus the lab CA: what hosts of the lab trust."""
        return self.dir / "ca-bundle.crt"

    def create(self) -> "LabCA":
        """Make the CA key and self-signed certificate, and the trust bundle."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
                 "-subj", f"/O=weblab/CN=weblab lab CA {self.run_id}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        system = SYSTEM_BUNDLE.read_text() if SYSTEM_BUNDLE.exists() else ""
        self.bundle.write_text(system + self.cert.read_text())
        return self

    def issue(self, name: str, dns_names: list[str], ips: list[str] = ()) -> Path:
        """A key + certificate for dns_names (the first is the CN); returns the combined PEM path."""
        san = ",".join([f"DNS:{n}" for n in dns_names] + [f"IP:{ip}" for ip in ips])
        ext = self.dir / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/O=weblab/CN={dns_names[0]}",
                 cwd=self.dir)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name, cwd=self.dir)
        pem = self.dir / f"{name}.pem"
        pem.write_text((self.dir / f"{name}.crt").read_text() + (self.dir / f"{name}.key").read_text())
        pem.chmod(0o600)
        return pem
