"""A 16-server lab: up, every server answers through the load balancer, down, nothing left."""
from __future__ import annotations

import json
import time

from tests.integration.conftest import in_host, served_by
from tests.integration.test_distributed import sql

DESIGN = "distributed"
UP_ARGS = ["--param", "servers=16", "--timeout", "300"]


def test_every_one_of_16_servers_answers_through_the_load_balancer(detached_lab):
    servers = [f"server{i}" for i in range(1, 17)]
    assert sorted(h for h in detached_lab["hosts"] if h.startswith("server")) == sorted(servers)
    seen = served_by(n=48)  # round robin: each server three times
    assert sorted(set(seen)) == sorted(servers), f"answered by {sorted(set(seen))}"
    assert len(seen) == 48


def test_the_last_replica_holds_a_write_made_on_the_primary(detached_lab):
    res = in_host("client", "curl", "-s", "--max-time", "5", "-d", "name=big-lab-item",
                  "http://www.foobar.com/api/items")
    new_id = json.loads(res.stdout)["id"]
    deadline = time.monotonic() + 10
    while sql(detached_lab, "server16", f"SELECT name FROM foobar.items WHERE id={new_id}") != "big-lab-item":
        assert time.monotonic() < deadline, "the write never reached server16"
        time.sleep(0.1)
