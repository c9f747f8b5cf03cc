"""Every events/*.json (what `sam local invoke -e` takes) runs through its handler as committed."""

from __future__ import annotations

import json

import boto3
import pytest

from sora_relay.domain.task import Status, Task, TaskChange
from sora_relay.domain.tokens import callback_token
from sora_relay.runtime.container import current
from tests.conftest import EVENTS, load_event

SAMPLE_ID = "video_0123456789abcdef0123456789abcdef"
SAMPLE_OWNER = "ten_SampleTenantId000001"  # the sample events' requestContext.authorizer.tenant_id
SAMPLE_PROVIDER_TASK = "6f1d2b8e-3c3a-4f4e-9a51-2b1d0c9e7a10"


def create_sample_task(callback_url: str | None) -> Task:
    """The task the sample events name, still `queued`."""
    task = Task.new(
        owner=SAMPLE_OWNER,
        model="veo-3.1-fast",
        prompt="A paper boat",
        seconds=8,
        size="1280x720",
        image_url=None,
        callback_url=callback_url,
        provider="acedata",
        retention_days=30,
    ).model_copy(update={"task_id": SAMPLE_ID})
    current().task_store.create(task)
    return task


def provider_reports(internet, event_name: str) -> None:
    """What the provider's lookup says of the sample task from now on: the body of that callback
    event (AceData signs nothing, so the relay trusts only the lookup that follows a push)."""
    internet.task_results[SAMPLE_PROVIDER_TASK] = json.loads(load_event(event_name)["body"])


@pytest.fixture
def sample_task(stack, internet) -> Task:
    """The sample task, in progress at the provider, which reports it finished."""
    create_sample_task("https://client.example.com/hooks/sora")
    provider_reports(internet, "callback-success")
    return current().task_store.transition(
        SAMPLE_ID, Status.IN_PROGRESS, TaskChange(provider_task_id=SAMPLE_PROVIDER_TASK)
    )


def with_token(event: dict) -> dict:
    token = callback_token(SAMPLE_ID, current().callback_key())
    event["queryStringParameters"] = {"token": token}
    event["multiValueQueryStringParameters"] = {"token": [token]}
    return event


def test_every_event_file_is_covered_here():
    # The MCP function's events run in tests/integration/test_mcp_handler.py, the authorizer's in
    # tests/integration/test_authorizer.py, the playground's in tests/integration/test_playground_page.py.
    names = (
        {path.stem for path in EVENTS.glob("*.json")}
        - {"env", "authorizer", "playground"}
        - {
            "mcp-initialize",
            "mcp-tools-list",
            "mcp-tools-call",
            "mcp-get",
        }
    )
    assert names == {
        "submit",
        "submit-invalid",
        "callback-success",
        "callback-failure",
        "callback-bad-token",
        "get",
        "list",
        "content",
        "dispatch",
        "archive",
        "task-completed-stream",
        "webhook",
        "intake",
        "intake-invalid",
        "reconcile",
    }


def test_submit_event(api, internet):
    status, _, video = api.call("submit", load_event("submit"))
    assert (
        status == 202
        and video["seconds"] == "8"
        and video["callback_url"] == "https://client.example.com/hooks/sora"
    )


def test_submit_invalid_event(api):
    status, _, answer = api.call("submit", load_event("submit-invalid"))
    assert status == 400 and answer["error"]["param"] == "model"


def test_callback_events(api, internet, sample_task, downstream):
    assert api.call("callback", load_event("callback-bad-token"))[0] == 401
    assert (
        api.call("callback", load_event("callback-success"))[0] == 401
    )  # its placeholder token is not valid
    status, _, answer = api.call("callback", with_token(load_event("callback-success")))
    assert status == 200 and answer["status"] == "in_progress"  # recorded; the archive step copies it
    api.archive()
    assert current().task_store.get(SAMPLE_ID).status is Status.COMPLETED
    downstream.pump()
    assert internet.fetched_urls and json.loads(internet.webhooks[0].content)["type"] == "video.completed"
    status, _, answer = api.call("callback", with_token(load_event("callback-failure")))
    assert status == 200 and answer == {"received": True, "changed": False, "status": "completed"}


def test_callback_failure_event(api, internet, sample_task):
    provider_reports(internet, "callback-failure")
    status, _, answer = api.call("callback", with_token(load_event("callback-failure")))
    assert status == 200 and answer["status"] == "failed"


