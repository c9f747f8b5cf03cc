"""Lambda's and EventBridge's event patterns (FilterCriteria), through moto's own matcher."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from moto.events.models import EventPattern, InvalidEventPatternException

from devstack.template import function_events


def filter_matches(pattern: Mapping[str, Any], event: Any) -> bool:
    """Whether `event` matches an EventBridge / Lambda event-filtering pattern: moto's own matcher
    (the one its EventBridge rules use), so the local stack filters as moto's AWS does. A
    ValueError says a pattern is malformed (as far as moto checks)."""
    if not isinstance(pattern, Mapping):
        raise ValueError(f"an event pattern is a JSON object, not {type(pattern).__name__}")
    try:
        return EventPattern.load(json.dumps(pattern)).matches_event(event)
    except (InvalidEventPatternException, KeyError, TypeError) as error:
        raise ValueError(f"a malformed event pattern: {pattern!r}") from error


def matches_any(filters: Iterable[str | Mapping[str, Any]] | None, event: Any) -> bool:
    """Lambda's FilterCriteria: no filters lets everything through; else any matching pattern does.
    A filter is a pattern, as a dict or a JSON string (as the template's `Pattern` values are)."""
    patterns = [json.loads(item) if isinstance(item, str) else item for item in filters or ()]
    return not patterns or any(filter_matches(pattern, event) for pattern in patterns)


def filter_patterns(criteria: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The patterns of a FilterCriteria ({"Filters": [{"Pattern": "<json>"}, ...]}), parsed."""
    return [json.loads(item["Pattern"]) for item in (criteria or {}).get("Filters") or []]


def template_filters(
    template: Mapping[str, Any], function_id: str, event_type: str = "DynamoDB"
) -> list[dict[str, Any]]:
    """The FilterCriteria patterns of a function's `event_type` events in a template (all of them)."""
    patterns: list[dict[str, Any]] = []
    for event in function_events(dict(template), function_id).values():
        if event.get("Type") == event_type:
            patterns += filter_patterns(event.get("Properties", {}).get("FilterCriteria"))
    return patterns
