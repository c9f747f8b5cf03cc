"""Replay sora-relay's dead-letter queues: an operator command (your own AWS credentials).

    python scripts/replay_dlq.py --stack sora-relay --dry-run     # list what it would do
    python scripts/replay_dlq.py --stack sora-relay               # do it
    python scripts/replay_dlq.py --queue-url <DLQ URL> ...        # only these SQS dead-letter queues
    python scripts/replay_dlq.py --stream-dlq-url <URL> --table <T> --webhook-queue-url <U> --event-bus <B>

With `--stack` every dead-letter queue of the stack is found through CloudFormation (its outputs,
else its resources): DispatchDeadLetterQueue, ArchiveDeadLetterQueue, WebhookDeadLetterQueue,
SubmitDeadLetterQueue and the stream's on-failure queue, TaskEventsDeadLetterQueue.

SQS dead-letter queues: each message goes back to its source queue (the queue whose redrive policy
names the DLQ, from ListDeadLetterSourceQueues, or `DLQ=SOURCE`), with its body and attributes,
and is deleted from the DLQ only after that send succeeded: a failure leaves it where it was. A
replay is safe to repeat (a message sent twice, a replay run twice) because each consumer is:

- dispatch: a delivery starts only a task that is still `queued`; one already started, completed
  or failed is skipped, so a replayed message never creates at the provider a second time;
- archive: a delivery copies only an open task with a recorded result, under a conditional claim,
  to its own key, and completes only while holding the claim; a finished task is skipped;
- webhook: attempts are counted on the task and claimed with a conditional write; an event that is
  delivered, gone (410) or given up after its last attempt is final and is not sent again, and a
  repeat of an unfinished one carries the same webhook-id;
- submit (intake): the task is keyed by the message's `idempotency_key` attribute or else its SQS
  message id; a replayed message gets a new id, so the replay sets `idempotency_key` to the
  original id when the message had none, and the same idempotency record answers it.

The stream's on-failure records hold only coordinates (shard, first and last sequence number,
arrival times), not the records. The replay reads those records from the stream again (kept 24 h)
to learn which tasks they were, or, when the stream no longer has them, takes the tasks that
became terminal between the two arrival times (a scan: the window may name a few more tasks,
which are harmless to re-drive). Each task is read from the table as it is now and re-driven
through the stream consumer's own code (usecases.task_events.publish_transition) in this process,
given a record synthesised from the current item: terminal states never change, so the item
carries the same outcome the lost record did. That code queues the webhook (idempotent as above)
and publishes the bus event with its stable `event_id` (a consumer that saw it before deduplicates
on it). Invoking TaskEventsFunction instead would run the same code, but needs
lambda:InvokeFunction and the function's name, and the local stack has no Lambda API.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "layers" / "common") not in sys.path:
    sys.path.insert(0, str(ROOT / "layers" / "common"))

import boto3  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

# The stack's dead-letter queues, by logical id: the queue each redrives from, and its output.
SQS_DEAD_LETTER_QUEUES = {
    "DispatchDeadLetterQueue": "DispatchQueue",
    "ArchiveDeadLetterQueue": "ArchiveQueue",
    "WebhookDeadLetterQueue": "WebhookQueue",
    "SubmitDeadLetterQueue": "SubmitQueue",
}
STREAM_DEAD_LETTER_QUEUE = "TaskEventsDeadLetterQueue"
KEY_ATTRIBUTE = "idempotency_key"  # usecases.intake's
RECEIVE_VISIBILITY_S = 300  # a message being replayed is hidden this long from a second receive
WINDOW_MARGIN_MS = 2000  # around the arrival times, for the time-window fallback
TERMINAL = ("completed", "failed")


@dataclass
class Plan:
    """What one run did (or, with --dry-run, would do): one line per message or task."""

    dry_run: bool
    lines: list[str] = field(default_factory=list)
    moved: int = 0
    duplicates: int = 0  # messages with the body of one already moved in this run
    redriven: int = 0
    skipped: int = 0
    errors: int = 0

    def note(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def summary(self) -> str:
        verb = "would move" if self.dry_run else "moved"
        again = "would re-drive" if self.dry_run else "re-drove"
        return (
            f"{verb} {self.moved} message(s) ({self.duplicates} duplicate(s) dropped);"
            f" {again} {self.redriven} task(s);"
            f" skipped {self.skipped}; errors {self.errors}"
        )


@dataclass(frozen=True)
class Targets:
    """Where the dead letters are and where they go back to."""

    queues: list[tuple[str, str]]  # (dead-letter queue URL, source queue URL)
    stream_dlq_url: str | None = None
    table: str | None = None
    webhook_queue_url: str | None = None
    event_bus: str | None = None
    bucket: str | None = None


# -- finding the queues -----------------------------------------------------------------------------


def stack_targets(cloudformation: Any, sqs: Any, stack: str) -> Targets:
    """The stack's dead-letter queues and what re-driving needs, from its outputs and resources."""
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {item["OutputKey"]: item["OutputValue"] for item in described.get("Outputs", [])}
    resources = {
        item["LogicalResourceId"]: item["PhysicalResourceId"]
        for item in cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
    }

    def find(logical_id: str, output: str) -> str | None:
        return outputs.get(output) or resources.get(logical_id)

    queues = []
    for dlq, source in SQS_DEAD_LETTER_QUEUES.items():
        dlq_url, source_url = find(dlq, f"{dlq}Url"), find(source, f"{source}Url")
        if dlq_url and source_url:
            queues.append((dlq_url, source_url))
    return Targets(
        queues=queues,
        stream_dlq_url=find(STREAM_DEAD_LETTER_QUEUE, f"{STREAM_DEAD_LETTER_QUEUE}Url"),
        table=find("TasksTable", "TasksTableName"),
        webhook_queue_url=find("WebhookQueue", "WebhookQueueUrl"),
        event_bus=find("EventBus", "EventBusName"),
        bucket=find("VideosBucket", "VideosBucketName"),
    )


