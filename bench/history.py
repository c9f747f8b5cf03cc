"""Benchmark 8: what the table's lookups cost as completed tasks pile up.

    python -m bench.history [--tasks 100000] [--tenants 100]

Seeds TasksTable (moto in process, the template's own definition, `batch_write_item`) with
`--tasks` completed or failed tasks spread over `--tenants` tenants, on top of a small working set
(open tasks, one tenant's recent tasks), and measures, on the working set alone and then with the
history added: the reconciler's two lookups (`TaskStore.list_open`, as `reconcile()` calls them),
one tenant's list page (`list_for_owner`, 20 a page) and a status read (`get`). Each is the real
TaskStore call; a botocore hook on its client asks for ReturnConsumedCapacity=TOTAL and records
what each answer says. Target: seeded / empty <= 1.1 for each, in items read and in read units.

Why both counts: moto answers ConsumedCapacity with a fixed 1.0 per Query (0.5 per GetItem)
whatever it reads, so its figure is recorded but cannot show growth. Items read are moto's
ScannedCount (the items its key condition matched, as DynamoDB counts them), and read units are
priced from the bytes of the items read, as DynamoDB bills them: 4 KB units, half a unit for an
eventually consistent read (a GSI query), one for a consistent GetItem.

The control: the same seeding on a table with the old `status-created-index` (status as the
partition key). Its reconciler queries read only the open statuses' keys, so they stay flat too;
what grows is the index itself: every terminal task stays in it, under one of two keys. The
control measures the items each design's index holds (a Select=COUNT scan of the index), which
must grow on the old design and not on the new one: the instrument can see growth.

`tests/integration/test_history_cost.py` runs the same with 2,000 tasks (about 7 s). 100k took
26 min on the shared 2-core machine: moto checks each item's size attribute by attribute when it
is written, and walks the whole table for every index query and scan page.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.harness import Figure, Spread, fake_aws_in_process, print_figures, save

# The status index the open index replaced (template.yaml before it), for the control.
OLD_STATUS_INDEX = {
    "IndexName": "status-created-index",
    "KeySchema": [
        {"AttributeName": "status", "KeyType": "HASH"},
        {"AttributeName": "created_ms", "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "ALL"},
}
PAGE = 20  # one tenant's list page, as GET /v1/videos?limit=20 asks
TENANT = "tenant-000"  # the tenant whose page is read: it has history too
MINUTE_MS = 60_000
TARGET = 1.1


@dataclass
class Reads:
    """What the calls of one operation read, as the answers report it."""

    calls: int = 0
    items_read: int = 0
    items_returned: int = 0
    read_units: float = 0.0  # priced from the items' bytes
    moto_capacity: float = 0.0  # what moto's ConsumedCapacity says (a constant per call)

    def ratio(self, empty: Reads) -> dict[str, float]:
        return {
            "items_read": self.items_read / max(empty.items_read, 1),
            "read_units": self.read_units / max(empty.read_units, 0.5),
        }


@dataclass
class Meter:
    """A botocore hook on one DynamoDB client: every Query and GetItem asks for its consumed
    capacity, and its answer is added to the operation being measured."""

    current: Reads | None = None  # calls outside `measure` are not counted

    def attach(self, client: Any) -> None:
        for operation in ("Query", "GetItem", "Scan"):
            client.meta.events.register(f"provide-client-params.dynamodb.{operation}", self._ask)
            client.meta.events.register(f"after-call.dynamodb.{operation}", self._record)

    def measure(self, run: Callable[[], Any]) -> Reads:
        self.current = reads = Reads()
        try:
            run()
        finally:
            self.current = None
        return reads

    @staticmethod
    def _ask(params: dict[str, Any], **_: Any) -> None:
        params["ReturnConsumedCapacity"] = "TOTAL"

    def _record(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        reads = self.current
        if reads is None:
            return
        reads.calls += 1
        reads.moto_capacity += parsed.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0)
        if model.name == "GetItem":
            items = [parsed["Item"]] if "Item" in parsed else []
            reads.items_read += len(items)
            reads.items_returned += len(items)
            reads.read_units += max(1, math.ceil(sum(map(item_bytes, items)) / 4096)) * 1.0
            return
        items = parsed.get("Items", [])
        reads.items_read += parsed.get("ScannedCount", len(items))
        reads.items_returned += parsed.get("Count", len(items))
        if (
            model.name == "Query"
        ):  # rounded up: an empty query is priced at half a unit; COUNT scans are the control
            reads.read_units += max(1, math.ceil(sum(map(item_bytes, items)) / 4096)) * 0.5


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB reckons it: attribute names plus values (numbers about a byte
    per two digits, maps and lists 3 bytes plus a byte per element)."""

    def value_bytes(value: dict[str, Any]) -> int:
        ((kind, inner),) = value.items()
        if kind == "S":
            return len(inner.encode())
        if kind == "N":
            return len(inner.lstrip("-").replace(".", "")) // 2 + 2
        if kind in ("BOOL", "NULL"):
            return 1
        if kind == "M":
            return 3 + sum(len(k.encode()) + value_bytes(v) + 1 for k, v in inner.items())
        if kind == "L":
            return 3 + sum(value_bytes(v) + 1 for v in inner)
        return len(str(inner))

    return sum(len(name.encode()) + value_bytes(value) for name, value in item.items())


