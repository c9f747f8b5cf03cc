"""What every local event source shares: its thread, start() and stop(), the template events it
serves, and Lambda's reading of a batch's answer (ReportBatchItemFailures)."""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, Self

from devstack.template import ACCOUNT, REGION, Stack

if TYPE_CHECKING:
    from devstack.gateway import LocalApiGateway

Invoke = Callable[[dict[str, Any]], Any]


def _log(kind: str, message: str) -> None:
    print(f"[{kind}] {message}", file=sys.stderr, flush=True)


def function_arn(function_id: str) -> str:
    """The ARN a local function answers to (its instances are named local-<FunctionId>)."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:local-{function_id}"


def failed_ids(result: Any, ids: Collection[str]) -> set[str]:
    """The identifiers a batch's answer reports as failed: none without `batchItemFailures`, and
    all of them when one is not in the batch (Lambda treats an invalid answer as the whole batch
    failing)."""
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    if not failures:
        return set()
    items = failures if isinstance(failures, list) else [failures]
    reported = {str(item.get("itemIdentifier")) if isinstance(item, dict) else "" for item in items}
    return reported if reported <= set(ids) else set(ids)


def template_events(
    stack: Stack, gateway: LocalApiGateway, types: Sequence[str]
) -> list[tuple[str, str, str, dict[str, Any], Invoke]]:
    """(function id, event name, event type, its properties, invoke) of the enabled events of
    these types, for the functions the gateway runs."""
    found = []
    for function_id in gateway.pools:
        for name, event in stack.function_events(function_id).items():
            props = event.get("Properties", {})
            if event.get("Type") in types and props.get("Enabled", True) is not False:
                found.append(
                    (function_id, name, event["Type"], props, functools.partial(gateway.invoke, function_id))
                )
    return found


class EventSource:
    """What all local event sources have: the function, what feeds it, start() and stop()."""

    kind = ""
    queue_url: str | None = None  # SQS sources only

    def __init__(self, function_id: str, source_arn: str, description: str) -> None:
        self.function_id = function_id
        self.source_arn = source_arn
        self.description = description  # what feeds which function, for people
        self._stopping = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:  # pragma: no cover - overridden
        """The source's polling or timer loop, run on its own thread until _stopping is set."""
        raise NotImplementedError

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._loop, name=f"{self.kind}-{self.function_id}", daemon=True
        )
        self._thread.start()
        return self

    def pause(self) -> None:
        """Start no new invocation until resume() (what disabling the mapping or the schedule
        does); what is in flight finishes. Tests use it to hold work where it is."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def request_stop(self) -> None:
        """Take no new work from now on; stop() also waits for what is in flight."""
        self._stopping.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop; what it has in flight finishes first (bounded by `timeout_s`)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
