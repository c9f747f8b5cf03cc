"""Lambda's event sources, locally (dev-only; Lambda code never imports this).

What invokes the template's functions other than the API, with Lambda's semantics:

- `SqsEventSource`: a `Type: SQS` event source mapping (batches, partial batch failures, the
  queue's redrive policy does the dead-lettering).
- `DynamoDBStreamSource`: a `Type: DynamoDB` stream event source mapping. Records that match no
  FilterCriteria pattern are dropped, the rest are batched (BatchSize,
  MaximumBatchingWindowInSeconds) and delivered in order per shard. A failed batch is retried
  (from the first reported failure with ReportBatchItemFailures; bisected on a function error
  with BisectBatchOnFunctionError) up to MaximumRetryAttempts, then its shard and sequence
  numbers go to the OnFailure destination (an SQS queue) and the shard moves on.
- `ScheduleSource`: a `Type: Schedule`/`ScheduleV2` event, a timer sending an EventBridge
  (Scheduler) event every rate() interval, or faster when asked.

The pieces are usable without any of the local stack: `filter_matches`/`matches_any` (Lambda's
and EventBridge's event patterns, through moto's matcher), `StreamReader` (a DynamoDB stream read through a boto3
`dynamodbstreams` client as Lambda's event records; no threads, so it works under moto's
in-process `mock_aws` as well as against moto's server) and `drain_stream`.

    reader = StreamReader(boto3.client("dynamodbstreams"), stack.attributes[("TasksTable", "StreamArn")])
    ...  # write to the table
    records = drain_stream(reader, template_filters(stack.template, "TaskEventsFunction"))
    handler({"Records": records}, context)

`build_event_sources` makes every source of the template's running functions (devstack.stack
starts them).
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

from botocore.exceptions import ClientError
from moto.events.models import EventPattern, InvalidEventPatternException

from devstack.gateway import InvocationFailed, LocalApiGateway
from devstack.template import ACCOUNT, REGION, Stack, function_events

# The event types devstack runs for the template's functions (besides Api routes).
EVENT_SOURCE_TYPES = frozenset({"SQS", "DynamoDB", "Schedule", "ScheduleV2"})

Invoke = Callable[[dict[str, Any]], Any]


def _log(kind: str, message: str) -> None:
    print(f"[{kind}] {message}", file=sys.stderr, flush=True)


def function_arn(function_id: str) -> str:
    """The ARN a local function answers to (the gateway names its instances local-<FunctionId>)."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:local-{function_id}"


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class EventSource:
    """What all local event sources have: the function, what feeds it, start() and stop()."""

    kind = ""
    function_id = ""
    source_arn = ""
    queue_url: str | None = None  # SQS sources only
    _stopping: threading.Event
    _thread: threading.Thread | None = None

    def _loop(self) -> None:  # pragma: no cover - overridden
        """The source's polling or timer loop, run on its own thread until _stopping is set."""
        raise NotImplementedError

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._loop, name=f"{self.kind}-{self.function_id}", daemon=True
        )
        self._thread.start()
        return self

    @property
    def description(self) -> str:
        """What feeds which function, for people: "<source> -> <FunctionId>"."""
        return f"{self.source_arn} -> {self.function_id}"

    def request_stop(self) -> None:
        """Take no new work from now on; stop() also waits for what is in flight."""
        self._stopping.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop; what it has in flight finishes first (bounded by `timeout_s`)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)


# -- event patterns ------------------------------------------------------------------------------


def filter_matches(pattern: Mapping[str, Any], event: Any) -> bool:
    """Whether `event` matches an EventBridge / Lambda event-filtering pattern: moto's own matcher
    (the one its EventBridge rules use), so the local stack filters as moto's AWS does. A
    ValueError says a pattern is malformed (as far as moto checks)."""
    if not isinstance(pattern, Mapping):
        raise ValueError(f"an event pattern is a JSON object, not {type(pattern).__name__}")
    try:
        return EventPattern.load(json.dumps(pattern)).matches_event(event)
    except (InvalidEventPatternException, KeyError, TypeError) as error:
        raise ValueError(f"a malformed event pattern: {pattern!r}") from error


def matches_any(filters: Iterable[str | Mapping[str, Any]] | None, event: Any) -> bool:
    """Lambda's FilterCriteria: no filters lets everything through; else any matching pattern does.
    A filter is a pattern, as a dict or a JSON string (as the template's `Pattern` values are)."""
    patterns = [parse_pattern(item) for item in filters or ()]
    return not patterns or any(filter_matches(pattern, event) for pattern in patterns)


def parse_pattern(item: str | Mapping[str, Any]) -> Mapping[str, Any]:
    pattern = json.loads(item) if isinstance(item, str) else item
    if not isinstance(pattern, Mapping):
        raise ValueError(f"an event pattern is a JSON object: {item!r}")
    return pattern


