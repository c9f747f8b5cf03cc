"""A DynamoDB stream as Lambda reads it: records, reader, FilterCriteria and the event source mapping."""

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

from moto.events.models import EventPattern, InvalidEventPatternException

from devstack.event_sources import EventSource, Invoke, _log, failed_ids, template_events
from devstack.functions import InvocationFailed
from devstack.template import ACCOUNT, REGION, Stack

if TYPE_CHECKING:
    from devstack.gateway import LocalApiGateway


def filter_matches(pattern: Mapping[str, Any], event: Any) -> bool:
    """Whether `event` matches a Lambda pattern, by moto's EventBridge matcher; ValueError if malformed."""
    try:
        return EventPattern.load(json.dumps(pattern)).matches_event(event)
    except (InvalidEventPatternException, AttributeError, KeyError, TypeError) as error:
        raise ValueError(f"a malformed event pattern: {pattern!r}") from error


def matches_any(filters: Iterable[str | Mapping[str, Any]] | None, event: Any) -> bool:
    """Lambda's FilterCriteria: no filters let all through, else any matching one (dict or JSON) does."""
    patterns = [json.loads(item) if isinstance(item, str) else item for item in filters or ()]
    return not patterns or any(filter_matches(pattern, event) for pattern in patterns)


def filter_patterns(criteria: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The patterns of a FilterCriteria ({"Filters": [{"Pattern": "<json>"}, ...]}), parsed."""
    return [json.loads(item["Pattern"]) for item in (criteria or {}).get("Filters") or []]


def _json_value(value: Any) -> Any:
    """What boto3 parsed, as Lambda's JSON event has it: dates as epoch seconds, binary as base64."""
    return int(value.timestamp()) if isinstance(value, datetime) else base64.b64encode(value).decode()


def lambda_record(raw: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """One GetRecords record (as boto3 returns it) in Lambda's DynamoDB-stream event format."""
    record = {**raw, "eventVersion": "1.1", "eventSourceARN": stream_arn}
    return json.loads(json.dumps(record, default=_json_value))  # type: ignore[no-any-return]


class StreamReader:
    """Reads a stream like Lambda's poller, each record once (moto: one shard, which never splits)."""

    def __init__(self, client: Any, stream_arn: str, starting_position: str = "TRIM_HORIZON") -> None:
        if starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise ValueError(f"StartingPosition {starting_position!r}: DynamoDB takes TRIM_HORIZON or LATEST")
        self.client, self.stream_arn = client, stream_arn
        (shard,) = client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        self.shard_id: str = shard["ShardId"]
        self._iterator = client.get_shard_iterator(
            StreamArn=stream_arn, ShardId=self.shard_id, ShardIteratorType=starting_position
        )["ShardIterator"]

    def read(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The records that arrived since the last read (at most `limit`), in Lambda's format."""
        answer = self.client.get_records(ShardIterator=self._iterator, Limit=max(1, min(limit, 1000)))
        self._iterator = answer["NextShardIterator"]
        return [lambda_record(raw, self.stream_arn) for raw in answer["Records"]]


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


def _iso(moment: float, fraction: bool = True) -> str:
    text = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[: -3 if fraction else -7] + "Z"


@dataclass(kw_only=True, eq=False)
class DynamoDBStreamSource(EventSource):
    """Lambda's DynamoDB stream mapping over a StreamReader: one batch at a time, in order.

    With `report_failures`, a `batchItemFailures` answer (itemIdentifier = SequenceNumber) retries
    from the lowest reported record (one not in the batch fails it whole); a raised invocation fails
    the batch whole, and `bisect_on_error` splits it in halves (not counted as a retry). Past
    `max_retry_attempts` (-1: no limit) or `max_record_age_s` the batch goes to `on_failure`.
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
        self.batch_size = max(1, min(self.batch_size, 10_000))
        self._pending: deque[dict[str, Any]] = deque()  # read, not yet in a batch
        self._waiting_since: float | None = None  # when the oldest pending record was read
        self._batches: deque[_Batch] = deque()  # the first is the one being delivered
        self.invocations = self.delivered = self.dropped = 0  # delivered: in batches that succeeded
        self.given_up: list[dict[str, Any]] = []  # the on-failure messages

    def poll_once(self, *, flush: bool = False) -> bool:
        """Read once, then deliver the batch if due (`flush`: not waiting for the window); True if busy."""
        records = self.reader.read()
        kept = [record for record in records if matches_any(self.filters, record)]
        self.dropped += len(records) - len(kept)
        if kept and self._waiting_since is None:
            self._waiting_since = self.clock()
        self._pending.extend(kept)
        return self._step(flush) or bool(records)

    def idle(self) -> bool:
        """Nothing read and not yet delivered or given up."""
        return not self._pending and not self._batches

    def drain(self, timeout_s: float = 10.0) -> None:
        """Poll here until all the stream has now is delivered or given up; TimeoutError after `timeout_s`."""
        deadline = self.clock() + timeout_s
        while (busy := self.poll_once(flush=True)) or not self.idle():
            if self.clock() > deadline:
                raise TimeoutError(f"{self.function_id}: the stream did not drain in {timeout_s:g}s")
            if not busy:
                time.sleep(min(0.05, max(self.retry_delay_s, 0.001)))

    def _step(self, flush: bool) -> bool:
        now, pending = self.clock(), self._pending
        if self._stopping.is_set():  # request_stop(): no new invocation
            return False
        if not self._batches:
            waited = now - (self._waiting_since or now)
            if not pending or not (
                len(pending) >= self.batch_size or flush or waited >= self.batching_window_s
            ):
                return False
            self._batches.append(
                _Batch([pending.popleft() for _ in range(min(self.batch_size, len(pending)))])
            )
            self._waiting_since = now if pending else None
        batch = self._batches[0]
        if now < batch.not_before:
            return False
        if self.max_record_age_s >= 0:
            oldest = time.time() - self.max_record_age_s
            aged = lambda record: record["dynamodb"]["ApproximateCreationDateTime"] < oldest  # noqa: E731
            if expired := sum(1 for _ in itertools.takewhile(aged, batch.records)):
                self._give_up(_Batch(batch.records[:expired]), "RecordAgeExceeded")
                batch.records = batch.records[expired:]
                if not batch.records:
                    self._batches.popleft()
                    return True
        self._deliver(batch)
        return True

    def _deliver(self, batch: _Batch) -> None:
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
            self._batches.popleft()
            self.delivered += len(batch.records)
        elif function_error and self.bisect_on_error and len(batch.records) > 1:
            self._batches.popleft()
            middle, retry_at = len(batch.records) // 2, self.clock() + self.retry_delay_s
            for records in (batch.records[middle:], batch.records[:middle]):
                self._batches.appendleft(_Batch(records, batch.attempts, batch.invocations, retry_at, True))
        else:
            self.delivered += failed_from  # the records before the first reported failure are done
            batch.records = batch.records[failed_from:]
            batch.attempts += 1
            batch.function_error = function_error
            batch.not_before = self.clock() + self.retry_delay_s
            if 0 <= self.max_retry_attempts < batch.attempts:
                self._batches.popleft()
                self._give_up(batch, "RetryAttemptsExhausted")

    def _give_up(self, batch: _Batch, condition: str) -> None:
        first, last = batch.records[0]["dynamodb"], batch.records[-1]["dynamodb"]
        response: dict[str, Any] = (
            {"statusCode": 200, "executedVersion": "$LATEST"} if batch.invocations else {}
        )
        if batch.invocations and batch.function_error:
            response["functionError"] = "Unhandled"
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:local-{self.function_id}",
                "condition": condition,
                "approximateInvokeCount": batch.invocations,
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": _iso(time.time()),
            "DDBStreamBatchInfo": {
                "shardId": self.reader.shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(first["ApproximateCreationDateTime"], False),
                "approximateArrivalOfLastRecord": _iso(last["ApproximateCreationDateTime"], False),
                "batchSize": len(batch.records),
                "streamArn": self.source_arn,
            },
        }
        self.given_up.append(message)
        _log("ddb", f"{self.function_id}: gave up on {len(batch.records)} record(s) ({condition})")
        try:
            if self.on_failure is not None:
                self.on_failure(message)
        except Exception as error:  # Lambda would retry the destination; locally it is logged
            _log("ddb", f"{self.function_id}: on-failure destination failed: {error}")


def dynamodb_event_sources(
    stack: Stack, gateway: LocalApiGateway, aws_client: Callable[[str], Any], *, retry_delay_s: float = 0.5
) -> list[DynamoDBStreamSource]:
    """One DynamoDBStreamSource per enabled `Type: DynamoDB` event of the functions the gateway runs."""
    sources = []
    for function_id, _, _, props, invoke in template_events(stack, gateway, ["DynamoDB"]):
        setting = lambda name, default, props=props: stack.resolve(props.get(name, default))  # noqa: E731
        on_failure, target = None, (props.get("DestinationConfig") or {}).get("OnFailure", {})
        if "Destination" in target:  # an SQS queue: the template's only kind
            sqs, name = aws_client("sqs"), str(stack.resolve(target["Destination"])).rsplit(":", 1)[-1]
            on_failure = sqs_destination(sqs, sqs.get_queue_url(QueueName=name)["QueueUrl"])
        sources.append(
            DynamoDBStreamSource(
                function_id=function_id,
                reader=StreamReader(
                    aws_client("dynamodbstreams"),
                    str(setting("Stream", None)),
                    str(setting("StartingPosition", "TRIM_HORIZON")),
                ),
                invoke=invoke,
                filters=filter_patterns(props.get("FilterCriteria")),
                batch_size=int(setting("BatchSize", 100)),
                batching_window_s=float(setting("MaximumBatchingWindowInSeconds", 0)),
                bisect_on_error=str(setting("BisectBatchOnFunctionError", False)).lower() == "true",
                max_retry_attempts=int(setting("MaximumRetryAttempts", -1)),
                max_record_age_s=float(setting("MaximumRecordAgeInSeconds", -1)),
                report_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
                on_failure=on_failure,
                retry_delay_s=retry_delay_s,
            )
        )
    return sources
