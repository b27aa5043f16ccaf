"""Unit tests of the foobar.com WSGI app, with a fake database in place of MariaDB."""
from __future__ import annotations

import hashlib
import io
import json
import re
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import pymysql
import pytest

from hostapps.webapp import app as webapp
from hostapps.webapp.config import Config, parse_address
from hostapps.webapp.db import Database, DatabaseUnavailable, Item, User
from hostapps.webapp.passwords import hash_password, verify_password

WEBAPP_DIR = Path(webapp.__file__).resolve().parent
ALICE_SALT = "11" * 16


class FakeDatabase:
    """The Database interface over lists, recording every call."""

    def __init__(self) -> None:
        self.items = [Item(1, "Welcome to foobar.com", datetime(2024, 1, 2, 3, 4, 5)),
                      Item(2, "<script>alert('x')</script> & co", None)]
        self.users = {"alice": User(1, "alice", ALICE_SALT, 1000,
                                    hash_password("wonderland", ALICE_SALT, 1000))}
        self.sessions: list[tuple[int, str]] = []
        self.calls: list[str] = []
        self.down = False

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise DatabaseUnavailable("fake database down")

    def list_items(self, limit: int = 100) -> list[Item]:
        self._call("list_items")
        return self.items[-limit:]

    def add_item(self, name: str) -> int:
        self._call("add_item")
        self.items.append(Item(len(self.items) + 1, name, None))
        return len(self.items)

    def find_user(self, username: str) -> User | None:
        self._call("find_user")
        return self.users.get(username)

    def create_session(self, user_id: int, token_sha256: str) -> None:
        self._call("create_session")
        self.sessions.append((user_id, token_sha256))

    def ping(self) -> None:
        self._call("ping")


CONFIG = Config(server_name="server7", db_read=("10.0.0.5", 3306), db_write=("10.0.0.9", 3307),
                db_user="foobar", db_password="pw", db_name="foobar", db_timeout=2.0)


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def app(db: FakeDatabase) -> webapp.App:
    return webapp.App(CONFIG, db)


