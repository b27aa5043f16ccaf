"""`weblab lb add|remove` on real labs: a spare built at `up` joins every load balancer's pool live
(HAProxy's runtime API), serves, is drained and removed; the firewall follows; bad input changes nothing."""
from __future__ import annotations

import pytest

from tests.integration.conftest import in_host, service_info, weblab

DESIGN = "scaled"   # two load balancers and the firewall on: both must follow
UP_ARGS = ["--param", "spare=1", "--param", "monitoring=false", "--param", "db_failover=false"]


def pool(lb: str) -> list[str]:
    lines = weblab("lb", "show", "--lb", lb).stdout.splitlines()[1:]
    return sorted(line.split()[0] for line in lines if line.strip())


def served_by(n: int = 12) -> set[str]:
    seen = set()
    for _ in range(n):
        res = in_host("client", "curl", "-s", "-o", "/dev/null", "-D", "-", "--max-time", "3",
                      "https://www.foobar.com/")
        seen |= {line.split(":", 1)[1].strip() for line in res.stdout.splitlines()
                 if line.lower().startswith("x-backend-server:")}
    return seen


def test_a_spare_joins_every_pool_serves_and_leaves_drained(detached_lab):
    assert pool("lb1") == pool("lb2") == ["web1", "web2"]
    assert "web3" not in served_by()
    assert service_info(detached_lab, "web3", "nginx").get("pid") is None  # built stopped

    bad = weblab("lb", "add", "web1", check=False)
    assert bad.returncode != 0 and "already in the pool" in bad.stderr and bad.stderr.count("\n") == 1
    bad = weblab("lb", "remove", "web3", check=False)
    assert bad.returncode != 0 and "not in the pool" in bad.stderr
    assert weblab("lb", "add", "nosuch", check=False).returncode != 0
    assert pool("lb1") == ["web1", "web2"]

    out = weblab("lb", "add", "web3", timeout=120).stdout
    assert "web3: added to the pool of lb1, lb2" in out and "lb-to-web:web3" in out
    assert pool("lb1") == pool("lb2") == ["web1", "web2", "web3"]
    assert "web3" in served_by()
    rules = weblab("firewall", "show").stdout
    assert "lb-to-web:web3" in rules and "web-to-app:web3" in rules
    assert "nginx@web3: up" in weblab("status").stdout

    out = weblab("lb", "remove", "web3", timeout=120).stdout
    assert "web3: removed from the pool of lb1, lb2" in out
    assert pool("lb1") == pool("lb2") == ["web1", "web2"]
    assert "web3" not in served_by()
    assert "lb-to-web:web3" not in weblab("firewall", "show").stdout


@pytest.mark.parametrize("server", ["web3"])
def test_a_removed_spare_can_join_again(detached_lab, server):
    weblab("lb", "add", server, timeout=120)
    assert server in served_by()
    weblab("lb", "remove", server, timeout=120)
    assert pool("lb1") == ["web1", "web2"]
