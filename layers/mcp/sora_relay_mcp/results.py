"""What our own MCP tools answer: the API's objects as output schemas, and the video result with
its `video/mp4` resource link once completed."""

from __future__ import annotations

import json
from typing import Any, Literal

from mcp_types import CallToolResult, ResourceLink, TextContent
from pydantic import BaseModel, ConfigDict, Field


def json_text(payload: Any) -> str:
    """JSON as the seed's tools answered it (indented, not ASCII-escaped)."""
    return json.dumps(payload, ensure_ascii=False, indent=2)


class VideoError(BaseModel):
    code: str
    message: str


class Video(BaseModel):
    """A video task as the API's video object describes it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int
    model: str = Field(description="The model asked for.")
    served_model: str = Field(description="The catalogue model that makes it.")
    prompt: str
    seconds: str
    size: str
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    error: VideoError | None = None
    callback_url: str | None = None
    cost_usd: float | None = None
    download_url: str | None = Field(None, description="The MP4 (a presigned link), once completed.")
    download_expires_at: int | None = None


class VideoPage(BaseModel):
    data: list[Video]
    has_more: bool
    last_id: str | None = None


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    status: str
    available: bool = Field(description="This deployment can run it now.")
    seconds: list[int]
    default_seconds: int
    sizes: list[str]
    default_size: str
    image: bool = Field(description="It takes a first-frame image.")
    audio: bool
    price_per_second_usd: float
    replaced_by: list[str] = []
    served_by: str | None = Field(
        None, description="Retired and aliased here: the live model that serves it."
    )


class ModelList(BaseModel):
    data: list[Model]


def video_result(raw: dict[str, Any]) -> CallToolResult:
    """The video as structured content and JSON text, plus a `video/mp4` link once completed."""
    video = Video.model_validate(raw)
    data = video.model_dump(mode="json")
    content: list[Any] = [TextContent(type="text", text=json_text(data))]
    if video.status == "completed" and video.download_url:
        content.append(
            ResourceLink(
                type="resource_link",
                name=f"{video.id}.mp4",
                title=video.prompt[:80],
                uri=video.download_url,
                mime_type="video/mp4",
                description=(
                    f"The video ({video.seconds} s, {video.size}); the link expires at "
                    f"{video.download_expires_at} (epoch seconds): get_video gives a fresh one."
                ),
            )
        )
    return CallToolResult(content=content, structured_content=data)
