"""SQS as Lambda sees it (the mapping, its records, deleting what did not fail), and queue helpers."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devstack.event_sources import EventSource, Invoke, _log, failed_ids, template_events
from devstack.functions import InvocationFailed
from devstack.template import REGION, Stack

if TYPE_CHECKING:
    from devstack.gateway import LocalApiGateway

# A receive long-polls like Lambda's pollers (no empty receives ten times a second per queue);
# briefly, because pause() and stop() wait for the receive under way.
LONG_POLL_S = 1


def lambda_sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One ReceiveMessage message (as boto3 returns it) as a record of Lambda's SQS event."""
    attributes = {  # boto3's StringValue, DataType, ... as Lambda's stringValue, dataType, ...
        name: {
            "stringListValues": [],
            "binaryListValues": [],
            **{k[0].lower() + k[1:]: v for k, v in value.items()},
        }
        for name, value in message.get("MessageAttributes", {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def delete_messages(client: Any, queue_url: str, receipt_handles: list[str]) -> None:
    for start in range(0, len(receipt_handles), 10):  # DeleteMessageBatch takes 10 at most
        batch = receipt_handles[start : start + 10]
        entries = [{"Id": str(n), "ReceiptHandle": handle} for n, handle in enumerate(batch)]
        client.delete_message_batch(QueueUrl=queue_url, Entries=entries)


def delete_done(client: Any, queue_url: str, records: list[dict[str, Any]], result: Any) -> None:
    """Delete a batch's messages but the ones the answer reports failed (back after their visibility)."""
    failed = failed_ids(result, [record["messageId"] for record in records])
    delete_messages(client, queue_url, [r["receiptHandle"] for r in records if r["messageId"] not in failed])


def read_queue(client: Any, queue_url: str, *, delete: bool) -> list[dict[str, Any]]:
    """The messages on the queue now, as boto3 returns them: deleted, or left there (each look is a
    receive: peek at dead-letter queues, not at queues a redrive policy watches)."""
    seen: dict[str, dict[str, Any]] = {}
    options = {} if delete else {"VisibilityTimeout": 0}
    for _ in range(100):
        answer = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], **options
        )
        fresh = {m["MessageId"]: m for m in answer.get("Messages", []) if m["MessageId"] not in seen}
        if not fresh:
            break
        if delete:
            delete_messages(client, queue_url, [message["ReceiptHandle"] for message in fresh.values()])
        seen |= fresh
    return list(seen.values())


def tap_event_buses(sqs: Any, events: Any, buses: list[str], name: str, pattern: dict[str, Any]) -> str:
    """A queue `name` getting every event matching `pattern` on `buses` (EventBridge's SQS target)."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for bus in buses:
        events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])
    return str(url)


@dataclass(kw_only=True, eq=False)
class SqsEventSource(EventSource):
    """Lambda's SQS mapping over a moto queue: `concurrency` pollers, each receiving and invoking; a
    batch that succeeded is deleted but the messages its `batchItemFailures` names, a failed one is
    not: those come back after their visibility timeout, and the redrive policy dead-letters them."""

    kind = "sqs"
    idle_poll_s = 0.1
    function_id: str
    queue_url: str
    queue_arn: str
    invoke: Invoke
    client: Any
    batch_size: int = 10
    concurrency: int = 2
    report_failures: bool = False

    def __post_init__(self) -> None:
        super().__init__(
            self.function_id, self.queue_arn, f"{self.queue_arn.rsplit(':', 1)[-1]} -> {self.function_id}"
        )
        self.batch_size = max(1, min(self.batch_size, 10))  # one ReceiveMessage returns at most 10
        self.pollers = max(1, self.concurrency)
        self._receiving = threading.Lock()  # the pollers receive in turn

    def pause(self) -> None:
        """Also waits for a receive under way (LONG_POLL_S at most); received batches still finish."""
        super().pause()
        with self._receiving:
            pass

    def poll_once(self) -> bool:
        """One receive, its batch invoked in this thread."""
        with self._receiving:
            if self._paused.is_set() or self._stopping.is_set():
                return False
            messages = self.client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size,
                WaitTimeSeconds=LONG_POLL_S,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        if not messages:
            return True  # the receive long-polled
        records = [lambda_sqs_record(message, self.source_arn) for message in messages]
        try:
            result = self.invoke({"Records": records})
            delete_done(self.client, self.queue_url, records, result if self.report_failures else None)
        except InvocationFailed:
            pass  # nothing deleted: the batch comes back after its visibility timeout
        except Exception as error:  # a failed delete only means a redelivery, as on AWS
            _log("sqs", f"{self.function_id}: delete failed: {error}")
        return True


def sqs_event_sources(
    stack: Stack, gateway: LocalApiGateway, client: Any, *, default_concurrency: int
) -> list[SqsEventSource]:
    """One SqsEventSource per enabled `Type: SQS` event of the functions the gateway runs."""
    sources = []
    for function_id, _, _, props, invoke in template_events(stack, gateway, ["SQS"]):
        queue_arn = str(stack.resolve(props["Queue"]))
        concurrency = props.get("ScalingConfig", {}).get("MaximumConcurrency")
        # No more batches in flight than the function has instances: a batch waiting for one would
        # see its visibility timeout run out and come back as a second receive.
        limit = min(
            int(stack.resolve(concurrency)) if concurrency else default_concurrency,
            gateway.pools[function_id].size,
        )
        sources.append(
            SqsEventSource(
                function_id=function_id,
                queue_url=client.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"],
                queue_arn=queue_arn,
                invoke=invoke,
                client=client,
                batch_size=int(stack.resolve(props.get("BatchSize", 10))),
                concurrency=limit,
                report_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
            )
        )
    return sources
