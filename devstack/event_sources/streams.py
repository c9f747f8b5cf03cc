"""A DynamoDB stream as Lambda reads it: the records, the shard reader, and the event source
mapping (filter, batches, retries, bisecting, the on-failure destination)."""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from devstack.event_sources.base import EventSource, Invoke, _log, failed_ids, function_arn, template_events
from devstack.event_sources.patterns import filter_patterns, matches_any
from devstack.functions import InvocationFailed
from devstack.template import Stack

if TYPE_CHECKING:
    from devstack.gateway import LocalApiGateway


def _json_ready(value: Any) -> Any:
    """A boto3 value as it appears in Lambda's JSON event: binary as base64 text."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, Mapping):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | set | tuple):
        return [_json_ready(item) for item in value]
    return value


def lambda_record(raw: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """One GetRecords record (as boto3 returns it) in Lambda's DynamoDB-stream event format."""
    created = raw.get("dynamodb", {}).get("ApproximateCreationDateTime")
    record: dict[str, Any] = _json_ready({**raw, "eventVersion": "1.1", "eventSourceARN": stream_arn})
    if isinstance(created, datetime):
        record["dynamodb"]["ApproximateCreationDateTime"] = int(created.timestamp())
    return record


class StreamReader:
    """Reads a DynamoDB stream like Lambda's poller: each shard in order, each record once.

    `read()` returns the records that arrived since the last call, in Lambda's DynamoDB event
    record format. The starting position applies to the stream's shards when the reader is made
    (moto's streams have one shard per table, which never splits). No threads: call it from the
    thread you have, under moto's `mock_aws` or against moto's server.
    """

    def __init__(self, client: Any, stream_arn: str, starting_position: str = "TRIM_HORIZON") -> None:
        if starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise ValueError(f"StartingPosition {starting_position!r}: DynamoDB takes TRIM_HORIZON or LATEST")
        self.client = client
        self.stream_arn = stream_arn
        shards = client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        self._iterators: dict[str, str | None] = {
            shard["ShardId"]: client.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType=starting_position
            )["ShardIterator"]
            for shard in shards
        }

    @property
    def shard_ids(self) -> list[str]:
        return list(self._iterators)

    def read(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The new records of all shards (at most `limit` per shard)."""
        return [record for _, records in self.read_by_shard(limit) for record in records]

    def read_by_shard(self, limit: int = 1000) -> list[tuple[str, list[dict[str, Any]]]]:
        """The new records, shard by shard: [(shard_id, records)], only shards that had some."""
        found = []
        for shard_id, iterator in self._iterators.items():
            if iterator is None:
                continue  # a closed shard, read to its end
            answer = self.client.get_records(ShardIterator=iterator, Limit=max(1, min(limit, 1000)))
            self._iterators[shard_id] = answer.get("NextShardIterator")
            if answer["Records"]:
                found.append((shard_id, [lambda_record(raw, self.stream_arn) for raw in answer["Records"]]))
        return found


def drain_stream(
    reader: StreamReader, filters: Iterable[str | Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Every record the stream has for `reader` now that passes `filters` (Lambda's FilterCriteria:
    None or [] lets all through), reading until a read brings nothing new."""
    found: list[dict[str, Any]] = []
    while records := reader.read():
        found += [record for record in records if matches_any(filters, record)]
    return found


def sqs_destination(client: Any, queue_url: str) -> Callable[[dict[str, Any]], None]:
    """An on-failure destination that sends the message to an SQS queue, as Lambda does."""
    return lambda message: client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))


@dataclass
class _Batch:
    records: list[dict[str, Any]]
    attempts: int = 0  # failed invocations counted against MaximumRetryAttempts
    invocations: int = 0
    not_before: float = 0.0
    function_error: bool = False


@dataclass
class _ShardWork:
    pending: deque[dict[str, Any]] = field(default_factory=deque)
    waiting_since: float | None = None  # when the oldest pending record was read
    batches: deque[_Batch] = field(default_factory=deque)  # the one being delivered first


def _created(record: dict[str, Any]) -> int:
    return int(record["dynamodb"]["ApproximateCreationDateTime"])


def _iso(moment: float, fraction: bool = True) -> str:
    return (
        datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[: -3 if fraction else -7] + "Z"
    )