def filter_patterns(criteria: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The patterns of a FilterCriteria ({"Filters": [{"Pattern": "<json>"}, ...]}), parsed."""
    return [dict(parse_pattern(item["Pattern"])) for item in (criteria or {}).get("Filters") or []]


def template_filters(
    template: Mapping[str, Any], function_id: str, event_type: str = "DynamoDB"
) -> list[dict[str, Any]]:
    """The FilterCriteria patterns of a function's `event_type` events in a template (all of them)."""
    patterns: list[dict[str, Any]] = []
    for event in function_events(dict(template), function_id).values():
        if event.get("Type") == event_type:
            patterns += filter_patterns(event.get("Properties", {}).get("FilterCriteria"))
    return patterns


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


# -- schedules -----------------------------------------------------------------------------------

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float | None:
    """The interval of a `rate(N unit)` expression in seconds; None for cron() and at()."""
    found = _RATE.match(expression.strip())
    if found is None:
        return None
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2).rstrip("s")]


def scheduled_event(*, source: str, resource_arn: str, detail: Any) -> dict[str, Any]:
    """The event EventBridge (source aws.events) or EventBridge Scheduler (aws.scheduler) sends."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": source,
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [resource_arn],
        "detail": detail,
    }


class ScheduleSource(EventSource):
    """A `Schedule`/`ScheduleV2` event: invokes the function every `interval_s`, the first time one
    interval after start(). Each tick sends a fresh `event_factory()` event. An invocation that
    fails is logged and counted; the next tick still comes (ticks missed while an invocation
    ran long are skipped, not queued)."""

    kind = "schedule"

    @property
    def description(self) -> str:
        return f"every {self.interval_s:g} s -> {self.function_id}"

    def __init__(
        self,
        *,
        function_id: str,
        invoke: Invoke,
        interval_s: float,
        event_factory: Callable[[], dict[str, Any]],
        source_arn: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("a schedule needs an interval above 0")
        self.function_id = function_id
        self.interval_s = float(interval_s)
        self.source_arn = source_arn
        self._invoke = invoke
        self._event_factory = event_factory
        self._clock = clock
        self._stopping = threading.Event()
        self.invocations = 0
        self.errors = 0
        self.last_result: Any = None
        self.last_error: str | None = None

    def tick(self) -> Any:
        """One scheduled invocation, now, in this thread: its result, or None if it failed."""
        self.invocations += 1
        try:
            self.last_result = self._invoke(self._event_factory())
            self.last_error = None
            return self.last_result
        except Exception as error:
            self.errors += 1
            self.last_error = f"{type(error).__name__}: {error}"
            _log("schedule", f"{self.function_id}: invocation failed: {self.last_error}")
            return None

    def _loop(self) -> None:
        due = self._clock() + self.interval_s
        while not self._stopping.wait(max(0.0, due - self._clock())):
            self.tick()
            now = self._clock()
            due += self.interval_s
            if due <= now:  # the invocation outlasted one or more intervals
                due += math.ceil((now - due) / self.interval_s + 1e-9) * self.interval_s


def schedule_source(
    stack: Stack,
    function_id: str,
    event_name: str,
    event: Mapping[str, Any],
    invoke: Invoke,
    *,
    interval_s: float | None = None,
) -> ScheduleSource | None:
    """The ScheduleSource for one Schedule/ScheduleV2 event; None when it is disabled or has no
    interval to run at (cron() or at() without `interval_s`)."""
    props = event.get("Properties", {})
    kind = event.get("Type")
    if props.get("Enabled", True) is False or str(stack.resolve(props.get("State", "ENABLED"))) == "DISABLED":
        return None
    expression = str(stack.resolve(props["ScheduleExpression" if kind == "ScheduleV2" else "Schedule"]))
    interval = interval_s if interval_s is not None else rate_seconds(expression)
    if not interval:
        _log("schedule", f"{function_id}.{event_name}: {expression} is not run locally (give an interval)")
        return None
    name = str(stack.resolve(props.get("Name", f"{function_id}{event_name}")))
    if kind == "ScheduleV2":
        group = str(stack.resolve(props.get("GroupName", "default")))
        arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{group}/{name}"
        source, detail = "aws.scheduler", "{}"  # Scheduler's detail is a JSON string
    else:
        arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"
        source, detail = "aws.events", {}
    raw_input = props.get("Input")

    def make_event() -> dict[str, Any]:
        if raw_input is not None:
            return json.loads(str(stack.resolve(raw_input)))  # type: ignore[no-any-return]
        return scheduled_event(source=source, resource_arn=arn, detail=detail)

    return ScheduleSource(
        function_id=function_id, invoke=invoke, interval_s=interval, event_factory=make_event, source_arn=arn
    )


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
            done = [message for message in messages if message["MessageId"] not in failed]
            if done:
                self._client.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
                        for number, message in enumerate(done)
                    ],
                )
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
            result = self._invoke({"Records": [self._record(message) for message in messages]})
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

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        """One record of Lambda's SQS event."""
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
            "eventSourceARN": self.queue_arn,
            "awsRegion": REGION,
        }