def source_queue(sqs: Any, spec: str) -> tuple[str, str]:
    """`DLQ_URL` (its source from the redrive policies that name it) or `DLQ_URL=SOURCE_URL`."""
    dlq, _, source = spec.partition("=")
    if source:
        return dlq, source
    sources = sqs.list_dead_letter_source_queues(QueueUrl=dlq).get("queueUrls", [])
    if len(sources) != 1:
        raise SystemExit(
            f"--queue-url {dlq}: {len(sources)} queues redrive to it; give it as DLQ_URL=SOURCE_URL"
        )
    return dlq, sources[0]


# -- SQS dead-letter queues -------------------------------------------------------------------------


def _receive_all(sqs: Any, queue_url: str, visibility: int) -> Iterator[list[dict[str, Any]]]:
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=visibility,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return
        yield messages


def _show_again(sqs: Any, queue_url: str, messages: list[dict[str, Any]]) -> None:
    """A dry run's look leaves the messages visible again at once, for the real run."""
    entries = [
        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
        for n, m in enumerate(messages)
    ]
    for start in range(0, len(entries), 10):
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries[start : start + 10])


def _attributes(message: dict[str, Any], *, keep_identity: bool) -> dict[str, Any]:
    """The message's attributes to send again; for a submission, its idempotency key kept."""
    attributes = {
        name: {
            key: value
            for key, value in attribute.items()
            if key in ("DataType", "StringValue", "BinaryValue")
        }
        for name, attribute in (message.get("MessageAttributes") or {}).items()
    }
    if keep_identity and KEY_ATTRIBUTE not in attributes:
        attributes[KEY_ATTRIBUTE] = {"DataType": "String", "StringValue": message["MessageId"]}
    return attributes


def _describe(body: str) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return f"{len(body)} bytes"
    if isinstance(parsed, dict) and "task_id" in parsed:
        return f"task {parsed['task_id']}" + (f" event {parsed['event_id']}" if "event_id" in parsed else "")
    return f"{len(body)} bytes"


def replay_queue(sqs: Any, dlq_url: str, source_url: str, plan: Plan) -> None:
    """Every message of the DLQ back on its source queue; deleted only once the send succeeded."""
    name, source = dlq_url.rsplit("/", 1)[-1], source_url.rsplit("/", 1)[-1]
    keep_identity = source.endswith("SubmitQueue")
    seen: set[str] = set()
    sent: dict[str, str] = {}  # body -> the message id it was sent (or would be sent) for
    looked: list[dict[str, Any]] = []
    for messages in _receive_all(sqs, dlq_url, 30 if plan.dry_run else RECEIVE_VISIBILITY_S):
        for message in messages:
            if message["MessageId"] in seen:
                continue
            seen.add(message["MessageId"])
            what = f"{name} -> {source}: message {message['MessageId']} ({_describe(message['Body'])})"
            first = sent.get(message["Body"])
            if first is not None:
                # A redrive's duplicate: sent once. Two copies delivered at the same moment would
                # both find a dispatch task `queued` and could both create it at the provider.
                plan.duplicates += 1
                if plan.dry_run:
                    looked.append(message)
                else:
                    sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
                plan.note(f"{'would drop' if plan.dry_run else 'dropped'} {what}: the same as {first}")
                continue
            sent[message["Body"]] = message["MessageId"]
            if plan.dry_run:
                looked.append(message)
                plan.moved += 1
                plan.note(f"would move {what}")
                continue
            try:
                sqs.send_message(
                    QueueUrl=source_url,
                    MessageBody=message["Body"],
                    MessageAttributes=_attributes(message, keep_identity=keep_identity),
                )
            except ClientError as error:
                plan.errors += 1
                plan.note(f"could not move {what}: {error.response['Error']['Code']}; left on {name}")
                looked.append(message)  # visible again for the next run
                del sent[message["Body"]]
                continue
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
            plan.moved += 1
            plan.note(f"moved {what}")
    if looked:
        _show_again(sqs, dlq_url, looked)
    if not seen:
        plan.note(f"{name}: empty")


