"""Use case: accept a generation request, start it at the provider, remember its task id."""

from __future__ import annotations

from urllib.parse import quote

from sora_relay import services
from sora_relay.errors import SoraRelayError, TransitionRejected
from sora_relay.models import CreateVideoRequest, VideoObject
from sora_relay.observability import logger, metrics
from sora_relay.providers.base import GenerationRequest
from sora_relay.retry import with_backoff
from sora_relay.settings import get_settings
from sora_relay.task import Status, Task, TaskChange, now_millis
from sora_relay.tokens import callback_token


def callback_url_for(public_base_url: str, provider_name: str, task_id: str, key: str) -> str:
    token = callback_token(task_id, key)
    return f"{public_base_url}/v1/callbacks/{provider_name}/{task_id}?token={quote(token)}"


def submit_video(request: CreateVideoRequest, *, owner: str, public_base_url: str) -> VideoObject:
    settings = get_settings()
    tasks = services.task_store()
    provider = services.provider(settings.provider_name)
    task = Task.new(
        owner=owner,
        model=request.model,
        prompt=request.prompt,
        seconds=request.video_seconds,
        size=request.size,
        image_url=request.image_url,
        callback_url=request.callback_url,
        provider=provider.name,
        retention_days=settings.task_retention_days,
    )
    tasks.create(task)
    logger.append_keys(task_id=task.task_id)
    logger.info("Task accepted", extra={"prompt_chars": len(task.prompt), "model": task.model})

    generation = GenerationRequest(
        prompt=task.prompt, model=task.model, seconds=task.seconds, size=task.size, image_url=task.image_url
    )
    callback_url = callback_url_for(public_base_url, provider.name, task.task_id, services.callback_key())
    try:
        provider_task_id = with_backoff(
            lambda: provider.submit(generation, callback_url=callback_url),
            attempts=settings.provider_max_attempts,
            budget_seconds=settings.provider_retry_budget_seconds,
            base_delay=settings.provider_retry_base_delay_seconds,
        )
    except SoraRelayError as error:
        # The client hears about this synchronously; the task still records why it ended.
        tasks.transition(
            task.task_id,
            Status.FAILED,
            TaskChange(error_code=error.code, error_message=error.message, completed_ms=now_millis()),
        )
        metrics.add_metric(name="SubmitFailed", unit="Count", value=1)
        logger.warning("Provider refused the task", extra={"error_code": error.code})
        raise

    try:
        task = tasks.transition(
            task.task_id, Status.IN_PROGRESS, TaskChange(provider_task_id=provider_task_id)
        )
    except TransitionRejected:
        # A fast provider's callback finished the task before we got here: report what it is now.
        task = tasks.get(task.task_id) or task
    metrics.add_metric(name="TaskSubmitted", unit="Count", value=1)
    logger.info("Task started at the provider", extra={"provider_task_id": provider_task_id})
    return VideoObject.from_task(task)
