"""Use case: settle tasks whose callback never came, or whose copy never finished.

Run on a schedule, one run at a time (the function's reserved concurrency is 1). It only looks
up and queues; the archive step copies:
- open tasks older than a threshold with no recorded result are looked up with the provider's
  batch query (50 ids a call) and their results applied as a callback's would be (a finished
  video is recorded and queued for the archive step; a failure fails the task);
- open tasks with a recorded result whose copy is not running (no live archive claim) and was
  not queued recently (`reconcile_copy_requeue_after_seconds`: the result's arrival, or this
  step's last requeue) are queued for the archive step again, so a lost archive message is
  replaced without flooding the queue with repeats of copies that are only waiting their turn;
- a task without a result past the hard deadline, `in_progress` or still `queued`, fails with
  `timeout`. A task whose result came is left to the archive step, whose last attempt fails it.
A run stops taking new work when its invocation is about to run out of time; the next run
carries on (the oldest tasks come first). Every terminal transition reaches the client through
the table's stream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import groupby

from sora_relay.domain.errors import SoraRelayError, TransitionRejected
from sora_relay.domain.provider import ProviderResult, ProviderState
from sora_relay.domain.task import Status, Task, now_millis
from sora_relay.observability import logger, metrics
from sora_relay.usecases import budget
from sora_relay.usecases.archive import queue_archive
from sora_relay.usecases.deps import Deps
from sora_relay.usecases.record_push import apply_result

_LOOKUP_BATCH = 50  # ids per provider lookup, and how often the time left is checked


def reconcile(
    deps: Deps, now_ms: int | None = None, *, remaining_ms: Callable[[], int] | None = None
) -> dict[str, int]:
    """One pass; returns how many tasks ended up in each outcome.

    `remaining_ms` tells how much of the invocation is left (Lambda's context); without it the
    run has no time limit.
    """
    settings = deps.settings
    now_ms = now_ms if now_ms is not None else now_millis()
    margin_ms = settings.reconcile_stop_margin_seconds * 1000

    def out_of_time() -> bool:
        return remaining_ms is not None and remaining_ms() < margin_ms

    store = deps.task_store
    stale = store.list_open(
        Status.IN_PROGRESS,
        created_before_ms=now_ms - int(settings.reconcile_stale_after_seconds * 1000),
        limit=settings.reconcile_max_tasks,
    )
    outcomes: Counter[str] = Counter()
    recorded = [task for task in stale if task.provider_video_url]
    requeue_since_ms = now_ms - int(settings.reconcile_copy_requeue_after_seconds * 1000)
    for task in recorded:
        if out_of_time():
            outcomes["left_for_next_run"] += 1
        elif task.archive_lease_ms and task.archive_lease_ms > now_ms:
            outcomes["archiving"] += 1
        elif max(task.result_received_ms or 0, task.copy_requeued_ms or 0) >= requeue_since_ms:
            outcomes["copy_waiting"] += 1
        else:
            outcomes[_queue_copy(deps, task, requeue_since_ms)] += 1

    def by_model(task: Task) -> tuple[str, str]:
        return task.provider, task.model

    waiting = sorted((task for task in stale if not task.provider_video_url), key=by_model)
    for (provider_name, model_id), group in groupby(waiting, key=by_model):
        tasks = list(group)
        for start in range(0, len(tasks), _LOOKUP_BATCH):
            batch = tasks[start : start + _LOOKUP_BATCH]
            if out_of_time():
                outcomes["left_for_next_run"] += len(batch)
                continue
            try:
                results = _provider_results(deps, provider_name, model_id, batch)
            except SoraRelayError as error:
                logger.warning("Provider lookup failed; next run retries", extra={"error_code": error.code})
                outcomes["lookup_failed"] += len(batch)
                continue
            for task in batch:
                outcomes[_settle(deps, task, results.get(task.provider_task_id or ""), now_ms)] += 1
    # A task still `queued` past the deadline has outlived every dispatch attempt (about 30 min of
    # backoff) or lost its start: nothing will move it any more.
    if not out_of_time():
        for task in store.list_open(
            Status.QUEUED,
            created_before_ms=now_ms - int(settings.reconcile_deadline_seconds * 1000),
            limit=settings.reconcile_max_tasks,
        ):
            outcomes[_time_out(deps, task)] += 1
    for outcome, count in outcomes.items():
        metrics.add_metric(name=f"Reconciled_{outcome}", unit="Count", value=count)
    logger.info("Reconciled", extra={"outcomes": dict(outcomes), "examined": len(stale)})
    return dict(outcomes)


def _provider_results(
    deps: Deps, provider_name: str, model_id: str, tasks: list[Task]
) -> dict[str, ProviderResult]:
    ids = [task.provider_task_id for task in tasks if task.provider_task_id]
    if not ids:
        return {}
    model = deps.catalogue.require(model_id)
    return {result.provider_task_id: result for result in deps.provider(provider_name).query(model, ids)}


def _queue_copy(deps: Deps, task: Task, requeue_since_ms: int) -> str:
    """Mark the copy requeued, then queue it. The mark comes first so that two runs (or a run and
    a stale read) never both queue it; a send that fails after it is retried by a run one window
    later, as a lost message would be."""
    try:
        deps.task_store.mark_copy_requeued(task.task_id, unless_since_ms=requeue_since_ms)
    except TransitionRejected:
        return "copy_waiting"  # settled, claimed or queued since the lookup
    except SoraRelayError as error:
        logger.warning("Could not mark the copy requeued; next run retries", extra={"error_code": error.code})
        return "error"
    try:
        queue_archive(deps, task)
    except SoraRelayError as error:
        logger.warning("Could not queue the copy; a later run retries", extra={"error_code": error.code})
        return "error"
    return "copy_queued"


def _settle(deps: Deps, task: Task, result: ProviderResult | None, now_ms: int) -> str:
    if result is not None and result.state in (ProviderState.SUCCEEDED, ProviderState.FAILED):
        logger.append_keys(task_id=task.task_id)
        try:
            settled = apply_result(deps, task, result)
        except SoraRelayError as error:
            logger.warning("Could not apply the result; next run retries", extra={"error_code": error.code})
            return "error"
        if settled.status.is_terminal:
            return settled.status.value
        if settled.provider_video_url:
            return "copy_queued"
    if now_ms - task.created_ms > deps.settings.reconcile_deadline_seconds * 1000:
        return _time_out(deps, task)
    return "still_running"


def _time_out(deps: Deps, task: Task) -> str:
    try:
        failed = deps.task_store.time_out(
            task.task_id, message="The provider did not finish the video in time"
        )
    except TransitionRejected:
        return "already_finished"
    budget.release_failed(deps, failed)  # only a task the provider never took (still `queued`)
    return "timed_out"  # the stream tells the client
