"""The outcome of one claim run: verdict, the rule applied, the measured values, and why."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SUPPORTED, REFUTED, INCONCLUSIVE = "supported", "refuted", "inconclusive"
VERDICTS = (SUPPORTED, REFUTED, INCONCLUSIVE)


@dataclass
class Verdict:
    """A verdict with its evidence; serialised as verdict.json beside the raw data."""

    verdict: str
    rule: str
    measured: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    slug: str = ""
    claim: str = ""
    error: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Verdict":
        """Inverse of to_dict; ignores keys it does not know (newer files)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, path: Path) -> Path:
        """Write as JSON (verdict.json)."""
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False, default=_jsonable) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> "Verdict":
        """Read a verdict.json."""
        return cls.from_dict(json.loads(path.read_text()))


def _jsonable(value: Any) -> Any:
    """JSON fallback: numpy scalars, paths and sets become plain values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def decide(checks: dict[str, bool]) -> str:
    """supported when every named check holds, refuted otherwise."""
    return SUPPORTED if all(checks.values()) else REFUTED


def inconclusive(rule: str, reason: str, measured: dict[str, Any] | None = None,
                 error: str | None = None) -> Verdict:
    """Shorthand for a run that cannot be judged."""
    return Verdict(INCONCLUSIVE, rule, dict(measured or {}), [reason], error=error)


def combine(parts: list[tuple[str, Verdict]]) -> Verdict:
    """Merge the verdicts of a claim's cases (design halves): any inconclusive wins, then refuted."""
    if len(parts) == 1:
        return parts[0][1]
    kinds = [v.verdict for _, v in parts]
    verdict = INCONCLUSIVE if INCONCLUSIVE in kinds else REFUTED if REFUTED in kinds else SUPPORTED
    measured: dict[str, Any] = {}
    reasons: list[str] = []
    plots: list[str] = []
    errors: list[str] = []
    for name, v in parts:
        measured.update({f"{name}.{k}": val for k, val in v.measured.items()})
        reasons += [f"{name}: {r}" for r in v.reasons]
        plots += [p for p in v.plots if p not in plots]
        if v.error:
            errors.append(f"{name}: {v.error}")
    rules = list(dict.fromkeys(v.rule for _, v in parts))
    # one rule text for the whole claim (it names each case's expectation) is stated once
    rule = rules[0] if len(rules) == 1 else "; ".join(f"{name}: {v.rule}" for name, v in parts)
    return Verdict(verdict, rule, measured, reasons, plots, error="\n".join(errors) or None)
