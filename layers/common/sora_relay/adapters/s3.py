"""VideoStore: streams videos into S3 with bounded memory and hands out presigned links."""

from __future__ import annotations

import contextlib
import hashlib
import io
import queue
import threading
from collections.abc import Iterable
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from sora_relay.domain.errors import StorageError, UpstreamRejected
from sora_relay.domain.video import ArchivedVideo, DownloadLink

# Every MP4 starts with an `ftyp` box: a 4-byte size, then the type.
_MP4_HEAD = 8
_MP4_SIGNATURE = b"ftyp"
# Each part carries its CRC32 (S3 checks it on arrival) and the object keeps the composite checksum,
# as boto3's upload_fileobj does.
_CHECKSUM = "CRC32"
# A stored video is read back (for its previews) in ranged GETs of this size: a decoder seeking to
# a few frames reads a few ranges, never the whole object, and holds one range in memory.
_READ_BYTES = 1024 * 1024


class VideoStore:
    def __init__(
        self, client: Any, bucket: str, *, part_bytes: int, max_bytes: int, concurrency: int = 1
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._client = client
        self._bucket = bucket
        self._part_bytes = part_bytes
        self._max_bytes = max_bytes
        self._concurrency = concurrency

    def archive(self, key: str, chunks: Iterable[bytes]) -> ArchivedVideo:
        """Copy a stream of bytes into `key` through a multipart upload.

        Parts are uploaded on up to `concurrency` threads while the next part is read, so at most
        `concurrency + 1` parts (plus one incoming chunk) are held in memory, whatever the video's
        size. The stream must be an MP4 and at most `max_bytes`; otherwise, or on any error (here
        or in a part's upload), the upload is aborted and nothing is left in the bucket.
        """
        try:
            upload_id = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=key, ContentType="video/mp4", ChecksumAlgorithm=_CHECKSUM
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
        head = b""
        total = 0
        size = self._part_bytes
        with _PartUploader(self, key, upload_id) as uploader:
            buffer: bytearray | None = None
            filled = 0
            for chunk in chunks:
                uploader.check()
                if len(head) < _MP4_HEAD:
                    head += chunk[: _MP4_HEAD - len(head)]
                    if len(head) == _MP4_HEAD and head[4:] != _MP4_SIGNATURE:
                        raise UpstreamRejected("The video is not an MP4 file")
                length = len(chunk)
                total += length
                if total > self._max_bytes:
                    raise UpstreamRejected(f"The video is larger than {self._max_bytes} bytes")
                digest.update(chunk)
                # Copy the chunk into the part being filled (the one copy a part needs); a full
                # part goes to the uploader, which blocks here while `concurrency` are in flight.
                offset = 0
                while offset < length:
                    if buffer is None:
                        buffer, filled = uploader.take_buffer(), 0
                    step = min(size - filled, length - offset)
                    if step == length:
                        buffer[filled : filled + step] = chunk
                    else:
                        with memoryview(chunk) as view:
                            buffer[filled : filled + step] = view[offset : offset + step]
                    filled += step
                    offset += step
                    if filled == size:
                        uploader.submit(buffer)
                        buffer = None
            if len(head) < _MP4_HEAD:
                raise UpstreamRejected("The video is empty or truncated")
            if buffer is not None or uploader.count == 0:
                uploader.submit(_shrunk(buffer if buffer is not None else bytearray(), filled))
            parts = uploader.finish()
        try:
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not finish the video upload") from error
        return ArchivedVideo(key=key, size=total, sha256=digest.hexdigest())

    def _put_part(self, key: str, upload_id: str, number: int, body: bytearray) -> dict[str, Any]:
        try:
            answer = self._client.upload_part(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm=_CHECKSUM,
            )
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not upload a part of the video") from error
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        if answer.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = answer["ChecksumCRC32"]
        return part

    def _abort(self, key: str, upload_id: str) -> None:
        # Best effort: the bucket's lifecycle rule removes any upload this misses.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)

    def delete(self, key: str) -> None:
        """Remove an object an archive attempt wrote but could not record (it lost the race)."""
        try:
            self._client.delete_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not delete the video") from error

    def put_upload(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store a client's reference image (a few MiB at most: one PutObject, no multipart)."""
        self._put_small(key, data, content_type=content_type, what="the uploaded image")

    def _put_small(
        self, key: str, body: bytes, *, content_type: str, what: str, metadata: dict[str, str] | None = None
    ) -> None:
        """One PutObject with its checksum, for the small objects (uploads, previews)."""
        extra = {"Metadata": metadata} if metadata else {}
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ChecksumAlgorithm=_CHECKSUM,
                **extra,
            )
        except (ClientError, BotoCoreError) as error:
            raise StorageError(f"Could not store {what}") from error

    def object_link(self, key: str, *, content_type: str, ttl_seconds: int) -> str:
        """A presigned GET of one object (a reference image for the provider)."""
        return self._presign(key, content_type=content_type, ttl_seconds=ttl_seconds)

    def _presign(self, key: str, *, content_type: str, ttl_seconds: int) -> str:
        """A presigned GET, served with `content_type` (a local computation: no request is sent)."""
        try:
            return str(
                self._client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self._bucket, "Key": key, "ResponseContentType": content_type},
                    ExpiresIn=ttl_seconds,
                )
            )
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not sign the link") from error

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix` (a task's video, previews, upload); how many went.

        Deleting what is already gone is no error, so a retried delete finishes the job.
        """
        if not prefix.endswith("/"):
            raise ValueError("a prefix ends with /")
        deleted = 0
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix)
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not keys:
                    continue
                answer = self._client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": keys, "Quiet": True}
                )
                if answer.get("Errors"):
                    raise StorageError(f"Could not delete {len(answer['Errors'])} objects")
                deleted += len(keys)
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not delete the video's files") from error
        return deleted

    def open(self, key: str) -> IO[bytes]:
        """The stored object `key` as a seekable binary file, read in ranged GETs (StorageError)."""
        try:
            size = int(self._client.head_object(Bucket=self._bucket, Key=key)["ContentLength"])
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not read the stored video") from error
        return io.BufferedReader(_RangeReader(self._client, self._bucket, key, size), buffer_size=_READ_BYTES)

    def put_preview(self, key: str, body: bytes, *, content_type: str, metadata: dict[str, str]) -> None:
        """Store one preview image (small: a single PUT)."""
        self._put_small(key, body, content_type=content_type, what="a preview", metadata=metadata)

    def download_link(
        self, key: str, *, ttl_seconds: int, now: int, content_type: str = "video/mp4"
    ) -> DownloadLink:
        url = self._presign(key, content_type=content_type, ttl_seconds=ttl_seconds)
        return DownloadLink(url=url, expires_at=now + ttl_seconds)


class _RangeReader(io.RawIOBase):
    """A stored object as a raw, seekable file: each read is one ranged GET from the position."""

    def __init__(self, client: Any, bucket: str, key: str, size: int) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self._size = size
        self._position = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        last = self._position + wanted - 1
        try:
            answer = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={self._position}-{last}"
            )
            data = answer["Body"].read()
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not read the stored video") from error
        self.requests += 1
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def _shrunk(buffer: bytearray, length: int) -> bytearray:
    """`buffer` cut to `length` bytes, in place (no copy) unless something still views it."""
    try:
        del buffer[length:]
    except BufferError:
        return bytearray(memoryview(buffer)[:length])
    return buffer


class _PartUploader:
    """Uploads numbered parts on up to `concurrency` threads while the caller fills the next one.

    Part buffers are recycled: at most `concurrency + 1` exist (the ones being uploaded and the one
    being filled), and `take_buffer` blocks until an upload gives one back, which bounds memory.
    The first failure of any upload is raised in the caller's thread (`check`, `take_buffer`,
    `submit`, `finish`); leaving the `with` block waits for the uploads still running, so the
    caller aborts the multipart upload only once no part can land after the abort.
    """

    def __init__(self, store: VideoStore, key: str, upload_id: str) -> None:
        self._store = store
        self._key = key
        self._upload_id = upload_id
        self._buffers_left = store._concurrency + 1
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._parts: dict[int, dict[str, Any]] = {}
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        # Imported here: only a copy needs it, not every function that imports this module.
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=store._concurrency, thread_name_prefix="video-part")
        self.count = 0

    def __enter__(self) -> _PartUploader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def take_buffer(self) -> bytearray:
        self.check()
        if self._buffers_left:
            self._buffers_left -= 1
            return bytearray(self._store._part_bytes)
        buffer = self._free.get()  # every upload gives its buffer back, failed or not
        self.check()
        return buffer

    def submit(self, body: bytearray) -> None:
        self.check()
        self.count += 1
        self._pool.submit(self._upload, self.count, body)

    def _upload(self, number: int, body: bytearray) -> None:
        try:
            if self._error is None:
                part = self._store._put_part(self._key, self._upload_id, number, body)
                with self._lock:
                    self._parts[number] = part
        except BaseException as error:
            with self._lock:
                if self._error is None:
                    self._error = error
        finally:
            self._free.put(body)

    def finish(self) -> list[dict[str, Any]]:
        """Wait for every part; their numbers and ETags in order."""
        self._pool.shutdown(wait=True)
        self.check()
        return [self._parts[number] for number in range(1, self.count + 1)]
