"""What every local event source shares: its thread, its log line, the function ARN."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self

from devstack.template import ACCOUNT, REGION

# The event types devstack runs for the template's functions (besides Api routes).
EVENT_SOURCE_TYPES = frozenset({"SQS", "DynamoDB", "Schedule", "ScheduleV2"})

Invoke = Callable[[dict[str, Any]], Any]


def _log(kind: str, message: str) -> None:
    print(f"[{kind}] {message}", file=sys.stderr, flush=True)


def function_arn(function_id: str) -> str:
    """The ARN a local function answers to (the gateway names its instances local-<FunctionId>)."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:local-{function_id}"


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class EventSource:
    """What all local event sources have: the function, what feeds it, start() and stop()."""

    kind = ""
    function_id = ""
    source_arn = ""
    queue_url: str | None = None  # SQS sources only
    _stopping: threading.Event
    _thread: threading.Thread | None = None

    def _loop(self) -> None:  # pragma: no cover - overridden
        """The source's polling or timer loop, run on its own thread until _stopping is set."""
        raise NotImplementedError

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._loop, name=f"{self.kind}-{self.function_id}", daemon=True
        )
        self._thread.start()
        return self

    @property
    def description(self) -> str:
        """What feeds which function, for people: "<source> -> <FunctionId>"."""
        return f"{self.source_arn} -> {self.function_id}"

    def request_stop(self) -> None:
        """Take no new work from now on; stop() also waits for what is in flight."""
        self._stopping.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop; what it has in flight finishes first (bounded by `timeout_s`)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
