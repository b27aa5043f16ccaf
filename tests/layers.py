"""The layers of weblab and the imports between them, read from the source (ast), function-level too.

    python -m tests.layers            # every edge against the direction, and module cycles (exit 1)
    python -m tests.layers --graph    # the package graph as Graphviz DOT
    python -m tests.layers --markdown # the package graph as the table docs/layers.md embeds

A layer may import the layers it lists in ALLOWED, nothing else; tests/unit/test_layers.py fails on
any other edge, so the direction drawn in docs/layers.md stays true.
"""
from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("weblab", "topologies", "controllers", "hostapps", "experiments", "exercises")

# layer -> the layers it may import (besides itself). Top to bottom, as docs/layers.md draws them.
ALLOWED: dict[str, set[str]] = {
    "cli": {"exercises", "experiments", "ui", "lab", "hostapps", "controllers", "core", "topologies"},
    "exercises": {"core", "topologies", "hostapps"},
    "experiments": {"core", "topologies", "hostapps", "controllers"},
    "ui": {"lab", "core", "topologies", "hostapps", "controllers"},
    "lab": {"hostapps", "controllers", "core", "topologies"},
    "hostapps": {"core"},
    "controllers": {"core"},
    "core": set(),
    "topologies": set(),
}
ORDER = tuple(ALLOWED)


def layer_of(module: str) -> str:
    """The layer a dotted module name belongs to."""
    parts = module.split(".")
    if parts[0] == "weblab":
        if len(parts) > 1 and parts[1] in ("core", "ui"):
            return parts[1]
        if len(parts) > 1 and parts[1] in ("cli", "__main__"):
            return "cli"
        return "lab"
    return parts[0]


@dataclass(frozen=True)
class Edge:
    """One import statement: who imports what, where."""

    src: str
    dst: str
    path: str
    line: int
    in_function: bool
    typing_only: bool = False  # under `if TYPE_CHECKING:`: a type hint, no import at run time

    def __str__(self) -> str:
        where = " (inside a function)" if self.in_function else ""
        return f"{self.path}:{self.line}: {self.src} [{layer_of(self.src)}] imports {self.dst} [{layer_of(self.dst)}]{where}"


def modules(root: Path = REPO) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")) if (root / pkg).is_dir() else ():
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that name refers to (a module, or a name inside one)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: dict[str, Path], path: str):
        self.module, self.is_package, self.known, self.path = module, is_package, known, path
        self.depth = 0
        self.typing = 0
        self.edges: list[Edge] = []

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
        if name == "TYPE_CHECKING":
            self.typing += 1
            for child in node.body:
                self.visit(child)
            self.typing -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, name: str, node: ast.AST) -> None:
        dst = _resolve(name, self.known)
        if dst is not None and dst != self.module:
            self.edges.append(Edge(self.module, dst, self.path, node.lineno, self.depth > 0, self.typing > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            pkg = self.module.split(".") if self.is_package else self.module.split(".")[:-1]
            pkg = pkg[:len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        for alias in node.names:
            self._add(f"{base}.{alias.name}" if base else alias.name, node)

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("pkg.mod") with a constant name is an import too
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr == "import_module" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            self._add(node.args[0].value, node)
        self.generic_visit(node)


def edges(root: Path = REPO) -> list[Edge]:
    """Every import between the project's modules."""
    known = modules(root)
    out = []
    for mod, path in known.items():
        v = _Visitor(mod, path.name == "__init__.py", known, str(path.relative_to(root)))
        v.visit(ast.parse(path.read_text(), str(path)))
        out += v.edges
    return out


def violations(all_edges: list[Edge]) -> list[Edge]:
    """Edges that go against the direction: to a layer the importer may not use."""
    return [e for e in all_edges if layer_of(e.src) != layer_of(e.dst)
            and layer_of(e.dst) not in ALLOWED.get(layer_of(e.src), set())]


def cycles(all_edges: list[Edge]) -> list[list[str]]:
    """Module import cycles (each as the list of modules on it), function-level imports included."""
    graph: dict[str, set[str]] = defaultdict(set)
    for e in all_edges:
        # a package's __init__ re-exporting its own modules is not a cycle of the design, nor is
        # a type hint (it imports nothing at run time)
        if not e.dst.startswith(e.src + ".") and not e.typing_only:
            graph[e.src].add(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def layer_graph(all_edges: list[Edge]) -> dict[tuple[str, str], int]:
    """(importer layer, imported layer) -> number of import statements."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for e in all_edges:
        a, b = layer_of(e.src), layer_of(e.dst)
        if a != b:
            out[(a, b)] += 1
    return dict(out)


def dot(all_edges: list[Edge]) -> str:
    """The layer graph in Graphviz DOT, top layer first; an edge against the direction in red."""
    graph = layer_graph(all_edges)
    present = [l for l in ORDER if any(l in k for k in graph)]
    lines = ["digraph layers {", "  rankdir=TB; node [shape=box, fontname=Helvetica];"]
    lines += [f'  "{l}";' for l in present]
    for (a, b), n in sorted(graph.items(), key=lambda kv: (ORDER.index(kv[0][0]), ORDER.index(kv[0][1]))):
        bad = b not in ALLOWED.get(a, set())
        lines.append(f'  "{a}" -> "{b}" [label="{n}"{", color=red" if bad else ""}];')
    lines.append("}")
    return "\n".join(lines)


DOC_BEGIN = "<!-- generated by python -m tests.layers --markdown: do not edit -->"
DOC_END = "<!-- end of generated graph -->"


def markdown(all_edges: list[Edge]) -> str:
    """The layer graph as a Markdown table: each layer, what it imports, who imports it."""
    graph = layer_graph(all_edges)
    rows = ["| layer | imports | imported by | may import |", "|---|---|---|---|"]
    for layer in ORDER:
        out = [b for (a, b) in sorted(graph, key=lambda k: ORDER.index(k[1])) if a == layer]
        into = [a for (a, b) in sorted(graph, key=lambda k: ORDER.index(k[0])) if b == layer]
        allowed = ", ".join(sorted(ALLOWED[layer], key=ORDER.index)) or "nothing of weblab"
        if out or into:
            rows.append(f"| {layer} | {', '.join(out) or 'nothing of weblab'} | {', '.join(into) or 'nothing'} "
                        f"| {allowed} |")
    return "\n".join([DOC_BEGIN, *rows, DOC_END])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.layers", description=__doc__.splitlines()[0])
    ap.add_argument("--graph", action="store_true", help="print the layer graph as Graphviz DOT")
    ap.add_argument("--markdown", action="store_true", help="print the layer graph as docs/layers.md's table")
    args = ap.parse_args(argv)
    all_edges = edges()
    if args.graph or args.markdown:
        print(dot(all_edges) if args.graph else markdown(all_edges))
        return 0
    bad, loops = violations(all_edges), cycles(all_edges)
    for e in bad:
        print(f"against the direction: {e}")
    for loop in loops:
        print(f"cycle: {' <-> '.join(loop)}")
    print(f"{len(all_edges)} imports, {len(bad)} against the direction, {len(loops)} cycles")
    return 1 if bad or loops else 0


if __name__ == "__main__":
    sys.exit(main())
