"""Use case: copy a finished video into our bucket and complete its task (the archive queue).

The callback (or the reconciler) records the provider's result and queues one message per task;
this runs one delivery of it, in its own function with a timeout long enough for a 1 GiB copy:
- an attempt claims the copy with a conditional write (a lease longer than the function's
  timeout), so two deliveries never copy at once and a crashed attempt's claim lapses;
- it streams the MP4 to a key that names the attempt (storage.video_key), draws its thumbnail and
  spritesheet from the stored bytes (previews.py; a failure there only leaves them out), and
  completes the task with the keys, the size and sha256, conditional on still holding the claim:
  a writer that lost the race deletes its own objects, so no task ever points at bytes its sha256
  does not describe, and the previews are made once per completed task;
- a video that cannot be used (404, not an MP4, too large, an unsafe URL) fails the task at once
  with `video_fetch_failed`; a copy that may pass (5xx, timeout, our S3 failing) gives the claim
  back and the message comes again after a backoff; the last attempt fails the task with
  `video_fetch_failed` and the reason, and the queue moves the message to its dead-letter queue.
The terminal transition reaches the client through the table's stream (task_events).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass

import httpx

from sora_relay.domain.errors import (
    Deferred,
    SoraRelayError,
    StorageError,
    TransitionRejected,
    UnsafeUrl,
    UpstreamRejected,
    UpstreamUnavailable,
    describe_cause,
)
from sora_relay.domain.task import Task, now_millis
from sora_relay.domain.video import ArchivedVideo, Variant, video_key
from sora_relay.observability import logger, metrics
from sora_relay.usecases.deps import Deps
from sora_relay.usecases.retry import backoff_delay

_VIDEO_TYPES = {"video/mp4", "application/octet-stream", "binary/octet-stream"}


@dataclass(frozen=True)
class ArchiveOutcome:
    action: str  # completed | failed | skipped | busy | retry | gave_up | lost_race
    delay_seconds: float = 0


class ArchiveDeferred(Deferred):
    """The message stays on the archive queue: retried after its delay, or dead-lettered."""


def archive_message(task_id: str, provider_task_id: str | None) -> dict[str, str]:
    return {"task_id": task_id, "provider_task_id": provider_task_id or ""}


def queue_archive(deps: Deps, task: Task) -> None:
    """Ask the archive step to copy `task`'s recorded result (a repeat is harmless: it claims)."""
    deps.archive_queue.send(archive_message(task.task_id, task.provider_task_id))
    metrics.add_metric(name="ArchiveQueued", unit="Count", value=1)


