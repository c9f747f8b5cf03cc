"""POST /v1/videos: validation, provider error mapping, retries."""

from __future__ import annotations

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from sora_relay.domain.models import VideoObject
from sora_relay.runtime.container import current
from tests.conftest import failure_lines
from tests.integration.conftest import VALID, install_container, reload_settings, submitted

pytestmark = pytest.mark.usefixtures("internet")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "sora-2"}, "prompt", "missing_parameter"),
        ({"prompt": ""}, "prompt", "invalid_value"),
        ({"prompt": "   "}, "prompt", "invalid_value"),
        ({"prompt": "x" * 4001}, "prompt", "invalid_value"),
        ({"prompt": "ok", "model": "sora-3"}, "model", "model_not_found"),
        ({"prompt": "ok", "model": "sora-2"}, "model", "model_retired"),
        ({"prompt": "ok", "duration": 5}, "duration", "invalid_value"),
        ({"prompt": "ok", "duration": "ten"}, "duration", "invalid_value"),
        ({"prompt": "ok", "seconds": "6"}, "seconds", "invalid_value"),
        ({"prompt": "ok", "seconds": "4", "duration": 8}, "seconds", "invalid_value"),
        ({"prompt": "ok", "size": "640x480"}, "size", "invalid_value"),
        ({"prompt": "ok", "size": "1792x1024"}, "size", "invalid_value"),  # not offered by the default
        ({"prompt": "ok", "callback_url": "http://client.example.com/h"}, "callback_url", "unsafe_url"),
        ({"prompt": "ok", "callback_url": "https://127.0.0.1/h"}, "callback_url", "unsafe_url"),
        ({"prompt": "ok", "callback_url": "https://10.0.0.8/h"}, "callback_url", "unsafe_url"),
        ({"prompt": "ok", "callback_url": "https://169.254.169.254/latest"}, "callback_url", "unsafe_url"),
        ({"prompt": "ok", "callback_url": "https://[::ffff:10.0.0.1]/h"}, "callback_url", "unsafe_url"),
        ({"prompt": "ok", "callback_url": "https://localhost/h"}, "callback_url", "unsafe_url"),
        ({"prompt": "ok", "callback_url": "not a url"}, "callback_url", "unsafe_url"),
        ({"prompt": "ok", "image_urls": ["https://192.168.1.1/a.png"]}, "image_urls", "unsafe_url"),
        ({"prompt": "ok", "image_urls": "https://cdn.example.com/a.png"}, "image_urls", "invalid_value"),
        (
            {"prompt": "ok", "image_urls": [f"https://cdn.example.com/{i}.png" for i in range(5)]},
            "image_urls",
            "invalid_value",
        ),
        ({"prompt": "ok", "input_reference": "file:///etc/passwd"}, "input_reference", "unsafe_url"),
        ({"prompt": "ok", "colour": "blue"}, "colour", "unknown_parameter"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, internet, body, param, code):
    status, headers, answer = api.submit(body)
    assert status == 400, answer
    assert headers["content-type"] == "application/json"
    assert answer["error"]["param"] == param
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]
    assert internet.provider_calls == []  # nothing was sent on


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "", '"a string"'])
def test_a_body_that_is_not_a_json_object_is_a_400(api, raw):
    status, _, answer = api.submit(None, raw=raw)
    assert status == 400
    assert answer["error"]["code"] == "invalid_json"


def test_an_oversized_body_is_a_413(api):
    status, _, answer = api.submit(None, raw='{"prompt": "' + "x" * 70_000 + '"}')
    assert status == 413 and answer["error"]["code"] == "request_too_large"


def test_defaults_and_openai_names_are_accepted(api, internet):
    video, call = submitted(
        api, internet, seconds="8", input_reference="https://cdn.example.com/ref.png", callback_url=None
    )
    assert (video["model"], video["served_model"], video["seconds"], video["size"]) == (
        "veo-3.1-fast",
        "veo-3.1-fast",
        "8",
        "1280x720",
    )
    assert video["cost_usd"] == 1.2  # 8 s at the catalogue's $0.15/s
    assert call["service"] == "veo"
    assert call["body"]["image_urls"] == ["https://cdn.example.com/ref.png"]
    assert call["body"]["callback_url"] and call["body"]["async"] is True


def test_a_request_without_model_or_seconds_gets_the_default_models_defaults(api, internet):
    video, call = submitted(api, internet)
    assert (video["model"], video["seconds"]) == ("veo-3.1-fast", "8")
    assert call["body"]["model"] == "veo31-fast"


def test_a_retired_model_is_refused_naming_live_ones_unless_the_operator_aliases_it(
    api, internet, monkeypatch
):
    status, _, answer = api.submit({**VALID, "model": "sora-2"})
    assert status == 400 and answer["error"]["param"] == "model"
    assert "veo-3.1-fast" in answer["error"]["message"] and internet.provider_calls == []
    monkeypatch.setenv("MODEL_ALIASES", "sora-2=veo-3.1-fast")
    _reload_settings(monkeypatch)
    video, call = submitted(api, internet, model="sora-2", seconds="8")
    assert (video["model"], video["served_model"]) == ("sora-2", "veo-3.1-fast")
    assert call["body"]["model"] == "veo31-fast"


