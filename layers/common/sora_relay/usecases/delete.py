"""Use case: DELETE /v1/videos/{id}. The files go; the task stays, marked deleted, for the audit trail.

Only a finished video can be deleted. An open one is a 400 (`video_not_finished`), not a mark
to act on later: the archive step would have to check for it after its copy (or leave an MP4
nobody can reach), and the provider, which has no cancel in our interface, keeps generating and
billing it. A 400 is also what the SDK does not retry (409 it would).

The objects go first, then the mark: a failure in between leaves a task that still answers, and
a retry deletes nothing twice (deleting what is gone is no error) before it marks. Every object
under the task's own prefixes goes, whatever the archive step stored there (the MP4, previews)
and the client's uploaded reference image.
"""

from __future__ import annotations

from sora_relay.domain.errors import InvalidRequest, NotFound, TransitionRejected
from sora_relay.domain.models import DeletedVideo
from sora_relay.observability import logger, metrics
from sora_relay.usecases.deps import Deps
from sora_relay.usecases.read import owned_task


def task_prefixes(task_id: str) -> tuple[str, ...]:
    """Where a task's objects live: the archive step's `videos/{task}/`, the upload's `uploads/{task}/`."""
    return (f"videos/{task_id}/", f"uploads/{task_id}/")


def delete_video(deps: Deps, owner: str, video_id: str) -> DeletedVideo:
    task = owned_task(deps, owner, video_id)
    if not task.status.is_terminal:
        raise InvalidRequest(
            f"Video {video_id} is {task.status.value}: only a completed or failed video can be deleted",
            param="video_id",
            code="video_not_finished",
        )
    removed = sum(deps.video_store.delete_prefix(prefix) for prefix in task_prefixes(task.task_id))
    try:
        deps.task_store.mark_deleted(task.task_id, owner)
    except TransitionRejected:
        # Deleted by a concurrent request meanwhile: this one is a second delete.
        raise NotFound(f"No video with id {video_id}", param="video_id", code="video_not_found") from None
    logger.append_keys(task_id=task.task_id)
    logger.info("Video deleted", extra={"objects": removed})
    metrics.add_metric(name="VideoDeleted", unit="Count", value=1)
    return DeletedVideo(id=task.task_id)
