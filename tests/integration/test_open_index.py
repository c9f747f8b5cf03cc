"""The open-tasks index: a task is in it while open, leaves it with the write that ends it, and the
reconciler's lookup reads it oldest first across its shards. Also the one-off backfill."""

from __future__ import annotations

import boto3
import pytest

from scripts import backfill_open_index
from sora_relay.adapters.dynamodb import OPEN_INDEX, OPEN_SHARDS, TaskStore, open_shard
from sora_relay.domain.errors import TransitionRejected
from sora_relay.domain.task import Status, Task, now_millis

MINUTE_MS = 60_000


@pytest.fixture
def client(stack):
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def store(stack, client) -> TaskStore:
    return TaskStore(client, stack.refs["TasksTable"])


def _new(store: TaskStore, *, age_minutes: float = 0, number: int = 0, now_ms: int | None = None) -> Task:
    """A queued task created `age_minutes` and `number` ms before `now_ms` (default: now)."""
    task = Task.new(
        owner="tenant-a",
        model="veo-3.1-fast",
        prompt=f"open index {number}",
        seconds=8,
        size="1280x720",
        image_url=None,
        callback_url=None,
        provider="acedata",
        retention_days=30,
        now_ms=(now_ms or now_millis()) - int(age_minutes * MINUTE_MS) - number,
    )
    store.create(task)
    return task


def _shard_of(client, stack, task_id: str) -> str | None:
    item = client.get_item(TableName=stack.refs["TasksTable"], Key={"task_id": {"S": task_id}})["Item"]
    return item.get("open_shard", {}).get("S")


def _indexed_ids(client, stack) -> set[str]:
    pages = client.get_paginator("scan").paginate(TableName=stack.refs["TasksTable"], IndexName=OPEN_INDEX)
    return {item["task_id"]["S"] for page in pages for item in page["Items"]}


def test_a_task_is_in_the_index_while_open_under_its_status(store, client, stack):
    task = _new(store)
    assert _shard_of(client, stack, task.task_id) == open_shard(task.task_id, Status.QUEUED)
    assert (
        open_shard(task.task_id, Status.QUEUED).split("#")[1]
        == open_shard(task.task_id, Status.IN_PROGRESS).split("#")[1]
    )

    store.start(task.task_id, "prov-1")
    assert _shard_of(client, stack, task.task_id) == open_shard(task.task_id, Status.IN_PROGRESS)
    store.record_progress(task.task_id, 40)
    assert _indexed_ids(client, stack) == {task.task_id}


def test_a_result_recorded_on_a_queued_task_moves_it_to_in_progress_in_the_index(store, client, stack):
    task = _new(store)
    store.record_result(task.task_id, "prov-1", "https://cdn.example/v.mp4")
    assert _shard_of(client, stack, task.task_id) == open_shard(task.task_id, Status.IN_PROGRESS)


@pytest.mark.parametrize("ending", ["complete", "fail", "time_out"])
def test_the_write_that_ends_a_task_takes_it_out_of_the_index(store, client, stack, ending):
    # Given an open task with a result being copied (complete) or without one (fail, time_out)
    task = _new(store)
    store.start(task.task_id, "prov-1")
    if ending == "complete":
        store.record_result(task.task_id, "prov-1", "https://cdn.example/v.mp4")
        store.claim_archive(task.task_id, "claim-1", lease_until_ms=now_millis() + 60_000)
        ended = store.complete(task.task_id, "claim-1", video_key="k", video_bytes=1, video_sha256="0" * 64)
    elif ending == "fail":
        ended = store.fail(task.task_id, code="api_error", message="nope")
    else:
        ended = store.time_out(task.task_id, message="too slow")

    # Then it is terminal and gone from the index, and nothing else is in it
    assert ended.status.is_terminal
    assert _shard_of(client, stack, task.task_id) is None
    assert _indexed_ids(client, stack) == set()


def test_a_refused_transition_leaves_the_index_alone(store, client, stack):
    # Given a task with a result: time_out's condition (no result yet) does not hold
    task = _new(store)
    store.record_result(task.task_id, "prov-1", "https://cdn.example/v.mp4")
    with pytest.raises(TransitionRejected):
        store.time_out(task.task_id, message="too slow")
    assert _shard_of(client, stack, task.task_id) == open_shard(task.task_id, Status.IN_PROGRESS)
    # And a finished task cannot be put back
    store.fail(task.task_id, code="x", message="y")
    with pytest.raises(TransitionRejected):
        store.start(task.task_id, "prov-1")
    assert _shard_of(client, stack, task.task_id) is None


