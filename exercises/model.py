"""An exercise as data: one YAML file in exercises/, read with every value's line kept, so that a
malformed file is reported as `FILE:LINE: FIELD: what is wrong`.

    title: one line
    design: distributed            # the design the lab must run
    scenario: one-server-only      # optional: the fault it starts with (topologies/scenarios.py)
    params: {servers: 2}           # optional: design parameters the lab must have
    task: |
      what the student is asked to do
    learn: |                       # optional: what it teaches (the exercise's page shows it)
      the idea behind it
    checks:                        # each: a name, a hint and exactly one kind with its fields
      - name: both servers are UP
        haproxy: {on: lb1, servers: {server1: UP, server2: UP}}
        hint: what to look at when it fails
        within: 8                  # optional: keep trying this many seconds
        while_stopped: haproxy@lb1 # optional: the check runs with this service stopped
    solution:                      # the reference solution, as weblab commands (a shell runs each)
      - weblab lb ...
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from weblab.core.errors import WeblabError

HERE = Path(__file__).resolve().parent
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
SERVICE = re.compile(r"^[a-z_]+@[A-Za-z0-9_-]+$")


class ExerciseError(WeblabError):
    """A malformed exercise file: the message names the file, the line and the field."""


class NoChecks(WeblabError):
    """An exercise without a single check: nothing to grade."""


# --- YAML with lines -----------------------------------------------------------------------------
class YMap(dict):
    """A mapping read from YAML, with its own line and each key's line (1-based)."""

    line: int = 0
    lines: dict[str, int]


class YList(list):
    """A sequence read from YAML, with its own line and each item's line (1-based)."""

    line: int = 0
    lines: list[int]


def load_yaml(text: str, where: str) -> Any:
    """Safe YAML (plain data only) into YMap/YList/scalars that keep their lines."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
            return _build(root, loader, where) if root is not None else None
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark else 0
            raise ExerciseError(f"{where}:{line}: not valid YAML: {e.problem or e.context}") from None
        except yaml.YAMLError as e:
            raise ExerciseError(f"{where}: not valid YAML: {e}") from None
    finally:
        loader.dispose()


def _build(node: yaml.Node, loader: yaml.SafeLoader, where: str) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = YMap()
        out.line, out.lines = line, {}
        for key_node, value_node in node.value:
            key = _build(key_node, loader, where)
            if not isinstance(key, str):
                hint = " (YAML reads on/off/yes/no as true/false: quote it)" if isinstance(key, bool) else ""
                raise ExerciseError(f"{where}:{key_node.start_mark.line + 1}: keys must be text, got "
                                    f"{key!r}{hint}")
            if key in out:
                raise ExerciseError(f"{where}:{key_node.start_mark.line + 1}: {key}: given twice")
            out[key] = _build(value_node, loader, where)
            out.lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = YList(_build(item, loader, where) for item in node.value)
        seq.line, seq.lines = line, [item.start_mark.line + 1 for item in node.value]
        return seq
    return loader.construct_object(node, deep=True)


# --- the model -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One assertion about the live lab: its kind's fields, a hint for when it fails."""

    kind: str
    name: str
    hint: str
    spec: dict[str, Any]
    line: int
    within: float
    while_stopped: str = ""


@dataclass(frozen=True)
class Exercise:
    """A task on a design (maybe started broken), the checks that grade it, a reference solution."""

    name: str
    path: Path
    title: str
    design: str
    scenario: str
    task: str
    checks: list[Check]
    solution: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    learn: str = ""


class Fields:
    """Reads one mapping's fields, each error naming the file, the line and the dotted field."""

    def __init__(self, data: Any, where: str, path: str, line: int):
        self.where, self.path = where, path
        if not isinstance(data, dict):
            self.fail(f"must be a mapping (KEY: VALUE lines), got {_what(data)}", line)
        self.data: YMap = data
        self.line = getattr(data, "line", line)
        self.used: set[str] = set()

    def field_name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def line_of(self, key: str) -> int:
        return getattr(self.data, "lines", {}).get(key, self.line)

    def fail(self, problem: str, line: int | None = None, key: str | None = None) -> None:
        name = self.field_name(key) if key else self.path or "(top)"
        raise ExerciseError(f"{self.where}:{line if line is not None else self.line}: {name}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False,
            check: Callable[[Any], str | None] | None = None) -> Any:
        """The value of key, of kind; `check` returns a problem or None."""
        self.used.add(key)
        if key not in self.data:
            if required:
                self.fail("is required", self.line, key)
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:  # YAML's yes/no are not numbers here
            ok = False
        else:
            ok = isinstance(value, kinds) or (float in kinds and isinstance(value, int))
        if not ok:
            named = [k for k in kinds if not (k is int and float in kinds)]  # a number covers whole ones
            self.fail(f"must be {' or '.join(_type_name(k) for k in named)}, got {_what(value)}",
                      self.line_of(key), key)
        problem = check(value) if check else None
        if problem:
            self.fail(problem, self.line_of(key), key)
        return value

    def sub(self, key: str) -> "Fields":
        """The mapping under key."""
        return Fields(self.data.get(key), self.where, self.field_name(key), self.line_of(key))

    def done(self) -> None:
        """No key left unread: a misspelt field is an error, not a silently ignored one."""
        unknown = [k for k in self.data if k not in self.used]
        if unknown:
            self.fail(f"unknown field (known: {', '.join(sorted(self.used))})", self.line_of(unknown[0]),
                      unknown[0])


