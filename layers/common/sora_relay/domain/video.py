"""The archived copy of a task's video: where an archive attempt writes it, what was stored, and a
time-limited link to it; and the downloadable variants (the MP4 and its two previews)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class ArchivedVideo:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DownloadLink:
    url: str
    expires_at: int


class Variant(StrEnum):
    """What `GET /v1/videos/{id}/content?variant=` hands out (OpenAI's `download_content`)."""

    VIDEO = "video"
    THUMBNAIL = "thumbnail"
    SPRITESHEET = "spritesheet"

    @property
    def content_type(self) -> str:
        return "video/mp4" if self is Variant.VIDEO else "image/webp"


PREVIEWS = (Variant.THUMBNAIL, Variant.SPRITESHEET)


def video_key(task_id: str, provider_task_id: str, attempt: str) -> str:
    """Where one archive attempt writes: two attempts never share an object, so the object a task
    records is always the one whose bytes its sha256 describes."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in provider_task_id)[:100]
    return f"videos/{task_id}/{safe}-{attempt}.mp4"


def preview_key(video_key: str, variant: Variant) -> str:
    """A preview sits beside the MP4 it was drawn from and names the same attempt, so the lifecycle
    and clean-up rules that hold for the MP4 hold for it."""
    return f"{video_key.removesuffix('.mp4')}.{variant.value}.webp"
