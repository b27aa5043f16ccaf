"""What the live view shows, read from a running lab: each source is small, bounded in time and cheap
enough to run every second, and each runs in its own thread so one slow answer delays only itself.

Sources: the host end of every link (its namespace's /proc/PID/net/dev, and its up/down flags through a
socket opened inside that namespace: no process per sample, the same on veth and tap ports), the lab's
control socket (which services run), every HAProxy's admin socket, the VIP holders (/proc/PID/net/fib_trie:
the local addresses of that namespace), MariaDB over its Unix socket (primary, replicas, lag), Prometheus'
alerts through a connection opened in the monitor host, the controller's rules with their counters, and
the progress file of a `weblab run` that holds the lab.
"""
from __future__ import annotations

import fcntl
import http.client
import json
import queue
import socket
import struct
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from weblab.core import paths
from weblab.core.errors import WeblabError
from weblab.core.state import RunState
from weblab.ui.graph import Drawing

HISTORY = 60          # samples kept per link (one a second: the sparklines' minute)
SIOCGIFFLAGS = 0x8913
IFF_UP, IFF_RUNNING = 0x1, 0x40


# --- pure parsers (unit-tested on recorded text) ---------------------------------------------------------
def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """/proc/net/dev -> {interface: (rx_bytes, tx_bytes)}."""
    out = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if len(fields) >= 9:
            out[name.strip()] = (int(fields[0]), int(fields[8]))
    return out


def local_addresses(fib_trie: str) -> set[str]:
    """The addresses a namespace holds, from its /proc/net/fib_trie (an address followed by '/32 host LOCAL')."""
    out: set[str] = set()
    last = ""
    for line in fib_trie.splitlines():
        text = line.strip()
        if text.startswith("|--"):
            last = text[3:].strip()
        elif text.startswith("/32 host LOCAL") and last:
            out.add(last)
    return out


def rate(prev: tuple[float, int] | None, now: tuple[float, int]) -> float | None:
    """bits per second between two (time, byte counter) readings; None without a previous one or on a reset."""
    if prev is None or now[0] <= prev[0] or now[1] < prev[1]:
        return None
    return (now[1] - prev[1]) * 8 / (now[0] - prev[0])


def db_role(read_only: Any, replica: dict[str, Any] | None) -> str:
    """primary | replica | standalone for one MariaDB, from @@read_only and SHOW SLAVE STATUS."""
    if replica:
        return "replica"
    return "standalone" if str(read_only) in ("1", "ON") else "primary"


# --- namespaces ------------------------------------------------------------------------------------------
class NamespaceSockets:
    """One datagram socket inside each host's network namespace, opened by a thread that enters them in
    turn (setns is per thread; a socket stays in the namespace it was made in): interface flags are then
    one ioctl each, with no process started per sample."""

    def __init__(self, pids: dict[str, int]):
        self.socks: dict[str, socket.socket] = {}
        errors: queue.Queue = queue.Queue()

        def open_all() -> None:
            from weblab.forward import enter_netns
            for host, pid in pids.items():
                try:
                    enter_netns(pid)
                    self.socks[host] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                except OSError as e:
                    errors.put(f"{host}: {e}")
        t = threading.Thread(target=open_all, name="ui-netns", daemon=True)
        t.start()
        t.join(10)
        self.errors = list(errors.queue)

    def is_up(self, host: str, intf: str) -> bool | None:
        """True when intf in host is administratively up and has a carrier; None if it cannot be read."""
        sock = self.socks.get(host)
        if sock is None:
            return None
        try:
            flags = struct.unpack("16sH", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS,
                                                      struct.pack("16sH", intf.encode()[:15], 0)))[1]
        except OSError:
            return None
        return bool(flags & IFF_UP) and bool(flags & IFF_RUNNING)

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks.clear()


# --- the sources -----------------------------------------------------------------------------------------
class Source:
    """One thing the view reads, every `period` seconds, into its own part of the snapshot."""

    name = ""
    period = 1.0

    def read(self) -> Any:
        raise NotImplementedError