def test_a_model_whose_provider_has_no_key_here_is_refused_before_anything_is_stored(api, internet, stack):
    status, _, answer = api.submit({**VALID, "model": "fal-veo-3.1", "seconds": "8"})
    assert status == 400
    assert (answer["error"]["param"], answer["error"]["code"]) == ("model", "model_unavailable")
    assert "veo-3.1-fast" in answer["error"]["message"]  # what is available instead
    assert internet.provider_calls == [] and _only_task_status(stack) is None


def test_only_the_first_image_is_sent(api, internet):
    _, call = submitted(
        api, internet, image_urls=["https://cdn.example.com/a.png", "https://cdn.example.com/b.png"]
    )
    assert call["body"]["image_urls"] == ["https://cdn.example.com/a.png"]


def test_provider_400_is_our_400_with_its_message_and_the_task_fails(api, internet, stack):
    internet.create_failures.append(
        httpx.Response(400, json={"error": {"code": "bad_request", "message": "prompt violates policy"}})
    )
    status, _, answer = api.submit(VALID)
    assert status == 400
    assert answer["error"] == {
        "code": "provider_rejected",
        "message": "prompt violates policy",
        "param": None,
        "type": "invalid_request_error",
    }
    assert _only_task_status(stack) == ("failed", "provider_rejected")


@pytest.mark.parametrize(
    ("http_status", "code"), [(401, "invalid_token"), (403, "used_up"), (400, "token_mismatched")]
)
def test_provider_auth_or_quota_problems_answer_the_failed_task_blaming_our_key(
    api, internet, stack, http_status, code
):
    internet.create_failures.append(
        httpx.Response(http_status, json={"error": {"code": code, "message": "no"}})
    )
    status, _, video = api.submit(VALID)
    # The create made a task: 202 with it failed (a 502 would be retried by OpenAI's SDK into a second)
    assert status == 202, video
    assert video["status"] == "failed" and video["error"]["code"] == "provider_auth_error"
    assert "not your request" in video["error"]["message"]
    assert _only_task_status(stack) == ("failed", "provider_auth_error")
    assert internet.create_failures == [] and internet.provider_calls == []  # one create, not resent
    assert _get(api, video["id"]) == video  # exactly what a later GET shows


@pytest.fixture
def no_dispatch_queue(stack, monkeypatch):
    """The fallback without a dispatch queue: retry in line, then fail the task."""
    monkeypatch.setenv("DISPATCH_QUEUE_URL", "")
    _reload_settings(monkeypatch)


@pytest.mark.usefixtures("no_dispatch_queue")
def test_a_throttled_create_is_sent_again_then_accepted(api, internet, monkeypatch):
    monkeypatch.setenv("PROVIDER_RETRY_BASE_DELAY_SECONDS", "0")
    _reload_settings(monkeypatch)
    internet.create_failures += [
        httpx.Response(429, json={"error": {"code": "too_many_requests", "message": "slow"}}),
        httpx.Response(429, json={"error": {"code": "too_many_requests", "message": "slow"}}),
    ]
    status, _, video = api.submit(VALID)
    assert status == 202 and video["status"] == "in_progress"
    assert len(internet.provider_calls) == 1 and internet.create_failures == []


@pytest.mark.usefixtures("no_dispatch_queue")
def test_provider_still_throttling_after_retries_answers_the_task_failed(api, internet, stack, monkeypatch):
    monkeypatch.setenv("PROVIDER_RETRY_BASE_DELAY_SECONDS", "0")
    _reload_settings(monkeypatch)
    internet.create_failures += [
        httpx.Response(429, json={"error": {"code": "too_many_requests", "message": "slow"}})
        for _ in range(3)
    ]
    status, _, video = api.submit(VALID)
    assert status == 202, video
    assert video["status"] == "failed" and video["error"]["code"] == "provider_unavailable"
    assert internet.create_failures == [] and internet.provider_calls == []  # all three attempts were made
    assert _only_task_status(stack) == ("failed", "provider_unavailable")
    assert _get(api, video["id"]) == video


@pytest.mark.usefixtures("no_dispatch_queue")
def test_our_own_error_after_storing_without_a_dispatch_queue_answers_the_task_failed(
    api, internet, stack, monkeypatch
):
    # Given a provider key that cannot be read, and no dispatch queue to retry the start from
    from sora_relay.adapters import secrets

    monkeypatch.setenv("ACEDATA_API_KEY_SECRET_ID", "gone")
    _reload_settings(monkeypatch)
    secrets.clear_cache()
    status, _, video = api.submit(VALID)
    assert status == 202, video
    assert video["status"] == "failed" and video["error"]["code"] == "dispatch_failed"
    assert _only_task_status(stack) == ("failed", "dispatch_failed")
    assert internet.provider_calls == []


