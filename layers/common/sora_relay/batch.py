"""Partial batch responses for the SQS and DynamoDB stream functions.

What Powertools' `BatchProcessor` + `process_partial_response` did for us, with its behaviour:
every record is handed to the record handler in order, a record whose handler raises is reported
in `batchItemFailures` (SQS: its messageId; a stream: its SequenceNumber, from which Lambda
retries) and the others are not, even when every record failed (we never asked Powertools to
raise on an entire-batch failure). An event without records is refused, as Powertools refused it.

Why not Powertools' own: importing `aws_lambda_powertools.utilities.batch` builds the pydantic
models of its parser (SQS, DynamoDB, Kinesis, Kafka, ...) because pydantic is installed, and
imports every event data class: 60-80 ms of CPU at each cold start (bench/cold_start.py), for
records we read as the plain dicts they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Record = dict[str, Any]


class UnexpectedBatchEvent(ValueError):
    """The event carries no list of records: not an event of a batch event source."""


def sqs_message_id(record: Record) -> str:
    return str(record["messageId"])


def stream_sequence_number(record: Record) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def process_partial_response(
    event: dict[str, Any],
    record_handler: Callable[[Record], object],
    *,
    item_identifier: Callable[[Record], str],
) -> dict[str, list[dict[str, str]]]:
    """Run `record_handler` on each record; report the ones that raised."""
    records = event.get("Records", []) if isinstance(event, dict) else None
    if not records or not isinstance(records, list):
        raise UnexpectedBatchEvent(
            "Unexpected batch event type. Possible values are: SQS, KinesisDataStreams, DynamoDBStreams, Kafka"
        )
    failures = []
    for record in records:
        try:
            record_handler(record)
        except Exception:  # reported, for Lambda to deliver again (Powertools logged nothing either)
            failures.append({"itemIdentifier": item_identifier(record)})
    return {"batchItemFailures": failures}
