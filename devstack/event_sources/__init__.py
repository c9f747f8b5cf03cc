"""Lambda's event sources, locally (dev-only): what invokes the template's functions other than the
API, with Lambda's semantics. `sqs` (Type: SQS mappings), `streams` (Type: DynamoDB mappings and
their FilterCriteria), `schedules` (Schedule/ScheduleV2 timers), `base` (what they share)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devstack.event_sources.base import EventSource
from devstack.event_sources.schedules import schedule_event_sources
from devstack.event_sources.sqs import sqs_event_sources
from devstack.event_sources.streams import dynamodb_event_sources
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
    """Every event source of the functions the gateway runs, not started; `aws_client(service)`
    makes their boto3 clients."""
    return [
        *sqs_event_sources(stack, gateway, aws_client("sqs"), default_concurrency=default_concurrency),
        *dynamodb_event_sources(stack, gateway, aws_client),
        *schedule_event_sources(stack, gateway, interval_s=schedule_interval_s),
    ]
