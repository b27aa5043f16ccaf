"""Scenarios: a design with one realistic fault, for students to find and fix (`weblab up DESIGN
--scenario NAME`). Pure data like the designs: each scenario changes a built design's declarations
(a service option, a firewall rule, a certificate) and nothing else.

A broken lab must still come up: a scenario also says what readiness may not wait for (the
HAProxy servers it breaks, replication it breaks, the client's first page load), and exactly that.
Names and symptoms say what a user sees, never the cause (`weblab list` prints them).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from topologies.base import Cert, LabTopo, Ref

WRONG_WWW = "10.0.0.21"  # an address of the front network that no host of any design has


@dataclass(frozen=True)
class Scenario:
    """One fault: its name, the designs it applies to, what a user sees, and the change itself."""

    name: str
    designs: tuple[str, ...]
    symptom: str
    change: Callable[[LabTopo], None]

    def apply(self, topo: LabTopo) -> None:
        """Change topo's declarations; ValueError if this design cannot have this fault."""
        if topo.design not in self.designs:
            raise ValueError(f"scenario {self.name} is for {', '.join(self.designs)}, not {topo.design} "
                             f"(see: weblab list)")
        try:
            self.change(topo)
        except ValueError as e:
            raise ValueError(f"scenario {self.name}: {e}") from None


# --- what scenarios change ------------------------------------------------------------------------
def spec(topo: LabTopo, host: str, kind: str):
    """The declaration of kind on host, or a ValueError saying the design has none."""
    found = topo.service_spec(host, kind)
    if found is None:
        raise ValueError(f"{topo.design} has no {kind} on {host} (too few servers? see: weblab list)")
    return found


def set_options(topo: LabTopo, host: str, kind: str, **changes: Any) -> None:
    """Replace options of one declared service (the others stay as the design set them)."""
    old = spec(topo, host, kind)
    topo.services[topo.services.index(old)] = replace(old, options={**old.options, **changes})


def drop_rule(topo: LabTopo, rule_id: str) -> None:
    """Remove one firewall rule of the design."""
    if not any(r.id == rule_id for r in topo.rules):
        raise ValueError(f"{topo.design} has no firewall rule {rule_id}")
    topo.rules = [r for r in topo.rules if r.id != rule_id]


def kind_on(topo: LabTopo, kind: str) -> str:
    """The host the design runs its (first) service of kind on."""
    return next(s.host for s in topo.services if s.kind == kind)


# --- the faults -------------------------------------------------------------------------------------
def www_a_record(topo: LabTopo) -> None:
    """www is an A record to an old address instead of a CNAME of the apex."""
    dns = spec(topo, kind_on(topo, "dns"), "dns")
    cnames = {k: v for k, v in dns.options["cnames"].items() if k != "www"}
    set_options(topo, dns.host, "dns", cnames=cnames, extra_a={**dns.options.get("extra_a", {}), "www": WRONG_WWW})
    topo.wait_entry = False


def nginx_app_port(topo: LabTopo) -> None:
    """nginx proxies to a port the app server does not listen on."""
    set_options(topo, "server1", "nginx", app="127.0.0.1:8001")
    topo.wait_entry = False


def backend_port(topo: LabTopo) -> None:
    """HAProxy sends server2's traffic to a port nothing listens on: its checks fail, it is DOWN."""
    lb = spec(topo, "lb1", "haproxy")
    servers = [dict(s) for s in lb.options["servers"]]
    if len(servers) < 2:
        raise ValueError("this scenario needs at least 2 servers (--param servers=2)")
    servers[1]["port"] = int(servers[1]["port"]) + 8000  # 80 -> 8080, 443 -> 8443
    set_options(topo, "lb1", "haproxy", servers=servers, ready_without=[servers[1]["name"]])


def health_check_path(topo: LabTopo) -> None:
    """HAProxy's health check asks for a page the application does not have (404)."""
    lb = spec(topo, "lb1", "haproxy")
    set_options(topo, "lb1", "haproxy", check_path="/healthz",
                ready_without=[s["name"] for s in lb.options["servers"]])
    topo.wait_entry = False


