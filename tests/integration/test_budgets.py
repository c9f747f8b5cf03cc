"""Monthly budgets against moto: the conditional usage counter under concurrent submits, the
reservation given back when the provider refuses or never takes a task, idempotent retries that
reserve once, the tenant's model list, GET /v1/usage and the turn of the month.

Requests carry the Lambda authorizer's context (requestContext.authorizer) as API Gateway hands it
to the functions: tenant_id, key_id, budget_microusd ("" = none) and models ("" = all).
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest

from sora_relay.domain import catalogue
from sora_relay.domain import task as task_module
from sora_relay.domain.create_request import parse_create_request
from sora_relay.domain.errors import SoraRelayError
from sora_relay.domain.task import now_millis
from sora_relay.runtime.container import current
from sora_relay.usecases.dispatch import dispatch_task
from sora_relay.usecases.submit import submit_video
from tests.conftest import LambdaContext, load_event, load_handler
from tests.integration import tenancy
from tests.integration.conftest import VALID, Api, FakeInternet
from tests.integration.tenancy import authorized

TENANT = "ten_" + "Budget0000000000000A"
OTHER = "ten_" + "Budget0000000000000B"
MODEL = catalogue.default().require("veo-3.1-fast")
COST = MODEL.price_microusd(MODEL.default_seconds)  # what a VALID request costs


def submit_event(body: dict[str, Any], *, tenant: str = TENANT, **fields: Any) -> dict:
    return tenancy.submit_event(body, tenant=tenant, **fields)


def usage_event(*, tenant: str = TENANT, budget: int | None, month: str | None = None) -> dict:
    event = load_event("list")
    event["path"] = event["requestContext"]["path"] = "/v1/usage"
    event["resource"] = event["requestContext"]["resourcePath"] = "/v1/usage"
    query = {"month": month} if month is not None else None
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    return authorized(event, tenant, budget=budget)


def usage_item(stack, tenant: str, month: str) -> dict[str, int] | None:
    item = (
        boto3.client("dynamodb", region_name="us-east-1")
        .get_item(TableName=stack.refs["TenantsTable"], Key={"pk": {"S": f"usage#{tenant}#{month}"}})
        .get("Item")
    )
    return {key: int(item[key]["N"]) for key in ("spent_microusd", "count")} if item else None


def this_month() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m")


def at(monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    """Tasks are made at `moment` (UTC, ISO): the month a reservation counts in is the task's."""
    epoch_ms = int(datetime.datetime.fromisoformat(moment).replace(tzinfo=datetime.UTC).timestamp() * 1000)
    monkeypatch.setattr(task_module, "now_millis", lambda: epoch_ms)


def is_insufficient_quota(status: int, headers: dict[str, str], body: Any) -> bool:
    error = body["error"]
    return (
        status == 429
        and set(error) == {"message", "type", "param", "code"}
        and (error["type"], error["code"], error["param"])
        == ("insufficient_quota", "insufficient_quota", None)
        and error["message"].startswith("You exceeded your current quota")
        and headers.get("x-should-retry") == "false"
    )


