"""`Schedule`/`ScheduleV2` events: a timer invoking the function every rate() interval."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from devstack.event_sources import EventSource, Invoke, _log, template_events
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
    """Invokes the function every `interval_s` (first one interval after start()) as Scheduler
    does; a failure is logged and counted, ticks an invocation outlasted are skipped."""

    kind = "schedule"

    def __init__(self, *, function_id: str, invoke: Invoke, interval_s: float, source_arn: str) -> None:
        super().__init__(function_id, source_arn, f"every {interval_s:g} s -> {function_id}")
        self.interval_s, self._invoke = float(interval_s), invoke
        self.invocations = self.errors = 0
        self.last_result: Any = None

    def tick(self) -> Any:
        """One scheduled invocation, now, in this thread: its result, or None if it failed."""
        self.invocations += 1
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler",
            "account": ACCOUNT,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [self.source_arn],
            "detail": "{}",  # Scheduler's detail is JSON text (EventBridge rules send an object)
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
            while due <= time.monotonic():  # skip the ticks an invocation outlasted
                due += self.interval_s


def schedule_source(
    stack: Stack,
    function_id: str,
    name: str,
    props: dict[str, Any],
    invoke: Invoke,
    interval_s: float | None = None,
) -> ScheduleSource | None:
    """The ScheduleSource of a ScheduleV2 event (`interval_s` replaces its rate()); None: cron()/at()."""
    expression = str(stack.resolve(props["ScheduleExpression"]))
    if not (interval := interval_s or rate_seconds(expression)):
        _log("schedule", f"{function_id}.{name}: {expression} is not run locally (give an interval)")
        return None
    arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{function_id}{name}"  # SAM's name
    return ScheduleSource(function_id=function_id, invoke=invoke, interval_s=interval, source_arn=arn)


def schedule_event_sources(
    stack: Stack, gateway: LocalApiGateway, *, interval_s: float | None = None
) -> list[ScheduleSource]:
    """One ScheduleSource per enabled ScheduleV2 event of the functions the gateway runs."""
    found = template_events(stack, gateway, ["ScheduleV2"])
    sources = [
        schedule_source(stack, f, name, props, invoke, interval_s) for f, name, _, props, invoke in found
    ]
    return [source for source in sources if source is not None]
