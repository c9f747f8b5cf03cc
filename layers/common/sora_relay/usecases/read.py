"""Use cases: a caller reads its own tasks. Anyone else's task, and a deleted one, is reported as
not found."""

from __future__ import annotations

import re
import time

from sora_relay.domain.errors import InvalidRequest, NotFound
from sora_relay.domain.models import VideoDetail, VideoList, VideoObject
from sora_relay.domain.task import Status, Task
from sora_relay.domain.video import DownloadLink, Variant
from sora_relay.usecases.deps import Deps

_TASK_ID = re.compile(r"^video_[0-9a-f]{32}$")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
ORDERS = ("desc", "asc")
# openai-poll-after-ms on an open video: a tenth of the time it has waited so far, from 1 s to
# 10 s. Generation takes from tens of seconds to minutes depending on the model and the provider's
# queue, and no catalogue figure predicts it; polling in proportion to the wait keeps a fast video's
# lag under a second or two and a slow one's GETs (each an API Gateway request and an invocation)
# to a few dozen. The SDK's own default is 1 s.
MIN_POLL_AFTER_MS = 1000
MAX_POLL_AFTER_MS = 10_000


def owned_task(
    deps: Deps, owner: str, video_id: str, *, param: str = "video_id", deleted: bool = False
) -> Task:
    """The caller's task `video_id`; NotFound naming `param` for anyone else's, or a deleted one
    (unless `deleted`: a list cursor may name a video deleted since)."""
    task = deps.task_store.get(video_id) if _TASK_ID.match(video_id) else None
    if task is None or task.owner != owner or (task.deleted and not deleted):
        raise NotFound(f"No video with id {video_id}", param=param, code="video_not_found")
    return task


def poll_after_ms(task: Task, *, now_ms: int | None = None) -> int | None:
    """How long a poller should wait before asking again; None once the video is finished."""
    if task.status.is_terminal:
        return None
    waited = (now_ms if now_ms is not None else int(time.time() * 1000)) - task.created_ms
    return max(MIN_POLL_AFTER_MS, min(MAX_POLL_AFTER_MS, waited // 10))


def _download_link(deps: Deps, task: Task) -> DownloadLink | None:
    if task.status is not Status.COMPLETED or not task.video_key:
        return None
    return deps.video_store.download_link(
        task.video_key, ttl_seconds=deps.settings.presigned_url_ttl_seconds, now=int(time.time())
    )


def _thumbnail_link(deps: Deps, task: Task) -> DownloadLink | None:
    """The thumbnail's presigned link, served as image/webp, so a page can show it in an <img>
    (which cannot send the API key that /content?variant=thumbnail asks for); None while the task
    is open, and for a video whose previews could not be drawn."""
    if task.status is not Status.COMPLETED or not task.thumbnail_key:
        return None
    return deps.video_store.download_link(
        task.thumbnail_key,
        ttl_seconds=deps.settings.presigned_url_ttl_seconds,
        now=int(time.time()),
        content_type=Variant.THUMBNAIL.content_type,
    )


def get_video(deps: Deps, owner: str, video_id: str) -> VideoDetail:
    """The owner's one video, with its stage timings and webhook attempts (VideoDetail)."""
    return read_video(deps, owner, video_id)[0]


def read_video(deps: Deps, owner: str, video_id: str) -> tuple[VideoDetail, int | None]:
    """The video (with its timings and webhook attempts) and, while it is open, the poll interval
    to suggest (openai-poll-after-ms)."""
    task = owned_task(deps, owner, video_id)
    return VideoDetail.of(task, _download_link(deps, task), _thumbnail_link(deps, task)), poll_after_ms(task)


def parse_variant(raw: str | None) -> Variant:
    """OpenAI's `variant` of download_content: `video` when absent or empty."""
    if raw is None or raw == "":
        return Variant.VIDEO
    try:
        return Variant(raw)
    except ValueError:
        raise InvalidRequest(
            f"variant must be one of {', '.join(v.value for v in Variant)}",
            param="variant",
            code="invalid_value",
        ) from None


def video_content_url(deps: Deps, owner: str, video_id: str, variant: Variant = Variant.VIDEO) -> str:
    """A presigned link to the MP4 or one of its previews (served as image/webp)."""
    task = owned_task(deps, owner, video_id)
    if task.status is not Status.COMPLETED or not task.video_key:
        raise NotFound(
            f"Video {video_id} is {task.status.value}, not completed",
            param="video_id",
            code="video_not_ready",
        )
    key = {
        Variant.VIDEO: task.video_key,
        Variant.THUMBNAIL: task.thumbnail_key,
        Variant.SPRITESHEET: task.spritesheet_key,
    }[variant]
    if not key:
        raise NotFound(
            f"Video {video_id} has no {variant.value}: its previews could not be made from the video",
            param="variant",
            code="preview_not_available",
        )
    return deps.video_store.download_link(
        key,
        ttl_seconds=deps.settings.presigned_url_ttl_seconds,
        now=int(time.time()),
        content_type=variant.content_type,
    ).url


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    # isascii: "²".isdigit() is True, but int("²") fails.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(
            f"limit must be a whole number from 1 to {MAX_LIMIT}", param="limit", code="invalid_value"
        )
    return int(raw)


def parse_order(raw: str | None) -> str:
    if raw is None or raw == "":
        return "desc"
    if raw not in ORDERS:
        raise InvalidRequest("order must be asc or desc", param="order", code="invalid_value")
    return raw


def list_videos(deps: Deps, owner: str, *, limit: int, after: str | None, order: str = "desc") -> VideoList:
    """One page of the caller's videos by creation time (`desc`: newest first), deleted ones left
    out; `after` is the previous page's `last_id` (OpenAI's cursor; the SDK pages with it)."""
    after_task = owned_task(deps, owner, after, param="after", deleted=True) if after else None
    tasks, has_more = deps.task_store.list_for_owner(
        owner, limit=limit, after=after_task, newest_first=order != "asc"
    )
    # Each completed row carries its thumbnail's link, what a list shows. Presigning is a local
    # computation in botocore (no request is sent): timeit put it at about 0.4 ms of CPU a link
    # (botocore 1.44, Python 3.11), some 8 ms for the default 20 rows and 40 ms for 100. The MP4's
    # download link stays with GET of one video, where a player asks for it: a page of 100 bearer
    # links to the videos themselves is more than a list needs to hand out.
    data = [VideoObject.from_task(task, thumbnail=_thumbnail_link(deps, task)) for task in tasks]
    return VideoList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )
