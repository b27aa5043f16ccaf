"""Design drawings: the Mininet graph of a design as Graphviz DOT, laid out and rendered by `dot`.

One drawing serves three readers: `weblab graph DESIGN -o FILE.svg|png`, the lab guides (docs/img/,
generated), and the live view, which colours the same SVG's links and hosts by their element ids
(`host-NAME`, `switch-NAME`, `link-KEY`). Graphviz does the layout because a layered drawing of
front network -> load balancers -> back network is exactly what `dot` ranks well, and its SVG keeps
the ids we give, so no layout code of our own is needed.
"""
from __future__ import annotations

import argparse
import hashlib
import html
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topologies import DESIGNS, get
from topologies.base import LabTopo
from weblab.core.errors import WeblabError

FORMATS = ("svg", "png")
FONT = "DejaVu Sans"
ROLE_COLOURS = {"client": "#ddf4ff", "dns": "#fff8c5", "lb": "#fbefff", "web": "#dafbe1", "server": "#dafbe1",
                "app": "#ffebe9", "db": "#fff1e5", "monitor": "#eaeef2", "mail": "#f6f8fa"}
ROLE_NAMES = {"client": "clients", "dns": "DNS", "lb": "load balancers", "web": "web servers",
              "server": "servers", "app": "app servers", "db": "database servers", "monitor": "monitoring",
              "mail": "mail"}
FRONT_ROLES = ("client", "dns", "mail")  # single-legged hosts drawn before their switch, as the guides' drawings do
DOCS_MARK = "<!-- weblab graph source sha256:"


@dataclass(frozen=True)
class Link:
    """One link of a design as the drawing and the live view name it."""

    key: str          # the design's alias (lb-back), else HOST:SWITCH (what weblab sniff/capture accept)
    host: str
    switch: str
    ip: str
    host_port: int

    @property
    def element_id(self) -> str:
        return "link-" + safe_id(self.key)


@dataclass
class Drawing:
    """What is drawn: hosts (role, addresses, VIPs), switches and links, read from a design's graph."""

    design: str
    params: dict[str, Any]
    changed: dict[str, Any] = field(default_factory=dict)   # the parameters that differ from the defaults
    summary: str = ""
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    switches: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)

    @classmethod
    def of(cls, topo: LabTopo) -> "Drawing":
        defaults = {k: p.default for k, p in type(topo).params.items()}
        d = cls(topo.design, dict(topo.values), {k: v for k, v in topo.values.items() if defaults.get(k) != v},
                type(topo).summary)
        d.switches = sorted(topo.switches(), key=_natural)
        for host in sorted(topo.hosts(), key=lambda h: (_role_rank(topo.role(h)), _natural(h))):
            legs = topo.legs(host)
            d.hosts[host] = {"role": topo.role(host), "ips": [str(leg["ip"].ip) for leg in legs],
                             "vips": topo.vips_of(host), "switches": [leg["switch"] for leg in legs],
                             "services": [s.kind for s in topo.services if s.host == host]}
            for leg in legs:
                key = leg["alias"] or f"{host}:{leg['switch']}"
                d.links.append(Link(key, host, leg["switch"], str(leg["ip"].ip), leg["host_port"]))
        return d

    def to_json(self) -> dict[str, Any]:
        return {"design": self.design, "params": self.params, "hosts": self.hosts, "order": list(self.hosts),
                "switches": self.switches,
                "links": [{"key": l.key, "host": l.host, "switch": l.switch, "ip": l.ip, "id": l.element_id}
                          for l in self.links]}


def safe_id(text: str) -> str:
    """An element id made of letters, digits, '-' and '_' only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def topology(design: str, params: dict[str, Any] | None = None) -> LabTopo:
    """The design's graph with its parameters, built without starting anything; bad input: WeblabError."""
    try:
        cls = get(design)
        return cls(**cls.resolve_params(params or {}))
    except ValueError as e:
        raise WeblabError(str(e)) from None


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _host_label(name: str, info: dict[str, Any]) -> str:
    rows = [f"<b>{html.escape(name)}</b>", html.escape(info["role"])]
    rows += [html.escape(ip) for ip in info["ips"]]
    rows += [f"VIP {html.escape(v)}" for v in info["vips"]]
    main = [k for k in info.get("services", []) if not k.endswith("_exporter")]
    exporters = len(info.get("services", [])) - len(main)
    words = " ".join(main) + (f" +{exporters} exporter{'s' if exporters > 1 else ''}" if exporters else "")
    if words:
        rows.append(f'<font point-size="8" color="#57606a">{html.escape(words)}</font>')
    return "<" + "<br/>".join(rows) + ">"


def dot_source(drawing: Drawing) -> str:
    """The DOT text of a drawing: left to right from the client's network to the back network."""
    params = ", ".join(f"{k}={v}" for k, v in sorted(drawing.changed.items()))
    title = drawing.design + (f" ({params})" if params else "") + (f": {drawing.summary}" if drawing.summary and not params else "")
    out = ["graph weblab {",
           f"  graph [rankdir=LR, nodesep=0.22, ranksep=0.8, fontname={_q(FONT)}, fontsize=13, labelloc=t, "
           f"label={_q(title)}, bgcolor=white, pad=0.2];",
           f"  node [fontname={_q(FONT)}, fontsize=10, shape=box, style=\"rounded,filled\", color=\"#57606a\", "
           "margin=\"0.12,0.05\"];",
           f"  edge [fontname={_q(FONT)}, fontsize=9, color=\"#8c959f\", fontcolor=\"#424a53\", penwidth=1.6];"]
    for sw in drawing.switches:
        out.append(f"  {_q(sw)} [id={_q('switch-' + safe_id(sw))}, class=\"switch\", shape=ellipse, style=filled, "
                   f"fillcolor=\"#d0d7de\", label={_q(sw)}];")
    by_role: dict[str, list[str]] = {}
    for name, info in drawing.hosts.items():
        by_role.setdefault(info["role"], []).append(name)
    for role, names in by_role.items():
        cluster = len(names) > 1 and role not in FRONT_ROLES
        if cluster:
            vips = sorted({v for n in names for v in drawing.hosts[n]["vips"]})
            label = ROLE_NAMES.get(role, role) + (f" (VIP {', '.join(vips)})" if vips else "")
            out.append(f"  subgraph {_q('cluster_' + safe_id(role))} {{ label={_q(label)}; style=\"rounded,dashed\"; "
                       "color=\"#afb8c1\"; fontsize=10;")
        for name in names:
            info = drawing.hosts[name]
            out.append(f"  {'  ' if cluster else ''}{_q(name)} [id={_q('host-' + safe_id(name))}, class="
                       f"{_q('host role-' + safe_id(info['role']))}, fillcolor={_q(ROLE_COLOURS.get(info['role'], '#ffffff'))}, "
                       f"label={_host_label(name, info)}];")
        if cluster:
            out.append("  }")
    for link in drawing.links:
        info = drawing.hosts[link.host]
        # Ranks follow the written direction: a host on two networks sits between its switches; a
        # client-side host before its switch; every other host after it.
        between = len(set(info["switches"])) > 1
        first = min(info["switches"], key=_switch_order)
        before = (info["role"] in FRONT_ROLES and not between) or (between and link.switch != first)
        a, b = (link.host, link.switch) if before else (link.switch, link.host)
        out.append(f"  {_q(a)} -- {_q(b)} [id={_q(link.element_id)}, class=\"link\", label={_q(link.key)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _switch_order(name: str) -> tuple[int, str]:
    digits = re.findall(r"\d+", name)
    return (int(digits[0]) if digits else 0, name)


def _natural(name: str) -> list[Any]:
    """server2 before server10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _role_rank(role: str) -> int:
    order = list(ROLE_COLOURS)
    return order.index(role) if role in order else len(order)


def render(dot: str, fmt: str = "svg", timeout: float = 30) -> bytes:
    """Lay out and render DOT with Graphviz's `dot`; a missing Graphviz is a WeblabError naming the fix."""
    if fmt not in FORMATS:
        raise WeblabError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    exe = shutil.which("dot")
    if exe is None:
        raise WeblabError("Graphviz's `dot` is not installed: sudo make install (or apt-get install graphviz)")
    try:
        res = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WeblabError(f"Graphviz took longer than {timeout:.0f} s to lay the drawing out") from None
    if res.returncode != 0:
        raise WeblabError(f"Graphviz failed: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout


def svg_inline(dot: str) -> str:
    """The SVG element alone (no XML prolog or doctype), to embed in a page."""
    text = render(dot, "svg").decode()
    return text[text.index("<svg"):]


def draw(design: str, params: dict[str, Any] | None, out: Path) -> Path:
    """`weblab graph`: draw design into out (.svg or .png, by its suffix)."""
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise WeblabError(f"-o {out}: the file must end in .svg or .png")
    if not out.parent.is_dir():
        raise WeblabError(f"cannot write {out}: {out.parent} is not a folder")
    out.write_bytes(render(dot_source(Drawing.of(topology(design, params))), fmt))
    return out


# --- the drawings the lab guides embed ----------------------------------------------------------------
def docs_dot(design: str) -> str:
    """The DOT of a design's guide drawing (its default parameters)."""
    return dot_source(Drawing.of(topology(design)))


def source_hash(dot: str) -> str:
    return hashlib.sha256(dot.encode()).hexdigest()


def docs_svg(design: str) -> str:
    """The guide drawing as SVG text, marked with the hash of its source so a test can tell it is current
    without depending on the Graphviz version that rendered it."""
    dot = docs_dot(design)
    svg = render(dot, "svg").decode()
    return svg.replace("<svg", f"{DOCS_MARK} {source_hash(dot)} -->\n<svg", 1)


def docs_path(folder: Path, design: str) -> Path:
    return Path(folder) / f"{design}.svg"


def stale_docs(folder: Path) -> list[str]:
    """Designs whose committed drawing under folder is missing or was drawn from another source."""
    stale = []
    for design in DESIGNS:
        path = docs_path(folder, design)
        mark = f"{DOCS_MARK} {source_hash(docs_dot(design))} -->"
        if not path.exists() or mark not in path.read_text():
            stale.append(design)
    return stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m weblab.ui.graph", description="redraw docs/img/DESIGN.svg")
    ap.add_argument("--docs", type=Path, default=Path("docs/img"), help="folder of the guides' drawings")
    args = ap.parse_args(argv)
    args.docs.mkdir(parents=True, exist_ok=True)
    for design in DESIGNS:
        docs_path(args.docs, design).write_text(docs_svg(design))
        print(f"drew {docs_path(args.docs, design)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
