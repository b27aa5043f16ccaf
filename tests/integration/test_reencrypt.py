"""Re-encrypting to the backends: the password is on neither link; backends verified by the lab CA."""
from __future__ import annotations

from tests.integration.conftest import in_host
from tests.integration.test_secured import PASSWORD, login_captured

DESIGN = "secured"
UP_ARGS = ["--param", "tls=reencrypt", "--param", "monitoring=false"]


def test_reencrypt_hides_the_password_on_both_links(detached_lab, tmp_path):
    client_side = login_captured(detached_lab, "client-link", tmp_path)
    backend_side = login_captured(detached_lab, "lb-back", tmp_path)
    assert len(client_side) > 1000 and len(backend_side) > 1000
    assert PASSWORD.encode() not in client_side
    assert PASSWORD.encode() not in backend_side
    # TLS on the backend link: the backends answer on 443 with a certificate the lab CA issued.
    res = in_host("lb1", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}",
                  "--resolve", "server1.foobar.com:443:10.0.1.11", "https://server1.foobar.com/health")
    assert res.stdout == "200 0"
