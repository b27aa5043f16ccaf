"""Database access over pymysql: reads go to the local server, writes to the primary."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import pymysql

from hostapps.webapp.config import Config

log = logging.getLogger("weblab.webapp")

ITEMS_LIMIT = 100
# A reused connection idle longer than this is pinged first, so a restarted server costs no error.
PING_AFTER_IDLE_S = 1.0


class DatabaseUnavailable(Exception):
    """The database could not be reached or failed the query; the app answers 503."""


@dataclass(frozen=True)
class Item:
    """One row of table items."""

    id: int
    name: str
    created_at: datetime | None


@dataclass(frozen=True)
class User:
    """The credentials of one row of table users."""

    id: int
    username: str
    salt: str
    iterations: int
    password_hash: str


class Database:
    """The queries the app needs, on one reused connection per worker thread and server."""

    def __init__(self, config: Config, connect: Callable[..., Any] = pymysql.connect):
        self.config = config
        self._connect = connect
        self._local = threading.local()

    def list_items(self, limit: int = ITEMS_LIMIT) -> list[Item]:
        """The latest `limit` items from the read server, oldest first."""
        rows = self._query(self.config.db_read,
                           "SELECT id, name, created_at FROM (SELECT id, name, created_at FROM items"
                           " ORDER BY id DESC LIMIT %s) AS latest ORDER BY id", (limit,))
        return [Item(int(r[0]), r[1], r[2]) for r in rows]

    def add_item(self, name: str) -> int:
        """Insert an item on the write server; its id."""
        return self._execute(self.config.db_write, "INSERT INTO items (name) VALUES (%s)", (name,))

    def find_user(self, username: str) -> User | None:
        """The user named username from the read server, or None."""
        rows = self._query(self.config.db_read,
                           "SELECT id, username, salt, iterations, password_hash FROM users"
                           " WHERE username = %s", (username,))
        if not rows:
            return None
        r = rows[0]
        return User(int(r[0]), r[1], r[2], int(r[3]), r[4])

    def create_session(self, user_id: int, token_sha256: str) -> None:
        """Record a login session (by the token's hash) on the write server."""
        self._execute(self.config.db_write,
                      "INSERT INTO sessions (token_sha256, user_id, expires_at)"
                      " VALUES (%s, %s, NOW() + INTERVAL 1 DAY)", (token_sha256, user_id))

    def ping(self) -> None:
        """Check that the read server answers a query."""
        self._query(self.config.db_read, "SELECT 1", ())

    def close(self) -> None:
        """Close this thread's connections."""
        for conn, _ in getattr(self._local, "conns", {}).values():
            _quiet_close(conn)
        self._local.conns = {}

    def _query(self, addr: tuple[str, int], sql: str, args: tuple) -> list[tuple]:
        """Run a SELECT on addr; its rows."""
        return self._run(addr, sql, args, lambda cur: list(cur.fetchall()))

    def _execute(self, addr: tuple[str, int], sql: str, args: tuple) -> int:
        """Run a write on addr (autocommit); the last insert id."""
        return self._run(addr, sql, args, lambda cur: int(cur.lastrowid or 0))

    def _run(self, addr: tuple[str, int], sql: str, args: tuple, result: Callable[[Any], Any]) -> Any:
        """Run one statement on addr's connection; any failure drops the connection and raises."""
        conn = self._connection(addr)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                out = result(cur)
        except (pymysql.MySQLError, OSError) as e:
            self._drop(addr)
            log.warning("database %s:%d failed: %s", *addr, e)
            raise DatabaseUnavailable(f"database {addr[0]}:{addr[1]} failed") from e
        self._local.conns[addr] = (conn, time.monotonic())
        return out

    def _connection(self, addr: tuple[str, int]) -> Any:
        """This thread's live connection to addr, (re)connecting with bounded timeouts."""
        conns = self._local.__dict__.setdefault("conns", {})
        if addr in conns:
            conn, last_used = conns[addr]
            if time.monotonic() - last_used < PING_AFTER_IDLE_S:
                return conn
            started = time.monotonic()
            try:
                conn.ping(reconnect=False)
                return conn
            except (pymysql.MySQLError, OSError) as e:
                self._drop(addr)
                # A stale socket fails at once; a slow failure means the server is sick: no second wait.
                if time.monotonic() - started >= self.config.db_timeout / 2:
                    log.warning("database %s:%d not answering: %s", *addr, e)
                    raise DatabaseUnavailable(f"database {addr[0]}:{addr[1]} not answering") from e
        try:
            conn = self._open(addr)
        except (pymysql.MySQLError, OSError) as e:
            log.warning("database %s:%d unreachable: %s", *addr, e)
            raise DatabaseUnavailable(f"database {addr[0]}:{addr[1]} unreachable") from e
        conns[addr] = (conn, time.monotonic())
        return conn

    def _open(self, addr: tuple[str, int]) -> Any:
        """A new autocommit connection (autocommit: a reused reader must not keep an old snapshot)."""
        c = self.config
        return self._connect(host=addr[0], port=addr[1], user=c.db_user, password=c.db_password,
                             database=c.db_name, charset="utf8mb4", autocommit=True,
                             connect_timeout=c.db_timeout, read_timeout=c.db_timeout,
                             write_timeout=c.db_timeout)

    def _drop(self, addr: tuple[str, int]) -> None:
        """Forget and close this thread's connection to addr."""
        conn, _ = self._local.conns.pop(addr, (None, 0.0))
        if conn is not None:
            _quiet_close(conn)


def _quiet_close(conn: Any) -> None:
    """Close a connection that may already be broken."""
    try:
        conn.close()
    except (pymysql.MySQLError, OSError):
        pass
