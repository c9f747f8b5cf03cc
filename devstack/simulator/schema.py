"""One way to declare a route's input fields and the frame it renders, for all dialects.

`problems` only finds what is wrong, as (field, problem, spec, value): each dialect words it its
provider's way (acedata-video.md, fal-queue.md, replicate.md: "Errors").
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

SHORT_SIDES = {"480p": 480, "720p": 720, "768p": 768, "1080p": 1080, "1440p": 1440, "2160p": 2160, "4k": 2160}
# A rule across fields, on the values with defaults filled in: (field, message) when broken.
Rule = Callable[[dict[str, Any]], tuple[str, str] | None]
_SCHEMES = {"url": ("http://", "https://"), "uri": ("http://", "https://", "data:")}


@dataclass(frozen=True)
class Field:
    """One input field. None counts as absent, so the default applies (every provider's way)."""

    kind: str  # string | url (http/s) | uri (also data:) | integer | number | boolean | strings | object
    options: Collection[Any] | None = None  # an enum or a range; the value must match its type too
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None

    def problem(self, value: Any) -> str | None:
        """What is wrong with a given (not None) value: type, format, enum, minimum, maximum."""
        if not _is_kind(value, self.kind):
            return "type"
        if self.kind in _SCHEMES and not value.startswith(_SCHEMES[self.kind]):
            return "format"
        if self.options is not None and not any(type(value) is type(o) and value == o for o in self.options):
            return "enum"
        if self.minimum is not None and value < self.minimum:
            return "minimum"
        if self.maximum is not None and value > self.maximum:
            return "maximum"
        return None


def one_of(*options: Any, default: Any = None, required: bool = False) -> Field:
    """An enum field; its kind is its options' (strings or integers)."""
    return Field("string" if isinstance(options[0], str) else "integer", options, default, required)


def number(low: float, high: float, default: Any = None, kind: str = "number") -> Field:
    return Field(kind, None, default, minimum=low, maximum=high)


PROMPT, TEXT, FLAG, INT = Field("string", required=True), Field("string"), Field("boolean"), Field("integer")
URL, URI, URLS = Field("url"), Field("uri"), Field("strings")
YES, NO = Field("boolean", default=True), Field("boolean", default=False)


def _is_kind(value: Any, kind: str) -> bool:
    if kind in ("integer", "number"):
        allowed = int if kind == "integer" else (int, float)
        return isinstance(value, allowed) and not isinstance(value, bool)
    if kind == "strings":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return isinstance(value, {"boolean": bool, "object": dict}.get(kind, str))


def problems(fields: dict[str, Field], body: dict[str, Any]) -> list[tuple[str, str, Field, Any]]:
    """Every field's problem in declaration order: "missing" or one of Field.problem's."""
    found = []
    for name, spec in fields.items():
        value = body.get(name)
        if value is None or (spec.required and isinstance(value, str) and not value.strip()):
            if spec.required:
                found.append((name, "missing", spec, value))
        elif problem := spec.problem(value):
            found.append((name, problem, spec, value))
    return found


def filled(fields: dict[str, Field], body: dict[str, Any]) -> dict[str, Any]:
    """The body with each absent field's default."""
    values = {name: spec.default for name, spec in fields.items() if spec.default is not None}
    return values | {name: value for name, value in body.items() if value is not None}


def frame(ratio: str, tier: str) -> tuple[int, int]:
    """(width, height) of a ratio at a tier; "auto"/"adaptive" follow an image not read here: 16:9."""
    short = SHORT_SIDES[tier.lower()]
    across, down = (int(part) for part in ("16:9" if ratio in ("auto", "adaptive") else ratio).split(":"))
    if across >= down:
        return round(short * across / down / 2) * 2, short
    return short, round(short * down / across / 2) * 2