@dataclass(kw_only=True, eq=False)
class DynamoDBStreamSource(EventSource):
    """Lambda's DynamoDB stream event source mapping, locally, over a StreamReader.

    One batch per shard at a time, in sequence order (ParallelizationFactor 1). A batch
    succeeds when the invocation returns; with `report_failures` a `batchItemFailures` answer
    (itemIdentifier = SequenceNumber) makes the records from the lowest reported one the next
    attempt (an identifier not in the batch fails it whole). A raised invocation fails the batch
    whole; with `bisect_on_error` a batch of two or more is split in halves (which does not count
    as a retry). After `max_retry_attempts` retries (-1: no limit), or for records older than
    `max_record_age_s`, the batch is given up: `on_failure` gets Lambda's on-failure message and
    the shard goes on. `poll_once()` and `drain()` run it in the caller's thread; `start()` polls
    in a thread of its own.
    """

    kind = "dynamodb"
    function_id: str
    reader: StreamReader
    invoke: Invoke
    filters: list[Any] = field(default_factory=list)  # patterns, as dicts or JSON strings
    batch_size: int = 100
    batching_window_s: float = 0.0
    bisect_on_error: bool = False
    max_retry_attempts: int = -1
    max_record_age_s: float = -1
    report_failures: bool = False
    on_failure: Callable[[dict[str, Any]], None] | None = None
    retry_delay_s: float = 0.5
    idle_poll_s: float = 0.25  # Lambda polls a shard four times a second
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        table = self.reader.stream_arn.split(":table/", 1)[-1].split("/", 1)[0]
        super().__init__(self.function_id, self.reader.stream_arn, f"{table} stream -> {self.function_id}")
        self.filters = [json.loads(item) if isinstance(item, str) else item for item in self.filters]
        self.batch_size = max(1, min(self.batch_size, 10_000))
        self._shards: dict[str, _ShardWork] = {}
        # What happened so far (for tests and the curious).
        self.invocations = 0
        self.delivered = 0  # records in batches that succeeded
        self.dropped = 0  # records no filter let through
        self.given_up: list[dict[str, Any]] = []  # the on-failure messages

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = self.poll_once()
            except Exception as error:  # moto going away at shutdown, or a hiccup: poll again
                if not self._stopping.is_set():
                    _log("ddb", f"{self.function_id}: polling failed: {error}")
                busy = False
            if not busy:
                self._stopping.wait(self.idle_poll_s)

    def poll_once(self, *, flush: bool = False) -> bool:
        """Read the stream once, then deliver at most one batch per shard that is due (with
        `flush`, without waiting for the batching window). True if it read or invoked anything."""
        busy = False
        for shard_id, records in self.reader.read_by_shard():
            busy = True
            kept = [record for record in records if matches_any(self.filters, record)]
            self.dropped += len(records) - len(kept)
            work = self._shards.setdefault(shard_id, _ShardWork())
            if kept and work.waiting_since is None:
                work.waiting_since = self.clock()
            work.pending.extend(kept)
        for shard_id, work in list(self._shards.items()):
            if self._stopping.is_set() and self._thread is not None:
                break
            busy = self._step(shard_id, work, flush=flush) or busy
        return busy

    def idle(self) -> bool:
        """Nothing read and not yet delivered or given up."""
        return all(not work.pending and not work.batches for work in self._shards.values())

    def drain(self, timeout_s: float = 10.0) -> None:
        """Poll in this thread until everything the stream has now is delivered or given up
        (retry delays are waited out; the batching window is not). TimeoutError past `timeout_s`."""
        deadline = self.clock() + timeout_s
        while (busy := self.poll_once(flush=True)) or not self.idle():
            if self.clock() > deadline:
                raise TimeoutError(f"{self.function_id}: the stream did not drain in {timeout_s:g}s")
            if not busy:
                time.sleep(min(0.05, max(self.retry_delay_s, 0.001)))

    def _step(self, shard_id: str, work: _ShardWork, *, flush: bool) -> bool:
        now = self.clock()
        if not work.batches:
            waited = now - (work.waiting_since or now)
            if not work.pending or not (
                len(work.pending) >= self.batch_size or flush or waited >= self.batching_window_s
            ):
                return False
            taken = [work.pending.popleft() for _ in range(min(self.batch_size, len(work.pending)))]
            work.waiting_since = now if work.pending else None
            work.batches.append(_Batch(taken))
        batch = work.batches[0]
        if now < batch.not_before:
            return False
        if self.max_record_age_s >= 0:
            oldest_allowed = time.time() - self.max_record_age_s
            records = batch.records
            expired = sum(1 for _ in itertools.takewhile(lambda r: _created(r) < oldest_allowed, records))
            if expired:
                self._give_up(shard_id, _Batch(records[:expired]), "RecordAgeExceeded")
                batch.records = records[expired:]
                if not batch.records:
                    work.batches.popleft()
                    return True
        self._deliver(shard_id, work, batch)
        return True

    def _deliver(self, shard_id: str, work: _ShardWork, batch: _Batch) -> None:
        batch.invocations += 1
        self.invocations += 1
        sequence = [record["dynamodb"]["SequenceNumber"] for record in batch.records]
        try:
            result = self.invoke({"Records": list(batch.records)})
        except Exception as error:  # InvocationFailed, or whatever a test's callable raises
            if not isinstance(error, InvocationFailed):
                _log("ddb", f"{self.function_id}: invocation raised {type(error).__name__}: {error}")
            failed_from, function_error = 0, True
        else:
            failed = failed_ids(result, sequence) if self.report_failures else set()
            failed_from, function_error = min((sequence.index(s) for s in failed), default=None), False
        if failed_from is None:
            work.batches.popleft()
            self.delivered += len(batch.records)
        elif function_error and self.bisect_on_error and len(batch.records) > 1:
            work.batches.popleft()
            middle, retry_at = len(batch.records) // 2, self.clock() + self.retry_delay_s
            for records in (batch.records[middle:], batch.records[:middle]):
                work.batches.appendleft(_Batch(records, batch.attempts, batch.invocations, retry_at, True))
        else:
            self.delivered += failed_from  # the records before the first reported failure are done
            batch.records = batch.records[failed_from:]
            batch.attempts += 1
            batch.function_error = function_error
            batch.not_before = self.clock() + self.retry_delay_s
            if 0 <= self.max_retry_attempts < batch.attempts:
                work.batches.popleft()
                self._give_up(shard_id, batch, "RetryAttemptsExhausted")

    def _give_up(self, shard_id: str, batch: _Batch, condition: str) -> None:
        first, last = batch.records[0]["dynamodb"], batch.records[-1]["dynamodb"]
        response: dict[str, Any] = {}
        if batch.invocations:
            response = {"statusCode": 200, "executedVersion": "$LATEST"}
            if batch.function_error:
                response["functionError"] = "Unhandled"
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": function_arn(self.function_id),
                "condition": condition,
                "approximateInvokeCount": batch.invocations,
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": _iso(time.time()),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(first["ApproximateCreationDateTime"], False),
                "approximateArrivalOfLastRecord": _iso(last["ApproximateCreationDateTime"], False),
                "batchSize": len(batch.records),
                "streamArn": self.source_arn,
            },
        }
        self.given_up.append(message)
        _log(
            "ddb",
            f"{self.function_id}: gave up on {len(batch.records)} record(s) of {shard_id} ({condition})",
        )
        try:
            if self.on_failure is not None:
                self.on_failure(message)
        except Exception as error:  # Lambda would retry the destination; locally it is logged
            _log("ddb", f"{self.function_id}: on-failure destination failed: {error}")