def test_the_lookup_merges_the_shards_oldest_first_up_to_its_limit(store):
    # Given 60 in-progress tasks spread over the shards, 40 of them stale, and a queued one, each
    # created a distinct millisecond before one moment (the clock read per task could make two equal)
    now = now_millis()
    tasks = [_new(store, age_minutes=30 if n < 40 else 1, number=n, now_ms=now) for n in range(60)]
    for task in tasks:
        store.start(task.task_id, f"prov-{task.task_id}")
    _new(store, age_minutes=30, number=99)
    assert len({open_shard(task.task_id, Status.IN_PROGRESS) for task in tasks}) > OPEN_SHARDS // 2
    before = now_millis() - 15 * MINUTE_MS
    stale = sorted(tasks[:40], key=lambda task: task.created_ms)

    # When the reconciler asks for the 25 oldest, then for all
    oldest = store.list_open(Status.IN_PROGRESS, created_before_ms=before, limit=25)
    every = store.list_open(Status.IN_PROGRESS, created_before_ms=before, limit=500)

    # Then it gets the oldest stale ones in order, whichever shard holds them, and no queued one
    assert [task.task_id for task in oldest] == [task.task_id for task in stale[:25]]
    assert [task.task_id for task in every] == [task.task_id for task in stale]
    with pytest.raises(ValueError):
        store.list_open(Status.COMPLETED, created_before_ms=before, limit=1)


def _pre_index_task(client, stack, task: Task) -> None:
    """A task as the code before the open index wrote it: no `open_shard`."""
    client.update_item(
        TableName=stack.refs["TasksTable"],
        Key={"task_id": {"S": task.task_id}},
        UpdateExpression="REMOVE open_shard",
    )


def test_the_backfill_indexes_the_open_tasks_the_old_code_wrote(store, client, stack, capsys):
    # Given tasks written before the index: one queued, one in progress, one completed
    queued, running, done = (_new(store, age_minutes=20, number=n) for n in range(3))
    store.start(running.task_id, "prov-r")
    store.fail(done.task_id, code="x", message="y")
    for task in (queued, running):
        _pre_index_task(client, stack, task)
    table = stack.refs["TasksTable"]
    assert _indexed_ids(client, stack) == set()

    # When the backfill runs dry, then for real, then again
    dry = backfill_open_index.backfill(client, table, dry_run=True)
    assert _indexed_ids(client, stack) == set()
    real = backfill_open_index.backfill(client, table)
    again = backfill_open_index.backfill(client, table)

    # Then the dry run listed them and changed nothing, the run indexed both, the rerun nothing
    assert dry["would_index"] == 2 and queued.task_id in capsys.readouterr().out
    assert real == {"indexed": 2, "moved_on": 0, "would_index": 0}
    assert again == {"indexed": 0, "moved_on": 0, "would_index": 0}
    assert _indexed_ids(client, stack) == {queued.task_id, running.task_id}
    # And the reconciler's lookup finds them where the new code would have put them
    before = now_millis() - 15 * MINUTE_MS
    assert [t.task_id for t in store.list_open(Status.QUEUED, created_before_ms=before, limit=10)] == [
        queued.task_id
    ]
    assert [t.task_id for t in store.list_open(Status.IN_PROGRESS, created_before_ms=before, limit=10)] == [
        running.task_id
    ]


def test_the_backfill_leaves_a_task_that_moved_on_meanwhile(store, client, stack):
    # Given an old-code task that ends between the scan and the write
    task = _new(store)
    _pre_index_task(client, stack, task)
    found = list(backfill_open_index.unindexed_open_tasks(client, stack.refs["TasksTable"]))
    assert found == [(task.task_id, Status.QUEUED)]
    store.fail(task.task_id, code="x", message="y")

    # When the backfill writes what it read, the condition on the status refuses it
    assert backfill_open_index.index(client, stack.refs["TasksTable"], task.task_id, Status.QUEUED) is False
    assert _shard_of(client, stack, task.task_id) is None
