"""Use case: turn one terminal transition on the table's stream into what the outside hears.

The stream's filter (template.yaml) passes only MODIFY records whose old status was open and new
status is terminal, so each task yields exactly one such record; this checks the same again.
For it: the client's webhook is queued (delivered by deliver_webhook) and `Video Generation
Completed` / `Video Generation Failed` is published on the bus with the video object as detail,
plus `event_id`: the webhook's event id. A failure raises, the stream retries the record, and that
id (stable for the task and its outcome) keeps any repeat, webhook or bus event, recognisable as
the same event.
"""

from __future__ import annotations

from typing import Any

from sora_relay.adapters.dynamodb import TaskStore
from sora_relay.adapters.eventbridge import BusEvent
from sora_relay.adapters.webhooks import event_id
from sora_relay.domain.models import VideoObject
from sora_relay.domain.task import Status, Task
from sora_relay.observability import logger, metrics
from sora_relay.usecases.deps import Deps

DETAIL_TYPES = {Status.COMPLETED: "Video Generation Completed", Status.FAILED: "Video Generation Failed"}


def terminal_transition(record: dict[str, Any]) -> Task | None:
    """The task a stream record finished, or None if the record is not a terminal transition."""
    change = record.get("dynamodb") or {}
    new_image, old_image = change.get("NewImage"), change.get("OldImage")
    if record.get("eventName") != "MODIFY" or not new_image or not old_image:
        return None
    task = TaskStore.from_image(new_image)
    before = TaskStore.from_image(old_image)
    if not task.status.is_terminal or before.status.is_terminal:
        return None
    return task


def transition_event_id(task: Task) -> str:
    """The id of the task's terminal event, the same for every replay: webhook-id and bus detail."""
    return event_id(task.task_id, f"video.{task.status.value}")


def webhook_message(task: Task) -> dict[str, str]:
    return {
        "task_id": task.task_id,
        "event_id": transition_event_id(task),
        "type": f"video.{task.status.value}",
    }


def publish_transition(deps: Deps, record: dict[str, Any]) -> str:
    """Handle one stream record; returns what was done (for logs and tests)."""
    task = terminal_transition(record)
    if task is None:
        return "ignored"
    logger.append_keys(task_id=task.task_id)
    if task.callback_url:
        deps.webhook_queue.send(webhook_message(task))
    detail = {**VideoObject.from_task(task).model_dump(mode="json"), "event_id": transition_event_id(task)}
    deps.event_bus.publish([BusEvent(DETAIL_TYPES[task.status], detail, resources=())])
    metrics.add_metric(name="TaskEventPublished", unit="Count", value=1)
    logger.info(
        "Terminal transition published",
        extra={"status": task.status.value, "webhook_queued": bool(task.callback_url)},
    )
    return "published"
