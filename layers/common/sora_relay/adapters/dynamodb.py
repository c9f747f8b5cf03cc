"""TaskStore: the only code that talks to DynamoDB. ClientErrors become domain exceptions."""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sora_relay.adapters.dynamodb_items import from_attrs, is_condition_failure, to_attrs
from sora_relay.domain.errors import SoraRelayError, StorageError, TransitionRejected, WebhookClaimLost
from sora_relay.domain.task import Status, Task, TaskChange, now_millis, sources_of
from sora_relay.domain.webhook import WebhookDelivery

OWNER_INDEX = "owner-created-index"
# The reconciler's view: open tasks only, by age. `open_shard` ("<status>#<n>") is set while a task
# is open and REMOVEd by the update that ends it, so DynamoDB drops the item from this index and
# the index holds what is open now, not the table's history (docs/scale.md).
OPEN_INDEX = "open-tasks-index"
# Open tasks are spread over this many partition keys per status: every write to an open task is
# also a write to this index, and one key takes at most 1,000 WCU/s (docs/scale.md). The reader
# queries shards 0..OPEN_SHARDS-1, so the number may grow between deploys but must not shrink
# while tasks are open in the higher shards.
OPEN_SHARDS = 16
_OPEN_PAGE = 50  # items per shard query: a run reads at most its limit plus one page per shard


# An open task (`:q`, `:p`: _OPEN_STATUSES) whose provider result is recorded: what the archive
# claim and the reconciler's requeue mark both require.
_OPEN_WITH_RESULT = (
    "attribute_exists(task_id) AND #status IN (:q, :p) AND attribute_exists(provider_video_url)"
)
_OPEN_STATUSES = {":q": Status.QUEUED.value, ":p": Status.IN_PROGRESS.value}


def open_shard(task_id: str, status: Status) -> str:
    """The open index's partition key for an open task: its status and a stable shard of its id."""
    return f"{status.value}#{zlib.crc32(task_id.encode()) % OPEN_SHARDS}"


class TaskStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def create(self, task: Task) -> None:
        """Store a new task; TransitionRejected if a task with its id exists already."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=to_attrs({**task.to_item(), **self._open_values(task.task_id, task.status)}),
                ConditionExpression="attribute_not_exists(task_id)",
            )
        except ClientError as error:
            if is_condition_failure(error):
                raise TransitionRejected(f"Task {task.task_id} exists already") from error
            raise StorageError("Could not store the task") from error
        except BotoCoreError as error:
            raise StorageError("Could not store the task") from error

    @staticmethod
    def _open_values(task_id: str, status: Status) -> dict[str, str]:
        return {} if status.is_terminal else {"open_shard": open_shard(task_id, status)}

    @staticmethod
    def from_image(image: dict[str, Any]) -> Task:
        """A task from a stream record's NewImage/OldImage (DynamoDB's typed attribute values)."""
        return Task.from_item(from_attrs(image))

    def get(self, task_id: str) -> Task | None:
        try:
            answer = self._client.get_item(
                TableName=self._table, Key=to_attrs({"task_id": task_id}), ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not read the task") from error
        item = answer.get("Item")
        return Task.from_item(from_attrs(item)) if item else None

    def transition(
        self,
        task_id: str,
        target: Status,
        change: TaskChange | None = None,
        *,
        claim: str | None = None,
        without_result: bool = False,
    ) -> Task:
        """Move the task to `target` if the state machine allows it from its current state.

        Raises TransitionRejected when the task is missing or already past that point, so two
        racing writers (duplicate callbacks, submit vs. callback) cannot both win. With `claim`,
        the change also needs the archive claim to be that one (and releases it); with
        `without_result`, it needs the task to have no recorded provider result.
        """
        values = {
            "status": target.value,
            "updated_ms": now_millis(),
            **self._open_values(task_id, target),
            **(change.values() if change else {}),
        }
        sources = sorted(source.value for source in sources_of(target))
        names = {f"#k{i}": key for i, key in enumerate(values)}
        placeholders = {f":v{i}": value for i, value in enumerate(values.values())}
        sets = ", ".join(f"#k{i} = :v{i}" for i in range(len(values)))
        source_refs = {f":s{i}": source for i, source in enumerate(sources)}
        condition = f"#status IN ({', '.join(source_refs)})"
        # A provider task id, once known, must not be replaced by another one.
        if "provider_task_id" in values:
            condition += " AND (attribute_not_exists(provider_task_id) OR provider_task_id = :ptid)"
            placeholders[":ptid"] = values["provider_task_id"]
        update = f"SET {sets} ADD #version :one"
        if claim is not None:
            condition += " AND archive_claim = :claim"
            placeholders[":claim"] = claim
        if without_result:
            condition += " AND attribute_not_exists(provider_video_url)"
        # A task that leaves `queued` has been started: no dispatch delivery holds its start now.
        # One that ends leaves the open index and lets go of its copy's claim in the same write.
        removed = ["dispatch_claim", "dispatch_lease_ms"] if target is not Status.QUEUED else []
        if target.is_terminal:
            removed += ["archive_claim", "archive_lease_ms", "open_shard"]
        if removed:
            update += f" REMOVE {', '.join(removed)}"
        return self._update(
            task_id,
            update=update,
            condition=f"attribute_exists(task_id) AND {condition}",
            names={**names, "#status": "status", "#version": "version"},
            values={**placeholders, **source_refs, ":one": 1},
        )

    # -- the task's named transitions: each requires the fields its state needs --

    def start(self, task_id: str, provider_task_id: str) -> Task:
        """queued -> in_progress: the provider accepted the task under `provider_task_id`."""
        return self.transition(task_id, Status.IN_PROGRESS, TaskChange(provider_task_id=provider_task_id))

    def record_result(self, task_id: str, provider_task_id: str, video_url: str) -> Task:
        """The provider finished the video at `video_url`: keep it for the archive step.

        Allowed while the task is open (a fast provider may push before submit recorded
        `in_progress`: the task moves on to `in_progress` here). A later push refreshes the URL
        (providers' links expire) and keeps the first arrival time.
        """
        now = now_millis()
        return self._update(
            task_id,
            update=(
                "SET #status = :progress, open_shard = :shard, provider_task_id = :ptid, "
                "provider_video_url = :url, result_received_ms = if_not_exists(result_received_ms, :now), "
                "updated_ms = :now ADD #version :one"
            ),
            condition=(
                "attribute_exists(task_id) AND #status IN (:q, :p) "
                "AND (attribute_not_exists(provider_task_id) OR provider_task_id = :ptid)"
            ),
            names={"#status": "status", "#version": "version"},
            values={
                ":progress": Status.IN_PROGRESS.value,
                ":shard": open_shard(task_id, Status.IN_PROGRESS),
                ":ptid": provider_task_id,
                ":url": video_url,
                ":now": now,
                ":one": 1,
                **_OPEN_STATUSES,
            },
        )

    def record_progress(self, task_id: str, progress: int) -> Task:
        """What the provider reports of an open task's progress (0-100); never finishes it."""
        now = now_millis()
        return self._update(
            task_id,
            update="SET progress = :progress, updated_ms = :now ADD #version :one",
            condition="attribute_exists(task_id) AND #status IN (:q, :p)",
            names={"#status": "status", "#version": "version"},
            values={
                ":progress": max(0, min(int(progress), 99)),
                ":now": now,
                ":one": 1,
                **_OPEN_STATUSES,
            },
        )

    def claim_dispatch(self, task_id: str, claim: str, *, lease_until_ms: int) -> Task:
        """Take the start of a queued task for one dispatch delivery, until `lease_until_ms`.

        Only a `queued` task whose previous claim (if any) has lapsed can be claimed; otherwise
        TransitionRejected. The lease outlives the dispatch function's timeout, so a crashed
        delivery's claim lapses by the time the message is handed out again.
        """
        return self._claim_lease(
            task_id,
            "dispatch",
            claim,
            lease_until_ms,
            only_if="attribute_exists(task_id) AND #status = :queued",
            values={":queued": Status.QUEUED.value},
        )

    def release_dispatch(self, task_id: str, claim: str) -> Task:
        """Give the start back after a delivery that left the task `queued` (the next one takes it)."""
        return self._update(
            task_id,
            update="SET updated_ms = :now REMOVE dispatch_claim, dispatch_lease_ms ADD #version :one",
            condition="attribute_exists(task_id) AND dispatch_claim = :claim",
            names={"#version": "version"},
            values={":claim": claim, ":now": now_millis(), ":one": 1},
        )

    def claim_archive(self, task_id: str, claim: str, *, lease_until_ms: int) -> Task:
        """Take the copy of the task's video for one archive attempt, until `lease_until_ms`.

        Only an open task with a recorded result whose previous claim (if any) has lapsed can be
        claimed; otherwise TransitionRejected. The lease outlives the archive function's timeout,
        so a crashed attempt's claim lapses and the next delivery of the message takes over.
        """
        return self._claim_lease(
            task_id, "archive", claim, lease_until_ms, only_if=_OPEN_WITH_RESULT, values=_OPEN_STATUSES
        )

    def _claim_lease(
        self,
        task_id: str,
        step: str,
        claim: str,
        lease_until_ms: int,
        *,
        only_if: str,
        values: dict[str, Any],
    ) -> Task:
        """Set `<step>_claim` and `<step>_lease_ms` when `only_if` holds and no live lease of that
        step is held (none, or lapsed); otherwise TransitionRejected."""
        now = now_millis()
        return self._update(
            task_id,
            update=f"SET {step}_claim = :claim, {step}_lease_ms = :until, updated_ms = :now ADD #version :one",
            condition=f"{only_if} AND (attribute_not_exists({step}_lease_ms) OR {step}_lease_ms < :now)",
            names={"#status": "status", "#version": "version"},
            values={":claim": claim, ":until": lease_until_ms, ":now": now, ":one": 1, **values},
        )

    def mark_copy_requeued(self, task_id: str, *, unless_since_ms: int) -> Task:
        """Record that the reconciler queued the task's copy again, unless its copy was queued
        (by the callback, or by this) at or after `unless_since_ms`: then TransitionRejected, and
        the copy already waiting on the archive queue is left to come up."""
        now = now_millis()
        return self._update(
            task_id,
            update="SET copy_requeued_ms = :now, updated_ms = :now ADD #version :one",
            condition=(
                f"{_OPEN_WITH_RESULT} "
                "AND (attribute_not_exists(result_received_ms) OR result_received_ms < :since) "
                "AND (attribute_not_exists(copy_requeued_ms) OR copy_requeued_ms < :since)"
            ),
            names={"#status": "status", "#version": "version"},
            values={
                ":now": now,
                ":since": unless_since_ms,
                ":one": 1,
                **_OPEN_STATUSES,
            },
        )

    def release_archive(self, task_id: str, claim: str, *, reason: str) -> Task:
        """Give the claim back after a failed copy attempt, recording why it failed."""
        return self._update(
            task_id,
            update="SET copy_error = :reason, updated_ms = :now REMOVE archive_claim, archive_lease_ms ADD #version :one",
            condition="attribute_exists(task_id) AND archive_claim = :claim",
            names={"#version": "version"},
            values={":claim": claim, ":reason": reason[:1000], ":now": now_millis(), ":one": 1},
        )

    def complete(
        self,
        task_id: str,
        claim: str,
        *,
        video_key: str,
        video_bytes: int,
        video_sha256: str,
        thumbnail_key: str | None = None,
        spritesheet_key: str | None = None,
        preview_error: str | None = None,
    ) -> Task:
        """open -> completed, by the archive attempt holding `claim`, with the video it wrote and
        the previews it drew from it (or why it has none)."""
        change = TaskChange(
            video_key=video_key,
            video_bytes=video_bytes,
            video_sha256=video_sha256,
            thumbnail_key=thumbnail_key,
            spritesheet_key=spritesheet_key,
            preview_error=preview_error[:1000] if preview_error else None,
            completed_ms=now_millis(),
        )
        return self.transition(task_id, Status.COMPLETED, change, claim=claim)

    def fail(
        self,
        task_id: str,
        *,
        code: str,
        message: str,
        provider_task_id: str | None = None,
        claim: str | None = None,
    ) -> Task:
        """open -> failed, with the reason (`code`, `message`) recorded for the client."""
        change = TaskChange(
            provider_task_id=provider_task_id,
            error_code=code,
            error_message=message[:1000],
            completed_ms=now_millis(),
        )
        return self.transition(task_id, Status.FAILED, change, claim=claim)

    def time_out(self, task_id: str, *, message: str) -> Task:
        """open -> failed with `timeout`, unless a result came meanwhile (the archive step owns it)."""
        change = TaskChange(error_code="timeout", error_message=message, completed_ms=now_millis())
        return self.transition(task_id, Status.FAILED, change, without_result=True)

    def write_webhook(
        self,
        task_id: str,
        delivery: WebhookDelivery,
        *,
        expect_attempts: int,
        max_attempts: int | None = None,
    ) -> Task:
        """Replace the task's webhook record if it still shows `expect_attempts` attempts.

        The count is the lock: of two deliveries of the same event racing, only the one that read
        the current count may claim the next attempt; the other gets WebhookClaimLost. With
        `max_attempts`, a claim (more attempts than expected) is also refused once the record shows
        that many, so no copy ever makes an attempt past the limit.
        """
        if expect_attempts == 0:
            condition = "attribute_exists(task_id) AND attribute_not_exists(webhook)"
            values: dict[str, Any] = {}
        else:
            condition = "webhook.event_id = :event AND webhook.attempts = :seen"
            values = {":event": delivery.event_id, ":seen": expect_attempts}
        if max_attempts is not None and expect_attempts and delivery.attempts > expect_attempts:
            condition += " AND webhook.attempts < :max"
            values[":max"] = max_attempts
        return self._update(
            task_id,
            lost=WebhookClaimLost,
            update="SET webhook = :w, updated_ms = :now ADD #version :one",
            condition=condition,
            names={"#version": "version"},
            values={
                **values,
                ":w": delivery.model_dump(mode="json", exclude_none=True),
                ":now": now_millis(),
                ":one": 1,
            },
        )

    def list_for_owner(
        self, owner: str, *, limit: int, after: Task | None = None, newest_first: bool = True
    ) -> tuple[list[Task], bool]:
        """The owner's tasks (newest or oldest first), starting after `after`; also whether more
        remain. Deleted tasks are left out: DynamoDB filters after it counts `Limit`, so a page
        may take more than one query."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": OWNER_INDEX,
            "KeyConditionExpression": "#owner = :owner",
            "FilterExpression": "attribute_not_exists(deleted_ms)",
            "ExpressionAttributeNames": {"#owner": "owner"},
            "ExpressionAttributeValues": to_attrs({":owner": owner}),
            "ScanIndexForward": not newest_first,
        }
        if after is not None:
            query["ExclusiveStartKey"] = to_attrs(
                {"task_id": after.task_id, "owner": after.owner, "created_ms": after.created_ms}
            )
        items: list[dict[str, Any]] = []
        try:
            while len(items) <= limit:
                page = self._client.query(**query, Limit=limit + 1 - len(items))
                items += page.get("Items", [])
                if "LastEvaluatedKey" not in page:
                    break
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not list tasks") from error
        tasks = [Task.from_item(from_attrs(item)) for item in items]
        return tasks[:limit], len(tasks) > limit

    def mark_deleted(self, task_id: str, owner: str) -> Task:
        """A finished task's files are gone: it answers 404 from now on, and stays for the audit
        trail until its TTL. TransitionRejected when it is not the owner's, not finished, or
        deleted already (a second delete)."""
        now = now_millis()
        return self._update(
            task_id,
            update="SET deleted_ms = :now, updated_ms = :now ADD #version :one",
            condition=(
                "attribute_exists(task_id) AND #owner = :owner AND #status IN (:c, :f) "
                "AND attribute_not_exists(deleted_ms)"
            ),
            names={"#status": "status", "#owner": "owner", "#version": "version"},
            values={
                ":now": now,
                ":one": 1,
                ":owner": owner,
                ":c": Status.COMPLETED.value,
                ":f": Status.FAILED.value,
            },
        )

    def list_open(self, status: Status, *, created_before_ms: int, limit: int) -> list[Task]:
        """Open tasks in `status` created before the given time, oldest first (at most `limit`).

        Reads the open index, whose size is what is open now: the cost of this lookup does not
        grow with the completed tasks in the table. Each shard is read oldest first, a page at a
        time, and the shards merged, so the oldest `limit` come first whichever shard holds them.
        """
        if status.is_terminal:
            raise ValueError(f"{status.value} tasks are not in the open index")
        page = max(1, min(limit, _OPEN_PAGE))
        shards = [
            self._open_shard_items(f"{status.value}#{n}", created_before_ms, page) for n in range(OPEN_SHARDS)
        ]
        tasks: list[Task] = []
        try:
            for item in heapq.merge(*shards, key=lambda item: (item["created_ms"], item["task_id"])):
                tasks.append(Task.from_item(item))
                if len(tasks) >= limit:
                    break
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not list open tasks") from error
        return tasks

    def _open_shard_items(self, shard: str, created_before_ms: int, page: int) -> Iterator[dict[str, Any]]:
        """One shard's items oldest first, read a page at a time as the merge asks for them."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": OPEN_INDEX,
            "KeyConditionExpression": "open_shard = :shard AND created_ms < :before",
            "ExpressionAttributeValues": to_attrs({":shard": shard, ":before": created_before_ms}),
            "Limit": page,
        }
        while True:
            answer = self._client.query(**query)
            yield from (from_attrs(item) for item in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                return
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def _update(
        self,
        task_id: str,
        *,
        update: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
        lost: type[SoraRelayError] = TransitionRejected,
    ) -> Task:
        """One conditional UpdateItem; `lost` is raised when its condition does not hold."""
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=to_attrs({"task_id": task_id}),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_attrs(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if is_condition_failure(error):
                raise lost(f"Task {task_id} does not allow this change") from error
            raise StorageError("Could not update the task") from error
        except BotoCoreError as error:
            raise StorageError("Could not update the task") from error
        return Task.from_item(from_attrs(answer["Attributes"]))
