"""The WSGI application of foobar.com: `gunicorn hostapps.webapp.app:application`."""
from __future__ import annotations

import hashlib
import logging
import mimetypes
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from hostapps.webapp import pages
from hostapps.webapp.config import Config
from hostapps.webapp.db import ITEMS_LIMIT, Database, DatabaseUnavailable
from hostapps.webapp.http_io import HttpError, Request, Response, as_json, html, text
from hostapps.webapp.passwords import ITERATIONS, hash_password, verify_password

log = logging.getLogger("weblab.webapp")

MAX_MS = 10_000
# The site's static files: Nginx serves a copy of this folder (design parameter static=nginx), or proxies
# /static/ here and the app serves them itself (static=app: nothing offloaded).
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/static/"
NAME_MAX = 200
FORM = "application/x-www-form-urlencoded"
# Hashed for unknown users too, so a failed login takes as long whether or not the user exists.
_DUMMY_SALT = "00" * 16

Handler = Callable[[Request], Response]
StartResponse = Callable[..., Any]


class App:
    """foobar.com for one server: routes requests to handlers over an injectable database."""

    def __init__(self, config: Config, database: Any = None):
        self.config = config
        self.db = database if database is not None else Database(config)
        # path -> (method -> handler, whether errors are JSON)
        self.routes: dict[str, tuple[dict[str, Handler], bool]] = {
            "/": ({"GET": self.index}, False),
            "/api/items": ({"GET": self.list_items, "POST": self.add_item}, True),
            "/login": ({"GET": self.login_form, "POST": self.login}, False),
            "/health": ({"GET": self.health}, False),
            "/work": ({"GET": self.work}, True),
            "/slow": ({"GET": self.slow}, True),
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI entry point."""
        req = Request(environ)
        resp = self.respond(req)
        headers = [*resp.headers, ("X-Served-By", self.config.server_name),
                   ("Content-Length", str(len(resp.body)))]
        start_response(resp.status_line(), headers)
        return [b"" if req.method == "HEAD" else resp.body]

    def respond(self, req: Request) -> Response:
        """The response to req, errors included."""
        route = self.routes.get(req.path)
        if route is None and req.path.startswith(STATIC_PREFIX) and req.method in ("GET", "HEAD"):
            return static_file(req.path[len(STATIC_PREFIX):])
        if route is None:
            return text(404, "not found\n")
        handlers, json_errors = route
        handler = handlers.get("GET" if req.method == "HEAD" else req.method)
        if handler is None:
            allow = ", ".join(sorted({*handlers, "HEAD"} if "GET" in handlers else handlers))
            return _error(405, f"method {req.method} not allowed", json_errors, ("Allow", allow))
        try:
            return handler(req)
        except HttpError as e:
            return _error(e.status, e.message, json_errors)
        except DatabaseUnavailable:
            return text(503, "database unavailable\n")
        except Exception:
            log.exception("%s %s failed", req.method, req.path)
            return text(500, "internal error\n")

    def index(self, req: Request) -> Response:
        """GET /: the home page with the items from the read database."""
        return html(200, pages.index(self.config.server_name, self.db.list_items()))

    def list_items(self, req: Request) -> Response:
        """GET /api/items[?limit=N]: the latest items as JSON."""
        limit = _int_arg(req, "limit", 1, 1000, default=ITEMS_LIMIT)
        items = self.db.list_items(limit)
        return as_json(200, [{"id": i.id, "name": i.name, "created_at": i.created_at} for i in items])

    def add_item(self, req: Request) -> Response:
        """POST /api/items: store a named item on the write database."""
        name = _item_name(req)
        item_id = self.db.add_item(name)
        return as_json(201, {"id": item_id, "name": name, "server": self.config.server_name})

    def login_form(self, req: Request) -> Response:
        """GET /login: the login form."""
        return html(200, pages.login_form(self.config.server_name))

    def login(self, req: Request) -> Response:
        """POST /login: check a urlencoded username/password, open a session on success."""
        if req.content_type != FORM:
            raise HttpError(415, f"send the form as {FORM}")
        form = req.form()
        username, password = form.get("username", ""), form.get("password", "")
        if not username or not password:
            raise HttpError(400, "username and password are required")
        user = self.db.find_user(username)
        if user is None:
            hash_password(password, _DUMMY_SALT, ITERATIONS)
            return _login_failed(self.config.server_name)
        if not verify_password(password, user.salt, user.iterations, user.password_hash):
            return _login_failed(self.config.server_name)
        token = secrets.token_hex(32)
        self.db.create_session(user.id, hashlib.sha256(token.encode("ascii")).hexdigest())
        return html(200, pages.welcome(self.config.server_name, user.username),
                    ("Set-Cookie", f"session={token}; HttpOnly; Path=/"))

    def health(self, req: Request) -> Response:
        """GET /health: ok without the database; ?db=1 also checks the read database."""
        if req.arg("db") == "1":
            self.db.ping()
        return text(200, "ok\n")

    def work(self, req: Request) -> Response:
        """GET /work?ms=N: spend N ms of CPU time (a CPU-bound request)."""
        ms = _int_arg(req, "ms", 0, MAX_MS)
        wall = burn_cpu(ms)
        return as_json(200, {"ms": ms, "server": self.config.server_name, "wall_ms": round(wall * 1000, 1)})

    def slow(self, req: Request) -> Response:
        """GET /slow?ms=N: wait N ms without using CPU (an I/O-bound request)."""
        ms = _int_arg(req, "ms", 0, MAX_MS)
        time.sleep(ms / 1000)
        return as_json(200, {"ms": ms, "server": self.config.server_name})


def static_file(name: str, root: Path = STATIC_DIR) -> Response:
    """GET /static/NAME: the file read from disk on every request, as an app server without a front
    server does it; only plain names of files in root (no folders, no '..')."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return text(404, "not found\n")
    path = root / name
    try:
        body = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return text(404, "not found\n")
    kind, _ = mimetypes.guess_type(name)
    if kind is not None and kind.startswith("text/"):
        kind += "; charset=utf-8"
    return Response(200, body, [("Content-Type", kind or "application/octet-stream")])


def burn_cpu(ms: int) -> float:
    """Busy-loop until this thread has used ms of CPU time; the wall time it took, seconds."""
    start_wall, end_cpu = time.monotonic(), time.thread_time() + ms / 1000
    x = 0
    while time.thread_time() < end_cpu:
        for i in range(2000):  # real arithmetic between clock reads, so the time is user CPU
            x ^= i * i
    return time.monotonic() - start_wall


def _int_arg(req: Request, name: str, low: int, high: int, default: int | None = None) -> int:
    """Query parameter name as an integer in low..high (400 otherwise)."""
    raw = req.arg(name)
    if raw is None and default is not None:
        return default
    if raw is None or not raw.isdigit() or not low <= int(raw) <= high:
        raise HttpError(400, f"{name} must be an integer in {low}..{high}")
    return int(raw)


def _item_name(req: Request) -> str:
    """The validated item name from a JSON or urlencoded body."""
    if req.content_type == "application/json":
        data = req.json()
        name = data.get("name") if isinstance(data, dict) else None
    elif req.content_type == FORM:
        name = req.form().get("name")
    else:
        raise HttpError(415, f"send application/json or {FORM}")
    if not isinstance(name, str):
        raise HttpError(400, "name is required (a string)")
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise HttpError(400, f"name must be 1..{NAME_MAX} characters")
    return name


def _login_failed(server: str) -> Response:
    """401 with the form again."""
    return html(401, pages.login_form(server, "Invalid username or password."),
                ("WWW-Authenticate", 'Form realm="foobar.com"'))


def _error(status: int, message: str, json_errors: bool, *headers: tuple[str, str]) -> Response:
    """An error response in the route's format."""
    if json_errors:
        return as_json(status, {"error": message}, *headers)
    return text(status, message + "\n", *headers)


application = App(Config.from_env())
