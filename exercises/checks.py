"""The kinds of check an exercise may use: each a small declarative assertion about the live lab,
made from inside its hosts the way a user would look (dig, curl, nc, the daemons' own sockets).

Every kind reads its fields from the YAML (`read`, errors name the line and field) and tries its
assertion once (`attempt`) or, for a kind that waits for something itself, within a deadline (`run`).
The checker retries `attempt` until the check's `within` runs out, so a check that passes a second
after a reload still passes, and a check that cannot pass fails in bounded time.
"""
from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from hostapps.accounts import DATABASE
from hostapps.haproxy import HAProxy, backend_stats
from hostapps.mariadb import MariaDB
from hostapps.prometheus import ALERT, QPS_TOTAL, Prometheus
from weblab.core.errors import WeblabError

HAPROXY_STATES = ("UP", "DOWN", "MAINT", "DRAIN", "NOLB")
RETRY = 0.5  # seconds between two attempts of a check


class LiveLab(Protocol):
    """What the checks need of a running lab (weblab.running.Attached is the real one)."""

    design: str
    scenario: str
    params: dict[str, Any]

    def hosts(self) -> list[str]: ...
    def ip(self, host: str) -> str: ...
    def exec(self, host: str, argv: list[str], timeout: float = 30,
             input: str | None = None) -> subprocess.CompletedProcess: ...
    def popen(self, host: str, argv: list[str], **kw: Any) -> subprocess.Popen: ...
    def service_dir(self, host: str, kind: str) -> Path: ...
    def service_action(self, host: str, kind: str, action: str) -> None: ...


class Outcome:
    """The result of one attempt: passed or not, and what was seen."""

    def __init__(self, ok: bool, seen: str):
        self.ok, self.seen = ok, seen

    def __repr__(self) -> str:
        return f"Outcome({self.ok}, {self.seen!r})"


class Kind:
    """A kind of check: its fields, its default `within`, and how it looks at the lab."""

    within: float = 2.0
    self_timed = False  # True: run() waits by itself (it acts once, then watches)

    def read(self, f) -> dict[str, Any]:
        raise NotImplementedError

    def attempt(self, live: LiveLab, spec: dict[str, Any]) -> Outcome:
        raise NotImplementedError

    def run(self, live: LiveLab, spec: dict[str, Any], deadline: float) -> Outcome:
        raise NotImplementedError


def _host(f, key: str, default: str | None = None) -> str:
    return f.get(key, str, default=default, required=default is None,
                 check=lambda v: None if re.match(r"^[A-Za-z0-9_-]+$", v) else "must be a host name")


def first_lines(text: str, n: int = 3) -> str:
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    return " | ".join(lines[:n]) + (" ..." if len(lines) > n else "")


