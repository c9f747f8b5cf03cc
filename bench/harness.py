"""What every benchmark shares: repeated runs, ratios, figures printed against their targets.

These machines are noisy, so no figure is a bare wall-clock time: each is a ratio (or a size) set
against a baseline measured in the same run, repeated, and reported as median, min and max. Each
script records its figures in bench/out/<bench>.json; `bench/report.py` prints them all together and
`bench/cost.py` prices what the others measured.

Standard library only: the cold-start runs use this module from a bare python3.12.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "bench" / "out"))
MIB = 1024 * 1024


@dataclass(frozen=True)
class Spread:
    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        values = list(values)
        if not values:
            raise ValueError("no values to summarise")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def text(self, unit: str = "", digits: int = 2) -> str:
        return (
            f"{self.median:.{digits}f}{unit} (median; min {self.min:.{digits}f}, "
            f"max {self.max:.{digits}f}, n={self.n})"
        )


@dataclass
class Figure:
    """One measured figure and its target: `value <= limit` (most) or `value >= limit`."""

    bench: str
    name: str
    spread: Spread
    unit: str
    limit: float | None = None
    at_least: bool = False
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool | None:
        if self.limit is None:
            return None
        value = self.spread.median
        return value >= self.limit if self.at_least else value <= self.limit

    def target_text(self) -> str:
        if self.limit is None:
            return "no target (recorded)"
        return f"target {'≥' if self.at_least else '≤'} {self.limit:g}{self.unit}"

    def line(self) -> str:
        verdict = {True: "PASS", False: "MISS", None: "INFO"}[self.ok]
        note = f"  [{self.note}]" if self.note else ""
        return f"  [{verdict}] {self.name}: {self.spread.text(self.unit)}  {self.target_text()}{note}"


def fake_aws_in_process() -> None:
    """This process's boto3 talks to moto in process (`mock_aws`): fake credentials, no endpoint
    or profile of the developer's."""
    from devstack.stack import FAKE_AWS

    os.environ.update(FAKE_AWS)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)


def print_figures(title: str, figures: list[Figure]) -> None:
    print(f"\n== {title}")
    for figure in figures:
        print(figure.line())


def save(bench: str, figures: list[Figure], **extra: Any) -> Path:
    """Write the figures (and any extra measurements, e.g. durations for the cost model)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{bench}.json"
    payload = {
        "bench": bench,
        "python": sys.version.split()[0],
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "figures": [
            {**asdict(figure), "ok": figure.ok, "target": figure.target_text()} for figure in figures
        ],
        **extra,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def shown(path: Path) -> str:
    """A saved file's path as printed: relative to the repository, or whole when BENCH_OUT is elsewhere."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def load(bench: str) -> dict[str, Any] | None:
    path = OUT / f"{bench}.json"
    return json.loads(path.read_text()) if path.exists() else None


def interleaved(
    runs: dict[str, Callable[[], float]], repeats: int, warmup: int = 1, *, alternate: bool = False
) -> dict[str, list[float]]:
    """Run each callable `repeats` times, alternating between them so drift hits all alike.

    Each callable returns its own measurement (seconds, bytes...). Warm-up rounds are discarded.
    With `alternate`, every other round runs them in reverse order, so none is always first.
    """
    results: dict[str, list[float]] = {name: [] for name in runs}
    for round_number in range(warmup + repeats):
        order = list(runs.items())
        if alternate and round_number % 2:
            order.reverse()
        for name, run in order:
            value = run()
            if round_number >= warmup:
                results[name].append(value)
    return results


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Pairwise ratios of runs made side by side (round i against round i)."""
    if len(numerators) != len(denominators):
        raise ValueError("ratios need runs made in pairs")
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def exit_code(figures: list[Figure]) -> int:
    """0 when every figure with a target meets it, 1 otherwise."""
    return 0 if all(figure.ok is not False for figure in figures) else 1
