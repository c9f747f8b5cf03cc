"""An SQS event source mapping: batches, partial batch failures; the redrive policy does the dead-lettering."""

from __future__ import annotations

import threading
from typing import Any

from devstack.event_sources.base import EventSource, Invoke, _log
from devstack.functions import InvocationFailed
from devstack.template import REGION

# -- SQS -----------------------------------------------------------------------------------------


class SqsEventSource(EventSource):
    """Lambda's SQS event source mapping, locally: polls a moto queue and invokes the function.

    Like the real one: batches of up to BatchSize, at most MaximumConcurrency invocations at
    once, every message of a successful invocation deleted except those the function lists in
    `batchItemFailures` (with ReportBatchItemFailures), and nothing deleted when it fails, so
    those messages come back after their visibility timeout (or the one the function set), and
    the queue's redrive policy moves them to the dead-letter queue in the end.
    """

    kind = "sqs"

    @property
    def description(self) -> str:
        return f"{self.queue_arn.rsplit(':', 1)[-1]} -> {self.function_id}"

    def __init__(
        self,
        *,
        function_id: str,
        queue_url: str,
        queue_arn: str,
        invoke: Invoke,
        client: Any,
        batch_size: int = 10,
        concurrency: int = 2,
        report_failures: bool = False,
        idle_poll_s: float = 0.1,
    ) -> None:
        self.function_id = function_id
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.source_arn = queue_arn
        self._invoke = invoke
        self._client = client
        self._batch_size = max(1, min(batch_size, 10))  # one ReceiveMessage returns at most 10
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._report_failures = report_failures
        self._idle_poll_s = idle_poll_s
        self._stopping = threading.Event()
        self._running: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop polling and wait (bounded) for the invocations in flight."""
        super().stop(timeout_s)
        with self._lock:
            running = list(self._running)
        for thread in running:
            thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=self._idle_poll_s):
                continue
            try:
                messages = self._client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=self._batch_size,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            except Exception as error:  # moto going away at shutdown, or a hiccup: poll again
                self._slots.release()
                if not self._stopping.is_set():
                    _log("sqs", f"{self.function_id}: receive failed: {error}")
                self._stopping.wait(1.0)
                continue
            if not messages:
                self._slots.release()
                self._stopping.wait(self._idle_poll_s)
                continue
            worker = threading.Thread(target=self._deliver, args=(messages,), daemon=True)
            with self._lock:
                self._running.add(worker)
            worker.start()

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        try:
            failed = self._failed_ids(messages)
            done = [message["ReceiptHandle"] for message in messages if message["MessageId"] not in failed]
            delete_messages(self._client, self.queue_url, done)
        except Exception as error:  # a failed delete only means a redelivery, as on AWS
            _log("sqs", f"{self.function_id}: delete failed: {error}")
        finally:
            with self._lock:
                self._running.discard(threading.current_thread())
            self._slots.release()

    def _failed_ids(self, messages: list[dict[str, Any]]) -> set[str]:
        """The ids to leave on the queue: all of them if the invocation failed."""
        ids = {message["MessageId"] for message in messages}
        try:
            result = self._invoke(
                {"Records": [lambda_sqs_record(message, self.queue_arn) for message in messages]}
            )
        except InvocationFailed:
            return ids
        if not self._report_failures or not isinstance(result, dict):
            return set()
        reported = {
            str(item.get("itemIdentifier"))
            for item in result.get("batchItemFailures") or []
            if isinstance(item, dict)
        }
        # An identifier that is not in the batch makes Lambda treat the whole batch as failed.
        return reported if reported <= ids else ids


def lambda_sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One ReceiveMessage message (as boto3 returns it) as a record of Lambda's SQS event."""
    attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType"),
        }
        for name, value in (message.get("MessageAttributes") or {}).items()
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
    """Delete what the function did not report as failed, as the event source mapping does."""
    for start in range(0, len(receipt_handles), 10):  # DeleteMessageBatch takes 10 at most
        batch = receipt_handles[start : start + 10]
        client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(number), "ReceiptHandle": handle} for number, handle in enumerate(batch)],
        )
