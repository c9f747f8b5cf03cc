"""Each provider family, end to end on the local stack: a catalogue model goes submit → provider
push (AceData unsigned + lookup, fal ED25519, Replicate Standard Webhooks) → archive → signed
webhook → downloadable MP4; forged and stale pushes change nothing; an expired link fails the
task with its reason."""

from __future__ import annotations

import pytest

# One live model per family, at a length and size each offers (small renders for the simulator).
FAMILIES = [
    pytest.param("seedance-1.5-pro", 4, "1280x720", id="acedata"),
    pytest.param("fal-veo-3.1", 4, "1280x720", id="fal"),
    pytest.param("replicate-seedance-1.5-pro", 4, "1280x720", id="replicate"),
]


@pytest.mark.parametrize(("model", "seconds", "size"), FAMILIES)
def test_a_model_of_each_family_goes_from_submit_to_a_signed_webhook_and_a_playable_mp4(
    stack, videos, receiver, plain_http, unique, probe_mp4, model, seconds, size
):
    created = videos.create(
        unique("A kite over dunes"), model=model, seconds=str(seconds), size=size, callback_url=receiver.url
    )
    assert (created["model"], created["served_model"]) == (model, model)
    video = videos.wait(created["id"])
    assert video["status"] == "completed", video["error"]
    event = receiver.verify(receiver.wait_for_video(video["id"], timeout=20))
    assert event["type"] == "video.completed" and event["data"]["id"] == video["id"]
    download = plain_http.get(videos.client.get(f"/v1/videos/{video['id']}/content").headers["location"])
    assert download.status_code == 200
    mp4 = probe_mp4(download.content)
    assert (f"{mp4.width}x{mp4.height}", round(mp4.seconds)) == (size, seconds)


@pytest.mark.parametrize(("model", "seconds", "size"), FAMILIES)
@pytest.mark.parametrize("fault", ["forged-push", "stale-push"])
def test_forged_and_stale_pushes_leave_the_task_to_the_genuine_one(
    stack, videos, unique, model, seconds, size, fault
):
    created = videos.create(unique(f"[sim:{fault}] a lantern"), model=model, seconds=str(seconds), size=size)
    video = videos.wait(created["id"])
    assert video["status"] == "completed", video["error"]
    # The refused pushes reached the callback and were answered 401 (a signature, or AceData's token).
    state = stack.simulator.task_state(_provider_task_id(stack, created["id"]))
    kinds = {attempt["kind"]: attempt["status"] for attempt in state["callbacks"]}
    assert kinds[fault.removesuffix("-push")] == 401, state["callbacks"]
    assert kinds["final"] == 200


@pytest.mark.parametrize(("model", "seconds", "size"), FAMILIES)
def test_a_result_link_that_expired_before_the_copy_fails_the_task_with_its_reason(
    stack, videos, unique, model, seconds, size
):
    created = videos.create(unique("[sim:expired-url] a comet"), model=model, seconds=str(seconds), size=size)
    video = videos.wait(created["id"], timeout=40)
    assert video["status"] == "failed"
    assert video["error"]["code"] in ("video_fetch_failed", "output_expired", "provider_result_expired")


def _provider_task_id(stack, task_id: str) -> str:
    item = stack.task_item(task_id)
    assert item and item.get("provider_task_id"), item
    return str(item["provider_task_id"])
