"""What the schemathesis run found (500s on hostile input), each pinned by a test: 4xx now."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import load_event
from tests.integration.conftest import submitted


@pytest.mark.parametrize("token", ["é", "\u00e9" * 43, "💥"])
def test_a_non_ascii_callback_token_is_401_not_500(api, internet, token):
    _, call = submitted(api, internet)
    status, _, answer = api.callback(call["body"]["callback_url"], internet.success_body(call), token=token)
    assert status == 401 and answer["error"]["code"] == "invalid_callback_token"


@pytest.mark.parametrize("route", ["submit", "callback-success"])
def test_a_body_that_is_not_utf8_is_400_not_500(api, internet, route):
    event = load_event(route)
    event["body"] = base64.b64encode(b"\xff\xc6{").decode()
    event["isBase64Encoded"] = True
    status, _, answer = api.call("submit" if route == "submit" else "callback", event)
    assert status == 400 and answer["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("limit", ["²", "\u0661\u0660", "5\u0663"])
def test_a_unicode_digit_limit_is_400_not_500(api, internet, limit):
    status, _, answer = api.list(limit=limit)
    assert status == 400 and answer["error"]["param"] == "limit"
