"""VideoStore: streams videos into S3 with bounded memory and hands out presigned links."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sora_relay.errors import StorageError, UpstreamRejected

# Every MP4 starts with an `ftyp` box: a 4-byte size, then the type.
_MP4_HEAD = 8
_MP4_SIGNATURE = b"ftyp"


@dataclass(frozen=True)
class ArchivedVideo:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DownloadLink:
    url: str
    expires_at: int


def video_key(task_id: str) -> str:
    return f"videos/{task_id}.mp4"


class VideoStore:
    def __init__(self, client: Any, bucket: str, *, part_bytes: int, max_bytes: int) -> None:
        self._client = client
        self._bucket = bucket
        self._part_bytes = part_bytes
        self._max_bytes = max_bytes

    def archive(self, key: str, chunks: Iterable[bytes]) -> ArchivedVideo:
        """Copy a stream of bytes into `key` through a multipart upload.

        At most one part (plus one incoming chunk) is held in memory, whatever the video's size.
        The stream must be an MP4 and at most `max_bytes`; otherwise, or on any error, the upload
        is aborted and nothing is left in the bucket.
        """
        try:
            upload_id = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=key, ContentType="video/mp4"
            )["UploadId"]
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not start the video upload") from error
        try:
            archived = self._upload_parts(key, upload_id, chunks)
        except BaseException:
            self._abort(key, upload_id)
            raise
        return archived

    def _upload_parts(self, key: str, upload_id: str, chunks: Iterable[bytes]) -> ArchivedVideo:
        digest = hashlib.sha256()
        head = bytearray()
        buffer = bytearray()
        parts: list[dict[str, Any]] = []
        total = 0
        for chunk in chunks:
            if len(head) < _MP4_HEAD:
                head += chunk[: _MP4_HEAD - len(head)]
                if len(head) == _MP4_HEAD and head[4:] != _MP4_SIGNATURE:
                    raise UpstreamRejected("The video is not an MP4 file")
            total += len(chunk)
            if total > self._max_bytes:
                raise UpstreamRejected(f"The video is larger than {self._max_bytes} bytes")
            digest.update(chunk)
            buffer += chunk
            while len(buffer) >= self._part_bytes:
                parts.append(
                    self._put_part(
                        key, upload_id, len(parts) + 1, bytes(memoryview(buffer)[: self._part_bytes])
                    )
                )
                del buffer[: self._part_bytes]
        if len(head) < _MP4_HEAD:
            raise UpstreamRejected("The video is empty or truncated")
        if buffer or not parts:
            parts.append(self._put_part(key, upload_id, len(parts) + 1, bytes(buffer)))
        try:
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not finish the video upload") from error
        return ArchivedVideo(key=key, size=total, sha256=digest.hexdigest())

    def _put_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        try:
            answer = self._client.upload_part(
                Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not upload a part of the video") from error
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _abort(self, key: str, upload_id: str) -> None:
        # Best effort: the bucket's lifecycle rule removes any upload this misses.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)

    def download_link(self, key: str, *, ttl_seconds: int, now: int) -> DownloadLink:
        try:
            url = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._bucket, "Key": key, "ResponseContentType": "video/mp4"},
                ExpiresIn=ttl_seconds,
            )
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not sign the download link") from error
        return DownloadLink(url=url, expires_at=now + ttl_seconds)
