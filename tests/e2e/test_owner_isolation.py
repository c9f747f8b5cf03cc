"""Who may see what, enforced over HTTP: API keys at the gateway, owners in the service."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_another_key_cannot_see_or_download_a_video(stack, videos, other_videos, unique):
    # Given a completed video of the first key
    created = videos.create(unique("A private garden"))
    assert videos.wait(created["id"])["status"] == "completed"

    # Then the second key gets 404 (not 403: it must not learn the video exists)
    for path in (f"/v1/videos/{created['id']}", f"/v1/videos/{created['id']}/content"):
        response = other_videos.client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "video_not_found"
    # And it does not see it in its list, nor can it page from it
    assert created["id"] not in other_videos.ids()
    cursor = other_videos.client.get("/v1/videos", params={"after": created["id"]})
    assert cursor.status_code == 404
    # While its owner does
    assert created["id"] in videos.ids()


def test_the_second_keys_videos_are_its_own(stack, videos, other_videos, unique):
    mine = other_videos.create(unique("A second owner"))

    assert mine["id"] in other_videos.ids()
    assert mine["id"] not in videos.ids()
    assert stack.task_item(mine["id"])["owner"] == stack.other_api_key_id


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/videos"), ("POST", "/v1/videos"), ("GET", "/v1/videos/video_0123/content")],
)
def test_requests_without_a_valid_api_key_are_refused_by_the_gateway(stack, anonymous, method, path):
    # No key, then a key the gateway does not know: 403, in the template's GatewayResponses shape.
    for headers in ({}, {"x-api-key": "not-a-key"}):
        response = anonymous.request(method, path, headers=headers, json={"prompt": "x"})
        assert response.status_code == 403
        assert response.json() == {
            "error": {
                "message": "Forbidden",
                "type": "invalid_request_error",
                "param": None,
                "code": "INVALID_API_KEY",
            }
        }


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nothing"), ("DELETE", "/v1/videos"), ("POST", "/v1/callbacks/acedata")],
)
def test_unknown_routes_answer_as_the_template_says(stack, videos, method, path):
    # template.yaml maps MISSING_AUTHENTICATION_TOKEN to 404 in the service's error shape.
    response = videos.client.request(method, path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_callback_route_needs_its_token_not_an_api_key(stack, videos, anonymous, unique):
    # Given a task waiting for its provider (which will never call back)
    created = videos.create(unique("[sim:no-callback] A forged callback"))
    provider_task = stack.task_item(created["id"])["provider_task_id"]
    forged = {
        "success": True,
        "task_id": provider_task,
        "data": [{"id": "x", "video_url": "http://127.0.0.1:1/evil.mp4", "state": "succeeded"}],
    }

    # When someone without the token posts a result (no API key is needed to reach the route)
    for query in ("", "?token=guessed"):
        response = anonymous.post(f"/v1/callbacks/acedata/{created['id']}{query}", json=forged)

        # Then it is refused, and nothing changes
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_callback_token"
    assert videos.get(created["id"])["status"] == "in_progress"


def test_a_body_over_10_mb_is_refused_by_the_gateway(stack, videos):
    response = videos.client.post(
        "/v1/videos", content=b"x" * (10 * 1024 * 1024 + 1), headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "REQUEST_TOO_LARGE"
