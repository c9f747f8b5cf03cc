"""The playground function in process (events/playground.json and variants of it): the page and its
files, their content types, caching and security headers, and the CSP's media origin read off a
link the S3 client presigns, as StatusFunction's are."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from tests.conftest import LambdaContext, load_event, load_handler
from tests.integration.conftest import through_a_custom_domain

STRICT = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "connect-src": "'self'",
    "form-action": "'none'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
}


@pytest.fixture
def playground(stack) -> Any:
    return load_handler("playground")  # a fresh module: its files and CSP are read on first use


def call(handler: Any, event: dict) -> dict:
    return handler.lambda_handler(event, LambdaContext())


def asset_event(name: str, version: str | None = None, **headers: str) -> dict:
    event = load_event("playground")
    event["resource"] = event["requestContext"]["resourcePath"] = "/playground/{asset}"
    event["path"] = f"/playground/{name}"
    event["requestContext"]["path"] = f"/live/playground/{name}"
    event["pathParameters"] = {"asset": name}
    if version is not None:
        event["queryStringParameters"] = {"v": version}
        event["multiValueQueryStringParameters"] = {"v": [version]}
    event["headers"] |= headers
    return event


def policy(answer: dict) -> dict[str, str]:
    header = answer["multiValueHeaders"]["Content-Security-Policy"][0]
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


def header(answer: dict, name: str) -> str:
    return answer["multiValueHeaders"][name][0]


def test_the_page_is_html_with_a_strict_policy_naming_the_presigned_links_origin(playground, stack):
    # When
    answer = call(playground, load_event("playground"))

    # Then
    assert answer["statusCode"] == 200
    assert header(answer, "Content-Type") == "text/html; charset=utf-8"
    assert header(answer, "X-Content-Type-Options") == "nosniff"
    assert header(answer, "Referrer-Policy") == "no-referrer"
    assert header(answer, "Cache-Control") == "no-cache"
    directives = policy(answer)
    assert {name: directives[name] for name in STRICT} == STRICT
    # The origin a presigned video link of this bucket has, made by the S3 client the way production does.
    s3 = boto3.client("s3", region_name="us-east-1", config=Config(signature_version="s3v4"))
    link = s3.generate_presigned_url(
        "get_object", Params={"Bucket": stack.refs["VideosBucket"], "Key": "videos/x.mp4"}
    )
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(link))
    assert directives["media-src"] == origin
    assert directives["img-src"] == f"'self' data: {origin}"
    # No inline code: every script and stylesheet is a file of ours, named by its version.
    body = answer["body"]
    assert (
        "<style" not in body and " style=" not in body and re.search(r"<script(?![^>]*\bsrc=)", body) is None
    )
    assert re.search(r'<script src="playground/app\.js\?v=[0-9a-f]{16}" defer>', body)
    assert re.search(r'<link rel="stylesheet" href="playground/app\.css\?v=[0-9a-f]{16}">', body)
    assert "{{" not in body


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("placeholder.svg", "image/svg+xml"),
    ],
)
def test_each_asset_has_its_type_and_is_immutable_under_the_name_the_page_gives_it(
    playground, name, content_type
):
    # Given the version the page names the asset with
    page = call(playground, load_event("playground"))["body"]
    named = re.search(rf"playground/{re.escape(name)}\?v=([0-9a-f]{{16}})", page)
    version = named[1] if named else None

    # When
    current = call(playground, asset_event(name, version or "")) if version else None
    unversioned = call(playground, asset_event(name))

    # Then
    for answer in filter(None, (current, unversioned)):
        assert answer["statusCode"] == 200
        assert header(answer, "Content-Type") == content_type
        assert header(answer, "X-Content-Type-Options") == "nosniff"
        assert answer["body"]
    if current is not None:
        assert header(current, "Cache-Control") == "public, max-age=31536000, immutable"
    assert header(unversioned, "Cache-Control") == "no-cache"  # an old or missing v: ask again each time


def test_a_known_etag_is_answered_304_without_a_body(playground):
    first = call(playground, asset_event("app.js"))
    etag = header(first, "ETag")

    again = call(playground, asset_event("app.js", **{"If-None-Match": etag}))
    changed = call(playground, asset_event("app.js", **{"If-None-Match": '"something-else"'}))

    assert again["statusCode"] == 304 and again["body"] == ""
    assert header(again, "ETag") == etag
    assert changed["statusCode"] == 200


def test_an_unknown_asset_is_a_404_in_the_error_shape(playground):
    answer = call(playground, asset_event("..%2Fapp.py"))
    other = call(playground, asset_event("index.html"))  # the page is served at / only

    for refused in (answer, other):
        assert refused["statusCode"] == 404
        assert '"param": "asset"' in refused["body"]


def test_the_stage_url_without_its_slash_is_redirected_to_it(playground):
    # The page names its files and the API relative to its own URL, so it must end in "/".
    event = load_event("playground")
    event["requestContext"]["path"] = "/live"

    answer = call(playground, event)

    assert answer["statusCode"] == 301
    assert header(answer, "Location") == "live/"


def test_the_page_and_its_files_route_through_a_custom_domains_base_path(playground):
    page = through_a_custom_domain(load_event("playground"))
    page["requestContext"]["path"] = "/relay/"
    asset = through_a_custom_domain(asset_event("app.css"))

    assert call(playground, page)["statusCode"] == 200
    answer = call(playground, asset)
    assert answer["statusCode"] == 200
    assert header(answer, "Content-Type") == "text/css; charset=utf-8"