def test_read_events(api, internet, sample_task):
    status, _, video = api.call("status", load_event("get"))
    assert status == 200 and video["id"] == SAMPLE_ID
    status, _, listing = api.call("status", load_event("list"))
    assert status == 200 and [v["id"] for v in listing["data"]] == [SAMPLE_ID]
    status, _, answer = api.call("status", load_event("content"))
    assert status == 404 and answer["error"]["code"] == "video_not_ready"
    api.call("callback", with_token(load_event("callback-success")))
    api.archive()
    status, headers, _ = api.call("status", load_event("content"))
    assert status == 302 and SAMPLE_ID in headers["location"]


def test_dispatch_event(api, internet, stack, handlers):
    from tests.conftest import LambdaContext

    # Given the sample task still queued (the provider was overloaded at submit)
    create_sample_task(callback_url=None)

    # When the dispatch function gets the sample event (its receipt handle is not a live one)
    answer = handlers["dispatch"].lambda_handler(load_event("dispatch"), LambdaContext())

    # Then the task is started at the provider
    assert answer == {"batchItemFailures": []}
    started = current().task_store.get(SAMPLE_ID)
    assert started is not None and started.status is Status.IN_PROGRESS
    assert internet.last_call()["body"]["callback_url"].startswith(
        "https://abc123.execute-api.us-east-1.amazonaws.com/live/v1/callbacks/acedata/" + SAMPLE_ID
    )


def test_archive_event(api, internet, stack, handlers, sample_task):
    from tests.conftest import LambdaContext

    # Given the sample task's result recorded by its callback (the copy not made yet)
    api.call("callback", with_token(load_event("callback-success")))
    assert internet.fetched_urls == []

    # When the archive function gets the sample event
    answer = handlers["archive"].lambda_handler(load_event("archive"), LambdaContext())

    # Then the video is copied and the task completed
    assert answer == {"batchItemFailures": []}
    assert internet.fetched_urls and current().task_store.get(SAMPLE_ID).status is Status.COMPLETED


def test_task_completed_stream_event(api, internet, stack, handlers, downstream):
    from tests.conftest import LambdaContext

    answer = handlers["task_events"].lambda_handler(load_event("task-completed-stream"), LambdaContext())
    assert answer == {"batchItemFailures": []}
    [event] = downstream.bus_events()
    assert event["detail-type"] == "Video Generation Completed" and event["detail"]["id"] == SAMPLE_ID
    queued = json.loads(
        boto3.client("sqs", region_name="us-east-1").receive_message(QueueUrl=stack.refs["WebhookQueue"])[
            "Messages"
        ][0]["Body"]
    )
    assert queued == json.loads(load_event("webhook")["Records"][0]["body"])


def test_webhook_event(api, internet, sample_task, handlers, stack):
    from tests.conftest import LambdaContext

    api.call("callback", with_token(load_event("callback-success")))
    api.archive()
    answer = handlers["webhook"].lambda_handler(load_event("webhook"), LambdaContext())
    assert answer == {"batchItemFailures": []}
    [hook] = internet.webhooks
    assert hook.headers["webhook-id"] == "evt_0123456789abcdef0123456789abcdef_completed"
    assert current().task_store.get(SAMPLE_ID).webhook.state == "delivered"


def test_intake_events(api, internet, stack, handlers, monkeypatch, downstream):
    from tests.conftest import LambdaContext
    from tests.integration.conftest import reload_settings

    monkeypatch.setenv("PUBLIC_BASE_URL", "https://abc123.execute-api.us-east-1.amazonaws.com/live")
    reload_settings(monkeypatch)
    assert handlers["intake"].lambda_handler(load_event("intake"), LambdaContext()) == {
        "batchItemFailures": []
    }
    assert handlers["intake"].lambda_handler(load_event("intake-invalid"), LambdaContext()) == {
        "batchItemFailures": []
    }
    events = {event["detail-type"]: event["detail"] for event in downstream.bus_events()}
    assert events["Video Submission Accepted"]["idempotency_key"] == "order-2026-11-24-0001"
    assert events["Video Submission Accepted"]["video"]["seconds"] == "8"
    assert events["Video Submission Rejected"]["error"]["param"] == "prompt"


def test_reconcile_event(api, internet, sample_task, handlers):
    from tests.conftest import LambdaContext

    # The sample task is fresh, so the scheduled run finds nothing to do yet.
    assert handlers["reconcile"].lambda_handler(load_event("reconcile"), LambdaContext()) == {}
