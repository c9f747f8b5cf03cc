"""Retries with exponential backoff and full jitter inside a fixed time budget."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sora_relay.domain.errors import ProviderUnavailable

T = TypeVar("T")

# Jitter drawn from the OS, not from `random`'s module state: under SnapStart every restored
# instance would otherwise share the seed captured in the snapshot, and retry in step.
_jitter = random.SystemRandom()


def backoff_delay(attempt: int, *, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1`: exponential from `base`, up to `cap`, with equal jitter
    (a uniform draw from the upper half), never less than the server's `retry_after`."""
    ceiling = min(base * 2 ** (max(attempt, 1) - 1), cap)
    return min(max(_jitter.uniform(ceiling / 2, ceiling), retry_after or 0.0), cap)


def with_backoff(
    call: Callable[[], T],
    *,
    attempts: int,
    budget_seconds: float,
    base_delay: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `call`, retrying ProviderUnavailable that is safe to resend (`resend_safe`: a 429, a
    connection never made) until attempts or the time budget run out; any other is raised at once.

    A `retry_after` from the provider is honoured as the least wait; a wait that would overrun
    the budget is not taken and the last error is raised instead.
    """
    deadline = clock() + budget_seconds
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ProviderUnavailable as error:
            if attempt == attempts or not error.resend_safe:
                raise
            delay = _jitter.uniform(0, base_delay * 2 ** (attempt - 1))
            delay = max(delay, error.retry_after or 0.0)
            if clock() + delay > deadline:
                raise
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
