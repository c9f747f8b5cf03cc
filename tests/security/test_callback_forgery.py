"""Attack 1: forged callbacks on the unauthenticated route leave the task unchanged and reveal
nothing beyond what a valid token already proves."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from sora_relay.domain.tokens import callback_token
from sora_relay.runtime.container import current
from tests.integration.conftest import submitted


def _item(stack, task_id: str) -> dict:
    return boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=stack.refs["TasksTable"], Key={"task_id": {"S": task_id}}, ConsistentRead=True
    )["Item"]


def _with_task(url: str, task_id: str) -> str:
    parts = urlsplit(url)
    path = parts.path.rsplit("/", 1)[0] + "/" + task_id
    return parts._replace(path=path).geturl()


@pytest.mark.parametrize("token", [None, "", "0" * 64, "not-a-token"])
def test_a_missing_or_made_up_token_changes_nothing(api, internet, stack, token):
    video, call = submitted(api, internet)
    before = _item(stack, video["id"])
    status, _, answer = api.callback(call["body"]["callback_url"], internet.success_body(call), token=token)
    assert status == 401 and answer["error"]["code"] == "invalid_callback_token"
    assert _item(stack, video["id"]) == before and internet.fetched_urls == []


def test_a_token_for_another_task_changes_nothing_and_answers_as_for_no_task(api, internet, stack):
    # Given two tasks, and the attacker holding the first one's callback URL (its token)
    _first, first_call = submitted(api, internet)
    second, second_call = submitted(api, internet)
    before = _item(stack, second["id"])
    token = parse_qs(urlsplit(first_call["body"]["callback_url"]).query)["token"][0]

    # When that token is used on the second task, and on a task that does not exist
    on_real = api.callback(
        _with_task(first_call["body"]["callback_url"], second["id"]), internet.success_body(second_call)
    )
    on_missing = api.callback(
        _with_task(first_call["body"]["callback_url"], "video_" + "0" * 32),
        internet.success_body(second_call),
    )

    # Then both are the same 401: the answer does not tell an existing task from a missing one
    assert on_real[0] == on_missing[0] == 401
    assert on_real[2] == on_missing[2]
    assert _item(stack, second["id"]) == before
    assert token  # the attacker's token was a real one, for another task


def test_a_replayed_callback_after_the_task_finished_changes_nothing(api, internet, stack, downstream):
    video, call = submitted(api, internet)
    body = internet.success_body(call)
    api.callback(call["body"]["callback_url"], body)
    downstream.pump()  # the client is told; the delivery is recorded on the task
    done = _item(stack, video["id"])
    hooks = len(internet.webhooks)

    # Replays: the same success, then a forged failure with the genuine token
    for replay in (body, internet.failure_body(call, "api_error", "forged")):
        status, _, answer = api.callback(call["body"]["callback_url"], replay)
        assert status == 200 and answer == {"received": True, "changed": False, "status": "completed"}
    downstream.pump()
    assert _item(stack, video["id"]) == done
    assert len(internet.fetched_urls) == 1 and len(internet.webhooks) == hooks


def test_a_body_naming_another_provider_task_changes_nothing(api, internet, stack):
    video, call = submitted(api, internet)
    _, other_call = submitted(api, internet)
    before = _item(stack, video["id"])
    # The genuine token of `video`, with the result of another provider task (its video URL)
    status, _, answer = api.callback(call["body"]["callback_url"], internet.success_body(other_call))
    assert status == 409 and answer["error"]["code"] == "callback_task_mismatch"
    assert _item(stack, video["id"]) == before and internet.fetched_urls == []


def test_a_valid_token_reveals_only_the_task_it_was_issued_for(api, internet, stack):
    # A token is an HMAC of the task id under a secret key: valid for exactly that id
    missing = "video_" + "f" * 32
    token = callback_token(missing, current().callback_key())
    _, call = submitted(api, internet)
    url = _with_task(call["body"]["callback_url"], missing).split("?")[0] + f"?token={token}"
    status, _, answer = api.callback(url, internet.success_body(call))
    assert status == 404 and answer["error"]["code"] == "task_not_found"
    assert json.dumps(answer).count(missing) == 0  # the answer does not echo ids back
