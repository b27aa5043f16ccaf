"""Just enough HTTP for a WSGI app: a parsed request, a response, and body encoders."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

MAX_BODY = 64 * 1024


class HttpError(Exception):
    """A client error a handler raises; the app turns it into a response."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Response:
    """What a handler returns: status, headers and a byte body."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    def status_line(self) -> str:
        """The WSGI status string, e.g. '200 OK'."""
        return f"{self.status} {HTTPStatus(self.status).phrase}"


def text(status: int, body: str, *headers: tuple[str, str]) -> Response:
    """A text/plain response."""
    return Response(status, body.encode("utf-8"), [("Content-Type", "text/plain; charset=utf-8"), *headers])


def html(status: int, body: str, *headers: tuple[str, str]) -> Response:
    """A text/html response."""
    return Response(status, body.encode("utf-8"), [("Content-Type", "text/html; charset=utf-8"), *headers])


def as_json(status: int, value: Any, *headers: tuple[str, str]) -> Response:
    """An application/json response."""
    body = json.dumps(value, ensure_ascii=False, default=_jsonable) + "\n"
    return Response(status, body.encode("utf-8"), [("Content-Type", "application/json"), *headers])


def _jsonable(value: Any) -> Any:
    """JSON for the values rows hold besides str/int (timestamps)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class Request:
    """The parts of a WSGI environ the app reads."""

    def __init__(self, environ: dict[str, Any]):
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.path = environ.get("PATH_INFO", "") or "/"
        self.query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        self._body: bytes | None = None

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower case ('' when absent)."""
        return self.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()

    def arg(self, name: str) -> str | None:
        """The first value of query parameter name, or None."""
        values = self.query.get(name)
        return values[0] if values else None

    def body(self) -> bytes:
        """The request body, at most MAX_BODY bytes (413 beyond)."""
        if self._body is None:
            self._body = self._read_body()
        return self._body

    def _read_body(self) -> bytes:
        """Read the body the way the client framed it: Content-Length or chunked."""
        stream = self.environ["wsgi.input"]
        length = self.environ.get("CONTENT_LENGTH", "").strip()
        if length:
            if not length.isdigit():
                raise HttpError(400, "bad Content-Length")
            if int(length) > MAX_BODY:
                raise HttpError(413, f"body larger than {MAX_BODY} bytes")
            return stream.read(int(length))
        if "chunked" in self.environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            data = stream.read(MAX_BODY + 1)
            if len(data) > MAX_BODY:
                raise HttpError(413, f"body larger than {MAX_BODY} bytes")
            return data
        return b""

    def form(self) -> dict[str, str]:
        """The urlencoded body as a dict of first values (400 if it is not UTF-8)."""
        try:
            fields = parse_qs(self.body().decode("utf-8"), keep_blank_values=True,
                              encoding="utf-8", errors="strict", max_num_fields=100)
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "form body must be UTF-8 urlencoded") from None
        return {k: v[0] for k, v in fields.items()}

    def json(self) -> Any:
        """The body parsed as JSON (400 if it does not parse)."""
        try:
            return json.loads(self.body().decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "body is not valid JSON") from None
