"""Every event source of the template's running functions, built from template.yaml."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from devstack.event_sources.base import EventSource, Invoke, _log
from devstack.event_sources.patterns import filter_patterns
from devstack.event_sources.schedules import ScheduleSource, schedule_source
from devstack.event_sources.sqs import SqsEventSource
from devstack.event_sources.streams import DynamoDBStreamSource, StreamReader, sqs_destination
from devstack.gateway import LocalApiGateway
from devstack.template import Stack

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
