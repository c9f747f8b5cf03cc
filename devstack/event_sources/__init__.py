"""Lambda's event sources, locally (dev-only; Lambda code never imports this).

What invokes the template's functions other than the API, with Lambda's semantics: `sqs` (a
`Type: SQS` event source mapping: batches, partial batch failures; the queue's redrive policy does
the dead-lettering), `streams` (a `Type: DynamoDB` stream mapping: FilterCriteria, batching,
retries, bisecting, the on-failure destination), `schedules` (`Schedule`/`ScheduleV2` timers).
`patterns` matches Lambda's and EventBridge's event patterns with moto's own matcher, and `base`
holds what they share. The pieces work without the rest of the local stack, under moto's
in-process `mock_aws` too (`StreamReader`, `drain_stream`, `matches_any`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devstack.event_sources.base import EventSource as EventSource
from devstack.event_sources.patterns import filter_matches as filter_matches
from devstack.event_sources.patterns import matches_any as matches_any
from devstack.event_sources.patterns import template_filters as template_filters
from devstack.event_sources.schedules import ScheduleSource as ScheduleSource
from devstack.event_sources.schedules import schedule_event_sources
from devstack.event_sources.sqs import SqsEventSource as SqsEventSource
from devstack.event_sources.sqs import sqs_event_sources as sqs_event_sources
from devstack.event_sources.streams import DynamoDBStreamSource as DynamoDBStreamSource
from devstack.event_sources.streams import StreamReader as StreamReader
from devstack.event_sources.streams import drain_stream as drain_stream
from devstack.event_sources.streams import dynamodb_event_sources as dynamodb_event_sources
from devstack.template import Stack

if TYPE_CHECKING:
    from devstack.gateway import LocalApiGateway


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
