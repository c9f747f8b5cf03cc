"""domain/webhook.py: the webhook delivery's own state machine, and the check deliver_webhook uses."""

from __future__ import annotations

import pytest

from sora_relay.domain.webhook import (
    IllegalWebhookChange,
    WebhookDelivery,
    WebhookState,
    checked_change,
    may_follow,
)

S = WebhookState


def _delivery(state: WebhookState, event_id: str = "evt_1_completed") -> WebhookDelivery:
    return WebhookDelivery(event_id=event_id, state=state, attempts=1)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, S.SENDING),
        (S.SENDING, S.DELIVERED),
        (S.SENDING, S.GONE),
        (S.SENDING, S.RETRYING),
        (S.SENDING, S.SENDING),  # a lapsed lease is claimed again
        (S.SENDING, S.FAILED),  # a lapsed lease after the last attempt
        (S.RETRYING, S.SENDING),
        (S.RETRYING, S.FAILED),
    ],
)
def test_the_changes_delivery_makes_are_allowed(before, after):
    assert may_follow(before, after)
    previous = None if before is None else _delivery(before)
    new = _delivery(after)
    assert checked_change(previous, new) is new


@pytest.mark.parametrize("final", [S.DELIVERED, S.GONE, S.FAILED])
@pytest.mark.parametrize("after", list(S))
def test_final_states_never_change(final, after):
    assert final.is_final and not may_follow(final, after)
    with pytest.raises(IllegalWebhookChange, match=f"{final.value} may not become {after.value}"):
        checked_change(_delivery(final), _delivery(after))


@pytest.mark.parametrize("after", [S.RETRYING, S.DELIVERED, S.GONE, S.FAILED])
def test_a_delivery_starts_by_sending(after):
    with pytest.raises(IllegalWebhookChange, match="none may not become"):
        checked_change(None, _delivery(after))


def test_retrying_is_left_only_by_a_new_attempt_or_giving_up():
    for after in (S.RETRYING, S.DELIVERED, S.GONE):
        with pytest.raises(IllegalWebhookChange):
            checked_change(_delivery(S.RETRYING), _delivery(after))


def test_a_delivery_of_another_event_counts_as_none():
    delivered = _delivery(S.DELIVERED, event_id="evt_1_failed")
    sending = _delivery(S.SENDING)
    assert checked_change(delivered, sending) is sending


def test_every_state_has_a_row():
    for state in S:
        may_follow(state, S.SENDING)  # no KeyError: the table covers every state
