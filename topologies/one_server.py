"""Design 1 — one server: Nginx, the app server and MariaDB on one host; www CNAME foobar.com.

    client ---+
              |
    dns ------s1------ server1 (nginx :80 -> gunicorn 127.0.0.1:8000 -> mariadb 127.0.0.1:3306)
              |
    mail -----+        (Postfix for @foobar.com, with --param mail=true)
"""
from __future__ import annotations

from topologies.base import LabTopo, RuleSpec, Subnet, cache_params, mail_params, nginx_design_options, static_param


class OneServer(LabTopo):
    """Every tier on one host: the simplest design and its single points of failure."""

    design = "one-server"
    summary = "Nginx + app server + MariaDB on one host behind foobar.com (www CNAME)"
    params = {**mail_params(False), "static": static_param(), **cache_params()}

    def build(self, **p) -> None:
        lan = Subnet("10.0.0.0/24")
        s1 = self.addSwitch("s1")
        self.add_node("client", "client", s1, lan.ip(100))
        self.add_node("dns", "dns", s1, lan.ip(2))
        self.add_node("server1", "server", s1, lan.ip(11))
        self.entry = "server1"
        if p["mail"]:
            self.add_mail(s1, lan)

        self.add_dns("dns")
        self.add_service("server1", "mariadb")
        self.add_service("server1", "webapp", server_name="server1")
        self.add_service("server1", "nginx", server_name="server1", **nginx_design_options(p))

        self.rules += [
            RuleSpec("web-http", "any", "server1", "tcp", 80),
            RuleSpec("web-https", "any", "server1", "tcp", 443),
        ]


topos = {"one-server": OneServer}