@pytest.fixture
def atomic_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each write to an item atomically, its condition included; moto's in-process
    backend reads, checks and writes without a lock, so concurrent threads can lose updates there
    (two ADDs to a new item both create it). One lock around moto's writes restores DynamoDB's
    guarantee; the service's own code runs unchanged and concurrently up to that call."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()
    for name in ("update_item", "put_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


@pytest.fixture
def metrics_off(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Powertools' metric set is one per process, shared by every copy of a handler: threads that
    flush it at once race (one serializes what another just cleared: SchemaValidationError "Must
    contain at least one metric"), which separate Lambda environments never do. Metrics are not
    under test here, so none are published, and what the copies added is dropped afterwards."""
    from sora_relay.observability import metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    yield
    metrics.clear_metrics()


def test_concurrent_submits_never_take_a_tenant_past_its_budget(
    api: Api, internet: FakeInternet, stack, atomic_items, metrics_off
):
    # Given a budget of exactly five videos, and twenty submits released at once, each through its
    # own copy of the submit function (Lambda runs concurrent invocations in separate environments)
    budget = 5 * COST
    copies = [load_handler("submit") for _ in range(20)]
    start = threading.Barrier(20)

    def one(handler: Any) -> tuple[int, dict[str, str], Any]:
        start.wait()
        return Api({"submit": handler}, stack).call("submit", submit_event(VALID, budget=budget))

    # When they all run
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(one, copies))

    # Then exactly five are accepted and fifteen refused with OpenAI's insufficient_quota
    accepted = [body for status, _, body in answers if status == 202]
    refused = [answer for answer in answers if answer[0] != 202]
    assert len(accepted) == 5, [status for status, _, _ in answers]
    assert len(refused) == 15 and all(is_insufficient_quota(*answer) for answer in refused), refused[:1]
    # And the provider heard of the five only, and the usage item is their sum
    assert len(internet.provider_calls) == 5
    assert usage_item(stack, TENANT, this_month()) == {"spent_microusd": 5 * COST, "count": 5}
    # And the refused ones left no task behind
    owned = api.call("status", authorized(load_event("list"), TENANT, budget=budget))[2]["data"]
    assert sorted(video["id"] for video in owned) == sorted(video["id"] for video in accepted)


def test_a_provider_refusal_gives_the_reservation_back(api: Api, internet: FakeInternet, stack):
    # Given a budget of one video, and a provider that refuses the first request itself
    internet.create_failures.append(
        httpx.Response(400, json={"error": {"code": "bad_request", "message": "prompt too odd"}})
    )
    status, _, refused = api.call("submit", submit_event(VALID, budget=COST))
    assert status == 400 and refused["error"]["code"] == "provider_rejected", refused
    assert usage_item(stack, TENANT, this_month()) == {"spent_microusd": 0, "count": 0}

    # Then the budget is whole again: the next video is accepted, and the one after is refused
    assert api.call("submit", submit_event(VALID, budget=COST))[0] == 202
    assert is_insufficient_quota(*api.call("submit", submit_event(VALID, budget=COST)))
    assert usage_item(stack, TENANT, this_month()) == {"spent_microusd": COST, "count": 1}


def test_a_create_whose_outcome_is_unknown_keeps_the_reservation(api: Api, internet: FakeInternet, stack):
    # The provider failed while taking the create: it may have started (and billed) the video.
    internet.create_failures.append(
        httpx.Response(500, json={"error": {"code": "api_error", "message": "x"}})
    )
    status, _, body = api.call("submit", submit_event(VALID, budget=2 * COST))
    assert status == 202 and body["status"] == "failed", body
    assert body["error"]["code"] == "provider_outcome_unknown"
    assert usage_item(stack, TENANT, this_month()) == {"spent_microusd": COST, "count": 1}


def test_dispatch_giving_up_gives_back_to_the_month_the_task_was_accepted_in(
    api: Api, internet: FakeInternet, stack, monkeypatch
):
    # Given a task accepted on the last second of January while the provider was rate limiting
    at(monkeypatch, "2027-01-31T23:59:59")
    internet.create_failures.append(httpx.Response(429, json={"error": {"code": "too_many_requests"}}))
    status, _, video = api.call("submit", submit_event(VALID, budget=COST))
    assert status == 202 and video["status"] == "queued"
    assert usage_item(stack, TENANT, "2027-01") == {"spent_microusd": COST, "count": 1}

    # When, in February, the last dispatch attempt still finds the provider rate limiting
    at(monkeypatch, "2027-02-01T00:10:00")
    internet.create_failures.append(httpx.Response(429, json={"error": {"code": "too_many_requests"}}))
    deps = current()
    outcome = dispatch_task(
        deps, video["id"], "https://api.example.com/live", attempt=deps.settings.dispatch_max_attempts
    )

    # Then the task failed without the provider ever taking it, and January has its budget back
    assert outcome.action == "gave_up"
    assert api.call("status", authorized(_get(video["id"]), TENANT, budget=COST))[2]["status"] == "failed"
    assert usage_item(stack, TENANT, "2027-01") == {"spent_microusd": 0, "count": 0}
    assert usage_item(stack, TENANT, "2027-02") is None
    assert internet.provider_calls == []


def _get(video_id: str) -> dict:
    event = load_event("get")
    event["path"] = f"/v1/videos/{video_id}"
    event["pathParameters"] = {"video_id": video_id}
    return event


def test_a_retry_with_the_same_idempotency_key_reserves_once(api: Api, internet: FakeInternet, stack):
    # Given the budget of exactly one video, spent by a submit with an Idempotency-Key
    first = api.call("submit", submit_event(VALID, budget=COST, key="retry-me"))
    assert first[0] == 202

    # When the client retries with the key: answered from the idempotency record
    again = api.call("submit", submit_event(VALID, budget=COST, key="retry-me"))
    assert again[0] == 202 and again[2]["id"] == first[2]["id"]

    # And when it retries after the idempotency record is lost (the task id is derived from the key)
    table = stack.refs["IdempotencyTable"]
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    for item in dynamodb.scan(TableName=table)["Items"]:
        dynamodb.delete_item(TableName=table, Key={"id": item["id"]})
    lost = api.call("submit", submit_event(VALID, budget=COST, key="retry-me"))

    # Then it finds the first task, not a 429, and the month counts one video
    assert lost[0] == 202 and lost[2]["id"] == first[2]["id"], lost
    assert len(internet.provider_calls) == 1
    assert usage_item(stack, TENANT, this_month()) == {"spent_microusd": COST, "count": 1}
    # And a new submission is refused
    assert is_insufficient_quota(*api.call("submit", submit_event(VALID, budget=COST, key="another")))


def test_a_model_outside_the_tenant_list_is_a_403_naming_model(api: Api, internet: FakeInternet, stack):
    status, _, body = api.call("submit", submit_event(VALID, budget=None, models="veo-3.1,kling-2.6-pro"))
    assert (
        status == 403 and body["error"]["code"] == "model_not_allowed" and body["error"]["param"] == "model"
    )
    assert "veo-3.1-fast" in body["error"]["message"] and "veo-3.1" in body["error"]["message"]
    assert internet.provider_calls == [] and usage_item(stack, TENANT, this_month()) is None
    assert api.call("submit", submit_event(VALID, budget=None, models="veo-3.1-fast,veo-3.1"))[0] == 202


def _submit_without_limits(owner: str) -> str:
    """What McpFunction's tools do: `submit_video` with the owner alone, no authorizer limits
    (the tenant item is read instead); the error code, or "accepted"."""
    request = parse_create_request(json.dumps(VALID), allow_loopback=True)
    try:
        submit_video(current(), request, owner=owner, public_base_url="https://relay.example.com")
    except SoraRelayError as error:
        return str(error.code)
    return "accepted"


def test_without_authorizer_limits_the_tenant_item_gives_the_budget(api: Api, internet: FakeInternet, stack):
    # Given a tenant item with a budget of one video, and submits that carry no authorizer limits
    # (the MCP tools: the owner alone), owned by that tenant
    boto3.client("dynamodb", region_name="us-east-1").put_item(
        TableName=stack.refs["TenantsTable"],
        Item={
            "pk": {"S": f"tenant#{OTHER}"},
            "tenant_id": {"S": OTHER},
            "status": {"S": "active"},
            "monthly_budget_microusd": {"N": str(COST)},
        },
    )
    assert [_submit_without_limits(OTHER) for _ in range(2)] == ["accepted", "insufficient_quota"]
    # And an owner with no tenant item (SQS intake's) has no limit
    assert [_submit_without_limits("sqs:test-SubmitQueue") for _ in range(3)] == ["accepted"] * 3
    assert usage_item(stack, "sqs:test-SubmitQueue", this_month()) == {"spent_microusd": 3 * COST, "count": 3}


def test_usage_reports_the_month_and_the_turn_of_the_month(
    api: Api, internet: FakeInternet, stack, monkeypatch
):
    budget = 2 * COST
    # Given two videos in March (the budget spent), then the month turns
    at(monkeypatch, "2027-03-31T23:59:58")
    assert [api.call("submit", submit_event(VALID, budget=budget))[0] for _ in range(2)] == [202, 202]
    assert is_insufficient_quota(*api.call("submit", submit_event(VALID, budget=budget)))
    at(monkeypatch, "2027-04-01T00:00:00")
    assert api.call("submit", submit_event(VALID, budget=budget))[0] == 202

    # Then each month reports its own spend and count against the budget
    march = api.call("status", usage_event(budget=budget, month="2027-03"))
    assert march[0] == 200
    assert march[2] == {
        "object": "usage",
        "tenant_id": TENANT,
        "month": "2027-03",
        "spent_usd": 2 * COST / 1e6,
        "count": 2,
        "budget_usd": budget / 1e6,
        "remaining_usd": 0.0,
    }
    april = api.call("status", usage_event(budget=budget, month="2027-04"))[2]
    assert (april["count"], april["spent_usd"], april["remaining_usd"]) == (1, COST / 1e6, COST / 1e6)
    # And a month without videos, a tenant without a budget, and a bad month
    empty = api.call("status", usage_event(budget=None, month="2026-01"))[2]
    assert (empty["count"], empty["spent_usd"], empty["budget_usd"], empty["remaining_usd"]) == (
        0,
        0,
        None,
        None,
    )
    assert api.call("status", usage_event(budget=None))[2]["month"] == this_month()
    status, _, body = api.call("status", usage_event(budget=None, month="2027-13"))
    assert status == 400 and body["error"]["param"] == "month"
    # And another tenant sees only its own
    assert api.call("status", usage_event(tenant=OTHER, budget=None, month="2027-03"))[2]["count"] == 0


def test_a_timeout_gives_back_only_what_the_provider_never_took(
    api: Api, internet: FakeInternet, stack, handlers
):
    # Given two tasks of a tenant: one the provider took, one still queued (it was rate limiting)
    taken = api.call("submit", submit_event(VALID, budget=None))[2]
    internet.create_failures.append(httpx.Response(429, json={"error": {"code": "too_many_requests"}}))
    queued = api.call("submit", submit_event(VALID, budget=None))[2]
    assert (taken["status"], queued["status"]) == ("in_progress", "queued")
    month = this_month()
    assert usage_item(stack, TENANT, month) == {"spent_microusd": 2 * COST, "count": 2}

    # When both are past the reconciler's deadline with no result
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    for video in (taken, queued):
        dynamodb.update_item(
            TableName=stack.refs["TasksTable"],
            Key={"task_id": {"S": video["id"]}},
            UpdateExpression="SET created_ms = :c",
            ExpressionAttributeValues={":c": {"N": str(now_millis() - 7 * 3600 * 1000)}},
        )
    internet.task_results[internet.last_call()["task_id"]] = {"task_id": internet.last_call()["task_id"]}
    outcomes = handlers["reconcile"].lambda_handler({"source": "aws.scheduler"}, LambdaContext())

    # Then both time out, and only the queued one's reservation goes back to the month
    assert outcomes == {"timed_out": 2}, outcomes
    assert usage_item(stack, TENANT, month) == {"spent_microusd": COST, "count": 1}
