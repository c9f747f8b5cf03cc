"""Lambda's event sources, locally (dev-only; Lambda code never imports this).

What invokes the template's functions other than the API, with Lambda's semantics: `sqs` (a
`Type: SQS` event source mapping: batches, partial batch failures; the queue's redrive policy does
the dead-lettering), `streams` (a `Type: DynamoDB` stream mapping: FilterCriteria, batching,
retries, bisecting, the on-failure destination), `schedules` (`Schedule`/`ScheduleV2` timers).
`patterns` matches Lambda's and EventBridge's event patterns with moto's own matcher, and `base`
holds what they share. `build_event_sources` makes every source of the functions a gateway runs
(devstack.stack starts them).

The pieces work without the rest of the local stack, under moto's in-process `mock_aws` too:

    reader = StreamReader(boto3.client("dynamodbstreams"), stack.attributes[("TasksTable", "StreamArn")])
    ...  # write to the table
    records = drain_stream(reader, template_filters(stack.template, "TaskEventsFunction"))
    handler({"Records": records}, context)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devstack.event_sources.base import EventSource, function_arn
from devstack.event_sources.patterns import filter_matches, matches_any, template_filters
from devstack.event_sources.schedules import ScheduleSource, schedule_event_sources
from devstack.event_sources.sqs import SqsEventSource, sqs_event_sources
from devstack.event_sources.streams import (
    DynamoDBStreamSource,
    StreamReader,
    drain_stream,
    dynamodb_event_sources,
)
from devstack.template import Stack

if TYPE_CHECKING:
    from devstack.gateway import LocalApiGateway

__all__ = [
    "DynamoDBStreamSource",
    "EventSource",
    "ScheduleSource",
    "SqsEventSource",
    "StreamReader",
    "build_event_sources",
    "drain_stream",
    "dynamodb_event_sources",
    "filter_matches",
    "function_arn",
    "matches_any",
    "sqs_event_sources",
    "template_filters",
]


def build_event_sources(
    stack: Stack,
    gateway: LocalApiGateway,
    aws_client: Callable[[str], Any],
    *,
    default_concurrency: int,
    schedule_interval_s: float | None = None,
) -> list[EventSource]:
    """Every event source of the functions the gateway runs (SQS, DynamoDB, Schedule, ScheduleV2),
    not started; `aws_client(service)` makes their boto3 clients."""
    sources: list[EventSource] = []
    sources += sqs_event_sources(stack, gateway, aws_client("sqs"), default_concurrency=default_concurrency)
    sources += dynamodb_event_sources(stack, gateway, aws_client)
    sources += schedule_event_sources(stack, gateway, interval_s=schedule_interval_s)
    return sources
