"""One-off: put the tasks that were open before the open index existed into it.

    python scripts/backfill_open_index.py --table TASKS_TABLE [--dry-run]

The reconciler finds open tasks through `open-tasks-index`, whose partition key `open_shard` the
TaskStore writes on create and on every move to `in_progress`, and removes when a task ends. A
task created by the code before it carries no `open_shard`, so it is invisible to the reconciler
until its next transition: a lost callback would never be looked up or timed out. This scans the
table once for `queued`/`in_progress` tasks without `open_shard` and sets it, each with a
conditional write on the status it read, so a task that moved or ended meanwhile is left alone (the
transition wrote or removed the attribute itself). Terminal tasks need nothing: not being in the
index is what they should be. Safe to run again (it then finds nothing); `--dry-run` lists what it
would change. Run it once after the deploy that adds the index and ships this code (docs/scale.md).

Uses the credentials and region of the environment (boto3's usual chain); reads the whole table
once (a scan costs 0.5 read units per 4 KB of items).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "common"))

from sora_relay.adapters.dynamodb import open_shard
from sora_relay.domain.task import Status


def unindexed_open_tasks(client: Any, table: str) -> Iterator[tuple[str, Status]]:
    """(task id, status) of every open task without `open_shard`, a page of the scan at a time."""
    pages = client.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="#status IN (:q, :p) AND attribute_not_exists(open_shard)",
        ProjectionExpression="task_id, #status",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":q": {"S": Status.QUEUED.value}, ":p": {"S": Status.IN_PROGRESS.value}},
    )
    for page in pages:
        for item in page.get("Items", []):
            yield item["task_id"]["S"], Status(item["status"]["S"])


def index(client: Any, table: str, task_id: str, status: Status) -> bool:
    """Set the task's `open_shard` if it is still in `status` and still has none; False if not."""
    try:
        client.update_item(
            TableName=table,
            Key={"task_id": {"S": task_id}},
            UpdateExpression="SET open_shard = :shard",
            ConditionExpression="#status = :seen AND attribute_not_exists(open_shard)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":shard": {"S": open_shard(task_id, status)},
                ":seen": {"S": status.value},
            },
        )
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True


def backfill(client: Any, table: str, *, dry_run: bool = False) -> dict[str, int]:
    """Counts: `indexed` (set now), `moved_on` (changed meanwhile), `would_index` (dry run)."""
    counts = {"indexed": 0, "moved_on": 0, "would_index": 0}
    for task_id, status in unindexed_open_tasks(client, table):
        if dry_run:
            print(f"would index {task_id} ({status.value}) as {open_shard(task_id, status)}")
            counts["would_index"] += 1
        elif index(client, table, task_id, status):
            counts["indexed"] += 1
        else:
            counts["moved_on"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--table", required=True, help="the stack's TasksTable name (its output TasksTableName)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would change, change nothing")
    args = parser.parse_args(argv)
    import boto3

    counts = backfill(boto3.client("dynamodb"), args.table, dry_run=args.dry_run)
    print(", ".join(f"{name}: {count}" for name, count in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
