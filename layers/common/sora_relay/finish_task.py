"""Use case: apply a provider's result to a task (callbacks now, the reconciler later).

On success the video is copied into our bucket first (provider URLs expire), then the task is
completed with the copy's size and sha256; on failure the provider's code and message are kept.
Only the writer that wins the conditional state change makes the terminal transition, and the
table's stream turns that one transition into the client's webhook and the bus event
(task_events), so a duplicate or racing result never tells anyone twice.
"""

from __future__ import annotations

import httpx

from sora_relay import services
from sora_relay.errors import (
    TransitionRejected,
    UnsafeUrl,
    UpstreamRejected,
    UpstreamUnavailable,
)
from sora_relay.observability import logger, metrics
from sora_relay.providers.base import ProviderResult, ProviderState
from sora_relay.settings import get_settings
from sora_relay.storage import ArchivedVideo, video_key
from sora_relay.task import Status, Task, TaskChange, now_millis

_VIDEO_TYPES = {"video/mp4", "application/octet-stream", "binary/octet-stream"}


def archive_video(task_id: str, video_url: str) -> ArchivedVideo:
    """Stream the provider's video into S3; UpstreamRejected/UpstreamUnavailable say why not."""
    settings = get_settings()
    try:
        with services.outbound_http().stream(
            "GET", video_url, field="video_url", timeout=settings.video_fetch_timeout_seconds
        ) as response:
            status = response.status_code
            if status >= 500 or status == 429:
                raise UpstreamUnavailable(f"The video URL answered HTTP {status}")
            if status != 200:
                raise UpstreamRejected(f"The video URL answered HTTP {status}")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type and content_type not in _VIDEO_TYPES:
                raise UpstreamRejected(f"The video URL served {content_type}, not an MP4 video")
            length = response.headers.get("content-length")
            if length and length.isdigit() and int(length) > settings.max_video_bytes:
                raise UpstreamRejected(f"The video is larger than {settings.max_video_bytes} bytes")
            return services.video_store().archive(video_key(task_id), response.iter_bytes())
    except UnsafeUrl as error:
        raise UpstreamRejected(f"The provider's video URL was refused: {error.message}") from error
    except httpx.HTTPError as error:
        raise UpstreamUnavailable(f"Fetching the video failed: {type(error).__name__}") from error


def finish_task(task: Task, result: ProviderResult) -> Task:
    """Bring `task` to the state `result` describes; returns the task as it now stands."""
    tasks = services.task_store()
    if result.state is ProviderState.SUCCEEDED and result.video_url:
        try:
            archived = archive_video(task.task_id, result.video_url)
        except UpstreamRejected as error:
            change = _failure(error.code, error.message, result)
            target = Status.FAILED
        except UpstreamUnavailable as error:
            # Worth another try: keep the URL so the copy can be made again later.
            logger.warning("Video copy failed; will retry", extra={"reason": error.message})
            metrics.add_metric(name="VideoCopyFailed", unit="Count", value=1)
            return tasks.record_copy_error(task.task_id, result.video_url, error.message)
        else:
            change = TaskChange(
                provider_task_id=result.provider_task_id,
                provider_video_url=result.video_url,
                video_key=archived.key,
                video_bytes=archived.size,
                video_sha256=archived.sha256,
                completed_ms=now_millis(),
            )
            target = Status.COMPLETED
    elif result.state is ProviderState.FAILED:
        change = _failure(
            result.error_code or "provider_error", result.error_message or "Generation failed", result
        )
        target = Status.FAILED
    else:
        return task  # still running at the provider: nothing to record

    try:
        finished = tasks.transition(task.task_id, target, change)
    except TransitionRejected:
        logger.info("Result already recorded by another writer")
        return tasks.get(task.task_id) or task
    metrics.add_metric(name=f"Task{target.value.title().replace('_', '')}", unit="Count", value=1)
    logger.info("Task finished", extra={"status": finished.status.value, "video_bytes": finished.video_bytes})
    return finished


def _failure(code: str, message: str, result: ProviderResult) -> TaskChange:
    return TaskChange(
        provider_task_id=result.provider_task_id,
        error_code=code,
        error_message=message[:1000],
        completed_ms=now_millis(),
    )
