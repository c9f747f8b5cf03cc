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
starts them). One module a job: `base` (the thread every source runs), `patterns`, `streams`,
`schedules`, `sqs` and `from_template`.
"""

from devstack.event_sources.base import EVENT_SOURCE_TYPES, EventSource, Invoke, function_arn
from devstack.event_sources.from_template import (
    build_event_sources,
    dynamodb_event_sources,
    schedule_event_sources,
    sqs_event_sources,
)
from devstack.event_sources.patterns import (
    filter_matches,
    filter_patterns,
    matches_any,
    parse_pattern,
    template_filters,
)
from devstack.event_sources.schedules import ScheduleSource, rate_seconds, schedule_source, scheduled_event
from devstack.event_sources.sqs import SqsEventSource
from devstack.event_sources.streams import (
    DynamoDBStreamSource,
    StreamReader,
    drain_stream,
    lambda_record,
    sqs_destination,
)

__all__ = [
    "EVENT_SOURCE_TYPES",
    "DynamoDBStreamSource",
    "EventSource",
    "Invoke",
    "ScheduleSource",
    "SqsEventSource",
    "StreamReader",
    "build_event_sources",
    "drain_stream",
    "dynamodb_event_sources",
    "filter_matches",
    "filter_patterns",
    "function_arn",
    "lambda_record",
    "matches_any",
    "parse_pattern",
    "rate_seconds",
    "schedule_event_sources",
    "schedule_source",
    "scheduled_event",
    "sqs_destination",
    "sqs_event_sources",
    "template_filters",
]
