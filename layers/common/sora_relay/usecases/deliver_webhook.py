"""Use case: deliver a task's terminal event to the client's callback_url until it is heard.

One SQS message per event (queued by task_events). Each delivery of the message:
- reads the task; an event already delivered, refused with 410 or given up is done;
- waits (message hidden again) if the next attempt is not due yet, so a duplicate message never
  sends ahead of the schedule;
- gives up without sending if the record already shows `webhook_max_attempts` attempts (the run
  that made the last one stopped, or its dead-letter send failed);
- builds the body and reads the signing secrets (the tenant's, or the service-wide one for owners
  that are not tenants), so that a failure there claims nothing;
- claims the next attempt with a conditional write on the attempt count (and the limit), so two
  copies of the message never send at once and never past the limit;
- POSTs the event, signed, with the same `webhook-id` every time, and records the attempt on the
  task: 2xx delivered, 410 gone (stop), anything else retried after the schedule's next delay;
  after the last attempt is recorded the event goes to the dead-letter queue, and only then does
  the task say `failed`.
Our own failures (the table, the secret, a queue) raise: the message comes back after its
visibility timeout, and deliver_message logs the cause once.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from sora_relay.adapters.webhooks import event_body
from sora_relay.domain import acedata_sora
from sora_relay.domain.errors import Deferred, WebhookClaimLost
from sora_relay.domain.models import VideoObject
from sora_relay.domain.task import Task, now_millis
from sora_relay.domain.webhook import WebhookAttempt, WebhookDelivery, WebhookState, checked_change
from sora_relay.observability import logger, metrics
from sora_relay.usecases.deps import Deps

_LEASE_MARGIN_SECONDS = 20  # a claimed attempt may take the HTTP timeout plus this
_CLAIM_RACE_DELAY_SECONDS = 2


@dataclass(frozen=True)
class DeliveryOutcome:
    action: str  # delivered | gone | retry | gave_up | wait | done | missing
    delay_seconds: float = 0


class WebhookDeferred(Deferred):
    """The message stays on the queue and comes back after its delay."""


def deliver_event(deps: Deps, task_id: str, event: str) -> DeliveryOutcome:
    """One try at delivering `event` of task `task_id`."""
    logger.append_keys(task_id=task_id, webhook_id=event)
    store = deps.task_store
    task = store.get(task_id)
    if task is None or not task.callback_url or not task.status.is_terminal:
        logger.warning("No deliverable task for this webhook event")
        return DeliveryOutcome("missing")
    current = task.webhook if task.webhook and task.webhook.event_id == event else None
    if current is not None and current.state.is_final:
        return DeliveryOutcome("done")
    now_ms = now_millis()
    if current is not None and current.next_attempt_ms and current.next_attempt_ms > now_ms:
        return DeliveryOutcome("wait", (current.next_attempt_ms - now_ms) / 1000)

    settings = deps.settings
    if current is not None and current.attempts >= settings.webhook_max_attempts:
        # The last attempt was made, and then the run stopped or the dead-letter send failed.
        return _give_up(deps, task, current)
    seen = current.attempts if current else 0
    attempt = seen + 1
    # What the POST needs is read before the claim: if it cannot be (the secret, the link), the
    # delivery raises having claimed nothing, and the message comes back with no attempt spent.
    body = _body(deps, task, event)
    secrets = signing_secrets(deps, task)
    lease_ms = int((settings.webhook_timeout_seconds + _LEASE_MARGIN_SECONDS) * 1000)
    claimed = checked_change(
        current,
        WebhookDelivery(
            event_id=event,
            state=WebhookState.SENDING,
            attempts=attempt,
            last_status_code=current.last_status_code if current else None,
            last_error=current.last_error if current else None,
            last_attempt_ms=current.last_attempt_ms if current else None,
            next_attempt_ms=now_ms + lease_ms,
            history=current.history if current else [],
        ),
    )
    try:
        task = store.write_webhook(
            task_id, claimed, expect_attempts=seen, max_attempts=settings.webhook_max_attempts
        )
    except WebhookClaimLost:
        return DeliveryOutcome("wait", _CLAIM_RACE_DELAY_SECONDS)  # another copy got there first

    started = time.monotonic()
    result = deps.webhook_sender.deliver(task.callback_url or "", secrets=secrets, event=event, body=body)
    duration_ms = int((time.monotonic() - started) * 1000)
    done_ms = now_millis()
    record = WebhookAttempt(
        attempt=attempt,
        at_ms=now_ms,
        status_code=result.status_code,
        error=result.error,
        duration_ms=duration_ms,
    )
    if result.delivered:
        state, outcome = WebhookState.DELIVERED, DeliveryOutcome("delivered")
    elif result.status_code == 410:
        state, outcome = WebhookState.GONE, DeliveryOutcome("gone")
    elif attempt >= settings.webhook_max_attempts:  # recorded, then dead-lettered, then `failed`
        state, outcome = WebhookState.RETRYING, DeliveryOutcome("gave_up")
    else:
        delay = settings.webhook_delay(attempt)
        state, outcome = WebhookState.RETRYING, DeliveryOutcome("retry", delay)
    finished = checked_change(
        claimed,
        claimed.model_copy(
            update={
                "state": state,
                "last_status_code": result.status_code,
                "last_error": result.error,
                "last_attempt_ms": now_ms,
                "next_attempt_ms": (
                    done_ms + int(outcome.delay_seconds * 1000) if outcome.action == "retry" else None
                ),
                "history": [*claimed.history, record],
            }
        ),
    )
    store.write_webhook(task_id, finished, expect_attempts=attempt)
    logger.info(
        "Webhook attempted",
        extra={
            "attempt": attempt,
            "status_code": result.status_code,
            "error": result.error,
            "outcome": outcome.action,
        },
    )
    if outcome.action == "gave_up":
        return _give_up(deps, task, finished)
    metrics.add_metric(name=f"Webhook{outcome.action.title()}", unit="Count", value=1)
    return outcome


def _give_up(deps: Deps, task: Task, delivery: WebhookDelivery) -> DeliveryOutcome:
    """Every attempt is made: the event goes to the dead-letter queue, and only then is `failed`
    recorded. A failed send raises first, so the message comes back and this is done again."""
    message = {"task_id": task.task_id, "event_id": delivery.event_id, "type": f"video.{task.status.value}"}
    deps.webhook_dead_letter_queue.send({**message, "reason": "every attempt failed"})
    failed = checked_change(
        delivery, delivery.model_copy(update={"state": WebhookState.FAILED, "next_attempt_ms": None})
    )
    try:
        deps.task_store.write_webhook(task.task_id, failed, expect_attempts=delivery.attempts)
    except WebhookClaimLost:
        return DeliveryOutcome("wait", _CLAIM_RACE_DELAY_SECONDS)  # another copy got there first
    metrics.add_metric(name="WebhookGaveUp", unit="Count", value=1)
    logger.warning("Webhook given up; event dead-lettered", extra={"attempts": delivery.attempts})
    return DeliveryOutcome("gave_up")


def signing_secrets(deps: Deps, task: Task) -> list[str]:
    """What signs this task's webhooks: its tenant's unretired secrets (two during a rotation), so
    no other tenant can make a webhook this tenant's receiver accepts. An owner that is not a
    tenant (the SQS intake's `sqs:<queue>`, an API key id from before tenants) falls back to the
    service-wide `WebhookSigningSecret`, as every webhook was signed before tenants."""
    tenant = deps.tenant_webhook_secrets(task.owner)
    return tenant if tenant is not None else [deps.webhook_secret()]


def _body(deps: Deps, task: Task, event: str) -> bytes:
    """The event's body, with a fresh download link; created_at is the transition's time, so
    every attempt carries the same event."""
    link = None
    if task.video_key:
        link = deps.video_store.download_link(
            task.video_key, ttl_seconds=deps.settings.presigned_url_ttl_seconds, now=int(time.time())
        )
    created_at = (task.completed_ms or task.updated_ms) // 1000
    data = VideoObject.from_task(task, link).model_dump(mode="json")
    if task.webhook_format == acedata_sora.WEBHOOK_FORMAT:
        # Asked for by the seed's `_async` MCP tools: the upstream callback body, same headers.
        return json.dumps(acedata_sora.callback_body(data), separators=(",", ":")).encode()
    return event_body(f"video.{task.status.value}", event, created_at, data)


def deliver_message(deps: Deps, body: str, *, receipt_handle: str) -> DeliveryOutcome:
    """Handle one webhook queue message; raises WebhookDeferred to leave it on the queue."""
    message = json.loads(body)
    # Our own trouble (the table, the secret, a queue) raises: the batch handler logs its cause once,
    # and the message comes back after its visibility timeout.
    outcome = deliver_event(deps, message["task_id"], message["event_id"])
    if outcome.action in ("retry", "wait"):
        deps.webhook_queue.retry_later(receipt_handle, math.ceil(outcome.delay_seconds))
        raise WebhookDeferred(f"next attempt in {outcome.delay_seconds:.0f} s")
    return outcome
