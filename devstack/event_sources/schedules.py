"""`Schedule`/`ScheduleV2` events: a timer invoking the function every rate() interval."""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from devstack.event_sources.base import EventSource, Invoke, _log
from devstack.template import ACCOUNT, REGION, Stack

# -- schedules -----------------------------------------------------------------------------------

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float | None:
    """The interval of a `rate(N unit)` expression in seconds; None for cron() and at()."""
    found = _RATE.match(expression.strip())
    if found is None:
        return None
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2).rstrip("s")]


def scheduled_event(*, source: str, resource_arn: str, detail: Any) -> dict[str, Any]:
    """The event EventBridge (source aws.events) or EventBridge Scheduler (aws.scheduler) sends."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": source,
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [resource_arn],
        "detail": detail,
    }


class ScheduleSource(EventSource):
    """A `Schedule`/`ScheduleV2` event: invokes the function every `interval_s`, the first time one
    interval after start(). Each tick sends a fresh `event_factory()` event. An invocation that
    fails is logged and counted; the next tick still comes (ticks missed while an invocation
    ran long are skipped, not queued)."""

    kind = "schedule"

    @property
    def description(self) -> str:
        return f"every {self.interval_s:g} s -> {self.function_id}"

    def __init__(
        self,
        *,
        function_id: str,
        invoke: Invoke,
        interval_s: float,
        event_factory: Callable[[], dict[str, Any]],
        source_arn: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("a schedule needs an interval above 0")
        self.function_id = function_id
        self.interval_s = float(interval_s)
        self.source_arn = source_arn
        self._invoke = invoke
        self._event_factory = event_factory
        self._clock = clock
        self._stopping = threading.Event()
        self.invocations = 0
        self.errors = 0
        self.last_result: Any = None
        self.last_error: str | None = None

    def tick(self) -> Any:
        """One scheduled invocation, now, in this thread: its result, or None if it failed."""
        self.invocations += 1
        try:
            self.last_result = self._invoke(self._event_factory())
            self.last_error = None
            return self.last_result
        except Exception as error:
            self.errors += 1
            self.last_error = f"{type(error).__name__}: {error}"
            _log("schedule", f"{self.function_id}: invocation failed: {self.last_error}")
            return None

    def _loop(self) -> None:
        due = self._clock() + self.interval_s
        while not self._stopping.wait(max(0.0, due - self._clock())):
            self.tick()
            now = self._clock()
            due += self.interval_s
            if due <= now:  # the invocation outlasted one or more intervals
                due += math.ceil((now - due) / self.interval_s + 1e-9) * self.interval_s


def schedule_source(
    stack: Stack,
    function_id: str,
    event_name: str,
    event: Mapping[str, Any],
    invoke: Invoke,
    *,
    interval_s: float | None = None,
) -> ScheduleSource | None:
    """The ScheduleSource for one Schedule/ScheduleV2 event; None when it is disabled or has no
    interval to run at (cron() or at() without `interval_s`)."""
    props = event.get("Properties", {})
    kind = event.get("Type")
    if props.get("Enabled", True) is False or str(stack.resolve(props.get("State", "ENABLED"))) == "DISABLED":
        return None
    expression = str(stack.resolve(props["ScheduleExpression" if kind == "ScheduleV2" else "Schedule"]))
    interval = interval_s if interval_s is not None else rate_seconds(expression)
    if not interval:
        _log("schedule", f"{function_id}.{event_name}: {expression} is not run locally (give an interval)")
        return None
    name = str(stack.resolve(props.get("Name", f"{function_id}{event_name}")))
    if kind == "ScheduleV2":
        group = str(stack.resolve(props.get("GroupName", "default")))
        arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{group}/{name}"
        source, detail = "aws.scheduler", "{}"  # Scheduler's detail is a JSON string
    else:
        arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"
        source, detail = "aws.events", {}
    raw_input = props.get("Input")

    def make_event() -> dict[str, Any]:
        if raw_input is not None:
            return json.loads(str(stack.resolve(raw_input)))  # type: ignore[no-any-return]
        return scheduled_event(source=source, resource_arn=arn, detail=detail)

    return ScheduleSource(
        function_id=function_id, invoke=invoke, interval_s=interval, event_factory=make_event, source_arn=arn
    )
