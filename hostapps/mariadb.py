"""MariaDB: a per-run copy of a cached, pre-initialised data directory; app user and schema ready."""
from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hostapps.accounts import REPLICATION, users_sql
from hostapps.base import Service, render_template
from weblab.core import paths
from weblab.core.errors import WeblabError

SCHEMA = Path(__file__).resolve().parent / "webapp" / "schema.sql"


def _version() -> str:
    res = subprocess.run(["mariadbd", "--version"], capture_output=True, text=True, timeout=10)
    return res.stdout.strip()


def template_key() -> str:
    """Cache key: server version + schema + users, so any change rebuilds the template."""
    h = hashlib.sha256()
    h.update(_version().encode())
    h.update(SCHEMA.read_bytes())
    h.update(users_sql().encode())
    return h.hexdigest()[:16]


def ensure_template() -> Path:
    """Build (once, under a lock) the initialised datadir that every run copies."""
    root = paths.CACHE_ROOT / "mariadb"
    root.mkdir(parents=True, exist_ok=True)
    target = root / template_key()
    if (target / ".complete").exists():
        return target
    with open(root / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        _build_template(target)
    return target


def _build_template(target: Path) -> None:
    """mariadb-install-db, then load schema and users through a socket-only bootstrap server."""
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".build-"))
    shutil.chown(work, "mysql", "mysql")
    datadir = work / "data"
    log = work / "build.log"
    try:
        with open(log, "w") as out:
            res = subprocess.run(
                ["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={datadir}",
                 "--auth-root-authentication-method=socket", "--skip-test-db",
                 "--innodb-log-file-size=16M", "--innodb-buffer-pool-size=64M"],
                stdout=out, stderr=subprocess.STDOUT, timeout=120)
        if res.returncode != 0:
            raise WeblabError(f"mariadb-install-db failed (log: {log})")
        sock = work / "boot.sock"
        server = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--user=mysql", f"--datadir={datadir}",
             f"--socket={sock}", "--skip-networking", "--innodb-log-file-size=16M",
             "--innodb-buffer-pool-size=64M", f"--log-error={work / 'boot.err'}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={sock}", "ping"],
                                 capture_output=True, timeout=10).returncode != 0:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise WeblabError(f"bootstrap mariadbd did not answer (log: {work / 'boot.err'})")
                time.sleep(0.1)
            sql = SCHEMA.read_text() + "\n" + users_sql()
            res = subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root"],
                                 input=sql, capture_output=True, text=True, timeout=60)
            if res.returncode != 0:
                raise WeblabError(f"loading {SCHEMA} into the template failed: {res.stderr.strip()}")
            subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={sock}", "shutdown"],
                           capture_output=True, timeout=60)
            server.wait(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(timeout=10)
        (datadir / "binlog.index").unlink(missing_ok=True)
        (datadir / ".complete").touch()
        datadir.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class MariaDB(Service):
    """mariadbd with its own datadir, socket and logs in the run directory."""

    kind = "mariadb"
    binaries = {"mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server", "mariadb": "mariadb-client", "mariadb-admin": "mariadb-client"}
    ready_timeout = 30.0
    stop_timeout = 15.0
    defaults = {"port": 3306, "bind": "0.0.0.0", "server_id": 1, "binlog": False,
                "read_only": False, "flush_at_commit": 1, "replicate_from": "",
                "semi_sync": "", "semi_sync_timeout_ms": 30000, "buffer_pool_mb": 64,
                # ready without waiting for replication to run (a scenario that breaks it)
                "ready_without_replication": False}
    replication_timeout = 15.0

    @property
    def datadir(self) -> Path:
        return self.dir / "data"

    @property
    def socket(self) -> Path:
        return self.socket_in(self.dir)

    @staticmethod
    def socket_in(directory: Path) -> Path:
        """The local socket of a MariaDB whose run directory is `directory`."""
        return Path(directory) / "mysqld.sock"

    @property
    def conf(self) -> Path:
        return self.dir / "my.cnf"

    def render(self) -> None:
        shutil.chown(self.dir, "mysql", "mysql")
        self.conf.write_text(render_template(
            "my.cnf.j2", host=self.host.name, dir=self.dir, datadir=self.datadir, **self.opts))

    def prepare(self) -> None:
        if not self.datadir.exists():
            shutil.copytree(ensure_template(), self.datadir, symlinks=True)
            (self.datadir / ".complete").unlink(missing_ok=True)
            subprocess.run(["chown", "-R", "mysql:mysql", str(self.datadir)], check=True, timeout=30)

    def argv(self) -> list[str]:
        return ["mariadbd", f"--defaults-file={self.conf}"]

    def config_files(self) -> list[Path]:
        return [self.conf]

    def check_file_argv(self, path: Path, text_at: Path) -> list[list[str]]:
        # the server's own option parser: an unknown option or a bad value fails, nothing starts
        return [["mariadbd", f"--defaults-file={text_at}", "--help", "--verbose"]] if path == self.conf else []

    def reload_effect(self) -> str:
        text = "MariaDB restarts to read my.cnf: connections drop and queries fail until it answers again"
        if self.opts["replicate_from"]:
            return (text + "; replication stops meanwhile, then this replica reconnects to its primary and "
                    "catches up from its GTID position (writes made meanwhile arrive late, none is lost)")
        if self.opts["binlog"]:
            return (text + "; writes fail meanwhile, and the replicas lose their connection, retry every "
                    "second and catch up from their GTID position once it is back")
        return text

    @property
    def log(self) -> Path:
        return self.dir / "mariadb.err"

    def probe(self) -> bool:
        try:
            res = self.host.run(["mariadb-admin", "--no-defaults", f"--socket={self.socket}",
                                 "--connect-timeout=1", "ping"], timeout=5)
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0

    def after_ready(self) -> None:
        primary = self.opts["replicate_from"]
        if not primary:
            return
        status = self.replica_status()
        if status:  # a restart: the server kept its primary in its datadir and resumed by itself
            primary = status.get("Master_Host") or primary
        else:
            self.change_primary(primary)
        if not self.opts["ready_without_replication"]:
            self.wait_replicating(primary)

    def start_replication(self, primary: str) -> None:
        """GTID replication from primary (every copy starts from the same template: same data)."""
        self.change_primary(primary)
        self.wait_replicating(primary)

    def change_primary(self, primary: str) -> None:
        """Point replication at primary and start it (CHANGE MASTER TO, START SLAVE)."""
        self.sql(f"STOP SLAVE; CHANGE MASTER TO MASTER_HOST='{primary}', MASTER_PORT=3306, "
                 f"MASTER_USER='{REPLICATION.user}', MASTER_PASSWORD='{REPLICATION.password}', MASTER_USE_GTID=slave_pos, "
                 "MASTER_CONNECT_RETRY=1; START SLAVE;")

    def wait_replicating(self, primary: str) -> None:
        """Wait (bounded) until both replication threads run; an error with the last IO error."""
        deadline = time.monotonic() + self.replication_timeout
        while True:
            st = self.replica_status()
            if st.get("Slave_IO_Running") == "Yes" and st.get("Slave_SQL_Running") == "Yes":
                return
            if time.monotonic() > deadline:
                raise WeblabError(f"{self.name}: replication from {primary} did not start within "
                                  f"{self.replication_timeout:.0f} s: {st.get('Last_IO_Error') or st} "
                                  f"(log: {self.log})")
            time.sleep(0.1)

    def replica_status(self) -> dict[str, str]:
        """SHOW REPLICA STATUS as a dict (empty if this server is no replica)."""
        res = self.host.run(["mariadb", "--no-defaults", f"--socket={self.socket}", "-u", "root",
                             "-E", "-e", "SHOW SLAVE STATUS"], timeout=10)
        out = {}
        for line in res.stdout.splitlines():
            key, sep, value = line.strip().partition(": ")
            if sep:
                out[key] = value
        return out

    def sql(self, statement: str, timeout: float = 10) -> str:
        """Run SQL as root over the local socket, inside the host; tab-separated output."""
        res = self.host.run(["mariadb", "--no-defaults", f"--socket={self.socket}", "-u", "root",
                             "-N", "-B", "-e", statement], timeout=timeout)
        if res.returncode != 0:
            raise WeblabError(f"{self.name}: SQL failed: {res.stderr.strip()}")
        return res.stdout
