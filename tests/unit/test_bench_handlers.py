"""The batch answers Powertools' processor gives the queue and stream handlers, the settings
model in place of pydantic-settings, and the benchmarks' record/replay of calls (bench/replay.py)."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import UnexpectedBatchTypeError
from pydantic import ValidationError

from bench.replay import _learn, _plain, _restore
from sora_relay.runtime.batch import EventType, process_partial_response
from sora_relay.settings import Settings


def _failing_on(bad: set[str]):
    seen = []

    def handler(record):
        seen.append(record["id"])
        if record["id"] in bad:
            raise RuntimeError("boom")

    return handler, seen


def test_sqs_failures_are_reported_by_message_id_and_every_record_is_tried():
    handler, seen = _failing_on({"b"})
    event = {"Records": [{"id": key, "messageId": f"m-{key}"} for key in "abc"]}

    answer = process_partial_response(event, handler, event_type=EventType.SQS)

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-b"}]}
    assert seen == ["a", "b", "c"]


def test_stream_failures_are_reported_by_sequence_number_even_when_all_fail():
    handler, seen = _failing_on({"a", "b"})
    event = {"Records": [{"id": key, "dynamodb": {"SequenceNumber": f"1{n}"}} for n, key in enumerate("ab")]}

    answer = process_partial_response(
        event, handler, event_type=EventType.DynamoDBStreams, stop_at_first_failure=True
    )

    assert answer == {"batchItemFailures": [{"itemIdentifier": "10"}]} and seen == ["a"]


@pytest.mark.parametrize("event", [{}, {"Records": []}, {"Records": "x"}])
def test_an_event_without_records_is_refused(event):
    with pytest.raises((ValueError, UnexpectedBatchTypeError)):
        process_partial_response(event, lambda record: None, event_type=EventType.SQS)


def test_settings_come_from_the_environment_case_insensitively_and_arguments_win(monkeypatch):
    monkeypatch.setenv("TASKS_TABLE_NAME", "tasks")
    monkeypatch.setenv("videos_bucket_name", "videos")
    monkeypatch.setenv("PRESIGNED_URL_TTL_SECONDS", "600")
    monkeypatch.setenv("ALLOW_LOOPBACK_URLS", "true")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://example.test/live/")

    settings = Settings(presigned_url_ttl_seconds=900)

    assert settings.tasks_table_name == "tasks" and settings.videos_bucket_name == "videos"
    assert settings.presigned_url_ttl_seconds == 900
    assert settings.allow_loopback_urls is True
    assert settings.public_base_url == "https://example.test/live"


def test_settings_from_the_environment_are_validated(monkeypatch):
    monkeypatch.setenv("TASKS_TABLE_NAME", "tasks")
    monkeypatch.setenv("VIDEOS_BUCKET_NAME", "videos")
    monkeypatch.setenv("PRESIGNED_URL_TTL_SECONDS", "10")
    with pytest.raises(ValidationError):
        Settings()


def test_a_replay_carries_values_the_backend_made_anew():
    recorded_answer = {"UploadId": "upload-recorded-0001", "Bucket": "videos"}
    fresh_answer = {"UploadId": "upload-fresh-000002", "Bucket": "videos"}
    mapping: dict[str, str] = {}

    _learn(recorded_answer, fresh_answer, mapping)
    params = _restore(_plain({"UploadId": "upload-recorded-0001", "Body": b"\x00ftyp"}), mapping)

    assert mapping == {"upload-recorded-0001": "upload-fresh-000002"}
    assert params == {"UploadId": "upload-fresh-000002", "Body": b"\x00ftyp"}
