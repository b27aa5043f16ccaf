"""The HTML pages, built with html.escape around every value that came from a user or a database."""
from __future__ import annotations

from datetime import datetime
from html import escape

from hostapps.webapp.db import Item

SITE = "foobar.com"


def _when(moment: datetime | None) -> str:
    """A row timestamp to the millisecond, as shown on the page."""
    return moment.isoformat(sep=" ", timespec="milliseconds") if moment else ""


def _page(title: str, body: str) -> str:
    """A complete HTML document around body."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n"
        "<link rel=\"stylesheet\" href=\"/static/index.css\">\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )


def index(server: str, items: list[Item]) -> str:
    """The home page: who served it and the items table."""
    rows = "".join(
        f"<tr><td>{item.id}</td><td>{escape(item.name)}</td>"
        f"<td>{_when(item.created_at)}</td></tr>\n"
        for item in items
    )
    body = (
        f"<h1>{SITE}</h1>\n"
        f"<p class=\"served-by\">Served by {escape(server)}</p>\n"
        "<table class=\"items\">\n<tr><th>id</th><th>name</th><th>created_at</th></tr>\n"
        f"{rows}</table>\n"
        "<p><a href=\"/login\">Log in</a></p>\n"
    )
    return _page(SITE, body)


def login_form(server: str, message: str = "") -> str:
    """The login form (a plain urlencoded POST, readable on the wire on purpose)."""
    note = f"<p class=\"message\">{escape(message)}</p>\n" if message else ""
    body = (
        f"<h1>Log in to {SITE}</h1>\n{note}"
        "<form method=\"post\" action=\"/login\" enctype=\"application/x-www-form-urlencoded\">\n"
        "<label>Username <input name=\"username\" autocomplete=\"username\"></label>\n"
        "<label>Password <input name=\"password\" type=\"password\""
        " autocomplete=\"current-password\"></label>\n"
        "<button type=\"submit\">Log in</button>\n</form>\n"
        f"<p class=\"served-by\">Served by {escape(server)}</p>\n"
    )
    return _page(f"Log in - {SITE}", body)


def welcome(server: str, username: str) -> str:
    """The page after a successful login."""
    body = (
        f"<h1>Welcome, {escape(username)}</h1>\n"
        f"<p class=\"served-by\">Served by {escape(server)}</p>\n"
        "<p><a href=\"/\">Home</a></p>\n"
    )
    return _page(SITE, body)
