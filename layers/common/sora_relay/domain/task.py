"""The task as stored in DynamoDB, and the state machine every change goes through.

The webhook delivery it carries has its own model and state machine, in domain/webhook.py.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from sora_relay.domain.webhook import WebhookDelivery


class Status(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED)


# queued -> in_progress -> completed | failed; a fast provider may finish a task before submit has
# recorded `in_progress`, so queued may also end directly. Terminal states never change.
_NEXT: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.IN_PROGRESS, Status.COMPLETED, Status.FAILED}),
    Status.IN_PROGRESS: frozenset({Status.COMPLETED, Status.FAILED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
}


def sources_of(target: Status) -> frozenset[Status]:
    """The states a task may be in for a change to `target` to be allowed."""
    return frozenset(source for source, targets in _NEXT.items() if target in targets)


class Task(BaseModel):
    """One DynamoDB item of the tasks table (key `task_id`, GSI on owner + created_ms)."""

    task_id: str
    owner: str
    status: Status = Status.QUEUED
    version: int = 1
    model: str  # the catalogue model that serves the task
    requested_model: str | None = None  # the model asked for, when an alias mapped it to `model`
    prompt: str
    seconds: int
    size: str
    image_url: str | None = None
    callback_url: str | None = None
    webhook_format: str = "event"  # event | acedata_sora: the body callback_url hears
    provider: str
    provider_task_id: str | None = None
    progress: int | None = None  # 0-100, what the provider last reported
    # The catalogue's list price for the task's seconds, in millionths of a US dollar (DynamoDB
    # takes no floats; budgets add these up exactly).
    cost_microusd: int | None = None
    # The UTC month (`YYYY-MM`) whose usage counts that cost against the tenant's budget; None when
    # no usage counts it. A task that fails before the provider took it is given back to this month.
    usage_month: str | None = None
    created_ms: int
    updated_ms: int
    completed_ms: int | None = None
    expires_at: int  # epoch seconds; the table's TTL attribute
    error_code: str | None = None
    error_message: str | None = None
    # The dispatch delivery starting the task at the provider, and until when (a second delivery of
    # the same message meanwhile waits: two would create, and bill, two jobs).
    dispatch_claim: str | None = None
    dispatch_lease_ms: int | None = None
    # The provider's result, recorded by the callback (or the reconciler) and copied by the
    # archive step: when it came, when the reconciler last queued its copy again, the archive
    # attempt holding the copy and until when, and why the last attempt failed.
    provider_video_url: str | None = None
    result_received_ms: int | None = None
    copy_requeued_ms: int | None = None
    archive_claim: str | None = None
    archive_lease_ms: int | None = None
    copy_error: str | None = None
    video_key: str | None = None
    video_bytes: int | None = None
    video_sha256: str | None = None
    # The previews drawn from the archived MP4 by the same archive attempt (beside it in the
    # bucket), or why there are none: the task completes either way.
    thumbnail_key: str | None = None
    spritesheet_key: str | None = None
    preview_error: str | None = None
    webhook: WebhookDelivery | None = None
    # The reference image the client uploaded (multipart or a data URL), in our bucket: the
    # provider gets a short-lived presigned link to it at each start attempt.
    image_key: str | None = None
    image_content_type: str | None = None
    remixed_from: str | None = None  # the video this one remixes (OpenAI's remixed_from_video_id)
    # DELETE /v1/videos/{id}: the files are gone and the task answers 404; the item stays until
    # its TTL for the audit trail. A flag, not a status: the state machine's end states stay final.
    deleted_ms: int | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_ms is not None

    @classmethod
    def new(
        cls,
        *,
        owner: str,
        model: str,
        prompt: str,
        seconds: int,
        size: str,
        image_url: str | None,
        callback_url: str | None,
        provider: str,
        retention_days: int,
        requested_model: str | None = None,
        cost_microusd: int | None = None,
        webhook_format: str = "event",
        remixed_from: str | None = None,
        now_ms: int | None = None,
    ) -> Task:
        now_ms = now_ms if now_ms is not None else now_millis()
        return cls(
            task_id=new_task_id(),
            owner=owner,
            model=model,
            prompt=prompt,
            seconds=seconds,
            size=size,
            image_url=image_url,
            callback_url=callback_url,
            webhook_format=webhook_format,
            provider=provider,
            requested_model=requested_model if requested_model != model else None,
            cost_microusd=cost_microusd,
            remixed_from=remixed_from,
            created_ms=now_ms,
            updated_ms=now_ms,
            expires_at=now_ms // 1000 + retention_days * 86400,
        )

    def to_item(self) -> dict[str, Any]:
        """Plain values for DynamoDB; absent fields are left out rather than stored as NULL."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Task:
        return cls.model_validate(item)


class TaskChange(BaseModel):
    """The attributes a state change sets alongside the new status."""

    provider_task_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    provider_video_url: str | None = None
    video_key: str | None = None
    video_bytes: int | None = None
    video_sha256: str | None = None
    thumbnail_key: str | None = None
    spritesheet_key: str | None = None
    preview_error: str | None = None
    completed_ms: int | None = Field(default=None)

    def values(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def new_task_id() -> str:
    return f"video_{uuid.uuid4().hex}"


def now_millis() -> int:
    return time.time_ns() // 1_000_000
