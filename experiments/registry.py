"""Slug -> experiment class; a claim registers itself with @register in experiments/claims/<slug>.py."""
from __future__ import annotations

import importlib
import pkgutil
import re
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from experiments.base import Experiment

_CLASSES: dict[str, type["Experiment"]] = {}
_loaded = False
E = TypeVar("E", bound=type)


def register(cls: E) -> E:
    """Class decorator: make an Experiment subclass reachable as `weblab run <slug>`."""
    slug = getattr(cls, "slug", "")
    if not slug:
        raise ValueError(f"{cls.__name__} has no slug")
    other = _CLASSES.get(slug)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise ValueError(f"slug {slug!r} is registered twice: {other.__name__} and {cls.__name__}")
    _CLASSES[slug] = cls
    return cls


def _load() -> None:
    """Import every module of experiments.claims once, so their @register lines run."""
    global _loaded
    if _loaded:
        return
    import experiments.claims as claims
    for mod in pkgutil.iter_modules(claims.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{claims.__name__}.{mod.name}")
    _loaded = True


def classes() -> dict[str, type["Experiment"]]:
    """Every registered experiment class by slug."""
    _load()
    return dict(_CLASSES)


def _claim_number(cls: type["Experiment"]) -> tuple[int, str]:
    m = re.fullmatch(r"C(\d+)", cls.claim or "")
    return (int(m.group(1)) if m else 10**6, cls.slug)


def all_slugs() -> list[str]:
    """Registered slugs in claim order (C1, C2, ...)."""
    return [cls.slug for cls in sorted(classes().values(), key=_claim_number)]


def get(slug: str) -> "Experiment":
    """A fresh experiment instance for slug; KeyError names the known slugs."""
    found = classes().get(slug)
    if found is None:
        raise KeyError(f"unknown experiment {slug!r}; known: {', '.join(all_slugs())}")
    return found()


def expand(slugs: list[str]) -> list[str]:
    """Resolve 'all' and check every slug exists, keeping order and dropping repeats."""
    out: list[str] = []
    for slug in slugs:
        for s in (all_slugs() if slug == "all" else [slug]):
            get(s)
            if s not in out:
                out.append(s)
    return out
