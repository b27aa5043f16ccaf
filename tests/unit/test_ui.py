"""The live view without a lab: its drawing, parsers, change detection, token gate and read-only mode, and
the page in a real (headless) Chromium fed by canned readings."""
from __future__ import annotations

import html
import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from topologies import DESIGNS
from weblab.core.proc import ProcRef
from weblab.core.state import RunState
from weblab.ui import collect, graph
from weblab.ui.actions import changes, describe
from weblab.ui.server import TOKEN_HEADER, View, create_app, listen

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token-123"

NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
lb1-eth0: 1500000   1200    0    0    0     0          0         0  3000000    2400    0    0    0     0       0          0
lb1-eth1:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0
"""

FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 10.0.0.0/24 2 0 2
        |-- 10.0.0.0
           /24 link UNICAST
        |-- 10.0.0.9
           /32 host LOCAL
        |-- 10.0.0.10
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
        |-- 10.0.0.255
           /32 link BROADCAST
"""


# --- drawings --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_drawing_names_every_host_and_link_of_the_design(design):
    topo = graph.topology(design)
    d = graph.Drawing.of(topo)
    svg = html.unescape(graph.svg_inline(graph.dot_source(d)))  # Graphviz writes '-' as &#45;
    for host in topo.hosts():
        assert f'id="host-{graph.safe_id(host)}"' in svg
    for alias in topo.link_names():
        assert f'id="link-{graph.safe_id(alias)}"' in svg and f">{alias}<" in svg
    assert len(d.links) == len(list(topo.links()))


def test_drawing_shows_vips_and_clusters_tiers():
    dot = graph.dot_source(graph.Drawing.of(graph.topology("scaled")))
    assert "VIP 10.0.0.9" in dot and "load balancers (VIP 10.0.0.9)" in dot
    assert "cluster_web" in dot


