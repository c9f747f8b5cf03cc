"""The playground page's answers: `GET /` of the stage and `GET /playground/{asset}`.

The page is public (it holds no data; every call it makes to the API carries the caller's key), so
what it may do is pinned by its Content-Security-Policy instead: its own script and styles only
(no inline code, no CDN), the API on its own origin, and video and thumbnails from the one origin
our presigned S3 links point at. The files are a fixed set read from the function's folder on first
use (never at import: SnapStart), each with its content type and an ETag; the page names each
asset with a hash of its bytes, so an asset fetched by that name may be cached for good and a new
deploy is picked up at the next load of the page.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Response

from sora_relay.domain.errors import NotFound
from sora_relay.runtime.container import current

PAGE = "index.html"
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "placeholder.svg": "image/svg+xml",
}
_ASSET_REFERENCE = re.compile(r"\{\{asset:([\w.-]+)\}\}")  # in index.html: {{asset:app.js}}

# A route's path before `/playground/{asset}` or the page's `/` is the stage or a custom domain's
# base path mapping (as runtime/api.STRIP_PREFIXES for /v1): strip it, however many segments deep.
STRIP_PREFIXES: list[str | re.Pattern[str]] = [
    re.compile(r"^(?:/[^/]+)+?(?=/playground/[^/]+$)|^(?!.*/playground/[^/]+$)(?:/[^/]+)+/?$")
]

# Every answer, the page's and the assets'. No referrer leaves the page: a presigned link is
# authority, and the page's own URL is nobody's business either.
_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"  # may be stored, but asked again (a 304 with the same ETag) every time


@dataclass(frozen=True)
class StaticFile:
    body: str
    content_type: str

    @cached_property
    def version(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()[:16]

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def content_security_policy(media_origin: str) -> str:
    """The page's policy: `media_origin` is where presigned links point (`https://bucket.s3...`):
    the <video>'s MP4 (media-src) and the list's thumbnails (img-src), one bucket, so one origin."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src 'self' data: {media_origin}",  # data: only for the empty favicon
            f"media-src {media_origin}",
            "connect-src 'self'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        )
    )


def presigned_link_origin() -> str:
    """The scheme, host and port of the links StatusFunction hands out (download_url and
    thumbnail_url alike: a key and a content type change only the path and query), made by the same
    S3 client and settings: botocore picks virtual-hosted or path style, a global or regional host,
    or the endpoint of AWS_ENDPOINT_URL (moto, locally), so the origin is read off a link rather
    than rebuilt by hand. Presigning is a local computation: no request is sent and no S3 right used."""
    settings = current().settings
    link = current().video_store.download_link(
        "videos/playground.mp4", ttl_seconds=settings.presigned_url_ttl_seconds, now=int(time.time())
    )
    parts = urlsplit(link.url)
    return f"{parts.scheme}://{parts.netloc}"


class Playground:
    """The page and its assets, from `folder`; files are read once, on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @cached_property
    def _assets(self) -> dict[str, StaticFile]:
        return {
            name: StaticFile((self.folder / name).read_text(encoding="utf-8"), content_type)
            for name, content_type in ASSETS.items()
        }

    @cached_property
    def _page(self) -> StaticFile:
        template = (self.folder / PAGE).read_text(encoding="utf-8")

        def versioned(found: re.Match[str]) -> str:
            asset = self._assets[found[1]]  # a name not in ASSETS fails the first request, loudly
            return f"playground/{found[1]}?v={asset.version}"

        return StaticFile(_ASSET_REFERENCE.sub(versioned, template), "text/html; charset=utf-8")

    @cached_property
    def _headers(self) -> dict[str, str]:
        policy = content_security_policy(presigned_link_origin())
        return {**_COMMON_HEADERS, "Content-Security-Policy": policy}

    def page(self, *, request_path: str, if_none_match: str | None) -> Response:
        """The page. On a stage URL without its trailing slash (`.../live`), a redirect to it first:
        the page names its assets and the API relative to its own URL."""
        if not request_path.endswith("/"):
            last = request_path.rstrip("/").rsplit("/", 1)[-1]
            return Response(
                status_code=301,
                headers={**_COMMON_HEADERS, "Location": f"{last}/", "Cache-Control": _REVALIDATE},
                body="",
            )
        return self._answer(self._page, _REVALIDATE, if_none_match)

    def asset(self, name: str, *, version: str | None, if_none_match: str | None) -> Response:
        found = self._assets.get(name)
        if found is None:
            raise NotFound(f"No playground asset named {name}", param="asset", code="not_found")
        # Asked for by the page's own versioned name: these bytes never change under it.
        caching = _IMMUTABLE if version == found.version else _REVALIDATE
        return self._answer(found, caching, if_none_match)

    def _answer(self, file: StaticFile, caching: str, if_none_match: str | None) -> Response:
        headers = {**self._headers, "Cache-Control": caching, "ETag": file.etag}
        if if_none_match and file.etag in {tag.strip() for tag in if_none_match.split(",")}:
            return Response(status_code=304, headers=headers, body="")
        return Response(status_code=200, content_type=file.content_type, body=file.body, headers=headers)
