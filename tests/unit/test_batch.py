"""What the partial-batch helper logs about a failed record, and how a stream batch stops."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from sora_relay.domain.errors import Deferred, StorageError
from sora_relay.observability import logger
from sora_relay.runtime.batch import EventType, process_partial_response
from tests.conftest import log_lines

PROMPT = "A secret prompt about a violet giraffe"


@pytest.fixture(autouse=True)
def _fresh_logger_keys() -> None:
    logger.clear_state()  # what inject_lambda_context(clear_state=True) does at each invocation


def _sqs(*keys: str) -> dict:
    return {"Records": [{"messageId": f"m-{key}", "body": json.dumps({"prompt": PROMPT})} for key in keys]}


def _throttled() -> StorageError:
    error = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}},
        "UpdateItem",
    )
    try:
        raise StorageError("Could not update the task") from error
    except StorageError as storage_error:
        return storage_error


def test_a_failed_record_is_logged_once_with_its_cause_and_task_but_not_its_body(service_logs):
    def handler(record):
        logger.append_keys(task_id="video_abc")
        raise _throttled()

    answer = process_partial_response(_sqs("a"), handler, event_type=EventType.SQS)

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-a"}]}
    [line] = log_lines(service_logs)
    assert line["level"] == "ERROR" and line["task_id"] == "video_abc" and line["record_id"] == "m-a"
    assert line["error_code"] == "storage_error"
    assert "ProvisionedThroughputExceededException" in line["cause"]
    assert "violet giraffe" not in service_logs.getvalue()


def test_an_unexpected_exception_is_logged_with_its_traceback(service_logs):
    def handler(record):
        raise KeyError("task_id")

    process_partial_response(_sqs("a"), handler, event_type=EventType.SQS)

    [line] = log_lines(service_logs)
    assert line["level"] == "ERROR" and "Traceback" in line["exception"]
    assert line["cause"] == "KeyError: 'task_id'"
    assert "violet giraffe" not in service_logs.getvalue()


def test_a_deferral_is_logged_as_such_not_as_a_crash_and_the_message_stays(service_logs):
    def handler(record):
        raise Deferred("next attempt in 300 s")

    answer = process_partial_response(_sqs("a"), handler, event_type=EventType.SQS)

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-a"}]}
    [line] = log_lines(service_logs)
    assert line["level"] == "INFO" and line["reason"] == "next attempt in 300 s"
    assert "exception" not in line and "Traceback" not in service_logs.getvalue()


def test_a_record_does_not_log_under_the_previous_record_s_task(service_logs):
    def handler(record):
        if record["messageId"] == "m-a":
            logger.append_keys(task_id="video_first")
            return
        raise ValueError("no task id in this body")

    process_partial_response(_sqs("a", "b"), handler, event_type=EventType.SQS)

    [line] = log_lines(service_logs)
    assert line["record_id"] == "m-b" and "task_id" not in line


def test_a_stream_batch_stops_at_its_first_failure():
    seen = []

    def handler(record):
        seen.append(record["id"])
        if record["id"] == "b":
            raise RuntimeError("boom")

    event = {"Records": [{"id": key, "dynamodb": {"SequenceNumber": f"1{n}"}} for n, key in enumerate("abc")]}

    answer = process_partial_response(
        event, handler, event_type=EventType.DynamoDBStreams, stop_at_first_failure=True
    )

    # Lambda goes on from the failed record, in order: "c" is handled then, once.
    assert seen == ["a", "b"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": "11"}]}
