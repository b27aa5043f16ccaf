"""Attack tools run inside a lab host (`python -m experiments.attacks.X ...`), aimed only at lab addresses.

guard     the address guard every tool applies first: only addresses of the lab networks given
arpspoof  ARP-spoofing man-in-the-middle: poison two victims, forward, restore their caches
harvest   a credential harvester over what crosses the attacker (and a live sniffer printing it)
proxy     a transparent proxy behind an nftables redirect: rewrite pages, strip HTTPS, impersonate
mitm      the three together, as `weblab attack mitm` runs it
"""
