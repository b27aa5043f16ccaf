"""`weblab ui`: the live view's web server, on 127.0.0.1 only, every request gated by a per-run token.

Starlette (routing, requests, responses) served by uvicorn: a small, well-kept ASGI pair, so the HTTP
parsing, keep-alive and shutdown are theirs, not ours. Security: the socket is bound to 127.0.0.1; the
page's URL carries a random token (as Jupyter's does) that every request must present, in the
`X-Weblab-Token` header (the page's own requests) or, for the page itself, in the query; a state-changing
request is a POST with the token in that header, which another site's page can neither read nor send;
`--read-only` mounts no action at all.
"""
from __future__ import annotations

import hmac
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs

from weblab.core.errors import WeblabError
from weblab.core.state import RunState
from weblab.ui import collect
from weblab.ui.actions import Actions, Timeline, changes
from weblab.ui.graph import Drawing, dot_source, svg_inline, topology
from weblab.ui.sniffer import Sniffer

HERE = Path(__file__).resolve().parent
TOKEN_HEADER = "x-weblab-token"
DEFAULT_PORT = 8800
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                 b"img-src data:; connect-src 'self'; frame-ancestors 'none'; form-action 'none'"),
]


class TokenGate:
    """ASGI middleware: 403 for any request without the token; POSTs must carry it in the header."""

    def __init__(self, app: Any, token: str):
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(TOKEN_HEADER.encode(), b"")
        if not given and scope["method"] in ("GET", "HEAD"):
            given = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0].encode()
        if not hmac.compare_digest(given, self.token):
            body = b"403: this view needs its token: open the URL that `weblab ui` printed\n"
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_secured(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)
        await self.app(scope, receive, send_secured)


@dataclass
class View:
    """Everything one live view holds: the lab's state and drawing, the sampler, actions, sniffer, timeline."""

    state: RunState
    drawing: Drawing
    svg: str
    sampler: collect.Sampler
    timeline: Timeline
    actions: Actions | None
    sniffer: Sniffer
    read_only: bool
    started: float

    @classmethod
    def build(cls, state: RunState, read_only: bool = False, sources: list[collect.Source] | None = None) -> "View":
        drawing = Drawing.of(topology(state.design, state.params))
        timeline = Timeline()

        def seen(name: str, old: Any, new: Any) -> None:
            for text in changes(name, old, new):
                timeline.add("seen", text)
        if sources is None:
            sources = collect.sources_for(state, drawing)
        links = next((s for s in sources if isinstance(s, collect.Links)), None)
        ends = links.ends if links is not None else {}
        sampler = collect.Sampler(sources, on_change=seen)
        view = cls(state, drawing, svg_inline(dot_source(drawing)), sampler, timeline,
                   None if read_only else Actions(state, drawing, timeline), Sniffer(state, ends), read_only,
                   time.time())
        timeline.add("seen", f"view opened on {state.design} (run {state.run_id})"
                     + (", read-only" if read_only else ""))
        return view

    def start(self) -> "View":
        self.sampler.start()
        return self

    def close(self) -> None:
        try:
            self.sniffer.stop()
        finally:
            self.sampler.stop()

    def snapshot(self) -> dict[str, Any]:
        return {"t": time.time(), "run_id": self.state.run_id, "design": self.state.design,
                "lab_alive": lab_running(self.state), "read_only": self.read_only,
                **self.sampler.snapshot(), "timeline": self.timeline.list(), "sniff": self.sniffer.status()}

    def page_data(self) -> dict[str, Any]:
        """What the page is built from once: the drawing, the services, which actions exist."""
        return {"drawing": self.drawing.to_json(), "run_id": self.state.run_id, "design": self.state.design,
                "datapath": self.state.datapath, "read_only": self.read_only,
                "services": [{"host": s.host, "kind": s.kind} for s in self.state.services],
                "lbs": [s.host for s in self.state.services if s.kind == "haproxy"],
                "sniff_links": sorted(self.sniffer.ends)}


def render_page(view: View) -> str:
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE)), autoescape=True)
    return env.get_template("page.html").render(
        svg=view.svg, data=view.page_data(), css=(HERE / "page.css").read_text(), js=(HERE / "page.js").read_text(),
        read_only=view.read_only, design=view.state.design, run_id=view.state.run_id)


