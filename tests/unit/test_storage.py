"""VideoStore.archive: parts upload on worker threads while the next part is read.

A fake S3 client records every call, so these tests can force the orders and failures a real
bucket only shows under load: parts finishing out of order, a part failing in a worker while the
reader waits, the reader failing while parts are in flight. No test depends on timing: where
uploads must overlap, a barrier makes them meet (and fails, rather than hangs, if they cannot).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sora_relay.adapters.s3 import VideoStore
from sora_relay.domain.errors import StorageError, UpstreamRejected

PART = 64 * 1024  # the store does not enforce S3's 5 MiB minimum; small parts keep tests fast
MP4_HEAD = b"\x00\x00\x00\x18ftypisom"
WAIT = 10.0  # seconds a barrier waits before failing the test instead of hanging it


def video(size: int) -> bytes:
    body = bytearray(MP4_HEAD)
    counter = 0
    while len(body) < size:
        body += counter.to_bytes(4, "big")
        counter += 1
    return bytes(body[:size])


def chunks_of(data: bytes, chunk: int = 10_000) -> Iterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


class FakeS3:
    """Records multipart calls; `hold(number)` can block a part until the test allows it."""

    def __init__(self, fail_part: int | None = None) -> None:
        self.parts: dict[int, bytes] = {}
        self.bodies: list[Any] = []  # every body object, kept alive so ids stay distinct
        self.events: list[tuple[str, Any]] = []
        self.completed: list[dict[str, Any]] | None = None
        self.fail_part = fail_part
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.before_upload = lambda number: None

    def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["ContentType"] == "video/mp4" and kwargs["ChecksumAlgorithm"] == "CRC32"
        self.events.append(("create", kwargs["Key"]))
        return {"UploadId": "upload-1"}

    def upload_part(self, *, PartNumber: int, Body: Any, UploadId: str, **kwargs: Any) -> dict[str, Any]:
        assert UploadId == "upload-1"
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.bodies.append(Body)
            self.events.append(("part-start", PartNumber))
        try:
            self.before_upload(PartNumber)
            if PartNumber == self.fail_part:
                raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "UploadPart")
            assert isinstance(Body, bytes | bytearray) and kwargs["ChecksumAlgorithm"] == "CRC32"
            self.parts[PartNumber] = bytes(Body)
            return {"ETag": f'"etag-{PartNumber}"', "ChecksumCRC32": f"crc-{PartNumber}"}
        finally:
            with self.lock:
                self.in_flight -= 1
                self.events.append(("part-end", PartNumber))

    def complete_multipart_upload(self, *, MultipartUpload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.events.append(("complete", None))
        self.completed = MultipartUpload["Parts"]
        return {}

    def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self.events.append(("abort", None))
        return {}

    def stored(self) -> bytes:
        assert self.completed is not None
        return b"".join(self.parts[part["PartNumber"]] for part in self.completed)


def store(client: FakeS3, concurrency: int = 3, max_bytes: int = 10**9) -> VideoStore:
    return VideoStore(client, "bucket", part_bytes=PART, max_bytes=max_bytes, concurrency=concurrency)


@pytest.mark.parametrize(
    "size", [9, PART - 1, PART, PART + 1, 5 * PART, 7 * PART + 123], ids=lambda size: f"{size}B"
)
@pytest.mark.parametrize("concurrency", [1, 3])
def test_the_object_is_the_stream_whatever_its_size(size, concurrency):
    data = video(size)
    client = FakeS3()
    archived = store(client, concurrency).archive("videos/a.mp4", chunks_of(data))
    assert client.stored() == data
    assert archived.size == size and archived.sha256 == hashlib.sha256(data).hexdigest()
    numbers = [part["PartNumber"] for part in client.completed or []]
    assert numbers == list(range(1, -(-size // PART) + 1))  # no empty trailing part
    assert all(len(client.parts[number]) == PART for number in numbers[:-1])


def test_parts_finishing_out_of_order_are_completed_in_order():
    # Part 1 may only finish after parts 2 and 3 have: the list given to S3 is still 1, 2, 3, 4.
    data = video(4 * PART - 10)
    client = FakeS3()
    later_parts_done = threading.Barrier(3, timeout=WAIT)
    client.before_upload = lambda number: later_parts_done.wait() if number == 1 else None
    original = client.upload_part

    def upload_part(**kwargs: Any) -> dict[str, Any]:
        answer = original(**kwargs)
        if kwargs["PartNumber"] in (2, 3):
            later_parts_done.wait()  # releases part 1 once parts 2 and 3 have ended
        return answer

    client.upload_part = upload_part  # type: ignore[method-assign]
    archived = store(client, concurrency=3).archive("videos/a.mp4", chunks_of(data))
    ends = [number for kind, number in client.events if kind == "part-end"]
    assert ends.index(1) > ends.index(2) and ends.index(1) > ends.index(3)
    assert client.completed == [
        {"PartNumber": n, "ETag": f'"etag-{n}"', "ChecksumCRC32": f"crc-{n}"} for n in (1, 2, 3, 4)
    ]
    assert client.stored() == data and archived.size == len(data)


def test_uploads_overlap_up_to_the_concurrency_and_buffers_are_reused():
    # Three uploads must be in flight together (the barrier), never more than three, and the whole
    # 20-part video goes through four part buffers: the memory of concurrency + 1 parts.
    data = video(20 * PART)
    client = FakeS3()
    first_three = threading.Barrier(3, timeout=WAIT)
    client.before_upload = lambda number: first_three.wait() if number <= 3 else None
    store(client, concurrency=3).archive("videos/a.mp4", chunks_of(data))
    assert client.max_in_flight == 3
    assert len({id(body) for body in client.bodies}) <= 4
    assert client.stored() == data


def test_the_reader_stays_at_most_one_part_ahead_of_the_uploads():
    # Whenever a chunk is read, it is at most concurrency (2) parts uploading + 1 being filled +
    # the chunk in hand ahead of the parts already stored. Uploads are held until the reader has
    # filled every buffer, so a reader that ran further ahead would be caught here.
    data = video(20 * PART)
    client = FakeS3()
    release = threading.Event()
    read = []
    client.before_upload = lambda number: release.wait(WAIT)

    def counted() -> Iterator[bytes]:
        for chunk in chunks_of(data):
            read.append(len(chunk))
            stored = sum(len(part) for part in list(client.parts.values()))
            assert sum(read) <= stored + 3 * PART + len(chunk), "read too far ahead of the uploads"
            if sum(read) >= 3 * PART:
                release.set()
            yield chunk

    store(client, concurrency=2).archive("videos/a.mp4", counted())
    assert client.stored() == data


def test_a_last_part_still_viewed_elsewhere_is_copied_rather_than_shrunk():
    # If a library kept a view of a recycled part buffer, it cannot be shrunk in place.
    data = video(5 * PART + 100)
    client = FakeS3()
    views = []
    original = client.upload_part

    def upload_part(**kwargs: Any) -> dict[str, Any]:
        views.append(memoryview(kwargs["Body"]))
        return original(**kwargs)

    client.upload_part = upload_part  # type: ignore[method-assign]
    store(client, concurrency=1).archive("videos/a.mp4", chunks_of(data))
    assert client.stored() == data and len(client.parts[6]) == 100


def test_a_part_failing_in_a_worker_aborts_the_upload_and_raises_storage_error():
    data = video(12 * PART)
    client = FakeS3(fail_part=2)
    read = []

    def counted() -> Iterator[bytes]:
        for chunk in chunks_of(data):
            read.append(len(chunk))
            yield chunk

    with pytest.raises(StorageError, match="part of the video"):
        store(client, concurrency=2).archive("videos/a.mp4", counted())
    kinds = [kind for kind, _ in client.events]
    assert "complete" not in kinds and kinds.count("abort") == 1
    # The abort comes after every upload has ended, so no part can land after it
    assert kinds[-1] == "abort" and client.in_flight == 0
    assert sum(read) < len(data)  # reading stopped early


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_failure_while_the_reader_waits_for_a_buffer_is_raised_not_hung(concurrency):
    # Every upload fails: the reader, waiting for a free part buffer, must wake up and raise.
    data = video(30 * PART)
    client = FakeS3()
    client.fail_part = 1
    with pytest.raises(StorageError):
        store(client, concurrency).archive("videos/a.mp4", chunks_of(data))
    assert [kind for kind, _ in client.events][-1] == "abort"


def test_a_stream_error_while_parts_upload_aborts_after_they_end():
    data = video(10 * PART)
    client = FakeS3()
    started = threading.Barrier(3, timeout=WAIT)  # two uploads in flight and the reader
    client.before_upload = lambda number: started.wait() if number <= 2 else None

    def broken() -> Iterator[bytes]:
        yield from chunks_of(data[: 2 * PART])
        started.wait()
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        store(client, concurrency=2).archive("videos/a.mp4", broken())
    kinds = [kind for kind, _ in client.events]
    assert kinds.count("part-end") == 2 and kinds[-1] == "abort" and "complete" not in kinds


def test_a_stream_that_is_not_an_mp4_uploads_nothing():
    client = FakeS3()
    with pytest.raises(UpstreamRejected, match="not an MP4"):
        store(client).archive("videos/a.mp4", iter([b"\x00\x00", b"\x00\x18html", b"x" * PART * 3]))
    assert client.parts == {} and [kind for kind, _ in client.events] == ["create", "abort"]


def test_an_empty_stream_is_refused():
    client = FakeS3()
    with pytest.raises(UpstreamRejected, match="empty or truncated"):
        store(client).archive("videos/a.mp4", iter([]))
    assert client.parts == {} and client.events[-1] == ("abort", None)


def test_a_stream_past_max_bytes_is_cut_off_and_aborted():
    data = video(10 * PART)
    client = FakeS3()
    with pytest.raises(UpstreamRejected, match="larger than"):
        store(client, max_bytes=3 * PART).archive("videos/a.mp4", chunks_of(data))
    kinds = [kind for kind, _ in client.events]
    assert "complete" not in kinds and kinds[-1] == "abort"
    assert all(number <= 3 for number in client.parts)


def test_concurrency_must_be_positive():
    with pytest.raises(ValueError):
        VideoStore(FakeS3(), "bucket", part_bytes=PART, max_bytes=10, concurrency=0)
