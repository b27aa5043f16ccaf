"""Design 4 — scaled up: a load-balancer cluster behind one virtual IP, and separate web, app and
database tiers, each on its own hosts so each scales and fails on its own.

                            VIP 10.0.0.9 (VRRP)
    client --s1 (front)-- lb1, lb2 (HAProxy + keepalived) --s2 (back)-- web1..N (nginx)
    mail ---+ (Postfix: MX of foobar.com)
                                                                    +-- app1..M (gunicorn)
                                                                    +-- db1 (primary), db2 (replica)
                                                                    +-- monitor (Prometheus, failover manager)

Writes go to db-primary.foobar.com, a DNS name the failover manager moves to the promoted replica;
semi-synchronous replication makes every acknowledged write survive the primary's loss.
"""
from __future__ import annotations

from typing import Any

from topologies.base import (ATTACKER, ATTACKER_HOST, MAX_SERVERS, SERVER_COUNTS, SPARE_ROLE, Cert, LabTopo, Param,
                             Ref, RuleSpec, attacker_param, footprint, https_params, mail_params,
                             nginx_design_options, spare_param, static_param,
                             tls_hardening)
from topologies.distributed import BACK, FRONT
from topologies.secured import add_monitoring

VIP = FRONT.ip(9)
# The back network's address plan: lb1 .10, lb2 .20, web .21-.36, db .41-.43, monitor .50, app .61-.76
WEB_BASE, DB_BASE, APP_BASE = 20, 40, 60
APP_PORT = 8000