# -- from the template ---------------------------------------------------------------------------


def _queue_url(client: Any, queue_arn: str) -> str:
    return str(client.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"])


def _events(
    stack: Stack, gateway: LocalApiGateway, types: Sequence[str]
) -> list[tuple[str, str, dict[str, Any]]]:
    """(function id, event name, event) of the enabled events of these types, for running functions."""
    found = []
    for function_id in stack.functions():
        if function_id not in gateway.pools:
            continue
        for event_name, event in stack.function_events(function_id).items():
            if event.get("Type") in types and event.get("Properties", {}).get("Enabled", True) is not False:
                found.append((function_id, event_name, event))
    return found


def _invoker(gateway: LocalApiGateway, function_id: str) -> Invoke:
    return lambda event: gateway.invoke(function_id, event)


def sqs_event_sources(
    stack: Stack, gateway: LocalApiGateway, client: Any, *, default_concurrency: int
) -> list[SqsEventSource]:
    """One SqsEventSource per enabled `Type: SQS` event of the template's running functions."""
    sources = []
    for function_id, event_name, event in _events(stack, gateway, ["SQS"]):
        props = event.get("Properties", {})
        if props.get("FilterCriteria"):
            _log("sqs", f"{function_id}.{event_name}: FilterCriteria is not applied locally to SQS")
        queue_arn = str(stack.resolve(props["Queue"]))
        scaling = props.get("ScalingConfig", {})
        concurrency = scaling.get("MaximumConcurrency")
        sources.append(
            SqsEventSource(
                function_id=function_id,
                queue_url=_queue_url(client, queue_arn),
                queue_arn=queue_arn,
                invoke=_invoker(gateway, function_id),
                client=client,
                batch_size=int(stack.resolve(props.get("BatchSize", 10))),
                concurrency=int(stack.resolve(concurrency)) if concurrency else default_concurrency,
                report_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
            )
        )
    return sources


def dynamodb_event_sources(
    stack: Stack,
    gateway: LocalApiGateway,
    aws_client: Callable[[str], Any],
    *,
    retry_delay_s: float = 0.5,
    idle_poll_s: float = 0.25,
) -> list[DynamoDBStreamSource]:
    """One DynamoDBStreamSource per enabled `Type: DynamoDB` event of the running functions;
    `aws_client(service)` makes the boto3 clients (one of each per source)."""
    sources = []
    for function_id, event_name, event in _events(stack, gateway, ["DynamoDB"]):
        props = event.get("Properties", {})
        for unsupported in ("TumblingWindowInSeconds", "ParallelizationFactor"):
            if unsupported in props:
                _log("ddb", f"{function_id}.{event_name}: {unsupported} is not reproduced locally")
        on_failure = None
        destination = (props.get("DestinationConfig") or {}).get("OnFailure") or {}
        if destination:
            target = str(stack.resolve(destination["Destination"]))
            if destination.get("Type", "SQS") == "SQS" and ":sqs:" in target:
                sqs = aws_client("sqs")
                on_failure = sqs_destination(sqs, _queue_url(sqs, target))
            else:
                _log("ddb", f"{function_id}.{event_name}: on-failure destination {target} is not supported")
        reader = StreamReader(
            aws_client("dynamodbstreams"),
            str(stack.resolve(props["Stream"])),
            str(stack.resolve(props.get("StartingPosition", "TRIM_HORIZON"))),
        )
        sources.append(
            DynamoDBStreamSource(
                function_id=function_id,
                reader=reader,
                invoke=_invoker(gateway, function_id),
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
                idle_poll_s=idle_poll_s,
            )
        )
    return sources


def schedule_event_sources(
    stack: Stack, gateway: LocalApiGateway, *, interval_s: float | None = None
) -> list[ScheduleSource]:
    """One ScheduleSource per enabled Schedule/ScheduleV2 event of the running functions;
    `interval_s` replaces every schedule's own interval (None: the rate() expression's)."""
    sources = []
    for function_id, event_name, event in _events(stack, gateway, ["Schedule", "ScheduleV2"]):
        source = schedule_source(
            stack, function_id, event_name, event, _invoker(gateway, function_id), interval_s=interval_s
        )
        if source is not None:
            sources.append(source)
    return sources


def build_event_sources(
    stack: Stack,
    gateway: LocalApiGateway,
    aws_client: Callable[[str], Any],
    *,
    default_concurrency: int,
    schedule_interval_s: float | None = None,
    stream_retry_delay_s: float = 0.5,
) -> list[EventSource]:
    """Every event source of the template's running functions (SQS, DynamoDB, Schedule and
    ScheduleV2), not started."""
    sources: list[EventSource] = []
    sources += sqs_event_sources(stack, gateway, aws_client("sqs"), default_concurrency=default_concurrency)
    sources += dynamodb_event_sources(stack, gateway, aws_client, retry_delay_s=stream_retry_delay_s)
    sources += schedule_event_sources(stack, gateway, interval_s=schedule_interval_s)
    return sources
