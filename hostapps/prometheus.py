"""Prometheus: scrapes the lab's exporters, records QPS per server and in total, alerts on high QPS."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from hostapps.base import Service, render_template
from hostapps.snmp_exporter import MODULE as SNMP_MODULE, SnmpExporter, scrape_params
from weblab.core.errors import NotReady, WeblabError



def job_ports() -> dict[str, int]:
    """The jobs the recording rules know (templates/prometheus-rules.yml.j2), each with the port its
    target serves by default: read from that hostapp's defaults, the port's one home."""
    from hostapps.exporters import MysqldExporter, NginxExporter, NodeExporter
    from hostapps.haproxy import HAProxy
    from hostapps.mtail import Mtail
    from hostapps.snmpd import Snmpd
    return {"node": NodeExporter.defaults["port"], "nginx": NginxExporter.defaults["port"],
            "mysqld": MysqldExporter.defaults["port"], "haproxy": HAProxy.defaults["stats_port"],
            "prometheus": Prometheus.defaults["port"],
            # an snmp target is an SNMP agent (snmpd's port), polled through the SNMP exporter
            "snmp": Snmpd.defaults["port"], "mtail": Mtail.defaults["port"]}

# Recording rules and alert defined in templates/prometheus-rules.yml.j2 (a test keeps them in step).
# The rate window is an option, so the names do not carry it: experiments can rely on them.
QPS_PER_SERVER = "server:nginx_http_requests:rate"             # {server}: requests Nginx served
QPS_TOTAL_NGINX = "job:nginx_http_requests:rate"                # sum over web servers
QPS_PER_SERVER_LB = "server:haproxy_server_http_responses:rate"  # {server}: as the LBs count it
QPS_BACKEND_LB = "job:haproxy_backend_http_requests:rate"       # through the LBs' backends
QPS_FRONTEND_LB = "job:haproxy_frontend_http_requests:rate"     # client requests at the LBs
QPS_TOTAL = "lab:http_requests:rate"                            # the lab's QPS: LBs, else Nginx
ALERT = "HighQPS"

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """A Prometheus duration ("1s", "500ms", "1m30s") in seconds; WeblabError if malformed."""
    parts = _DURATION.findall(duration) if isinstance(duration, str) else []
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise WeblabError(f"{duration!r} is not a Prometheus duration (like 1s, 500ms, 1m30s)")
    return sum(int(n) * _UNIT[u] for n, u in parts)


class Prometheus(Service):
    """prometheus in the foreground with its TSDB, config and rules in the run directory."""

    kind = "prometheus"
    binaries = {"prometheus": "prometheus", "promtool": "prometheus"}
    ready_timeout = 30.0
    stop_timeout = 10.0
    defaults: dict[str, Any] = {"bind": "0.0.0.0", "port": 9090, "scrape_interval": "1s",
                                "evaluation_interval": "1s", "targets": [],
                                "qps_alert_threshold": 50.0, "qps_alert_for": "0s",
                                "rate_window": "5s", "retention": "1d", "wait_targets": False,
                                # where the SNMP exporter listens (on this host): every snmp target is asked through it
                                "snmp_exporter": "127.0.0.1:9116"}
    targets_timeout = 20.0

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.validate()

    def validate(self) -> None:
        """Reject options Prometheus would refuse or that would make the rules return nothing."""
        o = self.opts
        where = f"prometheus on {self.host.name}"
        try:
            durations = {k: seconds(o[k]) for k in ("scrape_interval", "evaluation_interval",
                                                    "rate_window", "qps_alert_for", "retention")}
        except WeblabError as e:
            raise WeblabError(f"{where}: {e}") from None
        # rate() needs two samples in its window; twice the interval still has them when one
        # scrape is late or lost.
        if durations["rate_window"] < 2 * durations["scrape_interval"]:
            raise WeblabError(f"{where}: rate_window {o['rate_window']} must be at least twice "
                              f"scrape_interval {o['scrape_interval']}")
        if not isinstance(o["qps_alert_threshold"], (int, float)) or o["qps_alert_threshold"] < 0:
            raise WeblabError(f"{where}: qps_alert_threshold must be a number >= 0, "
                              f"got {o['qps_alert_threshold']!r}")
        self.jobs()

    def jobs(self) -> dict[str, list[dict[str, str]]]:
        """Targets grouped by job, each {"host", "address" with port}; checks every target.

        A target is {"job", "host", "address": "ip" or "ip:port", optional "port"}.
        """
        where = f"prometheus on {self.host.name}"
        if not self.opts["targets"]:
            raise WeblabError(f"{where}: no scrape targets")
        jobs: dict[str, list[dict[str, str]]] = {}
        ports = job_ports()
        for t in self.opts["targets"]:
            job, host, address = t.get("job"), t.get("host"), str(t.get("address") or "")
            if job not in ports:
                raise WeblabError(f"{where}: target {t!r}: job must be one of {', '.join(ports)}")
            if not host or not address:
                raise WeblabError(f"{where}: target {t!r} needs a host and an address")
            if any(seen["host"] == host for seen in jobs.get(job, [])):
                # the same server twice would count its requests twice in every sum
                raise WeblabError(f"{where}: host {host} is listed twice for job {job}")
            if set(t) - {"job", "host", "address", "port"}:
                raise WeblabError(f"{where}: target {t!r}: keys are job, host, address and port")
            if ":" not in address:  # a bare IP (a resolved Ref): the given port, else the job's default
                address = f"{address}:{t.get('port') or ports[job]}"
            jobs.setdefault(job, []).append({"host": host, "address": address})
        return jobs

    @property
    def conf(self) -> Path:
        return self.dir / "prometheus.yml"

    @property
    def rules(self) -> Path:
        return self.dir / "prometheus-rules.yml"

    @property
    def datadir(self) -> Path:
        return self.dir / "data"

    @property
    def url(self) -> str:
        """Base URL from inside the host (loopback when bound to every address)."""
        addr = "127.0.0.1" if self.opts["bind"] in ("0.0.0.0", "") else self.opts["bind"]
        return f"http://{addr}:{self.opts['port']}"

    def render(self) -> None:
        o = self.opts
        self.conf.write_text(render_template(
            "prometheus.yml.j2", host=self.host.name, dir=self.dir, rules=str(self.rules),
            jobs=self.jobs(), scrape_interval=o["scrape_interval"], snmp_exporter=o["snmp_exporter"],
            snmp_module=SNMP_MODULE, snmp_params=scrape_params(SnmpExporter.version()),
            evaluation_interval=o["evaluation_interval"]))
        self.rules.write_text(render_template(
            "prometheus-rules.yml.j2", host=self.host.name, window=o["rate_window"],
            threshold=float(o["qps_alert_threshold"]), alert_for=o["qps_alert_for"]))

    def prepare(self) -> None:
        self.datadir.mkdir(exist_ok=True)

    def check_argv(self) -> list[str]:
        # promtool also checks the rule files the config names.
        return ["promtool", "check", "config", str(self.conf)]

    def argv(self) -> list[str]:
        return ["prometheus", f"--config.file={self.conf}", f"--storage.tsdb.path={self.datadir}",
                f"--storage.tsdb.retention.time={self.opts['retention']}",
                f"--web.listen-address={self.opts['bind']}:{self.opts['port']}",
                # lets reload() apply a new threshold without losing the series in memory
                "--web.enable-lifecycle"]

    def probe(self) -> bool:
        return self.http_ok(f"{self.url}/-/ready")

    def after_ready(self) -> None:
        # /-/ready answers before the first scrape: Prometheus 2.x's discovery manager hands targets to
        # the scrape loop only every 5 s, so waiting for them here would add ~5 s to every monitored
        # lab's bring-up. What needs scraped targets (C12, C25, tests) calls wait_targets() itself.
        if self.opts["wait_targets"]:
            self.wait_targets(self.targets_timeout)

    def wait_targets(self, timeout: float) -> None:
        """Wait (bounded) until every configured target is up; raise naming those that are not."""
        want = {(job, t["host"]) for job, targets in self.jobs().items() for t in targets}
        deadline = time.monotonic() + timeout
        while True:
            active = self.api("targets", state="active")["activeTargets"]
            bad = {(t["labels"]["job"], t["labels"].get("server", "")): t for t in active
                   if t["health"] != "up"}
            seen = {(t["labels"]["job"], t["labels"].get("server", "")) for t in active}
            missing = want - seen
            if not bad and not missing:
                return
            if time.monotonic() > deadline:
                why = [f"{job} on {host} ({t['scrapeUrl']}): {t['health']} {t['lastError']}".strip()
                       for (job, host), t in sorted(bad.items())]
                why += [f"{job} on {host}: not scraped yet" for job, host in sorted(missing)]
                raise NotReady(f"{self.name}: targets not up after {timeout:.0f} s (firewall? "
                               f"exporter down?):\n  " + "\n  ".join(why) + f"\n(log: {self.log})")
            time.sleep(0.5)

    # --- what experiments ask ------------------------------------------------------------------
    def config_files(self) -> list[Path]:
        return [self.conf, self.rules]

    def check_file_argv(self, path: Path, text_at: Path) -> list[list[str]]:
        if path == self.rules:
            return [["promtool", "check", "rules", str(text_at)]]
        return super().check_file_argv(path, text_at)

    def reload_effect(self) -> str:
        return ("POST /-/reload: Prometheus reads its configuration and rules again; the series it "
                "stored are kept, and alerts are evaluated with the new rules from the next evaluation")

    def reload(self) -> None:
        """Re-render (unless edited) and check the config from self.opts, then make the running
        server load it."""
        self.configure()
        self.apply_config()

    def apply_config(self) -> None:
        res = self.host.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                             "5", "-X", "POST", f"{self.url}/-/reload"], timeout=8)
        if res.stdout.strip() != "200":
            raise WeblabError(f"{self.name}: /-/reload answered {res.stdout.strip() or 'nothing'} "
                              f"(log: {self.log})")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path> from inside the host; the "data" of a successful answer."""
        argv = ["curl", "-s", "--max-time", "5", "--get", f"{self.url}/api/v1/{path}"]
        for k, v in params.items():
            argv += ["--data-urlencode", f"{k}={v}"]
        try:
            res = self.host.run(argv, timeout=8)
            answer = json.loads(res.stdout)
        except (subprocess.TimeoutExpired, json.JSONDecodeError):
            raise WeblabError(f"{self.name}: no answer from /api/v1/{path} (log: {self.log})") from None
        if answer.get("status") != "success":
            raise WeblabError(f"{self.name}: /api/v1/{path} failed: {answer.get('error')}")
        return answer["data"]

    def query(self, expr: str) -> dict[str, float]:
        """Instant query -> {server label (or "" if none): value}."""
        data = self.api("query", query=expr)
        return {r["metric"].get("server", ""): float(r["value"][1]) for r in data["result"]}

    def target_health(self) -> dict[tuple[str, str], str]:
        """(job, server) -> "up" | "down" | "unknown" for every configured target."""
        data = self.api("targets", state="active")
        return {(t["labels"]["job"], t["labels"].get("server", "")): t["health"]
                for t in data["activeTargets"]}

    def firing(self, alert: str = ALERT) -> bool:
        """True while the alert is firing (Prometheus' own alert state; no Alertmanager here)."""
        return any(a["labels"].get("alertname") == alert and a["state"] == "firing"
                   for a in self.api("alerts")["alerts"])