class Scaled(LabTopo):
    """No single point of failure in the path: two load balancers, N web, M app, 2 database servers."""

    design = "scaled"
    summary = "VRRP pair of HAProxy load balancers, separate web/app/db tiers, DB writer failover"
    params = {
        "web": Param(2, "web servers (nginx)", SERVER_COUNTS, int),
        "app": Param(2, "app servers (gunicorn)", SERVER_COUNTS, int),
        "algorithm": Param("roundrobin", "HAProxy balance algorithm", ("roundrobin", "leastconn", "source")),
        "retries": Param(True, "retries + redispatch on connection failure", kind=bool),
        "check_inter": Param(500, "HAProxy health-check interval, ms", kind=int),
        "check_fall": Param(2, "failed checks before a server is DOWN", kind=int),
        "vrrp_advert": Param(0.1, "VRRP advertisement interval, s (takeover ~3x this)", kind=float),
        "db_failover": Param(True, "run the failover manager (promote db2 when db1 dies)", kind=bool),
        "monitoring": Param(True, "Prometheus on monitor + exporters on every server", kind=bool),
        "qps_alert": Param(50.0, "QPS above which the HighQPS alert fires", kind=float),
        "attacker": attacker_param(),
        "spare": spare_param(),
        "static": static_param(),
        **https_params(),
        **mail_params(True),
    }

    def build(self, **p: Any) -> None:
        self.firewall = True
        self.pki = True
        self.arp_inspection = p["arp_inspection"]
        s1, s2 = self.addSwitch("s1"), self.addSwitch("s2")
        self.add_node("client", "client", s1, FRONT.ip(100))
        self.add_node("dns", "dns", s1, FRONT.ip(2))
        self.add_leg("dns", s2, BACK.ip(2))
        lbs = ["lb1", "lb2"]
        for i, lb in enumerate(lbs, start=1):
            self.add_node(lb, "lb", s1, FRONT.ip(10 * i), link=f"{lb}-front", vips=(VIP,))
            self.add_leg(lb, s2, BACK.ip(10 * i), link=f"{lb}-back")
        web = [f"web{i}" for i in range(1, p["web"] + 1)]
        app = [f"app{i}" for i in range(1, p["app"] + 1)]
        for i, name in enumerate(web, start=1):
            self.add_node(name, "web", s2, BACK.ip(WEB_BASE + i))
        if p["web"] + p["spare"] > MAX_SERVERS:  # spares take the web addresses after the web servers'
            raise ValueError(f"{self.design}: web + spare must be <= {MAX_SERVERS}")
        spares = [f"web{i}" for i in range(p["web"] + 1, p["web"] + p["spare"] + 1)]
        for i, name in enumerate(spares, start=p["web"] + 1):
            self.add_node(name, SPARE_ROLE, s2, BACK.ip(WEB_BASE + i))
        for i, name in enumerate(app, start=1):
            self.add_node(name, "app", s2, BACK.ip(APP_BASE + i))
        self.add_node("db1", "db", s2, BACK.ip(DB_BASE + 1))
        self.add_node("db2", "db", s2, BACK.ip(DB_BASE + 2))
        self.add_node("monitor", "monitor", s2, BACK.ip(50))
        if p["mail"]:
            self.add_mail(s1, FRONT)
        if p["attacker"] != "none":
            switch, net = {"front": (s1, FRONT), "back": (s2, BACK)}[p["attacker"]]
            self.add_node(ATTACKER, ATTACKER, switch, net.ip(ATTACKER_HOST))
        self.entry, self.entry_address = "lb1", VIP

        self.add_dns("dns", extra_a={"db-primary": BACK.ip(DB_BASE + 1), "db-replica": BACK.ip(DB_BASE + 2)},
                     allow_update=[BACK.ip(50)])
        self.add_service("db1", "mariadb", server_id=1, binlog=True, semi_sync="primary")
        self.add_service("db2", "mariadb", server_id=2, binlog=True, read_only=True, semi_sync="replica",
                         replicate_from=Ref("db1"), after=["mariadb@db1"])
        for name in app:
            self.add_service(name, "webapp", bind=f"0.0.0.0:{APP_PORT}", server_name=name,
                             workers=footprint(len(app))["app_workers"],
                             db_read=f"db-replica.{self.zone}:3306", db_write=f"db-primary.{self.zone}:3306",
                             after=["dns@dns"])  # it finds the databases by name
        for name in web:
            self.add_service(name, "nginx", server_name=name, **nginx_design_options(p), app=[f"{BACK.ip(APP_BASE + i)}:{APP_PORT}"
                                                                   for i in range(1, len(app) + 1)])
        for name in spares:  # a spare web server: configured now, started by `weblab lb add`
            self.add_service(name, "nginx", server_name=name, standby=True, **nginx_design_options(p),
                             app=[f"{BACK.ip(APP_BASE + i)}:{APP_PORT}" for i in range(1, len(app) + 1)])
        servers = [{"name": n, "address": Ref(n), "port": 80, "backup": False} for n in web]
        for i, lb in enumerate(lbs):
            self.add_service(lb, "haproxy", algorithm=p["algorithm"], inter=p["check_inter"],
                             fall=p["check_fall"], rise=2, retries=3 if p["retries"] else 0, servers=servers,
                             tls_cert=Cert("site", (f"www.{self.zone}", self.zone)), **tls_hardening(p),
                             after=[f"nginx@{n}" for n in web] + [f"webapp@{n}" for n in app])
        for i, lb in enumerate(lbs):
            self.add_service(lb, "keepalived", vip=VIP, interface=f"{lb}-eth0", src_ip=FRONT.ip(10 * (i + 1)),
                             peers=[FRONT.ip(10 * (2 - i))], state="MASTER" if i == 0 else "BACKUP",
                             priority=150 if i == 0 else 100, advert_int=p["vrrp_advert"],
                             after=[f"haproxy@{lb}"])  # it tracks the local HAProxy
        if p["db_failover"]:
            self.add_service("monitor", "dbfailover", primary=BACK.ip(DB_BASE + 1), replicas=[BACK.ip(DB_BASE + 2)],
                             dns_server=BACK.ip(2), zone=self.zone,
                             after=["mariadb@db1", "mariadb@db2", "dns@dns"])
        if p["monitoring"]:
            add_monitoring(self, "monitor", exporters={**{n: ["node", "nginx"] for n in web},
                                                       **{n: ["node"] for n in app},
                                                       "db1": ["node", "mysqld"], "db2": ["node", "mysqld"],
                                                       "lb1": ["node"], "lb2": ["node"]},
                           haproxy=lbs, qps_alert=p["qps_alert"])

        self.rules += [
            RuleSpec("vip-http", "any", f"{VIP}/32", "tcp", 80),
            RuleSpec("vip-https", "any", f"{VIP}/32", "tcp", 443),
            RuleSpec("vrrp", "role:lb", "role:lb", "vrrp"),
            RuleSpec("lb-to-web", "role:lb", "role:web", "tcp", 80),
            RuleSpec("web-to-app", "role:web", "role:app", "tcp", APP_PORT),
            RuleSpec("app-to-db", "role:app", "role:db", "tcp", 3306),
            RuleSpec("db-replication", "role:db", "role:db", "tcp", 3306),
            RuleSpec("failover-to-db", "monitor", "role:db", "tcp", 3306),
        ]


topos = {"scaled": Scaled}
