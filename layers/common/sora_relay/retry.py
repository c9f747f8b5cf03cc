"""Retries with exponential backoff and full jitter inside a fixed time budget."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sora_relay.errors import ProviderUnavailable

T = TypeVar("T")


def with_backoff(
    call: Callable[[], T],
    *,
    attempts: int,
    budget_seconds: float,
    base_delay: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `call`, retrying ProviderUnavailable until attempts or the time budget run out.

    A `retry_after` from the provider is honoured as the least wait; a wait that would overrun
    the budget is not taken and the last error is raised instead.
    """
    deadline = clock() + budget_seconds
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ProviderUnavailable as error:
            if attempt == attempts:
                raise
            delay = random.uniform(0, base_delay * 2 ** (attempt - 1))
            delay = max(delay, error.retry_after or 0.0)
            if clock() + delay > deadline:
                raise
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
