"""multipart/form-data request bodies (what the openai SDK always sends for videos.create), read
with python-multipart's streaming parser.

API Gateway hands the function a multipart body base64-encoded (template.yaml's BinaryMediaTypes
lists multipart/form-data, so the file's bytes survive). Every problem is a 4xx naming what is at
fault: no boundary (`Content-Type`), a body that does not parse or ends before its closing
boundary (`body`), a field sent twice or too long, a file where text belongs or the reverse (that
field). The body as a whole is capped before it is parsed (413); each file part again while it is
read (400 naming the field).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from sora_relay.domain.create_request import CreateVideoRequest, parse_create_fields, parse_create_request
from sora_relay.domain.errors import InvalidRequest, RequestTooLarge
from sora_relay.domain.reference_image import IMAGE_FIELD, MAX_IMAGE_BYTES, ImageUpload, image_upload
from sora_relay.runtime.api import request_body
from sora_relay.runtime.container import current

MULTIPART = "multipart/form-data"
# Marks a route whose body may also be a form: `create` (the create fields and the image file) or
# `fields` (the JSON body's fields, no file). scripts/openapi.py turns it into the form's schema.
FORM_EXTENSION = "x-sora-relay-form"
MAX_PARTS = 32
MAX_FIELD_BYTES = 64 * 1024  # a text field (a prompt is at most 4000 characters)


@dataclass(frozen=True)
class FilePart:
    name: str
    filename: str
    content_type: str | None  # the client's claim; the image's own bytes decide (reference_image.py)
    data: bytes


@dataclass
class Form:
    """The text fields (`a[b]` names nested one level: `{"a": {"b": ...}}`, as OpenAI's SDK
    spells `input_reference[image_url]`) and the file parts, by field name."""

    fields: dict[str, Any] = field(default_factory=dict)
    files: dict[str, FilePart] = field(default_factory=dict)


def is_multipart(event: APIGatewayProxyEvent) -> bool:
    content_type = event.headers.get("content-type") or event.headers.get("Content-Type") or ""
    return content_type.split(";", 1)[0].strip().lower() == MULTIPART


def raw_body(event: APIGatewayProxyEvent, *, max_bytes: int) -> bytes:
    """The body's bytes as the client sent them (base64 undone), at most `max_bytes` (else 413)."""
    body = event.body or ""
    if event.is_base64_encoded:
        # Checked before decoding: base64 is 4/3 of the bytes, so the decoded size is known.
        if len(body) > (max_bytes + 2) // 3 * 4 + 4:
            raise RequestTooLarge(f"The request body is larger than {max_bytes} bytes")
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidRequest("The request body is not valid base64", param="body") from error
    else:
        data = body.encode("utf-8", "surrogateescape")
    if len(data) > max_bytes:
        raise RequestTooLarge(f"The request body is larger than {max_bytes} bytes")
    return data


def parse_form(event: APIGatewayProxyEvent, *, max_body_bytes: int, max_file_bytes: dict[str, int]) -> Form:
    """Read a multipart/form-data body. Only the file fields named in `max_file_bytes` are taken
    (each up to its size); a file part under any other name, or a text part under one of those
    names that is not allowed to be text, is refused by the caller's field checks."""
    # python-multipart is imported by the first form, not at import: a JSON create never needs it.
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    content_type = event.headers.get("content-type") or event.headers.get("Content-Type") or ""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 70:  # RFC 2046: 1 to 70 characters
        raise InvalidRequest(
            "Content-Type multipart/form-data needs a boundary of 1 to 70 characters",
            param="Content-Type",
            code="invalid_multipart",
        )
    data = raw_body(event, max_bytes=max_body_bytes)
    reader = _FormReader(max_file_bytes)
    try:
        parser = MultipartParser(boundary, reader.callbacks(), max_size=max_body_bytes)
        parser.write(data)
        parser.finalize()
    except FormParserError as error:
        raise _malformed("the body is not valid multipart/form-data") from error
    if not reader.ended:
        raise _malformed("the body ends before its closing boundary")
    return reader.form


def _malformed(reason: str) -> InvalidRequest:
    return InvalidRequest(f"The request body is malformed: {reason}", param="body", code="invalid_multipart")


