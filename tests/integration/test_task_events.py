"""Terminal transitions on the table's stream become bus events (and webhook messages), once each."""

from __future__ import annotations

import json

import boto3

from devstack.event_sources.streams import matches_any
from sora_relay.adapters.dynamodb import TaskStore
from sora_relay.domain.errors import EventBusError
from sora_relay.domain.models import VideoObject
from sora_relay.runtime.container import current
from tests.conftest import LambdaContext
from tests.integration.conftest import install_container, submitted


def _webhook_messages(stack) -> list[dict]:
    messages = (
        boto3.client("sqs", region_name="us-east-1")
        .receive_message(QueueUrl=stack.refs["WebhookQueue"], MaxNumberOfMessages=10)
        .get("Messages", [])
    )
    return [json.loads(message["Body"]) for message in messages]


def test_a_completed_task_is_published_with_the_video_object(api, internet, downstream):
    video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    assert downstream.pump_stream() == {"batchItemFailures": []}

    [event] = downstream.bus_events()
    assert event["source"] == "sora-relay" and event["detail-type"] == "Video Generation Completed"
    _, _, current = api.get(video["id"])
    detail = event["detail"]
    assert detail["id"] == video["id"] and detail["status"] == "completed" and detail["progress"] == 100
    # The detail is the video object the API returns (without what only GET of one video adds:
    # timings, webhook), without the short-lived links, and with the event's id (the webhook's).
    event_id = f"evt_{video['id'].removeprefix('video_')}_completed"
    assert current["thumbnail_url"] and current["download_url"]
    plain = {name: value for name, value in current.items() if name in VideoObject.model_fields}
    links = dict.fromkeys(("download_url", "download_expires_at", "thumbnail_url", "thumbnail_expires_at"))
    assert detail == {**plain, **links, "event_id": event_id}


def test_a_failed_task_is_published_with_its_error(api, internet, downstream):
    _video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.failure_body(call, "api_error", "content policy"))
    downstream.pump_stream()
    [event] = downstream.bus_events()
    assert event["detail-type"] == "Video Generation Failed"
    assert event["detail"]["error"] == {"code": "api_error", "message": "content policy"}


def test_each_transition_is_published_once_and_open_states_not_at_all(api, internet, downstream, stack):
    # Given a submit (INSERT, then queued -> in_progress) and a finish (in_progress -> completed)
    _video, call = submitted(api, internet)
    assert downstream.pump_stream() == {"batchItemFailures": []}
    assert downstream.stream_batches == []  # the filter passed neither record
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    api.callback(call["body"]["callback_url"], internet.success_body(call))  # a duplicate callback

    # When the stream runs and the webhook is delivered (which writes to the task again)
    downstream.pump()
    downstream.pump()

    # Then one terminal record, one bus event and one webhook came of it
    assert [len(batch["Records"]) for batch in downstream.stream_batches] == [1]
    assert len(downstream.bus_events()) == 1
    assert len(internet.webhooks) == 1


def test_a_task_without_callback_url_is_published_but_queues_no_webhook(api, internet, downstream, stack):
    _status, _, _video = api.submit({"prompt": "no webhook please"})
    call = internet.last_call()
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    downstream.pump_stream()
    assert len(downstream.bus_events()) == 1
    assert _webhook_messages(stack) == []


def test_the_webhook_message_names_the_event(api, internet, downstream, stack):
    video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    downstream.pump_stream()
    assert _webhook_messages(stack) == [
        {
            "task_id": video["id"],
            "event_id": f"evt_{video['id'].removeprefix('video_')}_completed",
            "type": "video.completed",
        }
    ]


def test_a_bus_that_refuses_the_event_reports_the_record_for_a_retry(
    api, internet, downstream, stack, handlers
):
    _video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    boto3.client("events", region_name="us-east-1").delete_event_bus(Name=stack.refs["EventBus"])
    records = [record for record in downstream.reader.read()]
    terminal = [record for record in records if record["dynamodb"]["NewImage"]["status"]["S"] == "completed"]
    answer = handlers["task_events"].lambda_handler({"Records": terminal}, LambdaContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": terminal[0]["dynamodb"]["SequenceNumber"]}]}


def test_a_stream_batch_stops_at_its_first_failure_so_a_retry_publishes_each_event_once(
    api, internet, downstream, monkeypatch
):
    # Given two tasks finished, whose terminal records arrive in one batch
    for _ in range(2):
        _video, call = submitted(api, internet)
        api.callback(call["body"]["callback_url"], internet.success_body(call))
    records = [record for record in downstream.reader.read() if matches_any(downstream.filters, record)]
    assert len(records) == 2
    # ... and a bus that refuses the first event once
    real_bus = current().event_bus
    refusals = [EventBusError("The event bus refused 1 events (ThrottlingException)")]

    class FlakyBus:
        def publish(self, events):
            if refusals:
                raise refusals.pop()
            real_bus.publish(events)

    install_container(monkeypatch, current().replace(event_bus=FlakyBus()))
    task_events = downstream.handlers["task_events"]

    # When the batch runs: the first record fails
    answer = task_events.lambda_handler({"Records": records}, LambdaContext())

    # Then nothing after it ran, and Lambda's retry (from the failed record on) publishes each once
    assert answer == {"batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]}
    assert downstream.bus_events() == []
    assert task_events.lambda_handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    assert sorted(event["detail"]["id"] for event in downstream.bus_events()) == sorted(
        TaskStore.from_image(record["dynamodb"]["NewImage"]).task_id for record in records
    )


def test_a_replayed_record_publishes_an_event_with_the_same_id_as_its_webhook(api, internet, downstream):
    video, call = submitted(api, internet, prompt="the same event twice")
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    records = [record for record in downstream.reader.read() if matches_any(downstream.filters, record)]

    for _ in range(2):  # the record, and Lambda delivering it again
        answer = downstream.handlers["task_events"].lambda_handler({"Records": records}, LambdaContext())
        assert answer == {"batchItemFailures": []}

    first, again = downstream.bus_events()
    assert first["id"] != again["id"]  # EventBridge's own id is new each time; the detail's is not
    assert first["detail"]["event_id"] == again["detail"]["event_id"]
    assert first["detail"]["event_id"] == f"evt_{video['id'].removeprefix('video_')}_completed"