# -- the stream's on-failure records ----------------------------------------------------------------


def stream_task_ids(streams: Any, info: dict[str, Any]) -> list[str] | None:
    """The task ids of the records between the batch's first and last sequence number, read from
    the stream again; None when the stream no longer holds them (past its 24 h, or a new stream)."""
    from sora_relay.usecases.task_events import terminal_transition

    first, last = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
    try:
        iterator = streams.get_shard_iterator(
            StreamArn=info["streamArn"],
            ShardId=info["shardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=info["startSequenceNumber"],
        )["ShardIterator"]
    except ClientError:
        return None
    found: list[str] = []
    for _ in range(10_000):  # bounded: an open shard's iterator never runs out by itself
        answer = streams.get_records(ShardIterator=iterator, Limit=1000)
        for record in answer["Records"]:
            sequence = int(record["dynamodb"]["SequenceNumber"])
            if sequence > last:
                return found
            # Only what passed the mapping's filter was in the batch: terminal transitions.
            if sequence >= first and terminal_transition(record) is not None:
                task_id = record["dynamodb"]["Keys"]["task_id"]["S"]
                if task_id not in found:
                    found.append(task_id)
        iterator = answer.get("NextShardIterator")
        if not iterator or not answer["Records"]:
            return found
    return found


def window_task_ids(dynamodb: Any, table: str, info: dict[str, Any]) -> list[str]:
    """Tasks that became terminal between the batch's first and last arrival (± a margin)."""

    def millis(text: str) -> int:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)

    low = millis(info["approximateArrivalOfFirstRecord"]) - WINDOW_MARGIN_MS
    high = millis(info["approximateArrivalOfLastRecord"]) + WINDOW_MARGIN_MS
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table,
        ProjectionExpression="task_id",
        FilterExpression="completed_ms BETWEEN :low AND :high",
        ExpressionAttributeValues={":low": {"N": str(low)}, ":high": {"N": str(high)}},
    )
    return [item["task_id"]["S"] for page in pages for item in page["Items"]]


def synthesised_record(item: dict[str, Any]) -> dict[str, Any]:
    """The stream record of the task's terminal transition, from its item as it is now."""
    before = {**item, "status": {"S": "in_progress"}}
    return {
        "eventName": "MODIFY",
        "eventSource": "aws:dynamodb",
        "dynamodb": {"NewImage": item, "OldImage": before},
    }


def replay_stream(
    sqs: Any,
    streams: Any,
    dynamodb: Any,
    targets: Targets,
    redrive: Callable[[dict[str, Any]], str],
    plan: Plan,
) -> None:
    """Re-drive the tasks each on-failure record names; delete the record once all are done."""
    assert targets.stream_dlq_url and targets.table
    name = targets.stream_dlq_url.rsplit("/", 1)[-1]
    seen: set[str] = set()
    looked: list[dict[str, Any]] = []
    for messages in _receive_all(sqs, targets.stream_dlq_url, 30 if plan.dry_run else RECEIVE_VISIBILITY_S):
        for message in messages:
            if message["MessageId"] in seen:
                continue
            seen.add(message["MessageId"])
            looked.append(message)
            info = json.loads(message["Body"]).get("DDBStreamBatchInfo") or {}
            task_ids = stream_task_ids(streams, info)
            source = "stream"
            if task_ids is None:
                task_ids, source = window_task_ids(dynamodb, targets.table, info), "time window"
            plan.note(
                f"{name}: {info.get('shardId')} {info.get('startSequenceNumber')}..{info.get('endSequenceNumber')}"
                f" -> {len(task_ids)} task(s) from the {source}"
            )
            ok = True
            for task_id in task_ids:
                ok = _redrive_task(dynamodb, targets.table, task_id, redrive, plan) and ok
            if not plan.dry_run and ok:
                sqs.delete_message(QueueUrl=targets.stream_dlq_url, ReceiptHandle=message["ReceiptHandle"])
                looked.remove(message)
    if looked:  # a dry run's look, or a record not fully re-driven: visible again for the next run
        _show_again(sqs, targets.stream_dlq_url, looked)
    if not seen:
        plan.note(f"{name}: empty")