class Links(Source):
    """Per-link byte rates both ways (as seen from the host end) with a minute of history, and up/down."""

    name = "links"

    def __init__(self, state: RunState, drawing: Drawing):
        from weblab import links
        self.ends: dict[str, tuple[str, str]] = {}
        for link in drawing.links:
            try:
                self.ends[link.key] = links.resolve(state, link.key)
            except WeblabError:
                continue
        self.pids = {h: state.hosts[h].pid for h, _ in self.ends.values() if h in state.hosts}
        self.ns = NamespaceSockets(self.pids)
        self.last: dict[str, tuple[float, int, int]] = {}
        self.history: dict[str, deque] = {k: deque(maxlen=HISTORY) for k in self.ends}

    def read(self) -> dict[str, Any]:
        counters: dict[str, dict[str, tuple[int, int]]] = {}
        stamp = time.monotonic()
        for host, pid in self.pids.items():
            try:
                counters[host] = parse_net_dev(Path(f"/proc/{pid}/net/dev").read_text())
            except OSError:
                counters[host] = {}
        out = {}
        for key, (host, intf) in self.ends.items():
            rx_tx = counters.get(host, {}).get(intf)
            entry: dict[str, Any] = {"host": host, "intf": intf, "up": self.ns.is_up(host, intf)}
            if rx_tx is not None:
                prev = self.last.get(key)
                # "out" is what the host sends into the network, "in" what it receives
                out_bps = rate((prev[0], prev[2]) if prev else None, (stamp, rx_tx[1]))
                in_bps = rate((prev[0], prev[1]) if prev else None, (stamp, rx_tx[0]))
                self.last[key] = (stamp, rx_tx[0], rx_tx[1])
                if out_bps is not None and in_bps is not None:
                    self.history[key].append(round(out_bps + in_bps))
                entry.update(out_bps=out_bps, in_bps=in_bps, rx_bytes=rx_tx[0], tx_bytes=rx_tx[1])
            entry["history"] = list(self.history[key])
            out[key] = entry
        return out


class Services(Source):
    """Which services run, as the lab itself knows them (its control socket)."""

    name = "services"

    def __init__(self, state: RunState):
        self.state = state

    def read(self) -> list[dict[str, Any]]:
        from weblab import control
        return control.request(self.state, {"op": "status"}, timeout=3)["services"]


class Backends(Source):
    """Every HAProxy's backend servers: status, sessions, traffic, last check."""

    name = "haproxy"

    def __init__(self, state: RunState):
        from weblab import running
        self.socks = {s.host: running.admin_socket(s) for s in state.services if s.kind == "haproxy"}

    def read(self) -> dict[str, list[dict[str, Any]]]:
        from hostapps.haproxy import backend_stats
        out = {}
        for lb, sock in self.socks.items():
            try:
                stats = backend_stats(sock)
            except OSError as e:
                out[lb] = [{"error": f"admin socket: {e.strerror or e}"}]
                continue
            out[lb] = [{"server": name, "status": r.get("status", ""), "scur": _int(r.get("scur")),
                        "stot": _int(r.get("stot")), "bin": _int(r.get("bin")), "bout": _int(r.get("bout")),
                        "check": r.get("check_status", ""), "weight": r.get("weight", "")}
                       for name, r in stats.items()]
        return out


class Vips(Source):
    """Who holds each virtual address (the VRRP master): read from each candidate's local addresses."""

    name = "vrrp"

    def __init__(self, state: RunState, drawing: Drawing):
        self.candidates = {h: (state.hosts[h].pid, info["vips"]) for h, info in drawing.hosts.items()
                           if info["vips"] and h in state.hosts}

    def read(self) -> dict[str, list[str]]:
        holders: dict[str, list[str]] = {}
        for host, (pid, vips) in self.candidates.items():
            for vip in vips:
                holders.setdefault(vip, [])
            try:
                local = local_addresses(Path(f"/proc/{pid}/net/fib_trie").read_text())
            except OSError:
                continue
            for vip in vips:
                if vip in local:
                    holders[vip].append(host)
        return holders


class Databases(Source):
    """Each MariaDB: primary or replica, replication threads and lag (over its Unix socket, as root)."""

    name = "db"
    period = 2.0

    def __init__(self, state: RunState):
        self.socks = {s.host: s.dir / "mysqld.sock" for s in state.services if s.kind == "mariadb"}
        self.conns: dict[str, Any] = {}

    def _query(self, host: str) -> dict[str, Any]:
        import pymysql
        conn = self.conns.get(host)
        if conn is None:
            conn = pymysql.connect(unix_socket=str(self.socks[host]), user="root", connect_timeout=2,
                                   read_timeout=2, write_timeout=2, autocommit=True)
            self.conns[host] = conn
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute("SELECT @@read_only AS ro, @@gtid_current_pos AS gtid")
                top = cur.fetchone() or {}
                cur.execute("SHOW SLAVE STATUS")
                rep = cur.fetchone()
        except pymysql.MySQLError:
            self.conns.pop(host, None)
            conn.close()
            raise
        out: dict[str, Any] = {"host": host, "role": db_role(top.get("ro"), rep), "read_only": bool(int(top.get("ro") or 0)),
                               "gtid": top.get("gtid")}
        if rep:
            out.update(primary=rep.get("Master_Host"), io=rep.get("Slave_IO_Running"), sql=rep.get("Slave_SQL_Running"),
                       lag=rep.get("Seconds_Behind_Master"), error=rep.get("Last_IO_Error") or rep.get("Last_SQL_Error"))
        return out

    def read(self) -> list[dict[str, Any]]:
        import pymysql
        out = []
        for host in self.socks:
            try:
                out.append(self._query(host))
            except (pymysql.MySQLError, OSError) as e:
                out.append({"host": host, "role": "down", "error": str(e)[:200]})
        return out

    def close(self) -> None:
        for c in self.conns.values():
            c.close()