@pytest.mark.parametrize("dispatch_queue", [True, False], ids=["with-dispatch-queue", "without"])
def test_a_create_that_met_a_5xx_or_a_timeout_is_never_sent_again(
    api, internet, stack, monkeypatch, dispatch_queue
):
    # The provider may have started the job: a second create could bill twice (providers README, rule 8).
    if not dispatch_queue:
        monkeypatch.setenv("DISPATCH_QUEUE_URL", "")
    monkeypatch.setenv("PROVIDER_RETRY_BASE_DELAY_SECONDS", "0")
    _reload_settings(monkeypatch)
    attempts = []

    def answers(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        if len(attempts) == 1:
            return httpx.Response(500, json={"error": {"code": "api_error", "message": "oops"}})
        raise httpx.ReadTimeout("slow", request=request)

    install_container(
        monkeypatch, current().replace(provider_http=httpx.Client(transport=httpx.MockTransport(answers)))
    )
    for expected_attempts in (1, 2):
        status, _, video = api.submit({**VALID, "prompt": f"try {expected_attempts}"})
        assert status == 202, video
        assert video["status"] == "failed" and video["error"]["code"] == "provider_outcome_unknown"
        assert "not sent again" in video["error"]["message"]
        assert len(attempts) == expected_attempts
        assert _get(api, video["id"]) == video
    assert sqs_messages(stack, "DispatchQueue") == []
    statuses = [(item["status"]["S"], item["error_code"]["S"]) for item in _task_items(stack)]
    assert statuses == [("failed", "provider_outcome_unknown")] * 2  # one task per create, no more


@pytest.mark.usefixtures("no_dispatch_queue")
def test_a_create_whose_connection_failed_is_sent_again(api, internet, monkeypatch):
    monkeypatch.setenv("PROVIDER_RETRY_BASE_DELAY_SECONDS", "0")
    _reload_settings(monkeypatch)
    attempts = []

    def refused_then_ok(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        if len(attempts) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"task_id": "4b0c7d2e-0000-4000-8000-000000000001"})

    fake_provider = httpx.Client(transport=httpx.MockTransport(refused_then_ok))
    install_container(monkeypatch, current().replace(provider_http=fake_provider))
    status, _, _video = api.submit(VALID)
    assert status == 202 and len(attempts) == 2


def test_a_missing_api_key_identity_is_refused(api):
    status, _, answer = api.submit(VALID, owner=None)
    assert status == 401 and answer["error"]["code"] == "missing_api_key"


PROMPT = "A prompt that must never reach the logs: a violet giraffe"


def test_a_storage_failure_is_a_500_logged_once_with_what_aws_answered(api, monkeypatch, service_logs):
    def throttled(**_: object) -> None:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}},
            "PutItem",
        )

    monkeypatch.setattr(current().task_store._client, "put_item", throttled)

    status, _, answer = api.submit({**VALID, "prompt": PROMPT})

    assert status == 500 and answer["error"]["code"] == "storage_error"
    [line] = failure_lines(service_logs)
    assert line["error_code"] == "storage_error"
    assert "ProvisionedThroughputExceededException" in line["cause"] and "Rate exceeded" in line["cause"]
    assert "violet giraffe" not in service_logs.getvalue()


def test_an_unexpected_error_is_a_500_logged_once_with_its_traceback(api, monkeypatch, service_logs):
    def broken(**_: object) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(current().task_store._client, "put_item", broken)

    status, _, answer = api.submit({**VALID, "prompt": PROMPT})

    assert status == 500 and answer["error"]["code"] == "internal_error"
    [line] = failure_lines(service_logs)
    assert "Traceback" in line["exception"] and line["cause"] == "RuntimeError: a bug of ours"
    assert "violet giraffe" not in service_logs.getvalue()


def _reload_settings(monkeypatch) -> None:
    reload_settings(monkeypatch)


def _task_items(stack) -> list[dict]:
    return boto3.client("dynamodb", region_name="us-east-1").scan(TableName=stack.refs["TasksTable"])["Items"]


VIDEO_FIELDS = frozenset(VideoObject.model_fields)


def _get(api, video_id: str) -> dict:
    """The video as GET /v1/videos/{id} shows it, less what only that route adds (timings ...)."""
    status, _, video = api.get(video_id)
    assert status == 200, video
    return {key: value for key, value in video.items() if key in VIDEO_FIELDS}


def _only_task_status(stack) -> tuple[str, str] | None:
    """The one task's status and error code (None: no task was stored)."""
    items = _task_items(stack)
    if not items:
        return None
    assert len(items) == 1
    return items[0]["status"]["S"], items[0]["error_code"]["S"]


def sqs_messages(stack, logical_id: str) -> list[dict]:
    client = boto3.client("sqs", region_name="us-east-1")
    return client.receive_message(QueueUrl=stack.refs[logical_id], MaxNumberOfMessages=10).get("Messages", [])


def test_a_custom_domain_with_a_base_path_routes(api):
    status, _, video = api.submit(VALID, base_path="/relay")
    assert status == 202 and video["id"].startswith("video_")
