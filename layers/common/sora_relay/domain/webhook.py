"""The delivery of a task's terminal event to its callback_url, and the state machine it follows.

A delivery starts `sending` (an attempt holds the lease), and each attempt ends `delivered`,
`gone` (the client answered 410) or `retrying`; a `retrying` delivery is claimed `sending` again
or, with every attempt made, `failed`. A `sending` delivery whose lease lapsed (its run stopped)
is claimed again or given up. The final states never change.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class WebhookAttempt(BaseModel):
    """One POST of a webhook event to the client's callback_url."""

    attempt: int
    at_ms: int
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None


class WebhookState(StrEnum):
    SENDING = "sending"  # an attempt holds the lease until next_attempt_ms
    RETRYING = "retrying"  # the last attempt failed; the next one is due at next_attempt_ms
    DELIVERED = "delivered"  # the client answered 2xx
    GONE = "gone"  # the client answered 410: stop, as Standard Webhooks asks
    FAILED = "failed"  # every attempt failed; the event went to the dead-letter queue

    @property
    def is_final(self) -> bool:
        return self in (WebhookState.DELIVERED, WebhookState.GONE, WebhookState.FAILED)


# Which state may follow which; None is "no delivery of this event yet".
_NEXT: dict[WebhookState | None, frozenset[WebhookState]] = {
    None: frozenset({WebhookState.SENDING}),
    WebhookState.SENDING: frozenset(
        {
            WebhookState.SENDING,  # the lease lapsed: the next run claims the attempt again
            WebhookState.DELIVERED,
            WebhookState.GONE,
            WebhookState.RETRYING,
            WebhookState.FAILED,  # the lease lapsed after the last attempt: given up
        }
    ),
    WebhookState.RETRYING: frozenset({WebhookState.SENDING, WebhookState.FAILED}),
    WebhookState.DELIVERED: frozenset(),
    WebhookState.GONE: frozenset(),
    WebhookState.FAILED: frozenset(),
}


def may_follow(previous: WebhookState | None, state: WebhookState) -> bool:
    """Whether a delivery in `previous` (None: not started) may change to `state`."""
    return state in _NEXT[previous]


class IllegalWebhookChange(ValueError):
    """A change of a webhook delivery that its state machine does not allow (a bug, not a race)."""


class WebhookDelivery(BaseModel):
    """The delivery of the task's terminal event to its callback_url, with every attempt."""

    event_id: str
    state: WebhookState
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    last_attempt_ms: int | None = None
    next_attempt_ms: int | None = None
    history: list[WebhookAttempt] = Field(default_factory=list)


def checked_change(previous: WebhookDelivery | None, new: WebhookDelivery) -> WebhookDelivery:
    """`new`, once its state is one that may follow `previous` (a delivery of another event counts
    as none); raises IllegalWebhookChange otherwise."""
    before = previous.state if previous is not None and previous.event_id == new.event_id else None
    if not may_follow(before, new.state):
        raise IllegalWebhookChange(
            f"webhook {new.event_id}: {before.value if before else 'none'} may not become {new.state.value}"
        )
    return new
