"""Design 3 — secured and monitored: the distributed design with a firewall per server, HTTPS for
www.foobar.com, and monitoring (Prometheus on `monitor`, exporters on every server).

    client --s1 (front)-- lb1 (HAProxy: TLS on 443, HTTP -> HTTPS) --s2 (back)-- server1..3
                                                                          +-- monitor (Prometheus)

TLS variants: `terminate` (default: TLS ends at lb1, plain HTTP on the back network) and
`reencrypt` (TLS again from lb1 to nginx on every server, verified against the lab CA). The HTTPS
entry point sends HSTS and offers AEAD suites only (`--param hsts=false`, `tls_ciphers=legacy`
undo that); the controller inspects ARP (`--param arp_inspection=false` turns it off).
"""
from __future__ import annotations

from typing import Any

from topologies.base import CAFile, Cert, Param, Port, Ref, RuleSpec, https_params, tls_hardening
from topologies.distributed import BACK, Distributed

# the exporter kinds of monitoring: job name -> the hostapp kind that serves it
EXPORTERS = {"node": "node_exporter", "nginx": "nginx_exporter", "mysqld": "mysqld_exporter"}
HAPROXY_METRICS = Port("haproxy", "stats_port")  # HAProxy's own Prometheus endpoint


def add_monitoring(topo, monitor: str, exporters: dict[str, list[str]], haproxy: list[str],
                   qps_alert: float) -> None:
    """Exporters on hosts, Prometheus on monitor scraping them, and the firewall rules for exactly that."""
    targets = []
    watched = {"nginx": "nginx", "mysqld": "mariadb"}  # what an exporter reads must answer first
    for host, kinds in exporters.items():
        for kind in kinds:
            topo.add_service(host, EXPORTERS[kind], after=[f"{watched[kind]}@{host}"] if kind in watched else [])
            targets.append({"job": kind, "host": host, "address": Ref(host, on=monitor),
                            "port": Port(EXPORTERS[kind])})
            topo.rules.append(RuleSpec(f"monitor-{kind}-{host}", monitor, host, "tcp", Port(EXPORTERS[kind])))
    for host in haproxy:
        targets.append({"job": "haproxy", "host": host, "address": Ref(host, on=monitor),
                        "port": HAPROXY_METRICS})
        topo.rules.append(RuleSpec(f"monitor-haproxy-{host}", monitor, host, "tcp", HAPROXY_METRICS))
    # ready once every target is scraped and up: after every exporter and HAProxy
    topo.add_service(monitor, "prometheus", targets=targets, qps_alert_threshold=qps_alert,
                     after=[f"{EXPORTERS[k]}@{h}" for h, kinds in exporters.items() for k in kinds]
                     + [f"haproxy@{h}" for h in haproxy])


class Secured(Distributed):
    """Firewall on, HTTPS at the load balancer, Prometheus watching QPS."""

    design = "secured"
    summary = "distributed + firewall per server, HTTPS (terminate|reencrypt), Prometheus monitoring"
    params = {
        **Distributed.params,
        "tls": Param("terminate", "where TLS ends", ("terminate", "reencrypt")),
        "monitoring": Param(True, "Prometheus on monitor + exporters on every server", kind=bool),
        "qps_alert": Param(50.0, "QPS above which the HighQPS alert fires", kind=float),
        **https_params(),
    }

    def build(self, **p: Any) -> None:
        self.firewall = True
        self.pki = True
        self.arp_inspection = p["arp_inspection"]
        super().build(**p)

    @property
    def reencrypt(self) -> bool:
        return self.p["tls"] == "reencrypt"

    def add_extra_hosts(self, front_switch: str, back_switch: str) -> None:
        if self.p["monitoring"]:
            self.add_node("monitor", "monitor", back_switch, BACK.ip(50))

    def nginx_options(self, name: str) -> dict[str, Any]:
        if not self.reencrypt:
            return {}
        return {"tls_cert": Cert(name, (f"{name}.{self.zone}",), host=name)}

    def lb_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"tls_cert": Cert("site", (f"www.{self.zone}", self.zone)), **tls_hardening(self.p)}
        if self.reencrypt:
            opts.update(backend_tls=True, ca_file=CAFile())
        return opts

    def backend_port(self) -> int:
        return 443 if self.reencrypt else 80

    def add_extra_services(self) -> None:
        if self.p["monitoring"]:
            add_monitoring(self, "monitor", exporters={**{n: ["node", "nginx", "mysqld"] for n in self.web},
                                                       "lb1": ["node"]},
                           haproxy=["lb1"], qps_alert=self.p["qps_alert"])


topos = {"secured": Secured}
