"""A reference image the client sends itself (a multipart file or a base64 data URL), not a link.

Its type is what its first bytes say, never the file name or the part's Content-Type (both are the
client's claim): PNG, JPEG or WebP, the first-frame formats every catalogue provider takes. It is
stored in our bucket and the provider gets a short-lived presigned link (usecases/submit.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from sora_relay.domain.errors import InvalidRequest

# What API Gateway can hand a Lambda: its 10 MB payload limit, and Lambda's 6 MB synchronous
# request limit on the base64 the binary body becomes, leave about 4.4 MiB; 4 MiB is the image.
MAX_IMAGE_BYTES = 4 * 1024 * 1024
IMAGE_FIELD = "input_reference"

_DATA_URL = re.compile(
    r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w.+-]+=[\w.+-]+)*;base64,(?P<data>.*)$", re.S
)


@dataclass(frozen=True)
class ImageUpload:
    data: bytes
    content_type: str  # what the magic bytes say: image/png, image/jpeg or image/webp

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def extension(self) -> str:
        return self.content_type.removeprefix("image/")


def sniff_image_type(head: bytes) -> str | None:
    """image/png, image/jpeg or image/webp from the file's signature; None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_upload(data: bytes, *, field: str = IMAGE_FIELD, max_bytes: int = MAX_IMAGE_BYTES) -> ImageUpload:
    """Check an uploaded image: not empty, at most `max_bytes`, and a PNG, JPEG or WebP by its bytes."""
    if not data:
        raise InvalidRequest(f"{field} is an empty file", param=field, code="invalid_value")
    if len(data) > max_bytes:
        raise InvalidRequest(f"{field} is larger than {max_bytes} bytes", param=field, code="file_too_large")
    content_type = sniff_image_type(data[:16])
    if content_type is None:
        raise InvalidRequest(
            f"{field} must be a PNG, JPEG or WebP image (its bytes say it is not)",
            param=field,
            code="invalid_image",
        )
    return ImageUpload(data, content_type)


def is_data_url(value: str) -> bool:
    return value[:5].lower() == "data:"


def image_from_data_url(
    url: str, *, field: str = IMAGE_FIELD, max_bytes: int = MAX_IMAGE_BYTES
) -> ImageUpload:
    """A `data:image/...;base64,...` URL's image, checked like an upload."""
    found = _DATA_URL.match(url)
    if found is None:
        raise InvalidRequest(
            f"{field} must be an https URL or a base64 data URL (data:image/png;base64,...)",
            param=field,
            code="invalid_value",
        )
    try:
        data = base64.b64decode(found["data"], validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidRequest(
            f"{field}: the data URL is not valid base64", param=field, code="invalid_value"
        ) from error
    return image_upload(data, field=field, max_bytes=max_bytes)
