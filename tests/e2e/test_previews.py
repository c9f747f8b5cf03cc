"""The previews over real HTTP: the archive function draws them, /content?variant= hands them out."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from devstack import processes

pytestmark = pytest.mark.e2e


def _layout(header: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in header.split(";"))


def test_both_previews_come_through_the_gateway_as_webp_drawn_from_the_video(
    stack, videos, plain_http, unique
):
    # Given a finished 4-second 1280x720 video
    created = videos.create(unique("A tram crossing a bridge at dusk"), seconds="4", size="1280x720")
    video = videos.wait(created["id"])
    assert video["status"] == "completed"

    # When each preview is asked for as the openai SDK asks (Accept: application/binary)
    previews = {}
    for variant in ("thumbnail", "spritesheet"):
        answer = videos.client.get(
            f"/v1/videos/{video['id']}/content",
            params={"variant": variant},
            headers={"Accept": "application/binary"},
        )
        # Then it is a redirect to a presigned link on the bucket (moto), not through the gateway
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        assert location.startswith(f"{stack.moto_url}/") and "X-Amz-Signature=" in location
        download = plain_http.get(location)
        assert download.status_code == 200
        assert download.headers["content-type"] == "image/webp"
        previews[variant] = download

    # And the thumbnail decodes to the picture at 640 wide
    thumbnail = Image.open(io.BytesIO(previews["thumbnail"].content))
    assert (thumbnail.format, thumbnail.size) == ("WEBP", (640, 360))
    # And the spritesheet is the grid its layout header states, with frames that differ
    sprites = previews["spritesheet"]
    layout = _layout(sprites.headers["x-amz-meta-layout"])
    columns, rows, frames = int(layout["columns"]), int(layout["rows"]), int(layout["frames"])
    width, height = (int(n) for n in layout["frame"].split("x"))
    assert (width, height) == (160, 90) and frames == 10 and (columns, rows) == (5, 2)
    sheet = Image.open(io.BytesIO(sprites.content)).convert("RGB")
    assert sheet.size == (columns * width, rows * height)
    cells = [
        sheet.crop(
            (
                i % columns * width,
                i // columns * height,
                (i % columns + 1) * width,
                (i // columns + 1) * height,
            )
        )
        for i in range(frames)
    ]
    assert len({cell.tobytes() for cell in cells}) == frames
    # And the task records both keys beside its MP4
    item = stack.task_item(video["id"])
    stem = item["video_key"].removesuffix(".mp4")
    assert (item["thumbnail_key"], item["spritesheet_key"]) == (
        f"{stem}.thumbnail.webp",
        f"{stem}.spritesheet.webp",
    )


def test_a_client_following_the_redirect_like_the_openai_sdk_ends_up_with_the_bytes(stack, videos, unique):
    # The openai SDK's default httpx client follows redirects (openai/_base_client.py,
    # _DefaultHttpxClient: follow_redirects=True); httpx drops Authorization on the cross-origin hop.
    video = videos.wait(videos.create(unique("A heron in the reeds"), seconds="4")["id"])
    assert video["status"] == "completed"
    with processes.local_http(
        stack.api_url, headers={"x-api-key": stack.api_key}, follow_redirects=True
    ) as client:
        thumbnail = client.get(
            f"/v1/videos/{video['id']}/content",
            params={"variant": "thumbnail"},
            headers={"Accept": "application/binary"},
        )
        mp4 = client.get(f"/v1/videos/{video['id']}/content", headers={"Accept": "application/binary"})
        bad = client.get(f"/v1/videos/{video['id']}/content", params={"variant": "poster"})

    assert thumbnail.status_code == 200 and [r.status_code for r in thumbnail.history] == [302]
    assert Image.open(io.BytesIO(thumbnail.content)).format == "WEBP"
    assert (
        mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4" and mp4.content[4:8] == b"ftyp"
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "variant"
