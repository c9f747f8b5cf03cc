"""The local gateway hands a multipart body to the function base64-encoded, as API Gateway does
for the template's BinaryMediaTypes, even when its bytes happen to be valid UTF-8."""

from __future__ import annotations

import base64

from devstack import proxy
from devstack.gateway import LocalApiGateway
from devstack.template import Route, load_template

ROUTE = Route("POST", "/v1/videos", "SubmitFunction", True)
CONTEXT = {"stage": "live", "domainName": "127.0.0.1", "requestId": "r", "identity": {"apiKeyId": "k"}}


def test_a_binary_media_type_is_base64_even_when_it_is_text():
    body = b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n--b--\r\n'
    event = proxy.build_event(ROUTE, "POST", "/v1/videos", {}, "", [], body, CONTEXT, binary=True)
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == body
    plain = proxy.build_event(ROUTE, "POST", "/v1/videos", {}, "", [], b'{"a": 1}', CONTEXT)
    assert plain["isBase64Encoded"] is False and plain["body"] == '{"a": 1}'


def test_the_gateway_matches_the_templates_binary_media_types():
    api = load_template()["Resources"]["RestApi"]["Properties"]
    assert api["BinaryMediaTypes"] == ["multipart~1form-data"]  # SAM's spelling of the slash
    gateway = object.__new__(LocalApiGateway)  # only the matching, no stack or server
    gateway.binary_media_types = ["multipart/form-data"]
    assert gateway._is_binary("multipart/form-data; boundary=abc")
    assert gateway._is_binary("Multipart/Form-Data")
    assert not gateway._is_binary("application/json")
    assert not gateway._is_binary(None)
