"""Lambda's event sources, locally (dev-only), and what they share: `sqs` (SQS mappings), `streams`
(DynamoDB mappings, FilterCriteria), `schedules` (ScheduleV2 timers)."""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Self

from devstack.template import Stack

if TYPE_CHECKING:
    from devstack.gateway import LocalApiGateway

Invoke = Callable[[dict[str, Any]], Any]


def _log(kind: str, message: str) -> None:
    print(f"[{kind}] {message}", file=sys.stderr, flush=True)


def failed_ids(result: Any, ids: Collection[str]) -> set[str]:
    """The ids `batchItemFailures` names; all if one is not in the batch (Lambda: the batch failed)."""
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    if not failures:
        return set()
    items = failures if isinstance(failures, list) else [failures]
    reported = {str(item.get("itemIdentifier")) if isinstance(item, dict) else "" for item in items}
    return reported if reported <= set(ids) else set(ids)


def template_events(stack: Stack, gateway: LocalApiGateway, types: Collection[str]) -> list[tuple[Any, ...]]:
    """(function id, event name, type, properties, invoke) of the enabled events of these types."""
    return [
        (function_id, name, event["Type"], props, functools.partial(gateway.invoke, function_id))
        for function_id in gateway.pools
        for name, event in stack.function_events(function_id).items()
        if event.get("Type") in types
        and (props := event.get("Properties", {})).get("Enabled", True) is not False
    ]


class EventSource:
    """A function, what feeds it, and the threads (`pollers`) that call `poll_once()` until stop()."""

    kind = ""
    queue_url: str | None = None  # SQS sources only
    idle_poll_s = 0.25  # how long the loop waits after a poll that found nothing to do
    pollers = 1

    def __init__(self, function_id: str, source_arn: str, description: str) -> None:
        self.function_id, self.source_arn = function_id, source_arn
        self.description = description  # what feeds which function, for people
        self._stopping, self._paused = threading.Event(), threading.Event()
        self._threads: list[threading.Thread] = []

    def poll_once(self) -> bool:  # pragma: no cover - overridden
        """Start what is due; True if it did something (then the loop looks again at once)."""
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = not self._paused.is_set() and self.poll_once()
            except Exception as error:  # moto going away at shutdown, or a hiccup: poll again
                if not self._stopping.is_set():
                    _log(self.kind, f"{self.function_id}: polling failed: {error}")
                busy = False
            if not busy:
                self._stopping.wait(self.idle_poll_s)

    def start(self) -> Self:
        name = f"{self.kind}-{self.function_id}"
        self._threads = [
            threading.Thread(target=self._loop, name=name, daemon=True) for _ in range(self.pollers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def pause(self) -> None:
        """No new invocation until resume() (disabling the mapping); what is in flight finishes."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def request_stop(self) -> None:
        """Take no new work from now on; stop() also waits for what is in flight."""
        self._stopping.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop, waiting up to `timeout_s` for what is in flight (each invocation has its Timeout)."""
        self._stopping.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def build_event_sources(
    stack: Stack,
    gateway: LocalApiGateway,
    aws_client: Callable[[str], Any],
    *,
    default_concurrency: int,
    schedule_interval_s: float | None = None,
) -> list[EventSource]:
    """Every event source of the functions the gateway runs, not started."""
    from devstack.event_sources import schedules, sqs, streams  # they import this module

    return [
        *sqs.sqs_event_sources(stack, gateway, aws_client("sqs"), default_concurrency=default_concurrency),
        *streams.dynamodb_event_sources(stack, gateway, aws_client),
        *schedules.schedule_event_sources(stack, gateway, interval_s=schedule_interval_s),
    ]
