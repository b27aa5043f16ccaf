"""`weblab ui` on real labs, in a real headless Chromium: every host listed, a link's rate rising under
iperf3, a killed nginx turning its backend DOWN and back UP, a link taken down and up, a sniffed request,
the token gate and the read-only view. Screenshots of each step go to results/ui-screenshots/ (or
$WEBLAB_UI_SHOTS, which is how docs/img/ui-*.png are made)."""
from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.browser import chromium, full_screenshot, wait_until
from tests.integration.conftest import CLI, in_host, leftovers, running_state, weblab
from topologies import DESIGNS
from weblab.core.state import RunState
from weblab.ui.graph import safe_id

SHOTS = Path(os.environ.get("WEBLAB_UI_SHOTS") or Path(__file__).resolve().parents[2] / "results" / "ui-screenshots")


def start_ui(*extra: str, timeout: float = 30) -> tuple[subprocess.Popen, str]:
    """`weblab ui --port 0` as a user starts it; its process and the URL it printed."""
    p = subprocess.Popen([*CLI, "ui", "--port", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         bufsize=0, start_new_session=True)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    deadline, seen = time.monotonic() + timeout, b""
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.1, deadline - time.monotonic())):
            continue
        chunk = os.read(p.stdout.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        found = re.search(rb"http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]+", seen)
        if found:
            return p, found.group().decode()
    stop_ui(p)
    raise AssertionError(f"weblab ui printed no URL within {timeout:.0f} s: {seen.decode(errors='replace')}")


def stop_ui(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def status_of(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def updated(driver, n: int = 2, timeout: float = 15) -> None:
    """Wait for n more updates of the page."""
    start = int(driver.execute_script("return +document.body.dataset.updates || 0"))
    wait_until(driver, lambda: int(driver.execute_script("return +document.body.dataset.updates || 0")) >= start + n,
               timeout, f"{n} updates of the page")


def state_js(driver, expr: str):
    return driver.execute_script(f"return window.weblabState && ({expr});")


def confirm_click(driver, selector: str) -> None:
    from selenium.webdriver.common.by import By
    driver.find_element(By.CSS_SELECTOR, selector).click()
    wait_until(driver, lambda: driver.find_element(By.ID, "confirm").get_attribute("open") is not None, 5, "the confirmation")
    driver.find_element(By.ID, "confirm-ok").click()


def timeline_has(driver, text: str, timeout: float = 60) -> None:
    from selenium.webdriver.common.by import By
    wait_until(driver, lambda: text in driver.find_element(By.ID, "timeline").text, timeout, f"{text!r} on the timeline")


@pytest.fixture
def lab(request):
    """A design up with --detach (params from the test), downed and checked afterwards."""
    design, *args = request.param
    weblab("up", design, "--detach", *args)
    state = running_state()
    try:
        yield RunState.load(state["run_id"])
    finally:
        weblab("down", check=False)
        left = leftovers(state)
        assert not left, f"left behind: {left}"


@pytest.mark.parametrize("lab", [(d,) for d in DESIGNS], indirect=True, ids=list(DESIGNS))
def test_every_design_shows_its_hosts_links_and_state(lab):
    from selenium.webdriver.common.by import By
    p, url = start_ui()
    try:
        with chromium() as driver:
            driver.get(url)
            updated(driver, 3)
            for host in lab.hosts:
                assert driver.find_elements(By.CSS_SELECTOR, f'#hosts tr[data-host="{host}"]'), f"{host} not listed"
                assert driver.find_elements(By.ID, f"host-{safe_id(host)}"), f"{host} not drawn"
            for alias in lab.link_names:
                assert driver.find_elements(By.CSS_SELECTOR, f'#links tr[data-link="{alias}"]'), f"link {alias} not listed"
            wait_until(driver, lambda: state_js(driver, "window.weblabState.services.length") == len(lab.services), 10,
                       "every service's health")
            assert state_js(driver, "window.weblabState.services.every(s => s.alive)")
            assert state_js(driver, "Object.values(window.weblabState.links).every(l => l.up === true)")
            kinds = {s.kind for s in lab.services}
            if "haproxy" in kinds:
                wait_until(driver, lambda: driver.find_elements(By.CSS_SELECTOR, '#backends td.status[data-status="UP"]'),
                           10, "backends UP")
            if "keepalived" in kinds:
                wait_until(driver, lambda: driver.find_element(By.CSS_SELECTOR, "#vrrp .holder").text == "lb1", 10,
                           "lb1 holding the VIP")
                assert "vip-holder" in driver.find_element(By.ID, "host-lb1").get_attribute("class")
            if "mariadb" in kinds and len([s for s in lab.services if s.kind == "mariadb"]) > 1:
                wait_until(driver, lambda: "replica" in driver.find_element(By.ID, "db").text, 10, "a replica")
                assert "primary" in driver.find_element(By.ID, "db").text
            if "prometheus" in kinds:
                wait_until(driver, lambda: "no alert firing" in driver.find_element(By.ID, "alerts").text
                           or "firing" in driver.find_element(By.ID, "alerts").text, 10, "Prometheus' alerts")
            if lab.controller is not None:
                wait_until(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "#rules tr[data-rule]"), 10,
                           "the firewall's rules")
            assert state_js(driver, "Object.keys(window.weblabState.errors).length") == 0, \
                state_js(driver, "JSON.stringify(window.weblabState.errors)")
            full_screenshot(driver, SHOTS / f"ui-{lab.design}.png")
    finally:
        stop_ui(p)


@pytest.mark.parametrize("lab", [("distributed",)], indirect=True, ids=["distributed"])
def test_traffic_kill_restore_link_sniff_token_and_read_only(lab):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    from weblab import control
    p, url = start_ui()
    base = url.split("/?token=")[0]
    token = url.split("token=")[1]
    try:
        # the token gate, from outside the browser
        assert status_of(base + "/") == 403
        assert status_of(base + "/api/state") == 403
        assert status_of(base + "/?token=not-it") == 403
        assert status_of(url) == 200
        assert status_of(base + "/api/state", {"X-Weblab-Token": token}) == 200
        with chromium() as driver:
            driver.get(base + "/")
            assert "403" in driver.page_source
            driver.get(url)
            updated(driver, 3)

            # iperf3 from lb1 to server2: server2-link's rate rises on the page
            idle = state_js(driver, "window.weblabState.links['server2-link'].in_bps") or 0
            control.request(lab, {"op": "spawn", "host": "server2", "argv": ["iperf3", "-s", "-1"], "name": "ui-iperf3"})
            wait_until(driver, lambda: ":5201" in in_host("server2", "ss", "-ltn").stdout, 10, "iperf3 -s on server2")
            client = subprocess.Popen([*CLI, "exec", "lb1", "--", "iperf3", "-c", lab.host("server2").ips[0], "-t", "8"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                def rate() -> float:
                    value = state_js(driver, "window.weblabState.links['server2-link'].in_bps") or 0
                    return value if value > 20e6 else 0
                busy = wait_until(driver, rate, 12, "server2-link above 20 Mbit/s under iperf3")
                assert busy > 10 * max(idle, 1e5)
                width = float(driver.find_element(By.CSS_SELECTOR, "#link-server2-link path").get_attribute("stroke-width"))
                assert width > 5, f"the busy link is drawn {width} wide"
                full_screenshot(driver, SHOTS / "ui-iperf3.png")
            finally:
                client.wait(30)

            # kill nginx on server1: its backend goes DOWN within HAProxy's inter x fall + two updates
            inter, fall = lab.params["check_inter"] / 1000, lab.params["check_fall"]
            confirm_click(driver, '[data-service="nginx@server1"] button')
            timeline_has(driver, "kill nginx on server1")
            t0 = time.monotonic()
            wait_until(driver, lambda: driver.find_element(By.CSS_SELECTOR, '#backends tr[data-server="server1"] .status')
                       .get_attribute("data-status") == "DOWN", inter * fall + 2 + 1, "server1 DOWN on the page")
            down_after = time.monotonic() - t0
            assert "dead" in driver.find_element(By.ID, "host-server1").get_attribute("class")
            timeline_has(driver, "sees server1 DOWN", 5)
            full_screenshot(driver, SHOTS / "ui-kill.png")

            # restore: started again and UP once it passed `rise` checks
            confirm_click(driver, '[data-service="nginx@server1"] button')  # the same place now says restore
            timeline_has(driver, "start nginx on server1")
            rise = lab.params["check_rise"]
            wait_until(driver, lambda: driver.find_element(By.CSS_SELECTOR, '#backends tr[data-server="server1"] .status')
                       .get_attribute("data-status") == "UP", inter * rise + 2 + 1, "server1 UP again")
            full_screenshot(driver, SHOTS / "ui-restore.png")

            # a link down and up again
            confirm_click(driver, '#links tr[data-link="server2-link"] button[data-state="down"]')
            wait_until(driver, lambda: "down" in driver.find_element(By.ID, "link-server2-link").get_attribute("class"),
                       5, "server2-link drawn down")
            confirm_click(driver, '#links tr[data-link="server2-link"] button[data-state="up"]')
            wait_until(driver, lambda: "down" not in driver.find_element(By.ID, "link-server2-link").get_attribute("class"),
                       5, "server2-link drawn up")

            # what crosses lb-back: the client's request, as weblab sniff prints it
            Select(driver.find_element(By.ID, "sniff-link")).select_by_value("lb-back")
            driver.find_element(By.ID, "sniff-filter").send_keys("GET /")
            driver.find_element(By.ID, "sniff-start").click()
            wait_until(driver, lambda: "sniffing" in driver.find_element(By.ID, "sniff-out").text, 20, "the sniffer started")

            def requested():
                in_host("client", "curl", "-s", "-o", "/dev/null", "--max-time", "3", "http://www.foobar.com/")
                return "HTTP GET / HTTP" in driver.find_element(By.ID, "sniff-out").text
            wait_until(driver, requested, 20, "the client's GET on lb-back", every=1)
            full_screenshot(driver, SHOTS / "ui-sniff.png")
            driver.find_element(By.ID, "sniff-stop").click()
            wait_until(driver, lambda: "stopped" in driver.find_element(By.ID, "sniff-state").text, 15, "the sniffer stopped")
        print(f"backend DOWN on the page {down_after:.1f} s after the kill (bound {inter * fall + 3:.1f} s)")
    finally:
        stop_ui(p)

    # the read-only view: the same page, no action anywhere, and the action route is not there
    p, url = start_ui("--read-only")
    base, token = url.split("/?token=")[0], url.split("token=")[1]
    try:
        req = urllib.request.Request(base + "/api/action", data=b'{"action":"firewall","do":"off"}', method="POST",
                                     headers={"X-Weblab-Token": token, "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("a read-only view accepted an action")
        except urllib.error.HTTPError as e:
            assert e.code in (403, 404, 405)
        with chromium() as driver:
            driver.get(url)
            updated(driver, 2)
            assert not driver.find_elements(By.CSS_SELECTOR, "button[data-action]")
            assert not driver.find_elements(By.ID, "fw-allow")
            assert "read-only" in driver.find_element(By.TAG_NAME, "header").text
            full_screenshot(driver, SHOTS / "ui-read-only.png")
    finally:
        stop_ui(p)


@pytest.mark.parametrize("lab", [("one-server",)], indirect=True, ids=["one-server"])
def test_the_view_ends_with_its_lab(lab):
    """`weblab down` while the view runs: the view lets go of the lab's namespaces and exits on its own."""
    p, url = start_ui()
    try:
        assert status_of(url) == 200
        weblab("down")
        p.wait(10)
        out = p.stdout.read().decode(errors="replace")
        assert "the lab stopped" in out, out
    finally:
        stop_ui(p)


def test_a_claim_run_shows_its_progress_and_the_view_follows_its_labs(tmp_path):
    """`weblab run spof` (two labs, one after the other): the view of its first lab shows the run's progress,
    follows it to the second lab at the same URL, and stops when the run ends."""
    from selenium.webdriver.common.by import By
    from weblab import running
    from weblab.core.errors import WeblabError
    run = subprocess.Popen([*CLI, "run", "spof", "--out", str(tmp_path)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    p = None
    try:
        def lab_ready():
            try:
                state = running.current()
            except WeblabError:
                return None
            return state if state.status == "ready" and state.control_socket else None
        first = wait_until(None, lab_ready, 120, "the run's first lab ready", every=0.5)
        assert first.design == "one-server"
        p, url = start_ui()
        with chromium() as driver:
            driver.get(url)
            wait_until(driver, lambda: driver.find_element(By.ID, "progress-panel").is_displayed()
                       and "spof" in driver.find_element(By.ID, "progress").text, 20, "the run's progress on the page")
            full_screenshot(driver, SHOTS / "ui-claim-progress.png")
            wait_until(driver, lambda: state_js(driver, "window.weblabState.design") == "distributed", 180,
                       "the view following the run to its distributed lab", every=1)
            wait_until(driver, lambda: "case distributed" in driver.find_element(By.ID, "progress").text, 20,
                       "the second case's progress")
        assert run.wait(300) in (0, 1, 2)
        p.wait(20)
        out = p.stdout.read().decode(errors="replace")
        # it ends either way: the run has ended too, or it is still analysing and brings no next lab
        assert "now showing distributed" in out and ("the lab stopped" in out or "no next lab" in out), out
    finally:
        if p is not None:
            stop_ui(p)
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
            run.wait(120)
    from weblab.core import paths
    left = [str(x) for x in paths.RUN_ROOT.iterdir()] if paths.RUN_ROOT.exists() else []
    assert not left and not paths.PROGRESS_FILE.exists(), f"left behind: {left}"