def create_table(client: Any, name: str) -> None:
    """TasksTable as template.yaml defines it, plus the old status index for the control (one
    table with both indexes: both designs read the same items, seeded once)."""
    from devstack.template import load_template

    props = load_template()["Resources"]["TasksTable"]["Properties"]
    client.create_table(
        TableName=name,
        AttributeDefinitions=[
            *props["AttributeDefinitions"],
            {"AttributeName": "status", "AttributeType": "S"},
        ],
        KeySchema=props["KeySchema"],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[*props["GlobalSecondaryIndexes"], OLD_STATUS_INDEX],
    )


def _task_item(
    number: int, *, owner: str, status: str, created_ms: int, rng: random.Random
) -> dict[str, Any]:
    """A task as the pipeline leaves it (prompt, provider ids, video, delivered webhook)."""
    from sora_relay.adapters.dynamodb import open_shard
    from sora_relay.domain.task import Status, Task

    task = Task(
        task_id=f"video_{number:032x}",
        owner=owner,
        status=Status(status),
        model="veo-3.1-fast",
        prompt="A paper boat drifting down a rainy street, " + "cinematic, " * rng.randint(2, 12),
        seconds=8,
        size="1280x720",
        provider="acedata",
        provider_task_id=f"prov-{number:012d}",
        cost_microusd=1_200_000,
        created_ms=created_ms,
        updated_ms=created_ms + 90_000,
        expires_at=created_ms // 1000 + 30 * 86400,
    )
    item = task.to_item()
    if status == "completed":
        item.update(
            completed_ms=created_ms + 90_000,
            provider_video_url=f"https://cdn.provider.example/{number}.mp4",
            result_received_ms=created_ms + 80_000,
            video_key=f"videos/{task.task_id}/prov-{number:012d}-1.mp4",
            video_bytes=8_000_000,
            video_sha256=f"{number:064x}",
            webhook={"event_id": f"evt_{number:024x}", "state": "delivered", "attempts": 1},
        )
    elif status == "failed":
        item.update(completed_ms=created_ms + 90_000, error_code="timeout", error_message="did not finish")
    else:
        item["open_shard"] = open_shard(task.task_id, Status(status))  # what TaskStore.create writes
    return item


def working_set(now_ms: int) -> list[dict[str, Any]]:
    """What both tables hold before the history: open tasks (stale, fresh, queued past the
    deadline) and one tenant's newest page and a half of tasks."""
    rng = random.Random(1)
    items = []
    plan = [("in_progress", 20), ("in_progress", 1), ("queued", 7 * 60), ("queued", 1)]
    for kind, (status, age_minutes) in enumerate(plan):
        for n in range(12):
            number = 10**9 + kind * 100 + n
            owner = f"tenant-{n % 4:03d}"
            items.append(
                _task_item(
                    number,
                    owner=owner,
                    status=status,
                    created_ms=now_ms - age_minutes * MINUTE_MS - n,
                    rng=rng,
                )
            )
    for n in range(30):
        items.append(
            _task_item(2 * 10**9 + n, owner=TENANT, status="completed", created_ms=now_ms - n * 1000, rng=rng)
        )
    return items


def history(tasks: int, tenants: int, now_ms: int) -> list[dict[str, Any]]:
    """`tasks` terminal tasks (one in ten failed) over `tenants` tenants, all older than the
    working set, spread over the last 30 days."""
    rng = random.Random(2)
    day_ms = 86400 * 1000
    return [
        _task_item(
            number,
            owner=f"tenant-{number % tenants:03d}",
            status="failed" if number % 10 == 0 else "completed",
            created_ms=now_ms - day_ms - rng.randrange(29 * day_ms),
            rng=rng,
        )
        for number in range(tasks)
    ]


