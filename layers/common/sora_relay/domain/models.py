"""The public API's answers: the video object and the other shapes the routes return (OpenAI
Videos field names). The create request is domain/requests.py: only the create routes read one."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sora_relay.domain.catalogue import ModelStatus
from sora_relay.domain.task import Status, Task
from sora_relay.domain.video import DownloadLink
from sora_relay.domain.webhook import WebhookDelivery, WebhookState

# The answers name every field, defaults included (json_response dumps them all), and no other.
# Each model is built by pydantic on its first use (`defer_build`), not at import: a function
# answers with one or two of them (the callback its receipt, status the detail), and building the
# others would be paid by every cold start of every function that imports this module.
_ANSWER = ConfigDict(
    json_schema_serialization_defaults_required=True,
    json_schema_extra={"additionalProperties": False},
    defer_build=True,
)


class VideoError(BaseModel):
    """Why the video failed."""

    model_config = _ANSWER

    code: str = Field(
        description="e.g. `provider_unavailable`, `video_fetch_failed`, `timeout`, or the provider's code."
    )
    message: str


class VideoObject(BaseModel):
    """OpenAI's video object, plus `served_model`, `callback_url`, `cost_usd`, `download_url`,
    `download_expires_at`, `thumbnail_url` and `thumbnail_expires_at`. The links are presigned per
    read: webhooks carry only the download link, and bus events none (a stored event outlives them)."""

    model_config = _ANSWER

    id: str = Field(json_schema_extra={"pattern": "^video_[0-9a-f]{32}$"})
    object: Literal["video"] = "video"
    model: str = Field(description="The model asked for (OpenAI's field).")
    served_model: str = Field(
        description="The catalogue model that made it (another one when the asked one is aliased)."
    )
    status: Status
    progress: int = Field(
        description="What the provider last reported (0 to 99), 100 once the video is in our bucket.",
        json_schema_extra={"minimum": 0, "maximum": 100},
    )
    created_at: int = Field(description="Unix seconds.")
    completed_at: int | None = Field(description="Unix seconds; null until completed or failed.")
    expires_at: int | None = Field(description="Unix seconds when the task and its video are deleted.")
    prompt: str
    seconds: str
    size: str
    remixed_from_video_id: str | None = Field(
        None, description="The video this one remixes (POST /v1/videos/{id}/remix); null otherwise."
    )
    error: VideoError | None = Field(description="Why the video failed; null unless failed.")
    callback_url: str | None
    cost_usd: float | None = Field(None, description="The catalogue's list price for this many seconds.")
    download_url: str | None = Field(
        None,
        description="A presigned link to the MP4 when completed (GET of one video only; null when listing).",
        json_schema_extra={"format": "uri"},
    )
    download_expires_at: int | None = Field(None, description="Unix seconds when download_url stops working.")
    thumbnail_url: str | None = Field(
        None,
        description=(
            "A presigned link to the thumbnail (image/webp, a frame at 10% of the video) when completed"
            " and one was drawn, in GET of one video and in the list (an <img> cannot send the key"
            " that /content?variant=thumbnail needs); null in webhooks and events."
        ),
        json_schema_extra={"format": "uri"},
    )
    thumbnail_expires_at: int | None = Field(
        None, description="Unix seconds when thumbnail_url stops working."
    )

    @classmethod
    def from_task(
        cls, task: Task, link: DownloadLink | None = None, thumbnail: DownloadLink | None = None
    ) -> VideoObject:
        """The task as the API shows it; `link` (the MP4) and `thumbnail` are the presigned links
        this answer hands out, if any."""
        error = (
            VideoError(code=task.error_code, message=task.error_message or task.error_code)
            if task.error_code
            else None
        )
        return cls(
            id=task.task_id,
            model=task.requested_model or task.model,
            served_model=task.model,
            status=task.status,
            # 100 only when the video is in our bucket; before, what the provider last reported.
            progress=100 if task.status is Status.COMPLETED else min(task.progress or 0, 99),
            created_at=task.created_ms // 1000,
            completed_at=task.completed_ms // 1000 if task.completed_ms else None,
            expires_at=task.expires_at,
            prompt=task.prompt,
            seconds=str(task.seconds),
            size=task.size,
            remixed_from_video_id=task.remixed_from,
            error=error,
            callback_url=task.callback_url,
            cost_usd=task.cost_microusd / 1_000_000 if task.cost_microusd is not None else None,
            download_url=link.url if link else None,
            download_expires_at=link.expires_at if link else None,
            thumbnail_url=thumbnail.url if thumbnail else None,
            thumbnail_expires_at=thumbnail.expires_at if thumbnail else None,
        )


class DeletedVideo(BaseModel):
    """`DELETE /v1/videos/{id}`: OpenAI's answer."""

    model_config = _ANSWER

    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: Literal[True] = True


