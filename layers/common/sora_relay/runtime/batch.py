"""Partial batch responses for the SQS and DynamoDB stream functions.

What Powertools' `BatchProcessor` + `process_partial_response` did for us, with its behaviour:
every record is handed to the record handler in order, a record whose handler raises is reported
in `batchItemFailures` (SQS: its messageId; a stream: its SequenceNumber, from which Lambda
retries) and the others are not, even when every record failed (we never asked Powertools to
raise on an entire-batch failure). An event without records is refused, as Powertools refused it.

Two differences. A stream batch (`stop_at_first_failure=True`) stops at its first failed record:
Lambda goes on from that record, in order, so handling the later ones now would handle them twice.
And each failure is logged once, with the keys its handler appended (the task id), never the
record's body (it may hold a prompt): a `Deferred` at info as a deferral, a `SoraRelayError` at
error with its code and root cause, anything else with its traceback. Keys a handler appends are
dropped after its record, so a record never logs under the previous record's task.

Why not Powertools' own: importing `aws_lambda_powertools.utilities.batch` builds the pydantic
models of its parser (SQS, DynamoDB, Kinesis, Kafka, ...) because pydantic is installed, and
imports every event data class: 60-80 ms of CPU at each cold start (bench/cold_start.py), for
records we read as the plain dicts they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sora_relay.domain.errors import Deferred, SoraRelayError, describe_cause
from sora_relay.observability import logger

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
    stop_at_first_failure: bool = False,
) -> dict[str, list[dict[str, str]]]:
    """Run `record_handler` on each record; report (and log) the ones that raised.

    With `stop_at_first_failure` (a stream), the first failure ends the batch: it is reported and
    the records after it are left for Lambda's retry, which starts from it.
    """
    records = event.get("Records", []) if isinstance(event, dict) else None
    if not records or not isinstance(records, list):
        raise UnexpectedBatchEvent(
            "Unexpected batch event type. Possible values are: SQS, KinesisDataStreams, DynamoDBStreams, Kafka"
        )
    failures = []
    for record in records:
        record_id = item_identifier(record)
        if not _handled(record_handler, record, record_id):
            failures.append({"itemIdentifier": record_id})
            if stop_at_first_failure:
                break
    return {"batchItemFailures": failures}


def _handled(record_handler: Callable[[Record], object], record: Record, record_id: str) -> bool:
    """Run the handler on one record; log why it failed (once) and return whether it succeeded."""
    keys_before = set(logger.get_current_keys())
    try:
        record_handler(record)
        return True
    except Deferred as deferral:  # left on its queue on purpose: not a crash
        logger.info("Record deferred", extra={"record_id": record_id, "reason": str(deferral)})
    except SoraRelayError as error:
        extra = {"record_id": record_id, "error_code": error.code, "cause": describe_cause(error)}
        logger.error("Record failed", extra=extra)
    except Exception as error:
        logger.exception("Record failed", extra={"record_id": record_id, "cause": describe_cause(error)})
    finally:
        logger.remove_keys([key for key in logger.get_current_keys() if key not in keys_before])
    return False
