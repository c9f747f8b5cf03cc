"""Use case: a provider called back for one of our tasks."""

from __future__ import annotations

from sora_relay import services
from sora_relay.errors import Conflict, NotFound, Unauthorized
from sora_relay.finish_task import finish_task
from sora_relay.observability import logger
from sora_relay.task import Task
from sora_relay.tokens import token_matches


def record_callback(provider_name: str, task_id: str, token: str | None, body: bytes) -> tuple[Task, bool]:
    """Check and apply a callback; returns the task and whether this call changed it.

    The token is checked before anything is read, so a caller without it learns nothing about
    whether the task exists. A result for a task that is already finished changes nothing.
    """
    provider = services.provider(provider_name)
    if not token_matches(task_id, token, services.callback_key()):
        raise Unauthorized(
            "The callback token is missing or wrong", param="token", code="invalid_callback_token"
        )
    result = provider.parse_callback(body)
    logger.append_keys(task_id=task_id, provider_task_id=result.provider_task_id)
    task = services.task_store().get(task_id)
    if task is None:
        raise NotFound("No such task", param="task_id", code="task_not_found")
    if task.provider != provider.name or (
        task.provider_task_id is not None and task.provider_task_id != result.provider_task_id
    ):
        logger.warning("Callback names another provider task; ignored")
        raise Conflict(
            "The callback is for another provider task", param="task_id", code="callback_task_mismatch"
        )
    if task.status.is_terminal:
        logger.info("Duplicate or late callback; task already finished", extra={"status": task.status.value})
        return task, False
    finished = finish_task(task, result)
    return finished, finished.version != task.version