class _FormReader:
    """python-multipart's callbacks, collecting each part's headers and bytes."""

    def __init__(self, max_file_bytes: dict[str, int]) -> None:
        self.form = Form()
        self.ended = False
        self._max_file_bytes = max_file_bytes
        self._parts = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self._name = ""
        self._filename: str | None = None
        self._limit = MAX_FIELD_BYTES

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_end": self._finish,
        }

    def _begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidRequest(
                f"The form has more than {MAX_PARTS} parts", param="body", code="invalid_multipart"
            )
        self._headers, self._chunks, self._size = {}, [], 0

    def _header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").strip().lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header  # loaded by parse_form already

        disposition, options = parse_options_header(self._headers.get("content-disposition"))
        if disposition != b"form-data" or not options.get(b"name"):
            raise _malformed("a part has no Content-Disposition: form-data with a name")
        self._name = options[b"name"].decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._filename = filename.decode("utf-8", "replace") if filename is not None else None
        if self._filename is not None and self._name not in self._max_file_bytes:
            raise InvalidRequest(
                f"{self._name} is not a file field (files: {', '.join(self._max_file_bytes) or 'none'})",
                param=self._name,
                code="invalid_value",
            )
        self._limit = self._max_file_bytes[self._name] if self._filename is not None else MAX_FIELD_BYTES

    def _data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._size > self._limit:
            what = "file" if self._filename is not None else "field"
            raise InvalidRequest(
                f"{self._name}: the {what} is larger than {self._limit} bytes",
                param=self._name,
                code="file_too_large" if self._filename is not None else "invalid_value",
            )
        self._chunks.append(data[start:end])

    def _end(self) -> None:
        name, payload = self._name, b"".join(self._chunks)
        outer, _, inner = name.partition("[")
        inner = inner.removesuffix("]")
        if name in self.form.files or (not name.endswith("[]") and _present(self.form.fields, outer, inner)):
            raise InvalidRequest(f"{name} is sent more than once", param=name, code="invalid_value")
        if self._filename is not None:
            content_type = self._headers.get("content-type")
            self.form.files[name] = FilePart(
                name, self._filename, content_type.decode("latin-1") if content_type else None, payload
            )
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidRequest(f"{name} is not UTF-8 text", param=name, code="invalid_value") from error
        if name.endswith("[]"):  # an array, as the SDK spells one: `image_urls[]` per item
            items = self.form.fields.setdefault(outer, [])
            if not isinstance(items, list):
                raise InvalidRequest(f"{outer} is sent both as a value and as a list", param=outer)
            items.append(text)
        elif inner:
            nested = self.form.fields.setdefault(outer, {})
            if not isinstance(nested, dict):
                raise InvalidRequest(f"{outer} is sent both as a value and as fields", param=outer)
            nested[inner] = text
        else:
            self.form.fields[name] = text

    def _finish(self) -> None:
        self.ended = True


def _present(fields: dict[str, Any], outer: str, inner: str) -> bool:
    value = fields.get(outer)
    if value is None:
        return False
    return not inner or not isinstance(value, dict) or inner in value


# -- the create and remix bodies: JSON or a form ---------------------------------------------------------


def read_create(event: APIGatewayProxyEvent) -> tuple[CreateVideoRequest, ImageUpload | None]:
    """POST /v1/videos as JSON or multipart/form-data: the request, and the reference image when
    it came as a file part (a data URL in either is the request's own, see submit_video)."""
    settings = current().settings
    if not is_multipart(event):
        return parse_create_request(request_body(event), allow_loopback=settings.allow_loopback_urls), None
    form = parse_form(
        event,
        max_body_bytes=MAX_IMAGE_BYTES + settings.max_request_body_bytes,
        max_file_bytes={IMAGE_FIELD: MAX_IMAGE_BYTES},
    )
    part = form.files.get(IMAGE_FIELD)
    if part is not None and IMAGE_FIELD in form.fields:
        raise InvalidRequest(f"{IMAGE_FIELD} is sent both as a file and as a value", param=IMAGE_FIELD)
    request = parse_create_fields(form.fields, allow_loopback=settings.allow_loopback_urls)
    if part is not None and request.image_urls:
        raise InvalidRequest(f"send {IMAGE_FIELD} or image_urls, not both", param=IMAGE_FIELD)
    return request, image_upload(part.data) if part is not None else None


def read_fields(event: APIGatewayProxyEvent) -> Any:
    """A body of plain fields (the remix's), as JSON or as a form without files."""
    settings = current().settings
    if is_multipart(event):
        return parse_form(event, max_body_bytes=settings.max_request_body_bytes, max_file_bytes={}).fields
    body = request_body(event)
    try:
        return json.loads(body) if body.strip() else None
    except ValueError as error:
        raise InvalidRequest("The request body is not valid JSON", code="invalid_json") from error
