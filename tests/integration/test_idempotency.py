"""Idempotency-Key on POST /v1/videos: one task per key and caller, 422 on reuse, 409 in flight."""

from __future__ import annotations

import threading

import boto3
import httpx
import pytest

from tests.integration.conftest import OTHER_OWNER, VALID


def _task_count(stack) -> int:
    return boto3.client("dynamodb", region_name="us-east-1").scan(TableName=stack.refs["TasksTable"])["Count"]


def test_same_key_same_body_gives_the_same_task_and_answer(api, internet, stack):
    first = api.submit(VALID, idempotency_key="key-1")
    again = api.submit(VALID, idempotency_key="key-1")
    assert first[0] == again[0] == 202
    assert first[2] == again[2]
    assert len(internet.provider_calls) == 1 and _task_count(stack) == 1


def test_same_key_different_body_is_422(api, stack):
    assert api.submit(VALID, idempotency_key="key-2")[0] == 202
    status, _, answer = api.submit({**VALID, "prompt": "something else"}, idempotency_key="key-2")
    assert status == 422 and answer["error"]["code"] == "idempotency_key_reused"
    assert answer["error"]["param"] == "Idempotency-Key"
    assert _task_count(stack) == 1


def test_keys_are_scoped_to_the_caller(api, stack):
    mine = api.submit(VALID, idempotency_key="shared")
    theirs = api.submit(VALID, idempotency_key="shared", owner=OTHER_OWNER)
    assert mine[0] == theirs[0] == 202 and mine[2]["id"] != theirs[2]["id"]
    assert _task_count(stack) == 2


def test_no_key_means_a_new_task_each_time(api, stack):
    assert api.submit(VALID)[2]["id"] != api.submit(VALID)[2]["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "naïve"])
def test_malformed_keys_are_400(api, key):
    status, _, answer = api.submit(VALID, idempotency_key=key)
    assert status == 400 and answer["error"]["param"] == "Idempotency-Key"


def test_an_invalid_request_is_not_stored_and_can_be_retried(api, internet, stack):
    assert api.submit({**VALID, "duration": 5}, idempotency_key="retry-me")[0] == 400
    status, _, video = api.submit(VALID, idempotency_key="retry-me")
    assert status == 202 and video["status"] == "in_progress"


@pytest.mark.parametrize(
    ("provider_status", "status", "code"),
    [(400, 400, "provider_rejected"), (401, 502, "provider_auth_error")],
)
def test_a_retry_after_a_provider_refusal_gets_the_same_refusal_and_makes_no_other_call(
    api, internet, stack, provider_status, status, code
):
    internet.create_failures.append(
        httpx.Response(provider_status, json={"error": {"code": "bad_request", "message": "no"}})
    )
    first = api.submit(VALID, idempotency_key="refused")
    assert first[0] == status and first[2]["error"]["code"] == code
    tripwire = httpx.Response(500)  # what a second call to the provider would take
    internet.create_failures.append(tripwire)

    again = api.submit(VALID, idempotency_key="refused")

    assert (again[0], again[2]) == (first[0], first[2])
    assert internet.create_failures == [tripwire] and internet.provider_calls == []
    assert _task_count(stack) == 1


def test_a_refusal_is_not_stored_for_another_caller_or_another_key(api, internet, stack):
    internet.create_failures.append(
        httpx.Response(400, json={"error": {"code": "bad_request", "message": "no"}})
    )
    assert api.submit(VALID, idempotency_key="refused")[0] == 400
    assert api.submit(VALID, idempotency_key="refused", owner=OTHER_OWNER)[0] == 202
    assert api.submit(VALID, idempotency_key="another")[0] == 202


def test_a_lost_idempotency_record_still_makes_no_second_task(api, internet, stack):
    # Given a submission whose idempotency record is gone (its write failed, or it expired early)
    status, _, first = api.submit(VALID, idempotency_key="order-1")
    assert status == 202
    table = stack.refs["IdempotencyTable"]
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    for item in dynamodb.scan(TableName=table)["Items"]:
        dynamodb.delete_item(TableName=table, Key={"id": item["id"]})

    # When the client retries with the same key, the table itself finds the first task
    status, _, again = api.submit(VALID, idempotency_key="order-1")
    assert status == 202 and again["id"] == first["id"]
    assert len(internet.provider_calls) == 1
    assert dynamodb.scan(TableName=stack.refs["TasksTable"])["Count"] == 1


def test_same_key_while_the_first_is_in_flight_is_409(api, internet, stack, monkeypatch):
    # Given a provider that holds the first request until told to answer
    release, entered = threading.Event(), threading.Event()
    original = internet._provider

    def slow_provider(request: httpx.Request) -> httpx.Response:
        entered.set()
        release.wait(10)
        return original(request)

    monkeypatch.setattr(internet, "_provider", slow_provider)
    results: list = []
    first = threading.Thread(target=lambda: results.append(api.submit(VALID, idempotency_key="busy")))
    first.start()
    assert entered.wait(10)

    # When the same key arrives meanwhile
    status, _, answer = api.submit(VALID, idempotency_key="busy")
    release.set()
    first.join(10)

    # Then it is a 409 and the first one still succeeds
    assert status == 409 and answer["error"]["code"] == "idempotency_key_in_use"
    assert results[0][0] == 202 and _task_count(stack) == 1
