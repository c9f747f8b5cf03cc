"""The archived copy of a task's video: where an archive attempt writes it, what was stored, and a
time-limited link to it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchivedVideo:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DownloadLink:
    url: str
    expires_at: int


def video_key(task_id: str, provider_task_id: str, attempt: str) -> str:
    """Where one archive attempt writes: two attempts never share an object, so the object a task
    records is always the one whose bytes its sha256 describes."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in provider_task_id)[:100]
    return f"videos/{task_id}/{safe}-{attempt}.mp4"