def replica_wrong_primary(topo: LabTopo) -> None:
    """server2 replicates from the load balancer's back address (one digit off the primary's)."""
    spec(topo, "server2", "mariadb")
    set_options(topo, "server2", "mariadb", replicate_from=Ref("lb1", on="server2"),
                ready_without_replication=True)


def no_https_rule(topo: LabTopo) -> None:
    """The firewall lost the rule that lets clients reach HTTPS on the load balancer."""
    drop_rule(topo, "lb-https")
    topo.wait_entry = False


def wrong_certificate(topo: LabTopo) -> None:
    """HAProxy serves an old certificate issued for foobar.com only; the right one lies beside it."""
    set_options(topo, "lb1", "haproxy", tls_cert=Cert("old-site", (topo.zone,)))
    topo.certs.append(Cert("site", (f"www.{topo.zone}", topo.zone)))
    topo.wait_entry = False


def exporter_blocked(topo: LabTopo) -> None:
    """The firewall lost the rule that lets Prometheus scrape server2's nginx exporter."""
    if topo.service_spec("monitor", "prometheus") is None:
        raise ValueError("this scenario needs monitoring (--param monitoring=true)")
    drop_rule(topo, "monitor-nginx-server2")
    set_options(topo, "monitor", "prometheus", wait_targets=False)


def vrrp_weight(topo: LabTopo) -> None:
    """A failing HAProxy check lowers lb1's priority by 20 only: 150 - 20 is still above lb2's 100."""
    for lb in ("lb1", "lb2"):
        set_options(topo, lb, "keepalived", track_weight=-20)


def db_primary_record(topo: LabTopo) -> None:
    """db-primary.foobar.com points at the read-only replica."""
    dns = spec(topo, "dns", "dns")
    extra = dict(dns.options["extra_a"])
    extra["db-primary"] = extra["db-replica"]
    set_options(topo, "dns", "dns", extra_a=extra)


def web_app_port(topo: LabTopo) -> None:
    """web2's nginx proxies to a port the app servers do not listen on: HAProxy marks web2 DOWN."""
    nginx = spec(topo, "web2", "nginx")
    set_options(topo, "web2", "nginx", app=[a.rsplit(":", 1)[0] + ":8001" for a in nginx.options["app"]])
    for lb in ("lb1", "lb2"):
        set_options(topo, lb, "haproxy", ready_without=["web2"])


ALL = ("one-server", "distributed", "secured", "scaled")
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("www-unreachable", ALL,
             "the site loads as foobar.com but not as www.foobar.com", www_a_record),
    Scenario("bad-gateway", ("one-server",),
             "static files load, every page answers 502 Bad Gateway", nginx_app_port),
    Scenario("one-server-only", ("distributed", "secured"),
             "every page is served by server1; server2 never gets a request", backend_port),
    Scenario("service-unavailable", ("distributed", "secured"),
             "the site answers 503 Service Unavailable though every server's nginx and app answer",
             health_check_path),
    Scenario("stale-replica", ("distributed", "secured"),
             "items added on the site never appear in server2's database", replica_wrong_primary),
    Scenario("https-timeout", ("secured",),
             "https://www.foobar.com/ times out; http:// only redirects to it", no_https_rule),
    Scenario("certificate-error", ("secured",),
             "clients refuse https://www.foobar.com/ with a certificate error; https://foobar.com/ works",
             wrong_certificate),
    Scenario("missing-metrics", ("secured",),
             "Prometheus shows server2's nginx as down while server2 serves pages", exporter_blocked),
    Scenario("no-failover", ("scaled",),
             "when HAProxy on lb1 stops the site stays down, though lb2 is healthy", vrrp_weight),
    Scenario("writes-fail", ("scaled",),
             "pages load, but adding an item answers HTTP 500", db_primary_record),
    Scenario("idle-web-server", ("scaled",),
             "web2 never serves a request though its nginx runs", web_app_port),
)}


def get(name: str) -> Scenario:
    """The scenario by name, or a ValueError listing the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))} "
                         f"(see: weblab list)") from None


def for_design(design: str) -> list[Scenario]:
    """The scenarios a design can start with."""
    return [s for s in SCENARIOS.values() if design in s.designs]
