"""The address guard: an attack tool only ever targets addresses of the lab networks it was given.

Every tool takes the lab's networks on its command line (`--lab-net 10.0.1.0/24`, repeated) and
checks every address it would send to against them before anything is sent; it also refuses to run
on an interface whose own address is outside them (i.e. outside a lab host).
"""
from __future__ import annotations

import ipaddress
from typing import Iterable

MIN_PREFIX = 16  # a wider "lab network" would defeat the guard


class GuardError(ValueError):
    """An address or network the attack tools refuse; the message says which and why."""


class AddressGuard:
    """The lab's networks; `check` passes only unicast host addresses inside them."""

    def __init__(self, networks: Iterable[str]):
        nets = []
        for text in networks:
            try:
                net = ipaddress.IPv4Network(text, strict=True)
            except ValueError as err:
                raise GuardError(f"--lab-net {text!r}: not an IPv4 network ({err})") from None
            if not net.is_private:
                raise GuardError(f"--lab-net {net}: not a private network; lab networks are private")
            if net.prefixlen < MIN_PREFIX:
                raise GuardError(f"--lab-net {net}: wider than /{MIN_PREFIX}; give the lab's own networks")
            nets.append(net)
        if not nets:
            raise GuardError("no --lab-net given: the tool only aims at the lab's networks")
        self.networks = tuple(nets)

    def network_of(self, address: str) -> ipaddress.IPv4Network | None:
        """The lab network holding address, or None."""
        ip = ipaddress.IPv4Address(address)
        return next((n for n in self.networks if ip in n), None)

    def check(self, address: str, what: str = "address") -> str:
        """address, normalised, if it is a host address of a lab network; GuardError otherwise."""
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            raise GuardError(f"{what} {address!r}: not an IPv4 address") from None
        net = self.network_of(str(ip))
        if net is None:
            raise GuardError(f"{what} {ip} is outside the lab networks "
                             f"({', '.join(map(str, self.networks))}): refused")
        if net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
            raise GuardError(f"{what} {ip} is the network or broadcast address of {net}: refused")
        return str(ip)

    def check_own(self, address: str, iface: str) -> str:
        """The attacker's own address on iface must be a lab address too (the tool runs in a lab host)."""
        return self.check(address, f"the address of {iface}")

    def same_network(self, *addresses: str) -> ipaddress.IPv4Network:
        """The one lab network holding every address (ARP reaches only one link)."""
        nets = {self.network_of(self.check(a)) for a in addresses}
        if len(nets) != 1:
            raise GuardError(f"{', '.join(addresses)} are not on one lab network: ARP spoofing works on one link")
        return nets.pop()