def dynamodb_event_sources(
    stack: Stack, gateway: LocalApiGateway, aws_client: Callable[[str], Any], *, retry_delay_s: float = 0.5
) -> list[DynamoDBStreamSource]:
    """One DynamoDBStreamSource per enabled `Type: DynamoDB` event of the functions the gateway
    runs; `aws_client(service)` makes the boto3 clients (one of each per source)."""
    sources = []
    for function_id, _, _, props, invoke in template_events(stack, gateway, ["DynamoDB"]):
        on_failure = None
        target = (props.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
        if target:  # an SQS queue: the template's only kind
            sqs, name = aws_client("sqs"), str(stack.resolve(target)).rsplit(":", 1)[-1]
            on_failure = sqs_destination(sqs, sqs.get_queue_url(QueueName=name)["QueueUrl"])
        sources.append(
            DynamoDBStreamSource(
                function_id=function_id,
                reader=StreamReader(
                    aws_client("dynamodbstreams"),
                    str(stack.resolve(props["Stream"])),
                    str(stack.resolve(props.get("StartingPosition", "TRIM_HORIZON"))),
                ),
                invoke=invoke,
                filters=filter_patterns(props.get("FilterCriteria")),
                batch_size=int(stack.resolve(props.get("BatchSize", 100))),
                batching_window_s=float(stack.resolve(props.get("MaximumBatchingWindowInSeconds", 0))),
                bisect_on_error=str(stack.resolve(props.get("BisectBatchOnFunctionError", False))).lower()
                == "true",
                max_retry_attempts=int(stack.resolve(props.get("MaximumRetryAttempts", -1))),
                max_record_age_s=float(stack.resolve(props.get("MaximumRecordAgeInSeconds", -1))),
                report_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
                on_failure=on_failure,
                retry_delay_s=retry_delay_s,
            )
        )
    return sources
