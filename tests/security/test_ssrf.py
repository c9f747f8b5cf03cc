"""Attack 2: SSRF through callback_url, image_urls and the provider's video_url.

Refused when not https or when they resolve to loopback, private, link-local (the metadata
service included), multicast, IPv4-mapped or unique-local IPv6 addresses: at submit for literal
addresses, at fetch time for names (the connection goes to the address that was checked), and
on every redirect hop.
"""

from __future__ import annotations

import json

import boto3
import httpx
import pytest

from devstack.template import load_template
from tests.integration.conftest import CDN_HOST, VALID, submitted

UNSAFE = [
    "http://client.example.com/hooks",  # not https
    "https://127.0.0.1/hooks",
    "https://localhost/hooks",
    "https://10.1.2.3/hooks",
    "https://172.16.0.9/hooks",
    "https://192.168.0.1/hooks",
    "https://169.254.169.254/latest/meta-data/",
    "https://100.64.0.1/hooks",  # carrier-grade NAT
    "https://224.0.0.251/hooks",  # multicast
    "https://[::1]/hooks",
    "https://[::ffff:127.0.0.1]/hooks",  # IPv4-mapped IPv6
    "https://[::ffff:169.254.169.254]/hooks",
    "https://[fd00::1]/hooks",  # unique-local
    "https://[fe80::1]/hooks",  # link-local
    "https://[ff02::1]/hooks",  # multicast
    "https://0.0.0.0/hooks",
    "https://user:pass@client.example.com/hooks",
]


@pytest.mark.parametrize("url", UNSAFE)
@pytest.mark.parametrize("field", ["callback_url", "image_urls"])
def test_unsafe_urls_are_refused_at_submit(api, internet, url, field):
    body = {**VALID, field: [url] if field == "image_urls" else url}
    status, _, answer = api.submit(body)
    assert status == 400, answer
    assert answer["error"]["code"] == "unsafe_url" and answer["error"]["param"] == field
    assert internet.provider_calls == []


def test_a_video_url_whose_name_resolves_to_the_metadata_service_is_not_fetched(api, internet, stack):
    video, call = submitted(api, internet)
    body = internet.success_body(call).replace(
        f"https://{CDN_HOST}".encode(), b"https://internal.client.test"
    )
    internet.task_results[call["task_id"]] = json.loads(body)  # the provider's lookup says so too
    status, _, _answer = api.callback(call["body"]["callback_url"], body)
    assert status == 200
    assert internet.fetched_urls == []  # nothing was requested from anywhere
    _, _, failed = api.get(video["id"])
    assert failed["error"]["code"] == "video_fetch_failed"


def test_a_redirect_to_a_private_address_is_not_followed(api, internet, stack):
    video, call = submitted(api, internet)
    internet.videos["/moved.mp4"] = lambda: httpx.Response(
        302, headers={"location": "https://169.254.169.254/latest/meta-data/iam/"}
    )
    status, _, _answer = api.callback(
        call["body"]["callback_url"], internet.success_body(call, video_path="/moved.mp4")
    )
    assert status == 200 and api.get(video["id"])[2]["status"] == "failed"
    assert [url.rsplit("/", 1)[-1] for url in internet.fetched_urls] == ["moved.mp4"]  # one hop only


def test_the_fetch_keeps_the_name_in_its_url(api, internet, stack):
    # The name is checked before the request is sent, and again as the connection opens: the
    # outbound client (urls.pinned_client, replaced here by the fake transport) connects to the
    # address it checked (tests/security/test_ssrf_pooling.py). The URL keeps the name, so
    # connections are pooled, and TLS verified, per host rather than per address.
    _, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    [fetched] = internet.fetched_urls
    assert httpx.URL(fetched).host == CDN_HOST


def test_a_webhook_to_a_name_that_resolves_privately_is_not_sent(api, internet, stack, downstream):
    # Submit accepts a name (it cannot know what it will resolve to later); delivery checks it
    video, call = submitted(api, internet, callback_url="https://internal.client.test/hooks")
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    downstream.pump()
    assert internet.webhooks == []
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=stack.refs["TasksTable"], Key={"task_id": {"S": video["id"]}}
    )["Item"]
    attempt = item["webhook"]["M"]["history"]["L"][0]["M"]
    assert attempt["error"]["S"] == "callback_url resolves to a private, loopback or link-local address"


def test_the_deployed_template_never_allows_loopback():
    template = load_template()
    assert template["Globals"]["Function"]["Environment"]["Variables"]["ALLOW_LOOPBACK_URLS"] == "false"
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            variables = resource["Properties"].get("Environment", {}).get("Variables", {})
            assert "ALLOW_LOOPBACK_URLS" not in variables, name