def _redrive_task(
    dynamodb: Any, table: str, task_id: str, redrive: Callable[[dict[str, Any]], str], plan: Plan
) -> bool:
    item = dynamodb.get_item(TableName=table, Key={"task_id": {"S": task_id}}, ConsistentRead=True).get(
        "Item"
    )
    status = (item or {}).get("status", {}).get("S")
    if item is None or status not in TERMINAL:
        plan.skipped += 1
        plan.note(
            f"  skip {task_id}: {'gone' if item is None else status} (no terminal transition to re-drive)"
        )
        return True
    outputs = "webhook + bus event" if "callback_url" in item else "bus event"
    if plan.dry_run:
        plan.redriven += 1
        plan.note(f"  would re-drive {task_id} ({status}): {outputs}")
        return True
    try:
        redrive(synthesised_record(item))
    except Exception as error:  # the record stays on the queue for the next run
        plan.errors += 1
        plan.note(f"  could not re-drive {task_id}: {type(error).__name__}: {error}")
        return False
    plan.redriven += 1
    plan.note(f"  re-drove {task_id} ({status}): {outputs}")
    return True


def stream_redriver(targets: Targets) -> Callable[[dict[str, Any]], str]:
    """The stream consumer's own code, in this process, with the operator's credentials."""
    from sora_relay.runtime.container import Container
    from sora_relay.settings import Settings
    from sora_relay.usecases.task_events import publish_transition

    container = Container(
        Settings(
            tasks_table_name=targets.table,
            # Not used by the re-drive (the bus event carries no download link), but required.
            videos_bucket_name=targets.bucket or "unused-by-replay",
            webhook_queue_url=targets.webhook_queue_url,
            event_bus_name=targets.event_bus,
        )
    )
    return lambda record: publish_transition(container, record)


# -- the command ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replay_dlq.py", description="Replay sora-relay's dead-letter queues (see the module docstring)."
    )
    parser.add_argument("--stack", help="the CloudFormation stack: every dead-letter queue it has")
    parser.add_argument(
        "--queue-url",
        action="append",
        default=[],
        metavar="DLQ[=SOURCE]",
        help="an SQS dead-letter queue to replay (its source from the redrive policy, or given); repeatable",
    )
    parser.add_argument("--stream-dlq-url", help="the stream's on-failure queue (TaskEventsDeadLetterQueue)")
    parser.add_argument("--table", help="the tasks table (with --stream-dlq-url)")
    parser.add_argument("--webhook-queue-url", help="the webhook queue (with --stream-dlq-url)")
    parser.add_argument("--event-bus", help="the event bus (with --stream-dlq-url)")
    parser.add_argument("--region", help="AWS region (default: your configuration's)")
    parser.add_argument("--endpoint-url", help="an AWS endpoint other than AWS's (a local stack)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be done; change nothing")
    return parser


def targets_from(args: argparse.Namespace, sqs: Any, cloudformation: Any) -> Targets:
    if args.stack:
        return stack_targets(cloudformation, sqs, args.stack)
    if args.stream_dlq_url and not (args.table and args.event_bus):
        raise SystemExit("--stream-dlq-url needs --table and --event-bus (and --webhook-queue-url)")
    if not args.queue_url and not args.stream_dlq_url:
        raise SystemExit("give --stack, or --queue-url and/or --stream-dlq-url")
    return Targets(
        queues=[source_queue(sqs, spec) for spec in args.queue_url],
        stream_dlq_url=args.stream_dlq_url,
        table=args.table,
        webhook_queue_url=args.webhook_queue_url,
        event_bus=args.event_bus,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.region:
        os.environ["AWS_DEFAULT_REGION"] = args.region
    if args.endpoint_url:  # boto3 reads it for every client, the re-drive's too
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    session = boto3.session.Session()
    sqs = session.client("sqs")
    targets = targets_from(args, sqs, session.client("cloudformation") if args.stack else None)
    plan = Plan(dry_run=args.dry_run)
    for dlq_url, source_url in targets.queues:
        replay_queue(sqs, dlq_url, source_url, plan)
    if targets.stream_dlq_url:
        replay_stream(
            sqs,
            session.client("dynamodbstreams"),
            session.client("dynamodb"),
            targets,
            stream_redriver(targets),
            plan,
        )
    print(plan.summary())
    return 1 if plan.errors else 0


if __name__ == "__main__":
    sys.exit(main())
