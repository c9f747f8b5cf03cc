"""Use case: finish tasks whose callback never came, or whose video copy failed.

Run on a schedule. Tasks `in_progress` for longer than a threshold are looked up with the
provider's batch query (50 ids a call) and finished through the same code path a callback uses.
A task whose copy to S3 failed is copied again from the URL the provider gave. A task still
without a result past the hard deadline, `in_progress` or still `queued`, becomes `failed` with
`timeout`. Every terminal transition reaches the client through the table's stream.
"""

from __future__ import annotations

from collections import Counter
from itertools import groupby

from sora_relay import services
from sora_relay.errors import SoraRelayError, TransitionRejected
from sora_relay.finish_task import finish_task
from sora_relay.observability import logger, metrics
from sora_relay.providers.base import ProviderResult, ProviderState
from sora_relay.settings import get_settings
from sora_relay.task import Status, Task, TaskChange, now_millis


def reconcile(now_ms: int | None = None) -> dict[str, int]:
    """One pass; returns how many tasks ended up in each outcome."""
    settings = get_settings()
    now_ms = now_ms if now_ms is not None else now_millis()
    stale = services.task_store().list_by_status(
        Status.IN_PROGRESS,
        created_before_ms=now_ms - int(settings.reconcile_stale_after_seconds * 1000),
        limit=settings.reconcile_max_tasks,
    )
    outcomes: Counter[str] = Counter()
    for provider_name, group in groupby(sorted(stale, key=lambda t: t.provider), key=lambda t: t.provider):
        tasks = list(group)
        try:
            results = _provider_results(provider_name, tasks)
        except SoraRelayError as error:
            logger.warning("Provider lookup failed; next run retries", extra={"error_code": error.code})
            outcomes["lookup_failed"] += len(tasks)
            results = {}
        for task in tasks:
            outcomes[_settle(task, results.get(task.provider_task_id or ""), now_ms)] += 1
    # A task still `queued` past the deadline has outlived every dispatch attempt (about 30 min of
    # backoff) or lost its start: nothing will move it any more.
    for task in services.task_store().list_by_status(
        Status.QUEUED,
        created_before_ms=now_ms - int(settings.reconcile_deadline_seconds * 1000),
        limit=settings.reconcile_max_tasks,
    ):
        outcomes[_time_out(task)] += 1
    for outcome, count in outcomes.items():
        metrics.add_metric(name=f"Reconciled_{outcome}", unit="Count", value=count)
    logger.info("Reconciled", extra={"outcomes": dict(outcomes), "examined": len(stale)})
    return dict(outcomes)


def _provider_results(provider_name: str, tasks: list[Task]) -> dict[str, ProviderResult]:
    ids = [task.provider_task_id for task in tasks if task.provider_task_id and not task.provider_video_url]
    if not ids:
        return {}
    return {result.provider_task_id: result for result in services.provider(provider_name).query(ids)}


def _settle(task: Task, result: ProviderResult | None, now_ms: int) -> str:
    if task.provider_video_url:
        # The provider finished; our copy failed. Copy it again.
        result = ProviderResult(
            task.provider_task_id or "", ProviderState.SUCCEEDED, video_url=task.provider_video_url
        )
    if result is not None and result.state in (ProviderState.SUCCEEDED, ProviderState.FAILED):
        try:
            finished = finish_task(task, result)
        except SoraRelayError as error:
            logger.warning("Could not finish a task; next run retries", extra={"error_code": error.code})
            return "error"
        if finished.status.is_terminal:
            return finished.status.value
    if now_ms - task.created_ms > get_settings().reconcile_deadline_seconds * 1000:
        return _time_out(task)
    return "still_running"


def _time_out(task: Task) -> str:
    try:
        services.task_store().transition(
            task.task_id,
            Status.FAILED,
            TaskChange(
                error_code="timeout",
                error_message="The provider did not finish the video in time",
                completed_ms=now_millis(),
            ),
        )
    except TransitionRejected:
        return "already_finished"
    return "timed_out"  # the stream tells the client