class Alerts(Source):
    """Prometheus' alerts (firing and pending), asked over a connection opened inside its host."""

    name = "alerts"
    period = 2.0

    def __init__(self, state: RunState):
        prom = next((s for s in state.services if s.kind == "prometheus"), None)
        self.target = None
        self.connector = None
        if prom is not None:
            from hostapps.prometheus import Prometheus
            from weblab.forward import Connector
            info = state.hosts[prom.host]
            self.target = (info.ips[0], int(Prometheus.defaults["port"]))
            self.connector = Connector(info.pid)

    def read(self) -> list[dict[str, Any]] | None:
        if self.connector is None:
            return None
        conn = http.client.HTTPConnection(*self.target, timeout=2)
        conn.sock = self.connector.connect(self.target)
        conn.sock.settimeout(2)
        try:
            conn.request("GET", "/api/v1/alerts")
            data = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return [{"name": a.get("labels", {}).get("alertname"), "state": a.get("state"),
                 "labels": {k: v for k, v in a.get("labels", {}).items() if k != "alertname"},
                 "since": a.get("activeAt"), "value": a.get("value")}
                for a in data.get("data", {}).get("alerts", [])]

    def close(self) -> None:
        if self.connector is not None:
            self.connector.requests.put(None)


class Firewall(Source):
    """The controller's rules with their packet and byte counters, and whether the firewall is on."""

    name = "firewall"
    period = 2.0

    def __init__(self, state: RunState):
        self.state = state

    def read(self) -> dict[str, Any] | None:
        if self.state.controller is None:
            return None
        from weblab import firewall
        reply = firewall.control(self.state, {"op": "show"}, timeout=3)
        return {"on": bool(reply.get("firewall")), "rules": reply.get("rules", []),
                "default_deny": reply.get("default_deny", {}), "note": reply.get("error"),
                "arp_inspection": reply.get("arp_inspection")}


class Progress(Source):
    """The progress lines of the `weblab run` that holds this lab, if one does (paths.PROGRESS_FILE)."""

    name = "progress"

    def __init__(self, state: RunState, path: Path | None = None):
        self.holder = state.holder
        self.path = path or paths.PROGRESS_FILE

    def read(self) -> dict[str, Any] | None:
        if self.holder is None:
            return None
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return None
        records = []
        for line in lines[-200:]:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("pid") == self.holder.pid:
                records.append(rec)
        if not records:
            return None
        return {"lines": records[-40:], "verdicts": [r for r in records if r.get("verdict")]}


def _int(text: Any) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


# --- the sampler -----------------------------------------------------------------------------------------
class Sampler:
    """Runs every source in its own thread; snapshot() is the newest reading of each, with its errors."""

    def __init__(self, sources: list[Source], on_change: Callable[[str, Any, Any], None] | None = None):
        self.sources = sources
        self.values: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.read_at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.on_change = on_change
        self.threads = [threading.Thread(target=self._loop, args=(s,), name=f"ui-{s.name}", daemon=True)
                        for s in sources]

    def start(self) -> "Sampler":
        for t in self.threads:
            t.start()
        return self

    def read_once(self, source: Source) -> None:
        try:
            value, error = source.read(), None
        except (WeblabError, OSError, ValueError, KeyError, http.client.HTTPException) as e:
            value, error = None, f"{type(e).__name__}: {e}"
        with self.lock:
            old = self.values.get(source.name)
            if error is None:
                self.values[source.name] = value
                self.errors.pop(source.name, None)
            else:
                self.errors[source.name] = error
            self.read_at[source.name] = time.time()
        if error is None and self.on_change is not None:
            self.on_change(source.name, old, value)

    def _loop(self, source: Source) -> None:
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            self.read_once(source)
            self.stop_event.wait(max(0.05, source.period - (time.monotonic() - t0)))

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {**self.values, "errors": dict(self.errors)}

    def stop(self) -> None:
        """Stop reading and close every source (and the sockets they hold inside the lab's namespaces); twice is once."""
        if self.stop_event.is_set():
            return
        self.stop_event.set()
        for t in self.threads:
            if t.ident is not None:  # started
                t.join(5)
        for s in self.sources:
            close = getattr(s, "close", None)
            if close:
                close()
            ns = getattr(s, "ns", None)
            if ns is not None:
                ns.close()


def sources_for(state: RunState, drawing: Drawing) -> list[Source]:
    """Every source this lab has (no HAProxy, no database, no Prometheus: no such source)."""
    out: list[Source] = [Links(state, drawing), Services(state), Vips(state, drawing), Firewall(state),
                         Progress(state)]
    if any(s.kind == "haproxy" for s in state.services):
        out.append(Backends(state))
    if any(s.kind == "mariadb" for s in state.services):
        out.append(Databases(state))
    if any(s.kind == "prometheus" for s in state.services):
        out.append(Alerts(state))
    return out
