"""The application's configuration, read only from WEBLAB_* environment variables."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Mapping

DEFAULT_DB = "127.0.0.1:3306"


@dataclass(frozen=True)
class Config:
    """Who this server is and where its databases are."""

    server_name: str
    db_read: tuple[str, int]
    db_write: tuple[str, int]
    db_user: str
    db_password: str
    db_name: str
    db_timeout: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Config":
        """Build the configuration from the environment; a malformed value raises ValueError."""
        env = os.environ if env is None else env
        return cls(
            # Lab hosts share one hostname, so the hostname is only a last-resort default.
            server_name=parse_server_name(env.get("WEBLAB_SERVER_NAME") or socket.gethostname()),
            db_read=parse_address(env.get("WEBLAB_DB_READ") or DEFAULT_DB, "WEBLAB_DB_READ"),
            db_write=parse_address(env.get("WEBLAB_DB_WRITE") or DEFAULT_DB, "WEBLAB_DB_WRITE"),
            db_user=env.get("WEBLAB_DB_USER", "foobar"),
            db_password=env.get("WEBLAB_DB_PASSWORD", ""),
            db_name=env.get("WEBLAB_DB_NAME") or "foobar",
            db_timeout=parse_timeout(env.get("WEBLAB_DB_TIMEOUT") or "2"),
        )


def parse_server_name(value: str) -> str:
    """The server's name as it goes into a header: printable ASCII, no spaces."""
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError(f"WEBLAB_SERVER_NAME={value!r}: expected printable ASCII without spaces")
    return value


def parse_address(value: str, name: str = "address") -> tuple[str, int]:
    """Split 'host:port', '[v6]:port' or 'host' (port 3306) into (host, port)."""
    value = value.strip()
    host, port = value, "3306"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{name}={value!r}: expected [host]:port")
            port = rest[1:]
    elif value.count(":") == 1:
        host, port = value.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{name}={value!r}: expected host:port with a port in 1..65535")
    return host, int(port)


def parse_timeout(value: str) -> float:
    """A positive number of seconds for WEBLAB_DB_TIMEOUT."""
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"WEBLAB_DB_TIMEOUT={value!r}: expected seconds, e.g. 2") from None
    if not 0 < seconds <= 300:
        raise ValueError(f"WEBLAB_DB_TIMEOUT={value!r}: expected 0 < seconds <= 300")
    return seconds
