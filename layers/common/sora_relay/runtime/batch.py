"""Partial batch responses for the SQS and DynamoDB stream functions: Powertools' BatchProcessor.

Each record goes to the record handler (as Powertools' event data class: `record["body"]` reads
the raw record), a record whose handler raised is reported in `batchItemFailures` (SQS: its
messageId; a stream: its SequenceNumber, from which Lambda retries), and a batch whose every
record failed is still an answer, not a function error (`raise_on_entire_batch_failure=False`).

What ours adds to it, in `LoggedBatchProcessor`:
- a stream batch (`stop_at_first_failure=True`) stops at its first failed record: Lambda goes on
  from that record, in order, so handling the later ones now would handle them twice;
- each failure is logged once, with the keys its handler appended (the task id), never the
  record's body (it may hold a prompt): a `Deferred` at info as a deferral, a `SoraRelayError` at
  error with its code and root cause, anything else with its traceback; keys a handler appends are
  dropped after its record, so a record never logs under the previous record's task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch import process_partial_response as _process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.domain.errors import Deferred, SoraRelayError, describe_cause
from sora_relay.observability import logger

Record = Any  # Powertools' SQSRecord / DynamoDBRecord; `record["..."]` reads the raw record

__all__ = ["EventType", "LoggedBatchProcessor", "Record", "process_partial_response"]


class LoggedBatchProcessor(BatchProcessor):
    def __init__(self, event_type: EventType, *, stop_at_first_failure: bool = False) -> None:
        super().__init__(event_type, raise_on_entire_batch_failure=False)
        self._stop_at_first_failure = stop_at_first_failure

    def process(self) -> list[tuple]:
        results = []
        for record in self.records:
            keys_before = set(logger.get_current_keys())
            try:
                result = self._process_record(record)
            finally:
                logger.remove_keys([key for key in logger.get_current_keys() if key not in keys_before])
            results.append(result)
            if self._stop_at_first_failure and result[0] == "fail":
                break
        return results

    def failure_handler(self, record: Any, exception: Any) -> Any:
        error = exception[1]
        record_id = _record_id(record)
        if isinstance(error, Deferred):  # left on its queue on purpose: not a crash
            logger.info("Record deferred", extra={"record_id": record_id, "reason": str(error)})
        elif isinstance(error, SoraRelayError):
            extra = {"record_id": record_id, "error_code": error.code, "cause": describe_cause(error)}
            logger.error("Record failed", extra=extra)
        else:
            logger.error(
                "Record failed",
                exc_info=exception,
                extra={"record_id": record_id, "cause": describe_cause(error)},
            )
        return super().failure_handler(record, exception)


def _record_id(record: Any) -> str | None:
    raw = getattr(record, "raw_event", record) or {}
    return raw.get("messageId") or (raw.get("dynamodb") or {}).get("SequenceNumber")


def process_partial_response(
    event: dict[str, Any],
    record_handler: Callable[..., object],
    *,
    event_type: EventType,
    context: LambdaContext | None = None,
    stop_at_first_failure: bool = False,
) -> PartialItemFailureResponse:
    """Run `record_handler` on each record (with `lambda_context` if it takes one); report (and
    log) the ones that raised. With `stop_at_first_failure` (a stream), the first failure ends the
    batch: it is reported and the records after it are left for Lambda's retry, which starts there."""
    processor = LoggedBatchProcessor(event_type, stop_at_first_failure=stop_at_first_failure)
    return _process_partial_response(event, record_handler, processor, context)
