"""Design 2 — distributed: an HAProxy load balancer in front of two servers, MariaDB primary-replica.

    client --+                          +-- server1 (nginx, app, MariaDB primary)
             |                          |
    dns -----s1 (front) --- lb1 --- s2 (back) -- server2 (nginx, app, MariaDB replica)
      \\_______________________________/ |
       (dns has a leg on both networks)  +-- server3 (with --param servers=3)

Client traffic crosses lb1's front link, backend traffic its back link: each can be captured alone.
"""
from __future__ import annotations

from topologies.base import LabTopo, Param, Ref, Rule, Subnet


class Distributed(LabTopo):
    """Two (1..3) servers behind HAProxy; the app writes to the primary, reads locally."""

    design = "distributed"
    summary = "HAProxy in front of 2 servers (nginx + app + MariaDB primary/replica)"
    params = {
        "servers": Param(2, "number of web servers behind the load balancer", (1, 2, 3), int),
        "algorithm": Param("roundrobin", "HAProxy balance algorithm", ("roundrobin", "leastconn", "source")),
        "mode": Param("active-active", "active-passive keeps every server but server1 as backup",
                      ("active-active", "active-passive")),
        "retries": Param(True, "retries + redispatch to another server on connection failure", kind=bool),
        "check_inter": Param(1000, "health-check interval, ms", kind=int),
        "check_fall": Param(3, "failed checks before a server is DOWN", kind=int),
        "check_rise": Param(2, "passed checks before a server is UP again", kind=int),
    }

    def build(self, servers: int = 2, algorithm: str = "roundrobin", mode: str = "active-active",
              retries: bool = True, check_inter: int = 1000, check_fall: int = 3,
              check_rise: int = 2) -> None:
        front, back = Subnet("10.0.0.0/24"), Subnet("10.0.1.0/24")
        s1, s2 = self.addSwitch("s1"), self.addSwitch("s2")
        self.add_node("client", "client", s1, front.ip(100))
        self.add_node("dns", "dns", s1, front.ip(2))
        self.add_leg("dns", s2, back.ip(2))
        self.add_node("lb1", "lb", s1, front.ip(10))
        self.add_leg("lb1", s2, back.ip(10))
        names = [f"server{i}" for i in range(1, servers + 1)]
        for i, name in enumerate(names, start=1):
            self.add_node(name, "web", s2, back.ip(10 + i))
        self.entry = "lb1"
        primary = names[0]

        self.add_dns("dns")
        for i, name in enumerate(names, start=1):
            replica = name != primary
            self.add_service(name, "mariadb", server_id=i, binlog=True, read_only=replica,
                             replicate_from=Ref(primary) if replica else "")
        for name in names:
            self.add_service(name, "webapp", server_name=name, db_write=Ref(primary))
            self.add_service(name, "nginx", server_name=name)
        self.add_service("lb1", "haproxy", algorithm=algorithm, inter=check_inter, fall=check_fall,
                         rise=check_rise, retries=3 if retries else 0,
                         servers=[{"name": n, "address": Ref(n), "port": 80,
                                   "backup": mode == "active-passive" and n != primary} for n in names])

        self.rules += [
            Rule("lb-http", "any", "lb1", "tcp", 80),
            Rule("lb-https", "any", "lb1", "tcp", 443),
            Rule("lb-to-web", "lb1", "role:web", "tcp", 80),
            Rule("app-to-primary-db", "role:web", primary, "tcp", 3306),
        ]


topos = {"distributed": Distributed}