class StageTimes(BaseModel):
    """When the task reached each stage, in Unix milliseconds (seconds would hide a stage that took
    less than one); null for a stage not reached."""

    model_config = _ANSWER

    created_ms: int = Field(description="Accepted by POST /v1/videos (or an SQS submission).")
    result_received_ms: int | None = Field(
        description="The provider's result recorded (its push, or the reconciler's lookup)."
    )
    finished_ms: int | None = Field(description="Completed (the MP4 in our bucket) or failed.")


class WebhookAttemptRecord(BaseModel):
    """One POST of the event to callback_url, as the task recorded it."""

    model_config = _ANSWER

    attempt: int = Field(description="1 for the first.")
    at_ms: int = Field(description="Unix milliseconds when the POST started.")
    status_code: int | None = Field(description="What the receiver answered; null when it did not.")
    error: str | None = Field(
        description="Why it did not count: `HTTP 503`, a timeout, a refused connection."
    )
    duration_ms: int | None
    outcome: Literal["delivered", "gone", "failed"] = Field(
        description="`delivered` (2xx), `gone` (410: no more attempts), or `failed`."
    )
    next_retry_ms: int | None = Field(
        description="When the attempt after this one started, or is due; null after the last."
    )


class WebhookReport(BaseModel):
    """The delivery of the task's terminal event to its callback_url: its state and every attempt.
    No signature or secret is kept on the task, so none can appear here."""

    model_config = _ANSWER

    event_id: str = Field(description="The event's `webhook-id` header, the same on every attempt.")
    state: WebhookState
    next_attempt_ms: int | None = Field(description="When the next attempt is due (state `retrying`).")
    attempts: list[WebhookAttemptRecord]

    @classmethod
    def from_delivery(cls, delivery: WebhookDelivery) -> WebhookReport:
        due = delivery.next_attempt_ms if delivery.state is WebhookState.RETRYING else None
        history = delivery.history
        # Each attempt's next one started when the following attempt did, the last one's is `due`;
        # a first attempt still in flight has no history yet, and nothing to pair.
        starts = [attempt.at_ms for attempt in history[1:]] + [due] if history else []
        return cls(
            event_id=delivery.event_id,
            state=delivery.state,
            next_attempt_ms=due,
            attempts=[
                WebhookAttemptRecord(
                    attempt=attempt.attempt,
                    at_ms=attempt.at_ms,
                    status_code=attempt.status_code,
                    error=attempt.error,
                    duration_ms=attempt.duration_ms,
                    outcome=_outcome(attempt.status_code),
                    next_retry_ms=next_start,
                )
                for attempt, next_start in zip(history, starts, strict=True)
            ],
        )


def _outcome(status_code: int | None) -> Literal["delivered", "gone", "failed"]:
    # The same rule as the sender's (adapters/webhooks.py) and deliver_webhook's 410.
    if status_code is not None and 200 <= status_code < 300:
        return "delivered"
    return "gone" if status_code == 410 else "failed"


class VideoDetail(VideoObject):
    """`GET /v1/videos/{id}`: the video object, plus what only its owner reads one video for: when
    each stage was reached and where the webhook went. Lists, webhooks and bus events carry the
    plain video object."""

    timings: StageTimes
    webhook: WebhookReport | None = Field(
        description="null without a callback_url, or until the first attempt of a finished video."
    )

    @classmethod
    def of(
        cls, task: Task, link: DownloadLink | None = None, thumbnail: DownloadLink | None = None
    ) -> VideoDetail:
        return cls(
            **dict(VideoObject.from_task(task, link, thumbnail)),
            timings=StageTimes(
                created_ms=task.created_ms,
                result_received_ms=task.result_received_ms,
                finished_ms=task.completed_ms,
            ),
            webhook=WebhookReport.from_delivery(task.webhook) if task.webhook else None,
        )


class VideoList(BaseModel):
    """One page of the caller's videos, newest first."""

    model_config = _ANSWER

    object: Literal["list"] = "list"
    data: list[VideoObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ModelObject(BaseModel):
    """`GET /v1/models/{id}`: OpenAI's model object (id, object, created, owned_by) plus what the
    catalogue says of the model. `created` is when the entry's facts (its price) were read."""

    model_config = _ANSWER

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = Field(description="The provider family that runs it.")
    name: str
    status: str = Field(json_schema_extra={"enum": [status.value for status in ModelStatus]})
    available: bool = Field(
        description="This deployment holds a key for its provider (or, retired, its alias's)."
    )
    seconds: list[int]
    default_seconds: int
    sizes: list[str]
    default_size: str
    image: bool
    audio: bool
    price_per_second_usd: float
    price_read: str
    replaced_by: list[str]
    served_by: str | None = Field(
        None, description="Retired and aliased here: the live model that serves it."
    )


class ModelList(BaseModel):
    """`GET /v1/models`: every catalogue entry, live first."""

    model_config = _ANSWER

    object: Literal["list"] = "list"
    data: list[ModelObject]


class CallbackReceipt(BaseModel):
    """The answer to a provider's callback."""

    model_config = _ANSWER

    received: Literal[True] = True
    changed: bool = Field(
        description="Whether this call changed the task (false for a duplicate or late result)."
    )
    status: Status
