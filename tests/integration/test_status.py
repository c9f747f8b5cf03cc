"""GET routes: owner isolation, listing with a cursor, content redirects."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from sora_relay.runtime.container import current
from tests.conftest import failure_lines
from tests.integration.conftest import OTHER_OWNER, OWNER, submitted, through_a_custom_domain


def test_another_owner_sees_404_on_every_route(api, internet):
    # Given a completed video of OWNER
    video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call))

    # Then another key can neither read, download, nor list it
    status, _, answer = api.get(video["id"], owner=OTHER_OWNER)
    assert status == 404 and answer["error"]["code"] == "video_not_found"
    status, _, _ = api.get(video["id"], owner=OTHER_OWNER, content=True)
    assert status == 404
    status, _, listing = api.list(owner=OTHER_OWNER)
    assert status == 200 and listing["data"] == []
    status, _, answer = api.list(owner=OTHER_OWNER, after=video["id"])
    assert status == 404 and answer["error"]["param"] == "after"
    # While its owner can
    assert api.get(video["id"], owner=OWNER)[0] == 200


@pytest.mark.parametrize("video_id", ["nope", "video_xyz", "VIDEO_" + "A" * 32, "video_" + "0" * 32])
def test_unknown_or_malformed_ids_are_404(api, video_id):
    status, _, answer = api.get(video_id)
    assert status == 404 and answer["error"] == {
        "code": "video_not_found",
        "message": f"No video with id {video_id}",
        "param": "video_id",
        "type": "invalid_request_error",
    }


def test_list_is_newest_first_with_a_cursor(api, internet):
    ids = [submitted(api, internet, prompt=f"video {n}")[0]["id"] for n in range(5)]
    submitted_other = api.submit({"prompt": "someone else's"}, owner=OTHER_OWNER)
    assert submitted_other[0] == 202

    status, _, page = api.list(limit="2")
    assert status == 200 and page["object"] == "list"
    assert [v["id"] for v in page["data"]] == ids[::-1][:2]
    assert page["has_more"] is True and page["first_id"] == ids[4] and page["last_id"] == ids[3]

    _, _, second = api.list(limit="2", after=page["last_id"])
    assert [v["id"] for v in second["data"]] == ids[::-1][2:4] and second["has_more"] is True
    _, _, last = api.list(limit="2", after=second["last_id"])
    assert [v["id"] for v in last["data"]] == [ids[0]] and last["has_more"] is False

    _, _, everything = api.list()
    assert len(everything["data"]) == 5  # the other owner's task is not there


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten"])
def test_limit_outside_1_to_100_is_400(api, limit):
    status, _, answer = api.list(limit=limit)
    assert status == 400 and answer["error"]["param"] == "limit"


def test_content_is_404_until_completed(api, internet):
    video, _ = submitted(api, internet)
    status, _, answer = api.get(video["id"], content=True)
    assert status == 404 and answer["error"]["code"] == "video_not_ready"


def test_an_unknown_route_is_a_json_404(api):
    from tests.conftest import load_event

    event = load_event("get")
    event["path"] = "/v1/nothing-here"
    status, _, answer = api.call("status", event)
    assert status == 404 and answer["error"]["code"] == "not_found"


def test_a_failed_read_is_logged_once_with_the_task_id_and_what_aws_answered(
    api, internet, monkeypatch, service_logs
):
    video, _call = submitted(api, internet, prompt="a violet giraffe")
    service_logs.seek(0)
    service_logs.truncate()

    def denied(**_: object) -> None:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "GetItem")

    monkeypatch.setattr(current().task_store._client, "get_item", denied)

    status, _, answer = api.get(video["id"])

    assert status == 500 and answer["error"]["code"] == "storage_error"
    [line] = failure_lines(service_logs)
    assert line["task_id"] == video["id"] and "(AccessDeniedException)" in line["cause"]
    assert "violet giraffe" not in service_logs.getvalue()


@pytest.mark.parametrize("base_path", ["/relay", "/relay/eu"])
def test_a_custom_domain_with_a_base_path_routes(api, internet, base_path):
    from tests.conftest import load_event

    video, _ = submitted(api, internet)

    event = load_event("get")
    event["path"] = f"/v1/videos/{video['id']}"
    event["pathParameters"] = {"video_id": video["id"]}
    status, _, answer = api.call("status", through_a_custom_domain(event, base_path))
    assert status == 200, answer
    assert answer["id"] == video["id"]

    status, _, listing = api.call("status", through_a_custom_domain(load_event("list"), base_path))
    assert status == 200 and [v["id"] for v in listing["data"]] == [video["id"]]

    # An unknown route under the base path is still our JSON 404
    event = through_a_custom_domain(load_event("get"), base_path)
    event["path"] = f"{base_path}/v1/nothing-here"
    status, _, answer = api.call("status", event)
    assert status == 404 and answer["error"]["code"] == "not_found"