def copy_video(deps: Deps, video_url: str, key: str) -> ArchivedVideo:
    """Stream the provider's video into S3 at `key`; UpstreamRejected/UpstreamUnavailable say why not."""
    settings = deps.settings
    try:
        with deps.outbound_http.stream(
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
            return deps.video_store.archive(key, response.iter_bytes())
    except UnsafeUrl as error:
        raise UpstreamRejected(f"The provider's video URL was refused: {error.message}") from error
    except httpx.HTTPError as error:
        raise UpstreamUnavailable(f"Fetching the video failed: {type(error).__name__}") from error


def archive_task(deps: Deps, task_id: str, *, attempt: int) -> ArchiveOutcome:
    """One delivery of an archive message; `attempt` is SQS's receive count (1 for the first)."""
    logger.append_keys(task_id=task_id)
    settings = deps.settings
    store = deps.task_store
    claim = uuid.uuid4().hex[:16]
    try:
        task = store.get(task_id)
        if task is None or task.status.is_terminal or not task.provider_video_url:
            return ArchiveOutcome("skipped")  # finished already, gone, or nothing recorded to copy
        try:
            task = store.claim_archive(
                task_id, claim, lease_until_ms=now_millis() + settings.archive_lease_seconds * 1000
            )
        except TransitionRejected:
            current = store.get(task_id)
            if current is None or current.status.is_terminal:
                return ArchiveOutcome("skipped")
            # Another attempt holds a live claim: look again once it has lapsed (or been settled).
            lease_left = ((current.archive_lease_ms or 0) - now_millis()) / 1000
            return ArchiveOutcome("busy", max(lease_left, 0) + 1)
    except StorageError as error:  # nothing is held yet: simply try again soon
        logger.warning("Could not claim the copy", extra={"attempt": attempt, "cause": describe_cause(error)})
        return ArchiveOutcome("retry", _backoff(deps, attempt))

    key = video_key(task_id, task.provider_task_id or "video", claim)
    try:
        archived = copy_video(deps, task.provider_video_url or "", key)
    except UpstreamRejected as error:
        return _fail(deps, task, claim, error.message, action="failed")
    except (UpstreamUnavailable, StorageError) as error:
        return _attempt_failed(deps, task, claim, error.message, attempt=attempt)

    # Imported here: the callback and the reconciler import this module for queue_archive alone,
    # and the previews bring the media adapter along.
    from sora_relay.usecases.previews import make_previews, remove_previews

    previews = make_previews(deps, archived.key)
    try:
        finished = store.complete(
            task_id,
            claim,
            video_key=archived.key,
            video_bytes=archived.size,
            video_sha256=archived.sha256,
            thumbnail_key=previews.keys.get(Variant.THUMBNAIL),
            spritesheet_key=previews.keys.get(Variant.SPRITESHEET),
            preview_error=previews.error,
        )
    except TransitionRejected:
        # Our claim lapsed and another attempt (or a failure) settled the task: drop our copy.
        logger.info("Another writer settled the task; removing this attempt's copy")
        remove_previews(deps, previews)
        deps.video_store.delete(archived.key)
        return ArchiveOutcome("lost_race")
    except StorageError as error:
        # The write may still have landed: the copy goes only if the task does not point at it.
        return _attempt_failed(
            deps,
            task,
            claim,
            f"Recording the copy failed: {error.message}",
            attempt=attempt,
            written=archived.key,
            previews=previews.written,
        )
    metrics.add_metric(name="TaskCompleted", unit="Count", value=1)
    logger.info(
        "Video archived; task completed",
        extra={"video_bytes": finished.video_bytes, "previews": previews.error is None},
    )
    return ArchiveOutcome("completed")


def _backoff(deps: Deps, attempt: int) -> float:
    settings = deps.settings
    return backoff_delay(
        attempt, base=settings.archive_base_delay_seconds, cap=settings.archive_max_delay_seconds
    )


def _attempt_failed(
    deps: Deps,
    task: Task,
    claim: str,
    reason: str,
    *,
    attempt: int,
    written: str | None = None,
    previews: list[str] | None = None,
) -> ArchiveOutcome:
    """A failure that may pass: give the claim back and come again after a backoff, or, on the
    last attempt, fail the task with the reason."""
    logger.warning("Video copy failed", extra={"attempt": attempt, "reason": reason})
    metrics.add_metric(name="VideoCopyFailed", unit="Count", value=1)
    store = deps.task_store
    if attempt >= deps.settings.archive_max_attempts:
        return _fail(deps, task, claim, f"{reason}; gave up after {attempt} attempts", action="gave_up")
    # Best effort: a claim that cannot be given back lapses with its lease, and an object the
    # task does not point at is removed by the bucket's lifecycle rule.
    with contextlib.suppress(SoraRelayError):
        store.release_archive(task.task_id, claim, reason=reason)
    if written is not None:
        with contextlib.suppress(SoraRelayError):
            current = store.get(task.task_id)
            if current is not None and current.video_key != written:
                for key in [*(previews or []), written]:
                    deps.video_store.delete(key)
    return ArchiveOutcome("retry", _backoff(deps, attempt))


def _fail(deps: Deps, task: Task, claim: str, reason: str, *, action: str) -> ArchiveOutcome:
    try:
        deps.task_store.fail(task.task_id, code="video_fetch_failed", message=reason, claim=claim)
    except TransitionRejected:
        return ArchiveOutcome("lost_race")
    metrics.add_metric(name="TaskFailed", unit="Count", value=1)
    logger.warning("Video could not be archived; task failed", extra={"reason": reason})
    return ArchiveOutcome(action)


def handle_archive_message(deps: Deps, body: str, *, attempt: int, receipt_handle: str) -> ArchiveOutcome:
    """Handle one archive queue message; raises ArchiveDeferred to leave it on the queue."""
    message = json.loads(body)
    outcome = archive_task(deps, message["task_id"], attempt=attempt)
    if outcome.action in ("retry", "busy"):
        deps.archive_queue.retry_later(receipt_handle, outcome.delay_seconds)
        raise ArchiveDeferred(f"copy not done; next attempt in {outcome.delay_seconds:.0f} s")
    if outcome.action == "gave_up":
        # Visible again at once: the redrive policy moves it to the DLQ on its next receive.
        deps.archive_queue.retry_later(receipt_handle, 0)
        raise ArchiveDeferred("the copy failed on the last attempt; to the dead-letter queue")
    return outcome