def test_graph_draws_parameters_and_refuses_bad_input(tmp_path):
    out = graph.draw("distributed", {"servers": 4}, tmp_path / "d.svg")
    assert 'id="host-server4"' in html.unescape(out.read_text()) and "servers=4" in out.read_text()
    png = graph.draw("one-server", {}, tmp_path / "o.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from weblab.core.errors import WeblabError
    for design, params, name in (("nope", {}, "x.svg"), ("one-server", {"x": 1}, "x.svg"), ("one-server", {}, "x.pdf")):
        with pytest.raises(WeblabError):
            graph.draw(design, params, tmp_path / name)


def test_guide_drawings_are_current():
    """docs/img/DESIGN.svg are generated (python -m weblab.ui.graph, or make docs): redraw when this fails."""
    assert graph.stale_docs(REPO / "docs" / "img") == []
    for design in DESIGNS:
        page = {"one-server": "one-server.md", "distributed": "distributed.md", "secured": "secured.md",
                "scaled": "scaled.md"}[design]
        assert f"img/{design}.svg" in (REPO / "docs" / page).read_text(), f"docs/{page} does not embed its drawing"


# --- parsers and change detection -----------------------------------------------------------------------------
def test_parsers():
    dev = collect.parse_net_dev(NET_DEV)
    assert dev["lb1-eth0"] == (1500000, 3000000) and dev["lo"] == (0, 0)
    assert collect.local_addresses(FIB_TRIE) == {"10.0.0.9", "10.0.0.10"}
    assert collect.rate((1.0, 1000), (2.0, 2000)) == 8000
    assert collect.rate(None, (2.0, 2000)) is None and collect.rate((1.0, 5000), (2.0, 10)) is None
    assert collect.db_role("1", {"Master_Host": "x"}) == "replica"
    assert collect.db_role("0", None) == "primary" and collect.db_role("1", None) == "standalone"


def test_changes_in_words():
    old = {"lb1": [{"server": "server1", "status": "UP"}]}
    new = {"lb1": [{"server": "server1", "status": "DOWN"}]}
    assert changes("haproxy", old, new) == ["lb1 sees server1 DOWN (was UP)"]
    assert changes("haproxy", None, new) == []
    assert changes("vrrp", {"10.0.0.9": ["lb1"]}, {"10.0.0.9": ["lb2"]}) == ["VIP 10.0.0.9 held by lb2 (was lb1)"]
    assert changes("services", [{"host": "s", "kind": "nginx", "alive": True}],
                   [{"host": "s", "kind": "nginx", "alive": False}]) == ["nginx on s STOPPED"]
    assert changes("links", {"a": {"up": True}}, {"a": {"up": False}}) == ["link a DOWN"]
    assert describe({"action": "service", "do": "kill", "kind": "nginx", "host": "server1"}) == "kill nginx on server1"


# --- a view fed by canned readings ------------------------------------------------------------------------
class Canned(collect.Source):
    def __init__(self, name, value):
        self.name, self.value = name, value

    def read(self):
        return self.value


def fake_state(design: str = "distributed") -> RunState:
    topo = graph.topology(design)
    hosts = {h: {"pid": os.getpid(), "role": topo.role(h), "ips": topo.addresses_of(h), "intfs": []} for h in topo.hosts()}
    services = [{"host": s.host, "kind": s.kind, "dir": f"/nonexistent/{s.host}/{s.kind}", "log": "/nonexistent/log"}
                for s in topo.services]
    return RunState("fake-run", {"run_id": "fake-run", "design": design, "params": topo.values, "status": "ready",
                                 "datapath": "user", "hosts": hosts, "services": services, "links": [],
                                 "holder": ProcRef.of("holder", os.getpid(), group=False).to_dict()})


def canned_sources(state: RunState, drawing: graph.Drawing) -> list[collect.Source]:
    links = {l.key: {"host": l.host, "intf": "x", "up": l.key != "server2-link", "out_bps": 4.2e6 if "lb" in l.key else 0,
                     "in_bps": 1.1e6 if "lb" in l.key else 0, "history": [i * 1e5 for i in range(30)]}
             for l in drawing.links}
    services = [{"host": s.host, "kind": s.kind, "alive": not (s.host == "server1" and s.kind == "nginx")}
                for s in state.services]
    backends = {"lb1": [{"server": "server1", "status": "DOWN", "scur": 0, "stot": 12, "bin": 0, "bout": 1000,
                         "check": "L4CON", "weight": "1"},
                        {"server": "server2", "status": "UP", "scur": 3, "stot": 40, "bin": 0, "bout": 90000,
                         "check": "L7OK", "weight": "1"}]}
    db = [{"host": "server1", "role": "primary", "read_only": False},
          {"host": "server2", "role": "replica", "primary": "10.0.1.11", "io": "Yes", "sql": "Yes", "lag": 0}]
    fw = {"on": True, "rules": [{"id": "lb-http", "action": "allow", "src": "any", "dst": "lb1", "proto": "tcp",
                                 "port": 80, "packets": 42, "bytes": 4200}], "default_deny": {"packets": 3, "bytes": 180},
          "arp_inspection": {"on": True, "dropped": 40, "ports": [{"dpid": 2, "switch": "s2", "port": 3, "host": "server2",
                                                                   "packets": 40}]}}
    progress = {"lines": [{"elapsed": 1.0, "context": "spof [1/1]", "message": "case one-server: lab ready, measuring"}],
                "verdicts": [{"claim": "C1", "slug": "spof", "verdict": "supported"}]}
    return [Canned("links", links), Canned("services", services), Canned("haproxy", backends),
            Canned("vrrp", {}), Canned("db", db), Canned("alerts", []), Canned("firewall", fw),
            Canned("progress", progress)]


@pytest.fixture
def served(request):
    """A live view of a fake distributed lab on 127.0.0.1 (uvicorn in a thread): (base URL, view)."""
    import uvicorn
    read_only = getattr(request, "param", False)
    state = fake_state()
    drawing = graph.Drawing.of(graph.topology(state.design, state.params))
    view = View.build(state, read_only, sources=canned_sources(state, drawing))
    for s in view.sampler.sources:
        view.sampler.read_once(s)
    sock = listen(0)
    server = uvicorn.Server(uvicorn.Config(create_app(view, TOKEN), log_level="warning", lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", view
    server.should_exit = True
    thread.join(10)
    view.close()
    sock.close()


def fetch(url: str, method: str = "GET", headers: dict | None = None, body: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_every_request_needs_the_token(served):
    base, _ = served
    assert fetch(base + "/")[0] == 403
    assert fetch(base + "/?token=wrong")[0] == 403
    assert fetch(base + "/api/state")[0] == 403
    assert fetch(base + "/nothing-here")[0] == 403
    status, page = fetch(base + f"/?token={TOKEN}")
    assert status == 200 and b"server1" in page
    status, body = fetch(base + "/api/state", headers={TOKEN_HEADER: TOKEN})
    assert status == 200 and json.loads(body)["haproxy"]["lb1"][0]["status"] == "DOWN"
    # a state-changing request carries the token in its header: in the query it is refused
    assert fetch(base + f"/api/action?token={TOKEN}", "POST", body={"action": "firewall", "do": "off"})[0] == 403
    status, body = fetch(base + "/api/action", "POST", {TOKEN_HEADER: TOKEN}, {"action": "service", "do": "explode",
                                                                               "host": "server1", "kind": "nginx"})
    assert status == 409 and "explode" in json.loads(body)["error"]


def test_answers_come_with_security_headers(served):
    base, _ = served
    req = urllib.request.Request(base + f"/?token={TOKEN}")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["Referrer-Policy"] == "no-referrer"


def test_only_loopback():
    sock = listen(0)
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


@pytest.mark.parametrize("served", [True], indirect=True)
def test_read_only_serves_no_action(served):
    base, view = served
    assert view.actions is None
    status, page = fetch(base + f"/?token={TOKEN}")
    assert status == 200 and b"data-action" not in page.split(b"<script>")[0]
    assert fetch(base + "/api/action", "POST", {TOKEN_HEADER: TOKEN}, {"action": "firewall", "do": "off"})[0] in (403, 404, 405)


# --- the page in a browser ------------------------------------------------------------------------------
def test_page_in_chromium(served, tmp_path):
    from selenium.webdriver.common.by import By
    from tests.browser import chromium, full_screenshot, wait_until
    base, view = served
    with chromium() as driver:
        driver.get(base + "/")
        assert "403" in driver.page_source
        driver.get(base + f"/?token={TOKEN}")
        wait_until(driver, lambda: int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0) >= 2,
                   10, "two updates of the page")
        for host in view.drawing.hosts:
            assert driver.find_elements(By.CSS_SELECTOR, f'#hosts tr[data-host="{host}"]'), host
            assert driver.find_elements(By.ID, f"host-{graph.safe_id(host)}"), host
        status = driver.find_element(By.CSS_SELECTOR, '#backends tr[data-server="server1"] .status')
        assert status.get_attribute("data-status") == "DOWN"
        assert "down" in driver.find_element(By.ID, "link-server2-link").get_attribute("class")
        assert driver.find_element(By.CSS_SELECTOR, '#rules tr[data-rule="lb-http"]').text.split()[-3:-1] == ["42", "4200"]
        assert "spof" in driver.find_element(By.ID, "verdicts").text
        arp = driver.find_element(By.ID, "arp-inspection").text
        assert "ARP inspection ON: 40 spoofed ARP dropped" in arp and "s2 port 3 (server2): 40" in arp
        # an action asks first; cancelling sends nothing
        driver.find_element(By.CSS_SELECTOR, '[data-service="nginx@server2"] button').click()
        wait_until(driver, lambda: driver.find_element(By.ID, "confirm").get_attribute("open") is not None, 5, "the confirmation")
        assert "kill nginx on server2" in driver.find_element(By.ID, "confirm-text").text
        driver.find_element(By.ID, "confirm-cancel").click()
        assert not any(e["kind"] == "action" for e in view.timeline.list())
        # confirmed: it goes to the lab (none here: the failure is on the timeline)
        driver.find_element(By.CSS_SELECTOR, '[data-service="nginx@server2"] button').click()
        wait_until(driver, lambda: driver.find_element(By.ID, "confirm").get_attribute("open") is not None, 5, "the confirmation")
        driver.find_element(By.ID, "confirm-ok").click()
        wait_until(driver, lambda: "kill nginx on server2" in driver.find_element(By.ID, "timeline").text, 10,
                   "the action on the timeline")
        full_screenshot(driver, Path(os.environ.get("WEBLAB_UI_SHOTS", tmp_path)) / "ui-fake.png")


def test_run_progress_reaches_the_view_through_its_file(tmp_path):
    """weblab run writes JSON progress lines (experiments.progress); the view shows those of its lab's holder."""
    from experiments import progress
    path = tmp_path / "progress.jsonl"
    progress.record_to(path)
    try:
        progress.set_context("spof [1/2]")
        progress.say("case one-server: lab ready, measuring")
        progress.say("SUPPORTED in 30 s -> results/spof/x", slug="spof", claim="C1", verdict="supported")
        with open(path, "a") as f:  # another process's line is not this lab's
            f.write(json.dumps({"pid": 1, "message": "not ours", "elapsed": 0, "context": ""}) + "\n")
        seen = collect.Progress(fake_state(), path).read()
        assert [l["message"] for l in seen["lines"]] == ["case one-server: lab ready, measuring",
                                                         "SUPPORTED in 30 s -> results/spof/x"]
        assert seen["verdicts"][0]["verdict"] == "supported" and seen["lines"][0]["context"] == "spof [1/2]"
    finally:
        progress.set_context("")
        progress.record_to(None)
    assert not path.exists(), "the run removes its progress file"
    assert collect.Progress(fake_state(), path).read() is None


def test_graph_verb(tmp_path, capsys):
    from weblab import cli
    assert cli.main(["graph", "scaled", "--param", "web=3", "-o", str(tmp_path / "s.svg")]) == 0
    assert 'host&#45;web3' in (tmp_path / "s.svg").read_text()
    assert cli.main(["graph", "scaled", "--param", "web=99", "-o", str(tmp_path / "s.svg")]) == 2
    assert "web=99" in capsys.readouterr().err


def test_firewall_and_lb_actions_go_to_the_lab_sockets(tmp_path):
    """Actions speak the controller's JSON-line protocol and HAProxy's admin commands; each lands on the timeline."""
    import socket as socketlib
    from weblab.core import jsonline
    from weblab.ui.actions import Actions, Timeline
    got: list = []

    def controller(req):
        got.append(req)
        return {"ok": True, "id": req.get("rule", {}).get("id", "live-1"), "flows": 2, "firewall": True}
    csock = jsonline.bind(str(tmp_path / "c.sock"))
    threading.Thread(target=lambda: jsonline.serve_client(csock.accept()[0], controller), daemon=True).start()
    hsock = socketlib.socket(socketlib.AF_UNIX)
    hsock.bind(str(tmp_path / "admin.sock"))
    hsock.listen(4)
    commands: list = []

    def haproxy():
        for _ in range(1):
            conn, _ = hsock.accept()
            commands.append(conn.recv(1000).decode())
            conn.close()
    threading.Thread(target=haproxy, daemon=True).start()
    state = fake_state()
    state.data["controller"] = {"port": 6653, "control": str(tmp_path / "c.sock"), "log": "x", "pid": os.getpid()}
    for s in state.data["services"]:
        if s["kind"] == "haproxy":
            s["dir"] = str(tmp_path)
    timeline = Timeline()
    actions = Actions(state, graph.Drawing.of(graph.topology("distributed")), timeline)
    assert actions.do({"action": "firewall", "do": "allow", "rule": "client lb1 tcp 8404"})["ok"]
    assert got[-1] == {"op": "allow", "rule": {"src": "client", "dst": "lb1", "proto": "tcp", "port": 8404}}
    assert actions.do({"action": "lb", "server": "server1", "state": "drain"})["ok"]
    assert commands == ["set server servers/server1 state drain\n"]
    bad = actions.do({"action": "firewall", "do": "allow", "rule": "client lb1 smtp"})
    assert not bad["ok"] and "protocol" in bad["error"]
    assert not actions.do({"action": "link", "link": "no-such-link", "state": "down"})["ok"]
    texts = [e["text"] for e in timeline.list()]
    assert texts[0].startswith("firewall allow client lb1 tcp 8404: rule") and "drain server server1: on lb1" in texts[1]
    assert "FAILED" in texts[2] and not timeline.list()[2]["ok"]
    csock.close()
    hsock.close()