def create_app(view: View, token: str) -> Any:
    """The ASGI application: the page, its state feed, and (unless read-only) the actions."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    page = render_page(view)

    def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    def state(request: Request) -> JSONResponse:
        return JSONResponse(view.snapshot())

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise WeblabError("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise WeblabError("the request body must be a JSON object")
        return body

    async def action(request: Request) -> JSONResponse:
        if view.actions is None:
            return JSONResponse({"ok": False, "error": "this view is read-only"}, status_code=403)
        try:
            req = await body_of(request)
        except WeblabError as e:
            return JSONResponse({"ok": False, "error": str(e)}, status_code=400)
        from starlette.concurrency import run_in_threadpool
        reply = await run_in_threadpool(view.actions.do, req)
        return JSONResponse(reply, status_code=200 if reply["ok"] else 409)

    async def sniff(request: Request) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool
        try:
            req = await body_of(request)
            if req.get("do") == "start":
                out = await run_in_threadpool(view.sniffer.start, str(req.get("link", "")), str(req.get("filter") or ""))
                view.timeline.add("action", f"sniff {req.get('link')}" + (f" for {req['filter']!r}" if req.get("filter") else ""))
            else:
                out = await run_in_threadpool(view.sniffer.stop)
        except WeblabError as e:
            return JSONResponse({"ok": False, "error": str(e)}, status_code=409)
        return JSONResponse({"ok": True, **out})

    routes = [Route("/", index), Route("/api/state", state), Route("/api/sniff", sniff, methods=["POST"])]
    if not view.read_only:
        routes.append(Route("/api/action", action, methods=["POST"]))
    return TokenGate(Starlette(routes=routes), token)


def listen(port: int) -> socket.socket:
    """A socket on 127.0.0.1:port (0: any free port), or an error naming another port to use."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as e:
        sock.close()
        raise WeblabError(f"cannot listen on 127.0.0.1:{port}: {e.strerror}; pick another with --port N "
                          f"(0 for any free one)") from None
    sock.listen(64)
    return sock


def lab_running(state: RunState) -> bool:
    """The lab is still there: its state file exists and its holder lives (a `weblab run` outlives its labs)."""
    return state.path.exists() and state.holder_alive()


def next_lab(holder_pid: int, timeout: float) -> RunState | None:
    """The next lab the same holder (a `weblab run` moving to its next case) brings up, once it is ready;
    None when none is ready within timeout or the holder has gone."""
    from weblab import running
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = running.current()
        except WeblabError:
            state = None
        if state is not None and state.holder is not None and state.holder.pid == holder_pid \
                and state.status == "ready" and state.control_socket is not None:
            return state
        if not Path(f"/proc/{holder_pid}").exists():
            return None
        time.sleep(0.5)
    return None


NEXT_LAB_TIMEOUT = 300.0


def serve(state: RunState, port: int = DEFAULT_PORT, read_only: bool = False,
          announce: Callable[[str], None] = print, token: str | None = None,
          say: Callable[[str], None] = print) -> None:
    """Serve the live view of the lab whose state this is until interrupted (SIGINT/SIGTERM) or until the lab
    stops; when a `weblab run` holds it, follow that run to its next lab (same URL: the page reloads itself).
    announce(url) once it listens, say(text) for anything else."""
    import uvicorn
    token = token or secrets.token_urlsafe(24)
    sock = listen(port)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/?token={token}"
    announced = False
    try:
        while True:
            view = View.build(state, read_only).start()
            config = uvicorn.Config(create_app(view, token), log_level="warning", access_log=False, lifespan="off",
                                    ws="none", timeout_graceful_shutdown=3)
            server = uvicorn.Server(config)
            ended, stopped = threading.Event(), threading.Event()

            def watch(view: View = view, server: Any = server, state: RunState = state,
                      ended: threading.Event = ended, stopped: threading.Event = stopped) -> None:
                # The view ends with its lab: it must not keep the lab's namespaces alive (its sockets in them).
                while not ended.wait(0.5):
                    if not lab_running(state):
                        stopped.set()
                        view.sampler.stop()
                        server.should_exit = True
                        return
            threading.Thread(target=watch, name="ui-watch", daemon=True).start()
            if not announced:
                announce(url)
                announced = True
            try:
                server.run(sockets=[sock.dup()])  # uvicorn closes what it was given; the listener stays ours
            finally:
                ended.set()
                view.close()
            holder = state.holder
            if not stopped.is_set():
                return
            if holder is None or not holder.alive():
                say("the lab stopped; so does its view")
                return
            say(f"the lab of run {state.run_id} stopped; waiting for the next lab of the same run ...")
            state = next_lab(holder.pid, NEXT_LAB_TIMEOUT)
            if state is None:
                say("no next lab; the view stops")
                return
            say(f"now showing {state.design} (run {state.run_id}) at the same URL")
    finally:
        sock.close()
