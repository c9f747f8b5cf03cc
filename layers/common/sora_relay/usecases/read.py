"""Use cases: a caller reads its own tasks. Anyone else's task is reported as not found."""

from __future__ import annotations

import re
import time

from sora_relay.domain.errors import InvalidRequest, NotFound
from sora_relay.domain.models import VideoDetail, VideoList, VideoObject
from sora_relay.domain.task import Status, Task
from sora_relay.domain.video import DownloadLink
from sora_relay.usecases.deps import Deps

_TASK_ID = re.compile(r"^video_[0-9a-f]{32}$")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def _owned_task(deps: Deps, owner: str, video_id: str, *, param: str = "video_id") -> Task:
    task = deps.task_store.get(video_id) if _TASK_ID.match(video_id) else None
    if task is None or task.owner != owner:
        raise NotFound(f"No video with id {video_id}", param=param, code="video_not_found")
    return task


def _download_link(deps: Deps, task: Task) -> DownloadLink | None:
    if task.status is not Status.COMPLETED or not task.video_key:
        return None
    return deps.video_store.download_link(
        task.video_key, ttl_seconds=deps.settings.presigned_url_ttl_seconds, now=int(time.time())
    )


def get_video(deps: Deps, owner: str, video_id: str) -> VideoDetail:
    """The owner's one video, with its stage timings and webhook attempts (VideoDetail)."""
    task = _owned_task(deps, owner, video_id)
    return VideoDetail.of(task, _download_link(deps, task))


def video_content_url(deps: Deps, owner: str, video_id: str) -> str:
    task = _owned_task(deps, owner, video_id)
    link = _download_link(deps, task)
    if link is None:
        raise NotFound(
            f"Video {video_id} is {task.status.value}, not completed",
            param="video_id",
            code="video_not_ready",
        )
    return link.url


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    # isascii: "²".isdigit() is True, but int("²") fails.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(
            f"limit must be a whole number from 1 to {MAX_LIMIT}", param="limit", code="invalid_value"
        )
    return int(raw)


def list_videos(deps: Deps, owner: str, *, limit: int, after: str | None) -> VideoList:
    after_task = _owned_task(deps, owner, after, param="after") if after else None
    tasks, has_more = deps.task_store.list_for_owner(owner, limit=limit, after=after_task)
    # Listing hands out no download links: signing one per row would cost a call each.
    data = [VideoObject.from_task(task) for task in tasks]
    return VideoList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )
