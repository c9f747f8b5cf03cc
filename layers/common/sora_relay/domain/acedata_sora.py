"""AceDataCloud's Sora API shapes, which the seed MCP server handed its callers, built from our
public video object (the JSON of `VideoObject`).

Tasks made by the seed's `_async` MCP tools ask for these (`webhook_format: acedata_sora`): their
callback_url hears the upstream callback body instead of our event, still signed with the
Standard Webhooks headers. The MCP tools answer `sora_get_task` with the same body as `response`.
"""

from __future__ import annotations

import uuid
from typing import Any

WEBHOOK_FORMAT = "acedata_sora"


def trace_id(video_id: str) -> str:
    """A stable trace id per task (the upstream API had one per request; ours is the task's id
    written as a UUID, so the submit answer, the task and the callback agree)."""
    try:
        return str(uuid.UUID(video_id.removeprefix("video_")))
    except ValueError:
        return video_id


def callback_body(video: dict[str, Any]) -> dict[str, Any] | None:
    """The upstream callback for a finished video (None while it is not finished).

    `data[].video_url` is our own copy's download link (S3, presigned), never the provider's URL.
    """
    video_id = str(video["id"])
    if video.get("status") == "completed":
        return {
            "success": True,
            "task_id": video_id,
            "trace_id": trace_id(video_id),
            "data": [{"id": video_id, "video_url": video.get("download_url"), "state": "succeeded"}],
        }
    if video.get("status") == "failed":
        error = video.get("error") or {}
        return {
            "success": False,
            "task_id": video_id,
            "trace_id": trace_id(video_id),
            "error": {
                "code": error.get("code") or "failed",
                "message": error.get("message") or "The video could not be made",
            },
        }
    return None