def batch_write(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    from boto3.dynamodb.types import TypeSerializer

    serialize = TypeSerializer().serialize
    for start in range(0, len(items), 25):
        requests = [
            {"PutRequest": {"Item": {k: serialize(v) for k, v in item.items()}}}
            for item in items[start : start + 25]
        ]
        while requests:
            unprocessed = client.batch_write_item(RequestItems={table: requests}).get("UnprocessedItems", {})
            requests = unprocessed.get(table, [])


def operations(client: Any, table: str, now_ms: int) -> dict[str, Callable[[], Any]]:
    """The lookups to measure, each the call the application makes, and the control's."""
    from sora_relay.adapters.dynamodb import OPEN_INDEX, TaskStore
    from sora_relay.domain.task import Status
    from sora_relay.settings import Settings

    defaults = {name: info.default for name, info in Settings.model_fields.items()}
    stale_before = now_ms - int(defaults["reconcile_stale_after_seconds"] * 1000)
    deadline_before = now_ms - int(defaults["reconcile_deadline_seconds"] * 1000)
    limit = defaults["reconcile_max_tasks"]
    store = TaskStore(client, table)

    def reconciler_lookup() -> None:
        store.list_open(Status.IN_PROGRESS, created_before_ms=stale_before, limit=limit)
        store.list_open(Status.QUEUED, created_before_ms=deadline_before, limit=limit)

    def old_reconciler_lookup() -> None:
        # What the old list_by_status asked: one key per status, oldest first.
        for status, before in (("in_progress", stale_before), ("queued", deadline_before)):
            client.query(
                TableName=table,
                IndexName=OLD_STATUS_INDEX["IndexName"],
                KeyConditionExpression="#s = :s AND created_ms < :b",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": {"S": status}, ":b": {"N": str(before)}},
                Limit=limit,
            )

    def holds(index: str) -> Callable[[], None]:
        def count() -> None:
            for _ in client.get_paginator("scan").paginate(TableName=table, IndexName=index, Select="COUNT"):
                pass

        return count

    newest = store.list_for_owner(TENANT, limit=1)[0][0].task_id  # outside a measure: not counted

    return {
        "reconciler lookup": reconciler_lookup,
        "tenant list page": lambda: store.list_for_owner(TENANT, limit=PAGE),
        "status read": lambda: store.get(newest),
        "open index holds": holds(OPEN_INDEX),
        "old: reconciler lookup on the status index": old_reconciler_lookup,
        "old: status index holds": holds(OLD_STATUS_INDEX["IndexName"]),
    }


def run(tasks: int, tenants: int) -> dict[str, dict[str, Reads]]:
    """{'empty' | 'seeded': {operation: Reads}}: the working set alone, then with the history."""
    import boto3
    from moto import mock_aws

    from devstack.template import REGION

    now_ms = int(time.time() * 1000)
    results: dict[str, dict[str, Reads]] = {"empty": {}, "seeded": {}}
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        meter = Meter()
        meter.attach(client)
        table = "tasks"
        create_table(client, table)
        batch_write(client, table, working_set(now_ms))
        for name, operation in operations(client, table, now_ms).items():
            results["empty"][name] = meter.measure(operation)
        started = time.monotonic()
        batch_write(client, table, history(tasks, tenants, now_ms))
        print(f"  seeded {tasks:,} terminal tasks in {time.monotonic() - started:.0f} s", flush=True)
        for name, operation in operations(client, table, now_ms).items():
            results["seeded"][name] = meter.measure(operation)
    return results


CONTROL_GROWTH = 2.0  # the old index must at least double with the history, or nothing is measured


def figures(results: dict[str, dict[str, Reads]], tasks: int) -> list[Figure]:
    """Seeded / empty per operation. Ours: <= 1.1. The old design's lookup: recorded. The old
    index's size: must grow (the control; a flat one means the seeding or the meter is broken)."""
    out = []
    for name, seeded in results["seeded"].items():
        empty = results["empty"][name]
        ratio = seeded.ratio(empty)
        holds, old = name.endswith("holds"), name.startswith("old:")
        note = f"items read {empty.items_read} -> {seeded.items_read}"
        if not holds:
            note += (
                f", read units {empty.read_units:g} -> {seeded.read_units:g}, "
                f"moto's capacity {empty.moto_capacity:g} -> {seeded.moto_capacity:g}"
            )
        if old and holds:
            limit, at_least = CONTROL_GROWTH, True
        else:
            limit, at_least = (None if old else TARGET), False
        for measure in ("items_read",) if holds else ("items_read", "read_units"):
            out.append(
                Figure(
                    "history",
                    f"{name}, {measure.replace('_', ' ')}: {tasks:,} terminal tasks / none",
                    Spread.of([ratio[measure]]),
                    "x",
                    limit=limit,
                    at_least=at_least,
                    note=note,
                    detail={"empty": asdict(empty), "seeded": asdict(seeded)},
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=100)
    args = parser.parse_args(argv)
    fake_aws_in_process()
    results = run(args.tasks, args.tenants)
    found = figures(results, args.tasks)
    print_figures("8. lookups against the table's history", found)
    save("history", found, tasks=args.tasks, tenants=args.tenants)
    return 0 if all(figure.ok is not False for figure in found) else 1


if __name__ == "__main__":
    sys.exit(main())
