"""Design 3 — secured and monitored: the distributed design with a firewall per server, HTTPS for
www.foobar.com, and monitoring (Prometheus on `monitor`, exporters on every server).

    client --s1 (front)-- lb1 (HAProxy: TLS on 443, HTTP -> HTTPS) --s2 (back)-- server1..3
                                                                          +-- monitor (Prometheus)

TLS variants: `terminate` (default: TLS ends at lb1, plain HTTP on the back network) and
`reencrypt` (TLS again from lb1 to nginx on every server, verified against the lab CA). The HTTPS
entry point sends HSTS and offers AEAD suites only (`--param hsts=false`, `tls_ciphers=legacy`
undo that); the controller inspects ARP (`--param arp_inspection=false` turns it off).

Beside the exporters, monitoring watches the servers agentlessly (`--param agentless=false` leaves it
out): HAProxy's own Prometheus endpoint (the API), snmpd on each server polled by the SNMP exporter on
monitor, and each Nginx's access log sent as syslog to rsyslog on monitor, where mtail counts it.
"""
from __future__ import annotations

from typing import Any

from topologies.base import CAFile, Cert, Param, Port, Ref, RuleSpec, https_params, tls_hardening
from topologies.distributed import BACK, Distributed

# the exporter kinds of monitoring: job name -> the hostapp kind that serves it
EXPORTERS = {"node": "node_exporter", "nginx": "nginx_exporter", "mysqld": "mysqld_exporter"}
HAPROXY_METRICS = Port("haproxy", "stats_port")  # HAProxy's own Prometheus endpoint


def add_monitoring(topo, monitor: str, exporters: dict[str, list[str]], haproxy: list[str],
                   qps_alert: float, extra_targets: list[dict] = (), extra_after: list[str] = ()) -> None:
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
    topo.add_service(monitor, "prometheus", targets=targets + list(extra_targets), qps_alert_threshold=qps_alert,
                     after=[f"{EXPORTERS[k]}@{h}" for h, kinds in exporters.items() for k in kinds]
                     + [f"haproxy@{h}" for h in haproxy] + list(extra_after))


SYSLOG_PORT = 5140  # where the monitor's log collector receives the web servers' access logs (UDP)


def add_agentless(topo, monitor: str, servers: list[str]) -> None:
    """Agentless sources on monitor for servers (the load balancer's API is scraped by add_monitoring):
    SNMP (snmpd on each server, polled by the SNMP exporter on monitor) and log analysis (each Nginx sends
    its access log as syslog to rsyslog on monitor, mtail turns it into metrics); Prometheus scrapes both.
    The firewall gets exactly those flows: UDP 161 from monitor to each server, syslog from each to monitor."""
    for host in servers:
        topo.add_service(host, "snmpd", address=Ref(host), pollers=[Ref(monitor, on=host)])
        topo.rules.append(RuleSpec(f"monitor-snmp-{host}", monitor, host, "udp", Port("snmpd")))
        topo.rules.append(RuleSpec(f"syslog-{host}", host, monitor, "udp", SYSLOG_PORT))
    topo.add_service(monitor, "snmp_exporter")
    topo.add_service(monitor, "rsyslog", address=Ref(monitor), port=SYSLOG_PORT)
    topo.add_service(monitor, "mtail", after=[f"rsyslog@{monitor}"])


def agentless_targets(monitor: str, servers: list[str]) -> list[dict]:
    """Prometheus' targets for add_agentless: each server's SNMP agent, and mtail on monitor."""
    return ([{"job": "snmp", "host": h, "address": Ref(h, on=monitor), "port": Port("snmpd")} for h in servers]
            + [{"job": "mtail", "host": monitor, "address": "127.0.0.1", "port": Port("mtail")}])


class Secured(Distributed):
    """Firewall on, HTTPS at the load balancer, Prometheus watching QPS."""

    design = "secured"
    summary = "distributed + firewall per server, HTTPS (terminate|reencrypt), Prometheus monitoring"
    params = {
        **Distributed.params,
        "tls": Param("terminate", "where TLS ends", ("terminate", "reencrypt")),
        "monitoring": Param(True, "Prometheus on monitor + exporters on every server", kind=bool),
        "qps_alert": Param(50.0, "QPS above which the HighQPS alert fires", kind=float),
        "agentless": Param(True, "with monitoring: also SNMP (snmpd on every server) and log analysis (Nginx "
                           "syslog to rsyslog + mtail on monitor)", kind=bool),
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

    @property
    def agentless(self) -> bool:
        return self.p["monitoring"] and self.p["agentless"]

    def nginx_options(self, name: str) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.agentless:  # its access log, as syslog, to the monitor's collector
            opts.update(syslog_host=Ref("monitor", on=name), syslog_port=SYSLOG_PORT)
        if self.reencrypt:
            opts["tls_cert"] = Cert(name, (f"{name}.{self.zone}",), host=name)
        return opts

    def lb_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"tls_cert": Cert("site", (f"www.{self.zone}", self.zone)), **tls_hardening(self.p)}
        if self.reencrypt:
            opts.update(backend_tls=True, ca_file=CAFile())
        return opts

    def backend_port(self) -> int:
        return 443 if self.reencrypt else 80

    def add_extra_services(self) -> None:
        if self.p["monitoring"]:
            if self.agentless:
                add_agentless(self, "monitor", self.web)
            add_monitoring(self, "monitor", exporters={**{n: ["node", "nginx", "mysqld"] for n in self.web},
                                                       "lb1": ["node"]},
                           haproxy=["lb1"], qps_alert=self.p["qps_alert"],
                           extra_targets=agentless_targets("monitor", self.web) if self.agentless else [],
                           extra_after=[f"snmpd@{h}" for h in self.web] + ["snmp_exporter@monitor", "mtail@monitor"]
                           if self.agentless else [])


topos = {"secured": Secured}
