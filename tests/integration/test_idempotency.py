"""Idempotency-Key on POST /v1/videos: one task per key and caller, 422 on reuse, 409 in flight."""

from __future__ import annotations

import json
import threading

import boto3
import httpx
import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from botocore.exceptions import ClientError

from sora_relay.runtime.container import current
from tests.integration.conftest import OTHER_OWNER, VALID, install_container


def _task_count(stack) -> int:
    return boto3.client("dynamodb", region_name="us-east-1").scan(TableName=stack.refs["TasksTable"])["Count"]


def _task_item(stack) -> dict:
    (item,) = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=stack.refs["TasksTable"])[
        "Items"
    ]
    return item


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
    [
        (400, 400, "provider_rejected"),
        (401, 202, "provider_auth_error"),
        (500, 202, "provider_outcome_unknown"),
    ],
)
def test_a_retry_after_a_provider_refusal_gets_the_same_answer_and_makes_no_other_call(
    api, internet, stack, provider_status, status, code
):
    # A 400 stays the refusal; a refusal the SDK would retry (5xx) is the 202 failed video
    internet.create_failures.append(
        httpx.Response(provider_status, json={"error": {"code": "bad_request", "message": "no"}})
    )
    first = api.submit(VALID, idempotency_key="refused")
    assert first[0] == status, first
    error = first[2]["error"]
    assert error["code"] == code
    if status == 202:
        assert first[2]["status"] == "failed" and set(error) == {"code", "message"}
    tripwire = httpx.Response(500)  # what a second call to the provider would take
    internet.create_failures.append(tripwire)

    again = api.submit(VALID, idempotency_key="refused")

    assert (again[0], again[2]) == (first[0], first[2])
    assert internet.create_failures == [tripwire] and internet.provider_calls == []
    assert _task_count(stack) == 1
    assert _task_item(stack)["status"]["S"] == "failed" and _task_item(stack)["error_code"]["S"] == code


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


def test_a_record_that_cannot_be_stored_still_answers_the_task_it_made(api, internet, stack, monkeypatch):
    # Given an idempotency store (the container's collaborator, swapped for this test alone) whose
    # table takes the in-progress record but not the finished one
    client = boto3.client("dynamodb", region_name="us-east-1")

    def refuse_update(**kwargs):
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "UpdateItem")

    monkeypatch.setattr(client, "update_item", refuse_update)
    store = DynamoDBPersistenceLayer(table_name=stack.refs["IdempotencyTable"], boto3_client=client)
    install_container(monkeypatch, current().replace(idempotency_store=store))
    internet.create_failures.append(
        httpx.Response(500, json={"error": {"code": "api_error", "message": "x"}})
    )

    # When a client submits: the task is made, and the provider fails while taking it
    status, _, video = api.submit(VALID, idempotency_key="unrecorded")

    # Then the answer is that task (no 5xx for the SDK to retry), failed with its reason
    assert status == 202, video
    assert video["status"] == "failed" and video["error"]["code"] == "provider_outcome_unknown"
    assert _task_count(stack) == 1 and internet.create_failures == [] and internet.provider_calls == []


def test_a_stored_5xx_refusal_from_before_answers_its_failed_task(api, internet, stack):
    # Given a key whose record holds a 502 refusal, as stored before such refusals answered 202
    internet.create_failures.append(
        httpx.Response(500, json={"error": {"code": "api_error", "message": "x"}})
    )
    status, _, first = api.submit(VALID, idempotency_key="old-record")
    assert status == 202 and first["status"] == "failed"
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    table = stack.refs["IdempotencyTable"]
    (record,) = dynamodb.scan(TableName=table)["Items"]
    refusal = {"status": 502, "code": "provider_outcome_unknown", "message": "old", "param": None}
    dynamodb.update_item(
        TableName=table,
        Key={"id": record["id"]},
        UpdateExpression="SET #data = :data",
        ExpressionAttributeNames={"#data": "data"},
        ExpressionAttributeValues={":data": {"S": json.dumps({"refused": refusal})}},
    )

    # When the client retries with that key
    status, _, again = api.submit(VALID, idempotency_key="old-record")

    # Then it hears of the failed task, not a 502 its SDK would retry
    assert status == 202, again
    assert again["id"] == first["id"] and again["error"] == first["error"]
    assert _task_count(stack) == 1 and internet.provider_calls == []
