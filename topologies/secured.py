"""Design 3 — secured and monitored: the distributed design with a firewall per server, HTTPS for
www.foobar.com, and monitoring (Prometheus on `monitor`, exporters on every server).

    client --s1 (front)-- lb1 (HAProxy: TLS on 443, HTTP -> HTTPS) --s2 (back)-- server1..3
                                                                          +-- monitor (Prometheus)

TLS variants: `terminate` (default: TLS ends at lb1, plain HTTP on the back network) and
`reencrypt` (TLS again from lb1 to nginx on every server, verified against the lab CA).
"""
from __future__ import annotations

from typing import Any

from topologies.base import CAFile, Cert, Param, Ref, Rule
from topologies.distributed import BACK, Distributed

EXPORTER_PORTS = {"node_exporter": 9100, "nginx_exporter": 9113, "mysqld_exporter": 9104}


class Secured(Distributed):
    """Firewall on, HTTPS at the load balancer, Prometheus watching QPS."""

    design = "secured"
    summary = "distributed + firewall per server, HTTPS (terminate|reencrypt), Prometheus monitoring"
    params = {
        **Distributed.params,
        "tls": Param("terminate", "where TLS ends", ("terminate", "reencrypt")),
        "monitoring": Param(True, "Prometheus on monitor + exporters on every server", kind=bool),
        "qps_alert": Param(50.0, "QPS above which the HighQPS alert fires", kind=float),
    }

    def build(self, **p: Any) -> None:
        self.firewall = True
        self.pki = True
        super().build(**p)
        if p["monitoring"]:
            self.rules += [Rule(f"monitor-{kind}", "monitor", "role:web", "tcp", port)
                           for kind, port in EXPORTER_PORTS.items()]
            self.rules += [Rule("monitor-haproxy", "monitor", "lb1", "tcp", 8404),
                           Rule("monitor-lb-node", "monitor", "lb1", "tcp", 9100)]

    @property
    def reencrypt(self) -> bool:
        return self.p["tls"] == "reencrypt"

    def add_extra_hosts(self, front_switch: str, back_switch: str) -> None:
        if self.p["monitoring"]:
            self.add_node("monitor", "monitor", back_switch, BACK.ip(50))

    def nginx_options(self, name: str) -> dict[str, Any]:
        if not self.reencrypt:
            return {}
        return {"tls_cert": Cert(name, (f"{name}.foobar.com",), host=name)}

    def lb_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"tls_cert": Cert("site", ("www.foobar.com", "foobar.com"))}
        if self.reencrypt:
            opts.update(backend_tls=True, ca_file=CAFile())
        return opts

    def backend_port(self) -> int:
        return 443 if self.reencrypt else 80

    def add_extra_services(self) -> None:
        if not self.p["monitoring"]:
            return
        targets = []
        for name in self.web:
            for kind, port in EXPORTER_PORTS.items():
                self.add_service(name, kind)
                targets.append({"job": kind.removesuffix("_exporter"), "host": name,
                                "address": Ref(name), "port": port})
        self.add_service("lb1", "node_exporter")
        targets.append({"job": "node", "host": "lb1", "address": Ref("lb1", on="monitor"), "port": 9100})
        targets.append({"job": "haproxy", "host": "lb1", "address": Ref("lb1", on="monitor"), "port": 8404})
        self.add_service("monitor", "prometheus", targets=targets, qps_alert_threshold=self.p["qps_alert"])


topos = {"secured": Secured}
