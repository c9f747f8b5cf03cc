"""The create request's shape: OpenAI aliases, and an error naming the field for each bad input.

What each model offers (seconds, sizes, images) is checked against the catalogue by the submit use
case (tests/unit/test_catalogue.py, tests/integration/test_submit.py).
"""

from __future__ import annotations

import json

import pytest

from sora_relay.domain.create_request import parse_create_request
from sora_relay.domain.errors import InvalidRequest, UnsafeUrl


def parse(body, allow_loopback: bool = False):
    return parse_create_request(json.dumps(body), allow_loopback=allow_loopback)


def test_unset_fields_are_left_to_the_model():
    request = parse({"prompt": "  a cat  "})
    assert (request.prompt, request.model, request.video_seconds, request.size) == ("a cat", None, None, None)
    assert request.image_url is None and request.callback_url is None


@pytest.mark.parametrize("seconds", ["4", "8", "12", 8])
def test_openai_seconds(seconds):
    assert parse({"prompt": "p", "seconds": seconds}).video_seconds == int(seconds)


def test_seconds_and_duration_may_agree():
    assert parse({"prompt": "p", "seconds": "8", "duration": 8}).video_seconds == 8


def test_first_image_wins_over_input_reference():
    request = parse(
        {
            "prompt": "p",
            "image_urls": ["https://a.example/1.png"],
            "input_reference": "https://b.example/2.png",
        }
    )
    assert request.image_url == "https://a.example/1.png"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": 12}, "prompt"),
        ({"prompt": "p", "model": ""}, "model"),
        ({"prompt": "p", "duration": 0}, "duration"),
        ({"prompt": "p", "duration": 4.5}, "duration"),
        ({"prompt": "p", "seconds": "four"}, "seconds"),
        ({"prompt": "p", "seconds": "8", "duration": 4}, "seconds"),
        ({"prompt": "p", "size": "big"}, "size"),
        ({"prompt": "p", "image_urls": [1]}, "image_urls.0"),
        ({"prompt": "p", "unknown": 1}, "unknown"),
    ],
)
def test_invalid_fields_are_named(body, param):
    with pytest.raises(InvalidRequest) as caught:
        parse(body)
    assert caught.value.param == param and caught.value.status_code == 400


@pytest.mark.parametrize("raw", [None, "", "  ", "nope", "[]", "1", b"\xff\xfe"])
def test_bodies_that_are_not_json_objects(raw):
    with pytest.raises(InvalidRequest) as caught:
        parse_create_request(raw, allow_loopback=False)
    assert caught.value.code == "invalid_json"


def test_loopback_callback_only_when_allowed():
    with pytest.raises(UnsafeUrl):
        parse({"prompt": "p", "callback_url": "http://127.0.0.1:9000/hook"})
    assert parse(
        {"prompt": "p", "callback_url": "http://127.0.0.1:9000/hook"}, allow_loopback=True
    ).callback_url
