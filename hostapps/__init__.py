"""Hostapps: one module per daemon; the registry maps a service kind to its class."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the web application imports this package inside hosts: keep it light
    from hostapps.base import Service


def registry() -> dict[str, type["Service"]]:
    """Service kind -> class (imported lazily so a unit test of one does not need all)."""
    from hostapps.appserver import AppServer
    from hostapps.dbfailover import DbFailover
    from hostapps.dns import Dns
    from hostapps.exporters import MysqldExporter, NginxExporter, NodeExporter
    from hostapps.keepalived import Keepalived
    from hostapps.haproxy import HAProxy
    from hostapps.mail import Mail
    from hostapps.mariadb import MariaDB
    from hostapps.nginx import Nginx
    from hostapps.prometheus import Prometheus
    return {cls.kind: cls for cls in (Dns, MariaDB, AppServer, Nginx, HAProxy, Keepalived, DbFailover,
                                         Prometheus, NodeExporter, NginxExporter, MysqldExporter, Mail)}
