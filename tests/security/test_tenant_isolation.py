"""Attack 3: with two API keys, neither can read, list, download or affect the other's tasks."""

from __future__ import annotations

import boto3

from tests.integration.conftest import OTHER_OWNER, OWNER, VALID, submitted


def test_another_key_cannot_read_download_or_list_a_task(api, internet, stack):
    video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call))

    # Exactly what a task that does not exist looks like, on every route
    missing = "video_" + "0" * 32
    for content in (False, True):
        theirs = api.get(video["id"], owner=OTHER_OWNER, content=content)
        nothing = api.get(missing, owner=OTHER_OWNER, content=content)
        assert theirs[0] == nothing[0] == 404
        assert theirs[2]["error"]["code"] == nothing[2]["error"]["code"] == "video_not_found"
        assert "location" not in theirs[1]
    assert api.list(owner=OTHER_OWNER)[2]["data"] == []
    # Paging "after" someone else's task is refused like paging after a missing one
    theirs = api.list(owner=OTHER_OWNER, after=video["id"])
    nothing = api.list(owner=OTHER_OWNER, after=missing)
    assert theirs[0] == nothing[0] == 404
    assert theirs[2]["error"]["code"] == nothing[2]["error"]["code"] == "video_not_found"
    assert theirs[2]["error"]["param"] == nothing[2]["error"]["param"] == "after"
    # The owner still sees it
    assert api.get(video["id"], owner=OWNER)[0] == 200
    assert [v["id"] for v in api.list(owner=OWNER)[2]["data"]] == [video["id"]]


def test_another_key_cannot_reach_a_task_through_an_idempotency_key(api, internet, stack):
    status, _, mine = api.submit(VALID, owner=OWNER, idempotency_key="shared-key")
    assert status == 202
    status, _, theirs = api.submit(VALID, owner=OTHER_OWNER, idempotency_key="shared-key")
    assert status == 202 and theirs["id"] != mine["id"]  # their own task, not a copy of mine
    items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=stack.refs["TasksTable"])[
        "Items"
    ]
    assert sorted(item["owner"]["S"] for item in items) == sorted([OWNER, OTHER_OWNER])


def test_a_request_without_an_api_key_identity_is_refused(api, internet):
    status, _, answer = api.submit(VALID, owner=None)
    assert status == 401 and answer["error"]["code"] == "missing_api_key"
    assert internet.provider_calls == []


def test_tasks_submitted_from_the_queue_belong_to_no_api_key(api, internet, stack, handlers, monkeypatch):
    from tests.integration.conftest import reload_settings, run_queue

    monkeypatch.setenv("PUBLIC_BASE_URL", "https://api.sora-relay.test/live")
    reload_settings(monkeypatch)
    sqs = boto3.client("sqs", region_name="us-east-1")
    sqs.send_message(QueueUrl=stack.refs["SubmitQueue"], MessageBody='{"prompt": "from a queue"}')
    run_queue(stack, "SubmitQueue", handlers["intake"])
    [item] = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=stack.refs["TasksTable"])[
        "Items"
    ]
    assert item["owner"]["S"].startswith("sqs:")
    for owner in (OWNER, OTHER_OWNER):
        assert api.get(item["task_id"]["S"], owner=owner)[0] == 404
        assert api.list(owner=owner)[2]["data"] == []
