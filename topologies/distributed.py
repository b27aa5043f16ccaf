"""Design 2 — distributed: an HAProxy load balancer in front of two servers, MariaDB primary-replica.

    client --+                          +-- server1 (nginx, app, MariaDB primary)
             |                          |
    dns -----s1 (front) --- lb1 --- s2 (back) -- server2 (nginx, app, MariaDB replica)
      \\______|________________________/ |
       (dns has| a leg on both networks)  +-- server3 (with --param servers=3)
    mail ----+   (Postfix, the MX of foobar.com: on the client's network only)

Client traffic crosses lb1's front link, backend traffic its back link: each can be captured alone.
`--param attacker=front` adds an attacker host on the client network, `attacker=back` a rogue host
on the back network (for the attacks of C22-C24); neither is in a lab unless asked for.
"""
from __future__ import annotations

from typing import Any

from topologies.base import (ATTACKER, ATTACKER_HOST, MAX_SERVERS, SERVER_COUNTS, SPARE_ROLE, LabTopo, Param, Ref,
                             RuleSpec, Subnet, attacker_param, cache_params, footprint, mail_params,
                             nginx_design_options, spare_param, static_param)

FRONT, BACK = Subnet("10.0.0.0/24"), Subnet("10.0.1.0/24")


class Distributed(LabTopo):
    """Two (1..16) servers behind HAProxy; the app writes to the primary, reads locally."""

    design = "distributed"
    summary = "HAProxy in front of 2 servers (nginx + app + MariaDB primary/replica)"
    params = {
        "servers": Param(2, "number of web servers behind the load balancer", SERVER_COUNTS, int),
        "algorithm": Param("roundrobin", "HAProxy balance algorithm", ("roundrobin", "leastconn", "source")),
        "mode": Param("active-active", "active-passive keeps every server but server1 as backup",
                      ("active-active", "active-passive")),
        "retries": Param(True, "retries + redispatch to another server on connection failure", kind=bool),
        "check_inter": Param(1000, "health-check interval, ms", kind=int),
        "check_fall": Param(3, "failed checks before a server is DOWN", kind=int),
        "check_rise": Param(2, "passed checks before a server is UP again", kind=int),
        "attacker": attacker_param(),
        **mail_params(True),
        "spare": spare_param(),
        "static": static_param(),
        **cache_params(),
    }

    def build(self, **p: Any) -> None:
        self.p = p
        s1, s2 = self.addSwitch("s1"), self.addSwitch("s2")
        self.add_node("client", "client", s1, FRONT.ip(100))
        self.add_node("dns", "dns", s1, FRONT.ip(2))
        self.add_leg("dns", s2, BACK.ip(2))
        # The load balancer's two links: what the client sees, and what the backends see.
        self.add_node("lb1", "lb", s1, FRONT.ip(10), link="lb-front")
        self.add_leg("lb1", s2, BACK.ip(10), link="lb-back")
        self.web = [f"server{i}" for i in range(1, p["servers"] + 1)]
        for i, name in enumerate(self.web, start=1):
            self.add_node(name, "web", s2, BACK.ip(10 + i))
        if len(self.web) + p["spare"] > MAX_SERVERS:
            raise ValueError(f"{self.design}: servers + spare must be <= {MAX_SERVERS}")
        # Spares: built now, services stopped, known to the firewall; `weblab lb add` starts them.
        self.spares = [f"server{i}" for i in range(len(self.web) + 1, len(self.web) + p["spare"] + 1)]
        for i, name in enumerate(self.spares, start=len(self.web) + 1):
            self.add_node(name, SPARE_ROLE, s2, BACK.ip(10 + i))
        self.entry = "lb1"
        if p["mail"]:
            self.add_mail(s1, FRONT)
        self.add_extra_hosts(s1, s2)
        if p["attacker"] != "none":  # known to the firewall as a host, allowed nothing but ARP, ICMP, DNS
            switch, net = {"front": (s1, FRONT), "back": (s2, BACK)}[p["attacker"]]
            self.add_node(ATTACKER, ATTACKER, switch, net.ip(ATTACKER_HOST))

        self.add_dns("dns")
        primary = self.web[0]
        lean = footprint(len(self.web))
        for i, name in enumerate(self.web, start=1):
            replica = name != primary
            self.add_service(name, "mariadb", server_id=i, binlog=True, read_only=replica,
                             buffer_pool_mb=lean["buffer_pool_mb"],
                             replicate_from=Ref(primary) if replica else "",
                             after=[f"mariadb@{primary}"] if replica else [])
        for name in self.web:
            self.add_service(name, "webapp", server_name=name, db_write=Ref(primary), workers=lean["app_workers"])
            self.add_service(name, "nginx", server_name=name, **nginx_design_options(p), **self.nginx_options(name))
        self.add_service("lb1", "haproxy", algorithm=p["algorithm"], inter=p["check_inter"],
                         fall=p["check_fall"], rise=p["check_rise"], retries=3 if p["retries"] else 0,
                         servers=[{"name": n, "address": Ref(n), "port": self.backend_port(),
                                   "backup": p["mode"] == "active-passive" and n != primary}
                                  for n in self.web],
                         # its health checks pass once each backend's nginx and app answer
                         after=[f"{k}@{n}" for n in self.web for k in ("webapp", "nginx")],
                         **self.lb_options())
        self.add_extra_services()
        for i, name in enumerate(self.spares, start=len(self.web) + 1):  # as the servers, but standby
            self.add_service(name, "mariadb", server_id=i, binlog=True, read_only=True, standby=True,
                             buffer_pool_mb=lean["buffer_pool_mb"], replicate_from=Ref(primary),
                             after=[f"mariadb@{primary}"])
            self.add_service(name, "webapp", server_name=name, db_write=Ref(primary), workers=lean["app_workers"],
                             standby=True)
            self.add_service(name, "nginx", server_name=name, standby=True, **nginx_design_options(p),
                             **self.nginx_options(name))

        self.rules += [
            RuleSpec("lb-http", "any", "lb1", "tcp", 80),
            RuleSpec("lb-https", "any", "lb1", "tcp", 443),
            RuleSpec("lb-to-web", "lb1", "role:web", "tcp", self.backend_port()),
            RuleSpec("app-to-primary-db", "role:web", primary, "tcp", 3306),
        ]

    # Hooks for designs that build on this one (secured, ...).
    def add_extra_hosts(self, front_switch: str, back_switch: str) -> None:
        """More hosts, before services are declared."""

    def add_extra_services(self) -> None:
        """More services, started after the load balancer."""

    def nginx_options(self, name: str) -> dict[str, Any]:
        return {}

    def lb_options(self) -> dict[str, Any]:
        return {}

    def backend_port(self) -> int:
        return 80


topos = {"distributed": Distributed}