def call(app, method: str, path: str, query: str = "", body: bytes = b"",
         content_type: str | None = None, **extra: str) -> tuple[int, dict[str, str], bytes]:
    """Run one request through the WSGI callable; (status, headers, body)."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
               "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)) if body else ""}
    if content_type:
        environ["CONTENT_TYPE"] = content_type
    environ.update(extra)
    seen: dict = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, headers

    out = b"".join(app(environ, start_response))
    names = [k.lower() for k, _ in seen["headers"]]
    assert len(names) == len(set(names)), f"duplicate headers: {seen['headers']}"
    assert all(isinstance(v, str) for _, v in seen["headers"])
    code = int(seen["status"].split()[0])
    return code, {k.lower(): v for k, v in seen["headers"]}, out


def post_json(app, path: str, value) -> tuple[int, dict[str, str], bytes]:
    return call(app, "POST", path, body=json.dumps(value).encode(), content_type="application/json")


def post_form(app, path: str, fields: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    return call(app, "POST", path, body=urlencode(fields).encode(),
                content_type="application/x-www-form-urlencoded")


# -- routing and headers ---------------------------------------------------------------------

def test_index_names_server_and_lists_escaped_items(app):
    status, headers, body = call(app, "GET", "/")
    page = body.decode()
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>foobar.com</title>" in page
    assert "Served by server7" in page
    assert "Welcome to foobar.com" in page and "2024-01-02 03:04:05.000" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert int(headers["content-length"]) == len(body)


def test_index_escapes_server_name(db):
    app = webapp.App(Config(**{**CONFIG.__dict__, "server_name": "a<b>"}), db)
    assert "Served by a&lt;b&gt;" in call(app, "GET", "/")[2].decode()


@pytest.mark.parametrize("method,path,query", [
    ("GET", "/", ""), ("GET", "/nope", ""), ("DELETE", "/api/items", ""), ("GET", "/work", "ms=-1"),
    ("GET", "/health", ""), ("GET", "/login", ""), ("PUT", "/", ""),
])
def test_every_response_says_who_served_it(app, method, path, query):
    assert call(app, method, path, query)[1]["x-served-by"] == "server7"


def test_503_and_500_also_say_who_served_them(app, db, monkeypatch):
    db.down = True
    status, headers, body = call(app, "GET", "/")
    assert (status, headers["x-served-by"]) == (503, "server7")
    monkeypatch.setattr(db, "list_items", lambda limit=100: 1 / 0)
    status, headers, _ = call(app, "GET", "/api/items")
    assert (status, headers["x-served-by"]) == (500, "server7")


def test_unknown_path_is_404(app):
    status, headers, body = call(app, "GET", "/admin")
    assert status == 404 and body == b"not found\n"
    assert call(app, "GET", "/api/items/")[0] == 404


def test_app_serves_the_static_files_itself(app):
    # static=app: nginx proxies /static/ here, so the app must answer with the same bytes nginx would
    status, headers, body = call(app, "GET", "/static/index.css")
    assert status == 200 and body == (webapp.STATIC_DIR / "index.css").read_bytes()
    assert headers["content-type"] == "text/css; charset=utf-8" and headers["x-served-by"] == "server7"
    status, headers, body = call(app, "HEAD", "/static/hello.txt")
    assert status == 200 and body == b"" and headers["content-length"] == str(len(b"static from nginx\n"))


@pytest.mark.parametrize("path", ["/static/", "/static/nope.css", "/static/../app.py", "/static/.hidden",
                                  "/static/sub/index.css", "/static/..%2fapp.py"])
def test_app_static_refuses_what_is_not_a_file_of_the_folder(app, path):
    assert call(app, "GET", path)[0] == 404


def test_app_static_is_read_only(app):
    assert call(app, "POST", "/static/index.css")[0] == 404


@pytest.mark.parametrize("method,path,allow", [
    ("POST", "/", "GET, HEAD"), ("DELETE", "/api/items", "GET, HEAD, POST"),
    ("PUT", "/login", "GET, HEAD, POST"), ("POST", "/health", "GET, HEAD"), ("POST", "/work", "GET, HEAD"),
])
def test_wrong_method_is_405_with_allow(app, method, path, allow):
    status, headers, _ = call(app, method, path)
    assert status == 405 and headers["allow"] == allow


def test_head_has_get_headers_and_no_body(app):
    _, get_headers, get_body = call(app, "GET", "/")
    status, headers, body = call(app, "HEAD", "/")
    assert status == 200 and body == b""
    assert headers["content-length"] == str(len(get_body)) == get_headers["content-length"]


# -- /api/items ------------------------------------------------------------------------------

def test_list_items_json(app):
    status, headers, body = call(app, "GET", "/api/items")
    assert status == 200 and headers["content-type"] == "application/json"
    items = json.loads(body)
    assert items[0] == {"id": 1, "name": "Welcome to foobar.com", "created_at": "2024-01-02T03:04:05"}
    assert len(items) == 2
    assert len(json.loads(call(app, "GET", "/api/items", "limit=1")[2])) == 1
    assert call(app, "GET", "/api/items", "limit=0")[0] == 400


def test_post_item_json_writes_and_returns_201(app, db):
    status, _, body = post_json(app, "/api/items", {"name": "  new thing "})
    assert status == 201
    assert json.loads(body) == {"id": 3, "name": "new thing", "server": "server7"}
    assert db.items[-1].name == "new thing" and "add_item" in db.calls


def test_post_item_form(app, db):
    status, _, body = post_form(app, "/api/items", {"name": "from a form"})
    assert status == 201 and json.loads(body)["name"] == "from a form"
    assert db.items[-1].name == "from a form"


@pytest.mark.parametrize("value", [{}, {"name": ""}, {"name": "   "}, {"name": 5}, {"name": None},
                                   {"name": "x" * 201}, ["name"], "name"])
def test_post_item_rejects_bad_names_with_json_400(app, db, value):
    status, headers, body = post_json(app, "/api/items", value)
    assert status == 400 and headers["content-type"] == "application/json"
    assert "name" in json.loads(body)["error"]
    assert "add_item" not in db.calls


def test_post_item_accepts_200_chars_and_unicode(app, db):
    assert post_json(app, "/api/items", {"name": "x" * 200})[0] == 201
    assert post_json(app, "/api/items", {"name": "é" * 200})[0] == 201


def test_post_item_bad_json_wrong_type_and_too_big(app):
    status, _, body = call(app, "POST", "/api/items", body=b"{nope", content_type="application/json")
    assert status == 400 and "JSON" in json.loads(body)["error"]
    assert call(app, "POST", "/api/items", body=b"name=x", content_type="text/plain")[0] == 415
    big = json.dumps({"name": "x" * 70_000}).encode()
    assert call(app, "POST", "/api/items", body=big, content_type="application/json")[0] == 413


def test_post_item_db_down_is_503_plain(app, db):
    db.down = True
    status, headers, body = post_json(app, "/api/items", {"name": "x"})
    assert status == 503 and headers["content-type"].startswith("text/plain")
    assert body == b"database unavailable\n"


# -- /health, /work, /slow -------------------------------------------------------------------

def test_health_does_not_touch_db(app, db):
    db.down = True
    assert call(app, "GET", "/health")[:3:2] == (200, b"ok\n")
    assert db.calls == []


def test_health_db_checks_read_db(app, db):
    assert call(app, "GET", "/health", "db=1")[0] == 200 and db.calls == ["ping"]
    db.down = True
    assert call(app, "GET", "/health", "db=1")[0] == 503


@pytest.mark.parametrize("route", ["/work", "/slow"])
@pytest.mark.parametrize("query", ["", "ms=", "ms=-1", "ms=10001", "ms=abc", "ms=1.5", "ms=+5"])
def test_work_and_slow_bounds(app, route, query):
    status, headers, body = call(app, "GET", route, query)
    assert status == 400 and "0..10000" in json.loads(body)["error"]


def test_work_accepts_the_bounds(app, monkeypatch):
    spent = []
    monkeypatch.setattr(webapp, "burn_cpu", lambda ms: spent.append(ms) or 0.0)
    for ms in (0, 10000):
        status, _, body = call(app, "GET", "/work", f"ms={ms}")
        assert status == 200 and json.loads(body)["ms"] == ms
    assert spent == [0, 10000]


def test_work_spends_cpu_time(app):
    before = time.thread_time()
    status, _, body = call(app, "GET", "/work", "ms=40")
    used = time.thread_time() - before
    assert status == 200 and json.loads(body)["server"] == "server7"
    assert 0.040 <= used < 1.0


def test_slow_sleeps_without_cpu(app):
    cpu, wall = time.thread_time(), time.monotonic()
    status, _, body = call(app, "GET", "/slow", "ms=60")
    assert status == 200 and json.loads(body) == {"ms": 60, "server": "server7"}
    assert time.monotonic() - wall >= 0.060
    assert time.thread_time() - cpu < 0.030


# -- /login ----------------------------------------------------------------------------------

def test_login_form(app):
    status, headers, body = call(app, "GET", "/login")
    page = body.decode()
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert 'method="post"' in page and 'name="username"' in page and 'name="password"' in page


def test_login_success_sets_session_cookie_and_stores_its_hash(app, db):
    status, headers, body = post_form(app, "/login", {"username": "alice", "password": "wonderland"})
    assert status == 200
    m = re.fullmatch(r"session=([0-9a-f]{64}); HttpOnly; Path=/", headers["set-cookie"])
    assert m, headers["set-cookie"]
    assert db.sessions == [(1, hashlib.sha256(m.group(1).encode()).hexdigest())]
    assert "Welcome, alice" in body.decode()


def test_login_tokens_differ(app):
    form = {"username": "alice", "password": "wonderland"}
    assert post_form(app, "/login", form)[1]["set-cookie"] != post_form(app, "/login", form)[1]["set-cookie"]


@pytest.mark.parametrize("fields", [{"username": "alice", "password": "Wonderland"},
                                    {"username": "alice", "password": "wonderland "},
                                    {"username": "bob", "password": "wonderland"}])
def test_login_failure_is_401_without_cookie(app, db, fields):
    status, headers, _ = post_form(app, "/login", fields)
    assert status == 401 and "set-cookie" not in headers and db.sessions == []


def test_login_parses_urlencoded_specials(app, db):
    db.users["bob"] = User(2, "bob", ALICE_SALT, 1000, hash_password("p&ss=1 +é", ALICE_SALT, 1000))
    body = b"username=bob&password=p%26ss%3D1+%2B%C3%A9"
    status, _, _ = call(app, "POST", "/login", body=body, content_type="application/x-www-form-urlencoded")
    assert status == 200 and db.sessions[0][0] == 2


def test_login_needs_both_fields_and_a_form(app, db):
    assert post_form(app, "/login", {"username": "alice"})[0] == 400
    assert post_form(app, "/login", {"password": "wonderland"})[0] == 400
    assert post_json(app, "/login", {"username": "alice", "password": "wonderland"})[0] == 415
    assert call(app, "POST", "/login", body=b"username=%FF&password=x",
                content_type="application/x-www-form-urlencoded")[0] == 400
    assert db.sessions == []


def test_login_form_with_charset_parameter(app):
    body = b"username=alice&password=wonderland"
    ct = "application/x-www-form-urlencoded; charset=UTF-8"
    assert call(app, "POST", "/login", body=body, content_type=ct)[0] == 200


# -- passwords and schema --------------------------------------------------------------------

def test_password_hash_is_pbkdf2_sha256_hex():
    expected = hashlib.pbkdf2_hmac("sha256", b"pw", bytes.fromhex(ALICE_SALT), 10).hex()
    assert hash_password("pw", ALICE_SALT, 10) == expected
    assert verify_password("pw", ALICE_SALT, 10, expected.upper())
    assert not verify_password("pw2", ALICE_SALT, 10, expected)
    assert hash_password("pw", "22" * 16, 10) != expected


def schema() -> str:
    return (WEBAPP_DIR / "schema.sql").read_text()


def test_schema_alice_hash_recomputes():
    m = re.search(r"\(\s*\d+,\s*'alice',\s*'([0-9a-f]{32})',\s*(\d+),\s*'([0-9a-f]{64})'\s*\)", schema())
    assert m, "alice's seed row not found"
    salt, iterations, digest = m.group(1), int(m.group(2)), m.group(3)
    assert hash_password("wonderland", salt, iterations) == digest
    assert verify_password("wonderland", salt, iterations, digest)


def test_schema_is_rerunnable_and_complete():
    sql = schema()
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    assert "CREATE DATABASE IF NOT EXISTS foobar" in code
    for table in ("items", "users", "sessions"):
        m = re.search(rf"CREATE TABLE IF NOT EXISTS {table} \((.*?)\) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
                      code, re.S)
        assert m, table
    assert len(re.findall(r"CREATE TABLE", code)) == 3
    assert re.search(r"INSERT(?! IGNORE)", code) is None
    for name in ("Welcome to foobar.com", "Served from MariaDB", "Edit me via POST /api/items"):
        assert f"'{name}'" in code
    assert not re.search(r"CREATE USER|GRANT", code, re.I)


def test_static_files():
    assert (WEBAPP_DIR / "static" / "hello.txt").read_bytes() == b"static from nginx\n"
    assert "body" in (WEBAPP_DIR / "static" / "index.css").read_text()


# -- configuration ---------------------------------------------------------------------------

def test_config_defaults_and_env():
    c = Config.from_env({"WEBLAB_SERVER_NAME": "server1"})
    assert (c.server_name, c.db_read, c.db_write, c.db_name, c.db_timeout) == \
        ("server1", ("127.0.0.1", 3306), ("127.0.0.1", 3306), "foobar", 2.0)
    c = Config.from_env({"WEBLAB_SERVER_NAME": "server2", "WEBLAB_DB_READ": "10.0.0.3:3307",
                         "WEBLAB_DB_WRITE": "10.0.0.2", "WEBLAB_DB_USER": "u", "WEBLAB_DB_PASSWORD": "p",
                         "WEBLAB_DB_NAME": "other", "WEBLAB_DB_TIMEOUT": "0.5"})
    assert (c.db_read, c.db_write, c.db_user, c.db_password, c.db_name, c.db_timeout) == \
        (("10.0.0.3", 3307), ("10.0.0.2", 3306), "u", "p", "other", 0.5)


@pytest.mark.parametrize("value,expected", [("h:1", ("h", 1)), ("[::1]:33", ("::1", 33)), ("::1", ("::1", 3306))])
def test_parse_address(value, expected):
    assert parse_address(value) == expected


@pytest.mark.parametrize("env", [{"WEBLAB_DB_READ": "h:0"}, {"WEBLAB_DB_WRITE": "h:x"},
                                 {"WEBLAB_DB_WRITE": ":3306"}, {"WEBLAB_DB_TIMEOUT": "0"},
                                 {"WEBLAB_DB_TIMEOUT": "soon"}, {"WEBLAB_SERVER_NAME": "a b"},
                                 {"WEBLAB_SERVER_NAME": "x\r\nSet-Cookie: y"}])
def test_config_rejects_bad_values(env):
    with pytest.raises(ValueError, match=next(iter(env))):
        Config.from_env(env)


# -- the real Database class over a fake pymysql connection ------------------------------------

class FakeCursor:
    def __init__(self, conn: "FakeConn") -> None:
        self.conn, self.lastrowid = conn, None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def execute(self, sql: str, args: tuple) -> None:
        if self.conn.broken:
            raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
        self.conn.queries.append((sql, args))
        self.lastrowid = 42

    def fetchall(self):
        return [(1, "a", None)]


class FakeConn:
    def __init__(self, **kwargs) -> None:
        self.kwargs, self.queries, self.broken, self.closed, self.pings = kwargs, [], False, False, 0

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def ping(self, reconnect: bool = True) -> None:
        self.pings += 1
        if self.broken:
            raise pymysql.err.OperationalError(2006, "MySQL server has gone away")

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def connects() -> list[FakeConn]:
    return []


@pytest.fixture
def real_db(connects) -> Database:
    def connect(**kwargs) -> FakeConn:
        if kwargs["host"] == "unreachable":
            raise pymysql.err.OperationalError(2003, "Can't connect")
        connects.append(FakeConn(**kwargs))
        return connects[-1]
    return Database(CONFIG, connect=connect)


def test_database_reads_local_writes_primary_with_timeouts(real_db, connects):
    assert real_db.list_items() == [Item(1, "a", None)]
    assert real_db.add_item("n") == 42
    assert [(c.kwargs["host"], c.kwargs["port"]) for c in connects] == [("10.0.0.5", 3306), ("10.0.0.9", 3307)]
    kw = connects[0].kwargs
    assert kw["connect_timeout"] == kw["read_timeout"] == kw["write_timeout"] == 2.0
    assert kw["autocommit"] is True and kw["database"] == "foobar" and kw["charset"] == "utf8mb4"
    assert "INSERT INTO items" in connects[1].queries[0][0]


def test_database_reuses_then_pings_after_idle(real_db, connects, monkeypatch):
    real_db.list_items()
    real_db.list_items()
    assert len(connects) == 1 and connects[0].pings == 0
    monkeypatch.setattr("hostapps.webapp.db.PING_AFTER_IDLE_S", 0.0)
    connects[0].broken = True
    real_db.list_items()  # the ping finds the dead connection: reconnect instead of failing
    assert len(connects) == 2 and connects[0].closed and connects[0].pings == 1


def test_database_slow_ping_fails_without_a_second_wait(real_db, connects, monkeypatch):
    real_db.list_items()
    monkeypatch.setattr("hostapps.webapp.db.PING_AFTER_IDLE_S", 0.0)
    t0 = time.monotonic() + 100
    clock = iter([t0, t0, t0 + 100])  # the ping starts at t0 and fails 100 s later
    monkeypatch.setattr("hostapps.webapp.db.time.monotonic", lambda: next(clock, t0 + 200))
    connects[0].broken = True
    with pytest.raises(DatabaseUnavailable, match="not answering"):
        real_db.list_items()
    assert len(connects) == 1 and connects[0].closed


def test_database_failure_raises_and_drops_connection(real_db, connects):
    real_db.ping()
    connects[0].broken = True
    with pytest.raises(DatabaseUnavailable):
        real_db.ping()
    assert connects[0].closed
    real_db.ping()
    assert len(connects) == 2


def test_database_unreachable_raises(connects):
    cfg = Config(**{**CONFIG.__dict__, "db_read": ("unreachable", 1)})

    def connect(**kwargs):
        raise pymysql.err.OperationalError(2003, "Can't connect")
    with pytest.raises(DatabaseUnavailable):
        Database(cfg, connect=connect).list_items()


def test_module_application_is_an_app():
    assert isinstance(webapp.application, webapp.App)