def run_in(live: LiveLab, host: str, argv: list[str], timeout: float = 15) -> subprocess.CompletedProcess:
    """argv in host, bounded; a timeout is an answer (exit 124), not a crash."""
    try:
        return live.exec(host, argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{argv[0]} did not finish within {timeout:.0f} s")


# --- DNS ------------------------------------------------------------------------------------------
def _norm(record: str) -> str:
    rtype, _, data = record.strip().partition(" ")
    return f"{rtype.upper()} {data.strip().lower().rstrip('.')}"


def parse_dig(text: str) -> tuple[str, list[str]]:
    """`dig +noall +comments +answer` -> (status, ["TYPE data", ...] in answer order)."""
    status = ""
    answers = []
    for line in text.splitlines():
        m = re.search(r"status: ([A-Z]+)", line)
        if m:
            status = m.group(1)
        if line.startswith(";") or not line.strip():
            continue
        parts = line.split()
        if len(parts) >= 5 and parts[2] == "IN":
            answers.append(f"{parts[3]} {' '.join(parts[4:])}")
    return status, answers


class Dns(Kind):
    """The answer to a name as a host's resolver sees it (dig through its /etc/resolv.conf)."""

    def read(self, f) -> dict[str, Any]:
        spec = {"from": _host(f, "from"), "name": f.get("name", str, required=True),
                "type": f.get("type", str, default="A").upper(),
                "answer": f.get("answer", list, default=None), "nxdomain": f.get("nxdomain", bool, default=False)}
        if (spec["answer"] is None) == (not spec["nxdomain"]):
            f.fail("give exactly one of answer (a list like [CNAME foobar.com., A 10.0.0.11]) or nxdomain: true")
        for i, rec in enumerate(spec["answer"] or []):
            if not isinstance(rec, str) or " " not in rec.strip():
                f.fail("each answer is 'TYPE DATA', like 'A 10.0.0.11'", f.data["answer"].lines[i], f"answer[{i}]")
        f.done()
        return spec

    def attempt(self, live: LiveLab, spec: dict[str, Any]) -> Outcome:
        res = run_in(live, spec["from"], ["dig", "+noall", "+comments", "+answer", "+time=1", "+tries=2",
                                          spec["name"], spec["type"]], timeout=10)
        status, answers = parse_dig(res.stdout)
        if res.returncode != 0 and not status:
            return Outcome(False, f"dig failed: {first_lines(res.stdout + res.stderr)}")
        seen = f"{status or 'no status'}: {', '.join(answers) or 'no answer'}"
        if spec["nxdomain"]:
            return Outcome(status == "NXDOMAIN", seen)
        return Outcome([_norm(a) for a in answers] == [_norm(a) for a in spec["answer"]], seen)


# --- HTTP -----------------------------------------------------------------------------------------
def parse_http(text: str) -> tuple[int, dict[str, str], str]:
    """`curl -i` output -> (status of the last response, its headers (lower-case names), body)."""
    status, headers, body = 0, {}, text
    rest = text.replace("\r\n", "\n")
    while rest.startswith("HTTP/"):
        head, _, rest = rest.partition("\n\n")
        lines = head.splitlines()
        status = int(lines[0].split()[1]) if len(lines[0].split()) > 1 else 0
        headers = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                headers[k.strip().lower()] = v.strip()
        body = rest
    return status, headers, body


def curl_argv(spec: dict[str, Any], include: bool = True) -> list[str]:
    argv = ["curl", "-sS", "--http1.1", "--max-time", "5"]
    if include:
        argv.append("-i")
    if spec.get("follow"):
        argv.append("-L")
    if spec.get("method", "GET") != "GET":
        argv += ["-X", spec["method"]]
    if spec.get("data") is not None:
        argv += ["--data-raw", spec["data"]]
    return argv


class Http(Kind):
    """An HTTP(S) answer as a host gets it (curl, TLS verified against the lab CA its hosts trust)."""

    within = 3.0

    def read(self, f) -> dict[str, Any]:
        spec = {"from": _host(f, "from", "client"),
                "url": f.get("url", str, required=True,
                             check=lambda v: None if v.startswith(("http://", "https://")) else "must start with http:// or https://"),
                "method": f.get("method", str, default="GET").upper(), "data": f.get("data", str, default=None),
                "follow": f.get("follow", bool, default=False),
                "status": f.get("status", int, default=None, check=lambda v: None if 100 <= v <= 599 else "must be an HTTP status (100-599)"),
                "body": f.get("body", str, default=None), "headers": f.get("headers", dict, default={})}
        for name, pattern in spec["headers"].items():
            if not isinstance(pattern, str):
                f.fail("each header's value is a regular expression (text)", f.sub("headers").line_of(name), f"headers.{name}")
            try:
                re.compile(pattern)
            except re.error as e:
                f.fail(f"not a regular expression: {e}", f.sub("headers").line_of(name), f"headers.{name}")
        if spec["status"] is None and spec["body"] is None and not spec["headers"]:
            f.fail("say what to expect: status, body or headers")
        f.done()
        return spec

    def attempt(self, live: LiveLab, spec: dict[str, Any]) -> Outcome:
        res = run_in(live, spec["from"], [*curl_argv(spec), spec["url"]], timeout=10)
        if res.returncode != 0:
            return Outcome(False, f"no answer: {first_lines(res.stderr) or f'curl exit {res.returncode}'}")
        status, headers, body = parse_http(res.stdout)
        problems = []
        if spec["status"] is not None and status != spec["status"]:
            problems.append(f"status {status}, expected {spec['status']}")
        if spec["body"] is not None and spec["body"] not in body:
            problems.append(f"body has no {spec['body']!r} (starts {body.strip()[:60]!r})")
        for name, pattern in spec["headers"].items():
            value = headers.get(name.lower())
            if value is None or not re.search(pattern, value):
                problems.append(f"header {name}: {value!r}, expected /{pattern}/")
        return Outcome(not problems, "; ".join(problems) or f"HTTP {status}")


class Backends(Kind):
    """Which backend servers answer a series of requests (a response header naming the server)."""

    within = 3.0

    def read(self, f) -> dict[str, Any]:
        spec = {"from": _host(f, "from", "client"), "url": f.get("url", str, required=True),
                "requests": f.get("requests", int, default=6, check=lambda v: None if 1 <= v <= 50 else "must be 1..50"),
                "header": f.get("header", str, default="X-Served-By"),
                "served_by": f.get("served_by", list, required=True, check=lambda v: None if v else "must name servers")}
        f.done()
        return spec

    def attempt(self, live: LiveLab, spec: dict[str, Any]) -> Outcome:
        argv = ["curl", "-sS", "--http1.1", "--max-time", "5", "-D", "-", "-H", "Connection: close"]
        for _ in range(spec["requests"]):
            argv += ["-o", "/dev/null", spec["url"]]
        res = run_in(live, spec["from"], argv, timeout=5 + 2 * spec["requests"])
        want = spec["header"].lower() + ":"
        seen = [l.split(":", 1)[1].strip() for l in res.stdout.splitlines() if l.lower().startswith(want)]
        counts = {s: seen.count(s) for s in sorted(set(seen))}
        text = ", ".join(f"{s} x{n}" for s, n in counts.items()) or f"no {spec['header']} header"
        if len(seen) < spec["requests"]:
            text += f" ({spec['requests'] - len(seen)} of {spec['requests']} requests unanswered"
            text += f": {first_lines(res.stderr, 1)})" if res.stderr.strip() else ")"
        return Outcome(len(seen) == spec["requests"] and set(seen) == set(spec["served_by"]),
                       f"served by {text}; expected {', '.join(spec['served_by'])}")


# --- ports ----------------------------------------------------------------------------------------
class PortState(Kind):
    """A TCP or UDP port open or closed from one host (nc; UDP closed = port unreachable came back)."""

    def read(self, f) -> dict[str, Any]:
        spec = {"from": _host(f, "from"), "to": f.get("to", str, required=True),
                "port": f.get("port", int, required=True, check=lambda v: None if 0 < v < 65536 else "must be 1..65535"),
                "proto": f.get("proto", str, default="tcp",
                               check=lambda v: None if v in ("tcp", "udp") else "must be tcp or udp"),
                "state": f.get("state", str, required=True,
                               check=lambda v: None if v in ("open", "closed") else "must be open or closed")}
        f.done()
        return spec

    def attempt(self, live: LiveLab, spec: dict[str, Any]) -> Outcome:
        address = live.ip(spec["to"]) if spec["to"] in live.hosts() else spec["to"]
        argv = ["nc", "-z", "-w", "2", *(["-u"] if spec["proto"] == "udp" else []), address, str(spec["port"])]
        res = run_in(live, spec["from"], argv, timeout=8)
        state = "open" if res.returncode == 0 else "closed"
        return Outcome(state == spec["state"], f"{spec['proto']} {address}:{spec['port']} from {spec['from']}: {state}")


# --- HAProxy --------------------------------------------------------------------------------------
class HAProxyStates(Kind):
    """The states HAProxy gives its backend servers (its admin socket, `show stat`)."""

    within = 8.0

    def read(self, f) -> dict[str, Any]:
        spec = {"host": _host(f, "host", "lb1"), "servers": f.get("servers", dict, required=True)}
        sub = f.sub("servers")
        for name, state in spec["servers"].items():
            if state not in HAPROXY_STATES:
                sub.fail(f"must be one of {', '.join(HAPROXY_STATES)}", sub.line_of(name), name)
        f.done()
        return spec

    def attempt(self, live: LiveLab, spec: dict[str, Any]) -> Outcome:
        sock = HAProxy.admin_socket_in(live.service_dir(spec["host"], "haproxy"))
        try:
            stats = backend_stats(sock)
        except OSError as e:
            return Outcome(False, f"HAProxy on {spec['host']} did not answer on its admin socket: {e.strerror or e}")
        states = {name: rec.get("status", "").split(" ")[0] for name, rec in stats.items()}
        seen = ", ".join(f"{n} {states.get(n, 'absent')}" for n in spec["servers"])
        return Outcome(all(states.get(n) == want for n, want in spec["servers"].items()), seen)


# --- MariaDB --------------------------------------------------------------------------------------
def sql(live: LiveLab, host: str, statement: str) -> subprocess.CompletedProcess:
    sock = MariaDB.socket_in(live.service_dir(host, "mariadb"))
    return run_in(live, host, ["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-N", "-B",
                               "-e", statement], timeout=15)


class Replication(Kind):
    """A row written on the primary arrives on the replica (within the check's `within`)."""

    within = 5.0
    self_timed = True

    def read(self, f) -> dict[str, Any]:
        spec = {"primary": _host(f, "primary"), "replica": _host(f, "replica")}
        f.done()
        return spec

    def run(self, live: LiveLab, spec: dict[str, Any], deadline: float) -> Outcome:
        marker = f"check-{uuid.uuid4().hex[:12]}"
        wrote = sql(live, spec["primary"], f"INSERT INTO {DATABASE}.items (name) VALUES ('{marker}')")
        if wrote.returncode != 0:
            return Outcome(False, f"the write on {spec['primary']} failed: {first_lines(wrote.stderr)}")
        t0 = time.monotonic()
        while True:
            got = sql(live, spec["replica"], f"SELECT COUNT(*) FROM {DATABASE}.items WHERE name = '{marker}'")
            if got.returncode == 0 and got.stdout.strip() == "1":
                return Outcome(True, f"a row written on {spec['primary']} was on {spec['replica']} after "
                                     f"{time.monotonic() - t0:.2f} s")
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        status = sql(live, spec["replica"], "SHOW SLAVE STATUS\\G").stdout
        fields = {k.strip(): v.strip() for k, sep, v in (l.partition(":") for l in status.splitlines())
                  if sep and not k.startswith("*")}
        why = (f"replica of {fields.get('Master_Host', '?')}, IO thread {fields.get('Slave_IO_Running', '?')}, "
               f"SQL thread {fields.get('Slave_SQL_Running', '?')}"
               + (f", last error: {fields['Last_IO_Error'] or fields.get('Last_SQL_Error', '')}"
                  if fields.get("Last_IO_Error") or fields.get("Last_SQL_Error") else "")) if fields \
            else "not a replica (SHOW SLAVE STATUS is empty)"
        return Outcome(False, f"a row written on {spec['primary']} was not on {spec['replica']}; {spec['replica']}: {why}")


# --- Prometheus -----------------------------------------------------------------------------------
def prometheus_api(live: LiveLab, host: str, path: str, **params: str) -> Any:
    """GET /api/v1/<path> of the Prometheus on host, from inside it; the answer's data."""
    import json
    argv = ["curl", "-sS", "--max-time", "5", "--get", f"http://127.0.0.1:{Prometheus.defaults['port']}/api/v1/{path}"]
    for k, v in params.items():
        argv += ["--data-urlencode", f"{k}={v}"]
    res = run_in(live, host, argv, timeout=10)
    try:
        answer = json.loads(res.stdout)
    except ValueError:
        raise WeblabError(f"Prometheus on {host} did not answer /api/v1/{path}: "
                          f"{first_lines(res.stderr) or res.stdout[:80]}") from None
    if answer.get("status") != "success":
        raise WeblabError(f"Prometheus on {host}: /api/v1/{path}: {answer.get('error')}")
    return answer["data"]


def query_value(live: LiveLab, host: str, expr: str) -> float | None:
    """The first value of an instant query (None if it returns no series)."""
    result = prometheus_api(live, host, "query", query=expr)["result"]
    return float(result[0]["value"][1]) if result else None


class PrometheusQuery(Kind):
    """The value of a PromQL expression now (equals, above or below a number)."""

    within = 5.0

    def read(self, f) -> dict[str, Any]:
        spec = {"host": _host(f, "host", "monitor"), "query": f.get("query", str, required=True)}
        tests = [k for k in ("equals", "above", "below") if k in f.data]
        if len(tests) != 1:
            f.fail("give exactly one of equals, above or below")
        spec["test"], spec["value"] = tests[0], float(f.get(tests[0], (int, float)))
        f.done()
        return spec

    def attempt(self, live: LiveLab, spec: dict[str, Any]) -> Outcome:
        try:
            value = query_value(live, spec["host"], spec["query"])
        except WeblabError as e:
            return Outcome(False, str(e))
        if value is None:
            return Outcome(False, f"{spec['query']}: no series")
        ok = {"equals": value == spec["value"], "above": value > spec["value"],
              "below": value < spec["value"]}[spec["test"]]
        return Outcome(ok, f"{spec['query']} = {value:g}, expected {spec['test']} {spec['value']:g}")


def load_argv(url: str, rate: int, seconds: int) -> list[str]:
    """One curl that sends rate requests a second for seconds (URL globbing, --rate), bodies to stdout."""
    glob = f"{'&' if '?' in url else '?'}n=[1-{rate * seconds}]"
    return ["curl", "-s", "--max-time", "3", "--rate", f"{rate}/s", url + glob]


class Alert(Kind):
    """An alert's state in Prometheus, optionally while the checker sends a bounded load."""

    within = 20.0
    self_timed = True

    def read(self, f) -> dict[str, Any]:
        spec = {"host": _host(f, "host", "monitor"), "name": f.get("name", str, default=ALERT),
                "firing": f.get("firing", bool, default=True), "load": None}
        if "load" in f.data:
            lf = f.sub("load")
            f.used.add("load")
            spec["load"] = {"from": _host(lf, "from", "client"), "url": lf.get("url", str, required=True),
                            "rate": lf.get("rate", int, default=25, check=lambda v: None if 1 <= v <= 200 else "must be 1..200"),
                            "seconds": lf.get("seconds", int, default=30, check=lambda v: None if 1 <= v <= 120 else "must be 1..120")}
            lf.done()
        f.done()
        return spec

    def state(self, live: LiveLab, spec: dict[str, Any]) -> str:
        alerts = prometheus_api(live, spec["host"], "alerts")["alerts"]
        states = [a["state"] for a in alerts if a["labels"].get("alertname") == spec["name"]]
        return "firing" if "firing" in states else (states[0] if states else "inactive")

    def run(self, live: LiveLab, spec: dict[str, Any], deadline: float) -> Outcome:
        load = None
        if spec["load"]:
            ld = spec["load"]
            load = live.popen(ld["from"], load_argv(ld["url"], ld["rate"], ld["seconds"]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    state = self.state(live, spec)
                except WeblabError as e:
                    return Outcome(False, str(e))
                if (state == "firing") == spec["firing"]:
                    break
                if time.monotonic() >= deadline:
                    break
                time.sleep(1.0)
            try:
                rate = query_value(live, spec["host"], QPS_TOTAL)
            except WeblabError:
                rate = None
        finally:
            if load is not None:
                stop(load)
        seen = f"{spec['name']} {state}" + (f" ({QPS_TOTAL} = {rate:.1f})" if rate is not None else "")
        return Outcome((state == "firing") == spec["firing"], seen)


def stop(p: subprocess.Popen) -> None:
    """Stop a process group the checker started (TERM, bounded wait, KILL)."""
    import os
    import signal
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=5)
    except ProcessLookupError:
        pass


# --- VRRP, commands ---------------------------------------------------------------------------------
class Vip(Kind):
    """Which host holds a virtual address now (ip addr in that host)."""

    within = 10.0

    def read(self, f) -> dict[str, Any]:
        spec = {"address": f.get("address", str, required=True), "host": _host(f, "host")}
        f.done()
        return spec

    def attempt(self, live: LiveLab, spec: dict[str, Any]) -> Outcome:
        res = run_in(live, spec["host"], ["ip", "-o", "-4", "addr", "show"], timeout=5)
        held = f" {spec['address']}/" in res.stdout
        return Outcome(held, f"{spec['address']} {'is' if held else 'is not'} on {spec['host']}")


class Command(Kind):
    """A command run in a host: its exit status, and its output matching a regular expression."""

    def read(self, f) -> dict[str, Any]:
        spec = {"host": _host(f, "host"), "argv": f.get("argv", list, required=True, check=lambda v: None if v else "must not be empty"),
                "exit": f.get("exit", int, default=0), "output": f.get("output", str, default=None)}
        for i, a in enumerate(spec["argv"]):
            if not isinstance(a, (str, int)):
                f.fail("each argument is text", f.data["argv"].lines[i], f"argv[{i}]")
        spec["argv"] = [str(a) for a in spec["argv"]]
        if spec["output"] is not None:
            try:
                re.compile(spec["output"])
            except re.error as e:
                f.fail(f"not a regular expression: {e}", f.line_of("output"), "output")
        f.done()
        return spec

    def attempt(self, live: LiveLab, spec: dict[str, Any]) -> Outcome:
        res = run_in(live, spec["host"], spec["argv"], timeout=15)
        problems = []
        if res.returncode != spec["exit"]:
            problems.append(f"exit {res.returncode}, expected {spec['exit']}")
        if spec["output"] is not None and not re.search(spec["output"], res.stdout, re.M):
            problems.append(f"output does not match /{spec['output']}/")
        out = first_lines(res.stdout or res.stderr) or "no output"
        return Outcome(not problems, ("; ".join(problems) + f" (output: {out})") if problems else f"exit {res.returncode}: {out}")


KINDS: dict[str, Kind] = {"dns": Dns(), "http": Http(), "backends": Backends(), "port": PortState(),
                          "haproxy": HAProxyStates(), "replication": Replication(), "alert": Alert(),
                          "prometheus": PrometheusQuery(), "vip": Vip(), "command": Command()}