def _type_name(kind: type) -> str:
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false",
            list: "a list", dict: "a mapping"}.get(kind, kind.__name__)


def _what(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def non_empty(value: Any) -> str | None:
    return None if (value.strip() if isinstance(value, str) else value) else "must not be empty"


# --- reading a file --------------------------------------------------------------------------------
def parse(text: str, path: Path, name: str | None = None) -> Exercise:
    """An Exercise from the text of its YAML file; ExerciseError (file, line, field) if malformed,
    NoChecks if it has none."""
    from exercises import checks as kinds
    from topologies import DESIGNS, scenarios
    where = str(path)
    top = Fields(load_yaml(text, where), where, "", 1)
    title = top.get("title", str, required=True, check=non_empty).strip()
    design = top.get("design", str, required=True)
    if design not in DESIGNS:
        top.fail(f"unknown design {design!r}; designs: {', '.join(DESIGNS)}", top.line_of("design"), "design")
    scenario = top.get("scenario", str, default="")
    if scenario:
        try:
            known = scenarios.get(scenario)
        except ValueError as e:
            top.fail(str(e), top.line_of("scenario"), "scenario")
        if design not in known.designs:
            top.fail(f"scenario {scenario} is for {', '.join(known.designs)}, not {design}",
                     top.line_of("scenario"), "scenario")
    params = top.get("params", dict, default={})
    if params:
        try:
            DESIGNS[design].resolve_params(dict(params))
        except ValueError as e:
            top.fail(str(e), top.line_of("params"), "params")
    task = top.get("task", str, required=True, check=non_empty)
    learn = top.get("learn", str, default="")
    raw_checks = top.get("checks", list, default=[])
    solution = top.get("solution", list, required=True, check=non_empty)
    for i, step in enumerate(solution):
        if not isinstance(step, str) or not step.strip():
            top.fail("each step must be a command line (text)", solution.lines[i], f"solution[{i}]")
    top.done()
    parsed = [parse_check(item, where, f"checks[{i}]", raw_checks.lines[i], kinds.KINDS)
              for i, item in enumerate(raw_checks)]
    if not parsed:
        raise NoChecks(f"{where}: exercise has no checks: nothing to grade")
    names = [c.name for c in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ExerciseError(f"{where}:{raw_checks.line}: checks: two checks are named {dupes[0]!r}")
    return Exercise(name or path.stem, path, title, design, scenario, task.strip() + "\n", parsed,
                    [s.strip() for s in solution], dict(params), learn.strip())


def parse_check(item: Any, where: str, path: str, line: int, kinds: dict[str, Any]) -> Check:
    """One check: name, hint, exactly one kind (its fields read by that kind), within, while_stopped."""
    f = Fields(item, where, path, line)
    name = f.get("name", str, required=True, check=non_empty).strip()
    hint = f.get("hint", str, required=True, check=non_empty).strip()
    stopped = f.get("while_stopped", str, default="",
                    check=lambda v: None if SERVICE.match(v) else "must be KIND@HOST, like haproxy@lb1")
    present = [k for k in f.data if k in kinds]
    if len(present) != 1:
        f.fail(f"needs exactly one kind of check ({', '.join(kinds)}); "
               f"{'found ' + ', '.join(present) if present else 'found none'}", f.line)
    kind = present[0]
    f.used.add(kind)
    spec = kinds[kind].read(f.sub(kind))
    within = f.get("within", (int, float), default=kinds[kind].within, check=non_negative)
    f.done()
    return Check(kind, name, hint, spec, line, float(within), stopped)


def load(path: Path) -> Exercise:
    """Read and check one exercise file."""
    try:
        text = path.read_text()
    except OSError as e:
        raise WeblabError(f"cannot read exercise {path}: {e.strerror}") from None
    return parse(text, path)


def find(name_or_path: str) -> Path:
    """An exercise by name (exercises/NAME.yaml) or as a file; an error naming the known ones."""
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise WeblabError(f"no exercise file {path}")
        return path
    if not NAME.match(name_or_path):
        raise WeblabError(f"exercise name {name_or_path!r}: lower-case letters, digits and '-' (or give a file)")
    path = HERE / f"{name_or_path}.yaml"
    if not path.is_file():
        raise WeblabError(f"unknown exercise {name_or_path!r}; exercises: {', '.join(names()) or 'none'} "
                          f"(see: weblab list)")
    return path


def names() -> list[str]:
    """The exercises shipped in exercises/."""
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def all_exercises() -> list[Exercise]:
    """Every shipped exercise, parsed."""
    return [load(HERE / f"{n}.yaml") for n in names()]
