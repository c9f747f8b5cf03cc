"""Use case: a provider called back for one of our tasks (and the reconciler's lookups).

The callback only records: a finished video's URL is kept on the task and queued for the
archive step (archive.py), which copies it; a failure is recorded as the task's end. So the
answer comes in milliseconds whatever the video's size, and the API function never holds S3
write rights.
"""

from __future__ import annotations

from collections.abc import Mapping

from sora_relay.domain.errors import Conflict, NotFound, TransitionRejected, Unauthorized
from sora_relay.domain.provider import ProviderResult, ProviderState
from sora_relay.domain.task import Task
from sora_relay.domain.tokens import token_matches
from sora_relay.observability import logger, metrics
from sora_relay.usecases.archive import queue_archive
from sora_relay.usecases.deps import Deps


def record_callback(
    deps: Deps,
    provider_name: str,
    task_id: str,
    token: str | None,
    body: bytes,
    headers: Mapping[str, str] | None = None,
) -> tuple[Task, bool]:
    """Check and apply a push; returns the task and whether this call changed it.

    The token is checked before anything is read, so a caller without it learns nothing about
    whether the task exists. Then the adapter authenticates the push (a provider's signature where
    it signs); a push that carries no signed result (AceData's) is only a cue, and the task is
    looked up over the provider's authenticated API: only that answer is recorded. A result for a
    task that is already finished changes nothing.
    """
    provider = deps.provider(provider_name)
    if not token_matches(task_id, token, deps.callback_key()):
        raise Unauthorized(
            "The callback token is missing or wrong", param="token", code="invalid_callback_token"
        )
    push = provider.read_push({key.lower(): value for key, value in (headers or {}).items()}, body)
    logger.append_keys(task_id=task_id, provider_task_id=push.provider_task_id)
    task = deps.task_store.get(task_id)
    if task is None:
        raise NotFound("No such task", param="task_id", code="task_not_found")
    if task.provider != provider.name or (
        task.provider_task_id is not None and task.provider_task_id != push.provider_task_id
    ):
        logger.warning("Callback names another provider task; ignored")
        raise Conflict(
            "The callback is for another provider task", param="task_id", code="callback_task_mismatch"
        )
    if task.status.is_terminal:
        logger.info("Duplicate or late callback; task already finished", extra={"status": task.status.value})
        return task, False
    result = push.result
    if result is None:
        found = provider.query(deps.catalogue.require(task.model), [push.provider_task_id])
        result = next((item for item in found if item.provider_task_id == push.provider_task_id), None)
        if result is None:
            logger.warning("The provider does not know the pushed task; nothing recorded")
            return task, False
    recorded = apply_result(deps, task, result)
    return recorded, recorded.version != task.version


def apply_result(deps: Deps, task: Task, result: ProviderResult) -> Task:
    """Record what the provider says of an open task; returns the task as it now stands.

    Succeeded: the URL is recorded and the copy queued (again, on a repeat: the archive step's
    claim makes a repeat harmless, and a lost message is so replaced). Failed: the task fails
    with the provider's code and message. Still running: nothing to record.
    """
    store = deps.task_store
    try:
        if result.state is ProviderState.SUCCEEDED and result.video_url:
            if task.provider_video_url == result.video_url:
                recorded = task  # a repeat of the same push: nothing new to write
            else:
                recorded = store.record_result(task.task_id, result.provider_task_id, result.video_url)
                metrics.add_metric(name="ResultRecorded", unit="Count", value=1)
            queue_archive(deps, recorded)
            logger.info("Result recorded; copy queued")
            return recorded
        if result.state is ProviderState.FAILED:
            failed = store.fail(
                task.task_id,
                code=result.error_code or "provider_error",
                message=result.error_message or "Generation failed",
                provider_task_id=result.provider_task_id,
            )
            metrics.add_metric(name="TaskFailed", unit="Count", value=1)
            logger.info("Provider reported a failure", extra={"error_code": failed.error_code})
            return failed
        if result.progress is not None and result.progress != task.progress:
            return store.record_progress(task.task_id, result.progress)
    except TransitionRejected:
        logger.info("Result already recorded by another writer")
        return store.get(task.task_id) or task
    return task  # still running at the provider
