"""The static=app and cache=on design parameters on a real lab: the app server serving /static/ itself, and
Nginx's proxy cache in front of the DB-backed page (X-Cache-Status, files in the run directory, staleness)."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from tests.integration.conftest import in_host, service_info

DESIGN = "one-server"
TTL = 2
UP_ARGS = ["--param", "static=app", "--param", "cache=on", "--param", f"cache_ttl={TTL}"]


def head_and_body(*curl: str) -> tuple[dict[str, str], str]:
    res = in_host("client", "curl", "-s", "-i", "--max-time", "3", *curl)
    assert res.returncode == 0, res.stderr
    head, _, body = res.stdout.replace("\r\n", "\n").partition("\n\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in head.splitlines()[1:])}
    return headers, body


def app_log_lines(lab: dict, needle: str) -> int:
    log = Path(service_info(lab, "server1", "webapp")["dir"]) / "access.log"
    return sum(needle in line for line in log.read_text().splitlines())


def test_static_files_come_from_the_app_server(detached_lab):
    before = app_log_lines(detached_lab, '"GET /static/hello.txt ')
    headers, body = head_and_body("http://www.foobar.com/static/hello.txt")
    assert body == "static from nginx\n"          # the same file, now read and sent by the app
    assert headers["x-served-by"] == "server1" and headers["x-web-server"] == "server1"
    assert app_log_lines(detached_lab, '"GET /static/hello.txt ') == before + 1


def test_the_page_is_cached_and_the_cache_lives_in_the_run_directory(detached_lab):
    # wait (bounded) for a fresh MISS, so the HIT below is inside one TTL
    for _ in range(3 * TTL * 10):
        first, _ = head_and_body("http://www.foobar.com/")
        if first["x-cache-status"] in ("MISS", "EXPIRED"):
            break
        time.sleep(0.1)
    before = app_log_lines(detached_lab, '"GET / ')
    second, _ = head_and_body("http://www.foobar.com/")
    assert second["x-cache-status"] == "HIT" and second["x-web-server"] == "server1"
    assert app_log_lines(detached_lab, '"GET / ') == before   # the HIT never reached the app server
    cache = Path(service_info(detached_lab, "server1", "nginx")["dir"]) / "cache"
    assert any(p.is_file() for p in cache.rglob("*")), "no cache file under the run directory"
    logged_in, _ = head_and_body("-H", "Cookie: session=abc", "http://www.foobar.com/")
    assert logged_in["x-cache-status"] == "BYPASS"


def test_a_write_shows_once_the_cached_page_expires(detached_lab):
    head_and_body("http://www.foobar.com/")  # the page is in the cache now
    name = f"cached-{uuid.uuid4().hex[:8]}"
    res = in_host("client", "curl", "-s", "-X", "POST", "-H", "Content-Type: application/json",
                  "-d", json.dumps({"name": name}), "http://www.foobar.com/api/items")
    assert json.loads(res.stdout)["name"] == name
    t0, seen = time.monotonic(), []
    while time.monotonic() - t0 < TTL + 3:
        headers, body = head_and_body("http://www.foobar.com/")
        seen.append(headers["x-cache-status"])
        if name in body:
            break
        time.sleep(0.05)
    waited = time.monotonic() - t0
    assert name in body, f"the write never showed within {TTL + 3} s: {seen}"
    assert waited <= TTL + 1.5, (waited, seen)  # nginx keeps a page up to TTL + 1 s (whole-second clock)
    assert set(seen[:-1]) <= {"HIT"}, seen      # until then the cached copy, never a stale refill
