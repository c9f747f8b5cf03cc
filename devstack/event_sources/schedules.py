"""`Schedule`/`ScheduleV2` events: a timer invoking the function every rate() interval."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from devstack.event_sources.base import EventSource, Invoke, _log, template_events
from devstack.template import ACCOUNT, REGION, Stack

if TYPE_CHECKING:
    from devstack.gateway import LocalApiGateway

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|hour|day)s?\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float | None:
    """The interval of a `rate(N unit)` expression in seconds; None for cron() and at()."""
    found = _RATE.match(expression.strip())
    return int(found[1]) * _UNIT_SECONDS[found[2]] if found else None


class ScheduleSource(EventSource):
    """Invokes the function every `interval_s`, the first time one interval after start(), with
    the event EventBridge (Scheduler, for ScheduleV2) sends. An invocation that fails is logged
    and counted; the next tick still comes (ticks missed while an invocation ran long are
    skipped, not queued)."""

    kind = "schedule"

    def __init__(
        self, *, function_id: str, invoke: Invoke, interval_s: float, source_arn: str, scheduler: bool
    ) -> None:
        if interval_s <= 0:
            raise ValueError("a schedule needs an interval above 0")
        super().__init__(function_id, source_arn, f"every {interval_s:g} s -> {function_id}")
        self.interval_s = float(interval_s)
        self._invoke = invoke
        # EventBridge Scheduler sends its detail as a JSON string; EventBridge rules as an object.
        self._source, self._detail = ("aws.scheduler", "{}") if scheduler else ("aws.events", {})
        self.invocations = self.errors = 0
        self.last_result: Any = None

    def tick(self) -> Any:
        """One scheduled invocation, now, in this thread: its result, or None if it failed."""
        self.invocations += 1
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": self._source,
            "account": ACCOUNT,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [self.source_arn],
            "detail": self._detail,
        }
        try:
            self.last_result = self._invoke(event)
            return self.last_result
        except Exception as error:
            self.errors += 1
            _log("schedule", f"{self.function_id}: invocation failed: {type(error).__name__}: {error}")
            return None

    def _loop(self) -> None:
        due = time.monotonic() + self.interval_s
        while not self._stopping.wait(max(0.0, due - time.monotonic())):
            if not self._paused.is_set():
                self.tick()
            due += self.interval_s
            while due <= time.monotonic():  # the invocation outlasted one or more intervals
                due += self.interval_s


def schedule_source(
    stack: Stack,
    function_id: str,
    event_name: str,
    event: dict[str, Any],
    invoke: Invoke,
    *,
    interval_s: float | None = None,
) -> ScheduleSource | None:
    """The ScheduleSource for one Schedule/ScheduleV2 event (`interval_s` replaces its rate());
    None when it is disabled or has no interval to run at (cron() or at() without `interval_s`)."""
    props, v2 = event.get("Properties", {}), event.get("Type") == "ScheduleV2"
    if props.get("Enabled", True) is False or str(stack.resolve(props.get("State", "ENABLED"))) == "DISABLED":
        return None
    expression = str(stack.resolve(props["ScheduleExpression" if v2 else "Schedule"]))
    interval = interval_s if interval_s is not None else rate_seconds(expression)
    if not interval:
        _log("schedule", f"{function_id}.{event_name}: {expression} is not run locally (give an interval)")
        return None
    name = str(stack.resolve(props.get("Name", f"{function_id}{event_name}")))
    group = str(stack.resolve(props.get("GroupName", "default")))
    arn = (
        f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{group}/{name}"
        if v2
        else f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"
    )
    return ScheduleSource(
        function_id=function_id, invoke=invoke, interval_s=interval, source_arn=arn, scheduler=v2
    )


def schedule_event_sources(
    stack: Stack, gateway: LocalApiGateway, *, interval_s: float | None = None
) -> list[ScheduleSource]:
    """One ScheduleSource per enabled Schedule/ScheduleV2 event of the functions the gateway runs."""
    sources = []
    for function_id, name, kind, props, invoke in template_events(stack, gateway, ["Schedule", "ScheduleV2"]):
        source = schedule_source(
            stack, function_id, name, {"Type": kind, "Properties": props}, invoke, interval_s=interval_s
        )
        if source is not None:
            sources.append(source)
    return sources
