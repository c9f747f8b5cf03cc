"""A DynamoDB stream as Lambda reads it: the records, the shard reader, and the event source mapping (filter, batches, retries, bisecting, the on-failure destination)."""

from __future__ import annotations

import base64
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from devstack.event_sources.base import EventSource, Invoke, _iso, _log, function_arn
from devstack.event_sources.patterns import matches_any, parse_pattern
from devstack.functions import InvocationFailed
from devstack.template import REGION

# -- DynamoDB streams ----------------------------------------------------------------------------


def _attribute_json(value: Any) -> Any:
    """A boto3 AttributeValue as it appears in Lambda's JSON event (binary as base64 text)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for kind, inner in value.items():
            if kind == "B":
                out[kind] = base64.b64encode(bytes(inner)).decode()
            elif kind == "BS":
                out[kind] = [base64.b64encode(bytes(item)).decode() for item in inner]
            elif kind == "M":
                out[kind] = {name: _attribute_json(item) for name, item in inner.items()}
            elif kind == "L":
                out[kind] = [_attribute_json(item) for item in inner]
            else:
                out[kind] = inner
        return out
    return value


def _image(image: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _attribute_json(value) for name, value in image.items()}


def lambda_record(raw: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """One GetRecords record (as boto3 returns it) in Lambda's DynamoDB-stream event format."""
    data = raw.get("dynamodb", {})
    created = data.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        created = int(created.timestamp())
    dynamodb: dict[str, Any] = {"ApproximateCreationDateTime": created}
    for name in ("Keys", "NewImage", "OldImage"):
        if name in data:
            dynamodb[name] = _image(data[name])
    dynamodb["SequenceNumber"] = str(data.get("SequenceNumber"))
    dynamodb["SizeBytes"] = data.get("SizeBytes", 0)
    dynamodb["StreamViewType"] = data.get("StreamViewType")
    record: dict[str, Any] = {
        "eventID": raw.get("eventID"),
        "eventName": raw.get("eventName"),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": stream_arn.split(":")[3] if stream_arn.count(":") >= 5 else REGION,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
    if raw.get("userIdentity"):  # TTL deletions
        record["userIdentity"] = dict(raw["userIdentity"])
    return record


@dataclass
class _ShardCursor:
    shard_id: str
    parent_id: str | None
    iterator_type: str
    iterator: str | None = None
    last_sequence: str | None = None
    closed: bool = False


class StreamReader:
    """Reads a DynamoDB stream like Lambda's poller: every shard, in order, each record once.

    `read()` returns the records that arrived since the last call (across all shards, each shard's
    in sequence order), in Lambda's DynamoDB event record format. Iterators are remembered;
    shards are rediscovered at most every `shard_refresh_s` (new shards start at TRIM_HORIZON, a
    child shard after its parent is read to its end). No threads: call it from the thread you
    have, under moto's `mock_aws` or against moto's server. The starting position applies to the
    shards there are when the reader is made (it looks them up then).
    """

    def __init__(
        self,
        client: Any,
        stream_arn: str,
        starting_position: str = "TRIM_HORIZON",
        *,
        shard_refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise ValueError(f"StartingPosition {starting_position!r}: DynamoDB takes TRIM_HORIZON or LATEST")
        self.client = client
        self.stream_arn = stream_arn
        self.starting_position = starting_position
        self.shard_refresh_s = shard_refresh_s
        self._clock = clock
        self._cursors: dict[str, _ShardCursor] = {}
        self._refreshed_at = -math.inf
        self._refresh(initial=True)

    @property
    def shard_ids(self) -> list[str]:
        return list(self._cursors)

    def position(self, shard_id: str) -> str | None:
        """The sequence number of the last record read from the shard (None: nothing yet)."""
        return self._cursors[shard_id].last_sequence

    def read(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The new records of all shards (at most `limit` per shard)."""
        return [record for _, records in self.read_by_shard(limit) for record in records]

    def read_by_shard(self, limit: int = 1000) -> list[tuple[str, list[dict[str, Any]]]]:
        """The new records, shard by shard: [(shard_id, records)], only shards that had some."""
        if self._clock() - self._refreshed_at >= self.shard_refresh_s:
            self._refresh(initial=False)
        found = []
        for cursor in list(self._cursors.values()):
            if cursor.closed or not self._parent_done(cursor):
                continue
            records = self._read_shard(cursor, max(1, min(limit, 1000)))
            if records:
                found.append((cursor.shard_id, records))
        return found

    def _parent_done(self, cursor: _ShardCursor) -> bool:
        parent = self._cursors.get(cursor.parent_id or "")
        return parent is None or parent.closed

    def _refresh(self, *, initial: bool) -> None:
        self._refreshed_at = self._clock()
        start: str | None = None
        while True:
            request: dict[str, Any] = {"StreamArn": self.stream_arn}
            if start:
                request["ExclusiveStartShardId"] = start
            description = self.client.describe_stream(**request)["StreamDescription"]
            for shard in description.get("Shards", []):
                if shard["ShardId"] not in self._cursors:
                    # Lambda reads shards that appear later from their start.
                    kind = self.starting_position if initial else "TRIM_HORIZON"
                    self._cursors[shard["ShardId"]] = _ShardCursor(
                        shard["ShardId"], shard.get("ParentShardId"), kind
                    )
            start = description.get("LastEvaluatedShardId")
            if not start:
                break
        if initial:
            for cursor in self._cursors.values():
                # LATEST means "after what is there now", so these iterators are taken now.
                cursor.iterator = self._iterator(cursor)

    def _iterator(self, cursor: _ShardCursor) -> str:
        request: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": cursor.shard_id}
        if cursor.last_sequence is not None:
            request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=cursor.last_sequence)
        else:
            request["ShardIteratorType"] = cursor.iterator_type
        return str(self.client.get_shard_iterator(**request)["ShardIterator"])

    def _read_shard(self, cursor: _ShardCursor, limit: int) -> list[dict[str, Any]]:
        if cursor.iterator is None:
            cursor.iterator = self._iterator(cursor)
        try:
            answer = self.client.get_records(ShardIterator=cursor.iterator, Limit=limit)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "ExpiredIteratorException":
                cursor.iterator = None  # taken again after the last record read, next time
                return []
            if code == "TrimmedDataAccessException":
                cursor.last_sequence, cursor.iterator_type, cursor.iterator = None, "TRIM_HORIZON", None
                return []
            raise
        records = [lambda_record(raw, self.stream_arn) for raw in answer.get("Records", [])]
        if records:
            cursor.last_sequence = records[-1]["dynamodb"]["SequenceNumber"]
        cursor.iterator = answer.get("NextShardIterator")
        if cursor.iterator is None:
            cursor.closed = True  # a closed shard, read to its end
        return records


def drain_stream(
    reader: StreamReader,
    filters: Iterable[str | Mapping[str, Any]] | None = None,
    *,
    limit: int = 1000,
    max_reads: int = 100,
) -> list[dict[str, Any]]:
    """Every record the stream has for `reader` now that passes `filters` (Lambda's FilterCriteria:
    None or [] lets all through), reading until a read brings nothing new."""
    patterns = [parse_pattern(item) for item in filters or ()]
    found: list[dict[str, Any]] = []
    for _ in range(max_reads):
        records = reader.read(limit)
        if not records:
            break
        found += [record for record in records if matches_any(patterns, record)]
    return found


def sqs_destination(client: Any, queue_url: str) -> Callable[[dict[str, Any]], None]:
    """An on-failure destination that sends the message to an SQS queue, as Lambda does."""

    def send(message: dict[str, Any]) -> None:
        client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))

    return send


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


class DynamoDBStreamSource(EventSource):
    """Lambda's DynamoDB stream event source mapping, locally, over a StreamReader.

    One batch per shard at a time, in sequence order (ParallelizationFactor 1). A batch
    succeeds when the invocation returns; with `report_failures` a `batchItemFailures` answer
    (itemIdentifier = SequenceNumber) makes the records from the lowest reported one on the next
    attempt (an identifier not in the batch fails it whole). A raised invocation fails the batch
    whole; with `bisect_on_error` a batch of two or more is split in halves (which does not count
    as a retry). After `max_retry_attempts` retries (-1: no limit), or for records older than
    `max_record_age_s`, the batch is given up: `on_failure` gets Lambda's on-failure message and
    the shard goes on. `poll_once()` and `drain()` run it in the caller's thread; `start()` polls
    in a thread of its own.
    """

    kind = "dynamodb"

    @property
    def description(self) -> str:
        table = self.source_arn.split(":table/", 1)[-1].split("/", 1)[0]
        return f"{table} stream -> {self.function_id}"

    def __init__(
        self,
        *,
        function_id: str,
        reader: StreamReader,
        invoke: Invoke,
        filters: Iterable[str | Mapping[str, Any]] | None = None,
        batch_size: int = 100,
        batching_window_s: float = 0.0,
        bisect_on_error: bool = False,
        max_retry_attempts: int = -1,
        max_record_age_s: float = -1,
        report_failures: bool = False,
        on_failure: Callable[[dict[str, Any]], None] | None = None,
        retry_delay_s: float = 0.5,
        idle_poll_s: float = 0.25,  # Lambda polls a shard four times a second
        max_buffered: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.function_id = function_id
        self.reader = reader
        self.source_arn = reader.stream_arn
        self._invoke = invoke
        self.filters = [parse_pattern(item) for item in filters or ()]
        self.batch_size = max(1, min(int(batch_size), 10_000))
        self.batching_window_s = max(0.0, float(batching_window_s))
        self.bisect_on_error = bisect_on_error
        self.max_retry_attempts = int(max_retry_attempts)
        self.max_record_age_s = float(max_record_age_s)
        self.report_failures = report_failures
        self.on_failure = on_failure
        self.retry_delay_s = retry_delay_s
        self.idle_poll_s = idle_poll_s
        self.max_buffered = max_buffered
        self._clock = clock
        self._shards: dict[str, _ShardWork] = {}
        self._stopping = threading.Event()
        # What happened so far (for tests and the curious).
        self.invocations = 0
        self.delivered = 0  # records in batches that succeeded
        self.dropped = 0  # records no filter let through
        self.given_up: list[dict[str, Any]] = []  # the on-failure messages

    # -- running in a thread --

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = self.poll_once()
            except Exception as error:  # moto going away at shutdown, or a hiccup: poll again
                if not self._stopping.is_set():
                    _log("ddb", f"{self.function_id}: polling failed: {error}")
                self._stopping.wait(1.0)
                continue
            if not busy:
                self._stopping.wait(self.idle_poll_s)

    # -- one step, in the caller's thread --

    def poll_once(self, *, flush: bool = False) -> bool:
        """Read the stream once, then deliver at most one batch per shard that is due (with
        `flush`, without waiting for the batching window). True if it read or invoked anything."""
        busy = False
        if sum(len(work.pending) for work in self._shards.values()) < self.max_buffered:
            for shard_id, records in self.reader.read_by_shard():
                busy = True
                kept = [record for record in records if matches_any(self.filters, record)]
                self.dropped += len(records) - len(kept)
                if kept:
                    work = self._shards.setdefault(shard_id, _ShardWork())
                    work.pending.extend(kept)
                    if work.waiting_since is None:
                        work.waiting_since = self._clock()
        for shard_id, work in list(self._shards.items()):
            if self._stopping.is_set() and self._thread is not None:
                break
            busy = self._step(shard_id, work, flush=flush) or busy
        return busy

    def idle(self) -> bool:
        """Nothing read and not yet delivered or given up."""
        return all(not work.pending and not work.batches for work in self._shards.values())

    def drain(self, timeout_s: float = 10.0, *, sleep: Callable[[float], None] = time.sleep) -> None:
        """Poll in this thread until everything the stream has now is delivered or given up
        (retry delays are waited out; the batching window is not). TimeoutError past `timeout_s`."""
        deadline = self._clock() + timeout_s
        while True:
            busy = self.poll_once(flush=True)
            if not busy and self.idle():
                return
            if self._clock() > deadline:
                raise TimeoutError(f"{self.function_id}: the stream did not drain in {timeout_s:g}s")
            if not busy:
                sleep(min(0.05, max(self.retry_delay_s, 0.001)))

    def _step(self, shard_id: str, work: _ShardWork, *, flush: bool) -> bool:
        now = self._clock()
        if not work.batches:
            if not work.pending:
                return False
            full = len(work.pending) >= self.batch_size
            waited = now - (work.waiting_since or now)
            if not (full or flush or waited >= self.batching_window_s):
                return False
            taken = [work.pending.popleft() for _ in range(min(self.batch_size, len(work.pending)))]
            work.waiting_since = now if work.pending else None
            work.batches.append(_Batch(taken))
        batch = work.batches[0]
        if now < batch.not_before:
            return False
        if self.max_record_age_s >= 0:
            expired = self._expired_prefix(batch.records)
            if expired:
                self._give_up(shard_id, _Batch(batch.records[:expired], invocations=0), "RecordAgeExceeded")
                batch.records = batch.records[expired:]
                if not batch.records:
                    work.batches.popleft()
                    return True
        self._deliver(shard_id, work, batch)
        return True

    def _expired_prefix(self, records: list[dict[str, Any]]) -> int:
        oldest_allowed = time.time() - self.max_record_age_s
        count = 0
        for record in records:
            created = record["dynamodb"].get("ApproximateCreationDateTime")
            if not isinstance(created, (int, float)) or created >= oldest_allowed:
                break
            count += 1
        return count

    def _deliver(self, shard_id: str, work: _ShardWork, batch: _Batch) -> None:
        batch.invocations += 1
        self.invocations += 1
        function_error = False
        try:
            result = self._invoke({"Records": list(batch.records)})
        except Exception as error:  # InvocationFailed, or whatever a test's callable raises
            if not isinstance(error, InvocationFailed):
                _log("ddb", f"{self.function_id}: invocation raised {type(error).__name__}: {error}")
            failed_from: int | None = 0
            function_error = True
        else:
            failed_from = self._first_failure(batch.records, result)
        if failed_from is None:
            work.batches.popleft()
            self.delivered += len(batch.records)
            return
        if function_error and self.bisect_on_error and len(batch.records) > 1:
            middle = len(batch.records) // 2
            work.batches.popleft()
            retry_at = self._clock() + self.retry_delay_s
            halves = (batch.records[:middle], batch.records[middle:])
            for records in reversed(halves):
                work.batches.appendleft(
                    _Batch(records, batch.attempts, batch.invocations, retry_at, function_error=True)
                )
            return
        self.delivered += failed_from  # the records before the first reported failure are done
        batch.records = batch.records[failed_from:]
        batch.attempts += 1
        batch.function_error = function_error
        if 0 <= self.max_retry_attempts < batch.attempts:
            work.batches.popleft()
            self._give_up(shard_id, batch, "RetryAttemptsExhausted")
        else:
            batch.not_before = self._clock() + self.retry_delay_s

    def _first_failure(self, records: list[dict[str, Any]], result: Any) -> int | None:
        """Index of the first record to retry after a successful invocation; None: all done."""
        if not self.report_failures or not isinstance(result, dict):
            return None
        failures = result.get("batchItemFailures")
        if not failures:
            return None
        positions = {record["dynamodb"]["SequenceNumber"]: index for index, record in enumerate(records)}
        indexes = []
        for item in failures if isinstance(failures, list) else [failures]:
            identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not identifier or str(identifier) not in positions:
                return 0  # Lambda treats an invalid answer as the whole batch failing
            indexes.append(positions[str(identifier)])
        return min(indexes)

    def _give_up(self, shard_id: str, batch: _Batch, condition: str) -> None:
        records = batch.records
        arrivals = [record["dynamodb"].get("ApproximateCreationDateTime") for record in records]
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
                "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _arrival(arrivals[0]),
                "approximateArrivalOfLastRecord": _arrival(arrivals[-1]),
                "batchSize": len(records),
                "streamArn": self.source_arn,
            },
        }
        self.given_up.append(message)
        _log(
            "ddb",
            f"{self.function_id}: gave up on {len(records)} record(s) of {shard_id} "
            f"({condition}, {batch.invocations} invocation(s))",
        )
        if self.on_failure is None:
            return
        try:
            self.on_failure(message)
        except Exception as error:  # Lambda would retry the destination; locally it is logged
            _log("ddb", f"{self.function_id}: on-failure destination failed: {error}")


def _arrival(created: Any) -> str | None:
    if isinstance(created, (int, float)):
        return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None
