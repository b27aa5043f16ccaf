"""Every account of the lab in one place: the database users the services log in as, and the web
application's demo login. Lab secrets only: they never leave the lab's namespaces."""
from __future__ import annotations

from dataclasses import dataclass

DATABASE = "foobar"   # the web application's schema (hostapps/webapp/schema.sql)


@dataclass(frozen=True)
class DbAccount:
    """A MariaDB user, its password and what it may do."""

    user: str
    password: str
    grants: str                 # GRANT <grants>
    max_connections: int = 0    # 0: no per-user limit

    def sql(self) -> str:
        """CREATE USER + GRANT for this account."""
        limit = f" WITH MAX_USER_CONNECTIONS {self.max_connections}" if self.max_connections else ""
        return (f"CREATE USER IF NOT EXISTS '{self.user}'@'%' IDENTIFIED BY '{self.password}'{limit};\n"
                f"GRANT {self.grants} TO '{self.user}'@'%';\n")


APP = DbAccount("app", "app-secret", f"ALL PRIVILEGES ON {DATABASE}.*")
REPLICATION = DbAccount("repl", "repl-secret", "REPLICATION SLAVE, REPLICATION CLIENT, SLAVE MONITOR ON *.*")
EXPORTER = DbAccount("exporter", "exporter-secret", "PROCESS, REPLICATION CLIENT, SLAVE MONITOR, SELECT ON *.*",
                     max_connections=3)
# the failover manager promotes a replica: it stops/resets replication and sets read_only
FAILOVER = DbAccount("failover", "failover-secret", "ALL PRIVILEGES ON *.*")
DB_ACCOUNTS = (APP, REPLICATION, EXPORTER, FAILOVER)

# The web application's seeded user (schema.sql holds its salted hash): what a login sends.
WEB_USER, WEB_PASSWORD = "alice", "wonderland"


def users_sql() -> str:
    """The lab's database users, baked into the MariaDB template."""
    return "".join(a.sql() for a in DB_ACCOUNTS) + "FLUSH PRIVILEGES;\n"

# The SNMP community the lab's snmpd agents answer (read-only, IF-MIB's ifXTable only, from the
# monitor host and the agent's own address): a lab secret, only ever sent on the back network.
SNMP_COMMUNITY = "weblab-monitor"
