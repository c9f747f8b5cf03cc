"""Outbound URL safety: what is refused before DNS, after DNS, and through redirects."""

from __future__ import annotations

import httpx
import pytest

from sora_relay.adapters import outbound_http
from sora_relay.adapters.outbound_http import SafeHttp, checked_address, parse_outbound_url
from sora_relay.domain.errors import UnsafeUrl


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/x",
        "ftp://example.com/x",
        "https://user:pw@example.com/x",
        "https:///nohost",
        "https://localhost/x",
        "https://api.localhost/x",
        "https://127.0.0.1/x",
        "https://127.1.2.3/x",
        "https://10.1.2.3/x",
        "https://172.16.0.1/x",
        "https://192.168.0.1/x",
        "https://100.64.0.1/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://0.0.0.0/x",
        "https://224.0.0.1/x",
        "https://[::1]/x",
        "https://[fd00::1]/x",
        "https://[fe80::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[::ffff:169.254.169.254]/x",
        "https://[64:ff9b::a9fe:a9fe]/x",
        "https://[2002:a9fe:a9fe::1]/x",
        "https://[ff02::1]/x",
        "https://example.com:99999/x",
        "https://" + "a" * 2100 + ".com/",
    ],
)
def test_refused_before_any_lookup(url):
    with pytest.raises(UnsafeUrl) as caught:
        parse_outbound_url(url, field="callback_url")
    assert caught.value.param == "callback_url"


@pytest.mark.parametrize(
    "url", ["https://example.com/hook?x=1", "https://93.184.215.14:8443/a", "https://[2606:4700::1111]/"]
)
def test_public_https_urls_pass(url):
    assert parse_outbound_url(url, field="callback_url").scheme == "https"


def test_loopback_only_when_explicitly_allowed():
    assert parse_outbound_url("http://127.0.0.1:8080/x", field="f", allow_loopback=True).port == 8080
    assert parse_outbound_url("http://localhost:8080/x", field="f", allow_loopback=True).host == "localhost"
    with pytest.raises(UnsafeUrl):  # allowing loopback does not allow other private ranges
        parse_outbound_url("https://10.0.0.1/x", field="f", allow_loopback=True)
    with pytest.raises(UnsafeUrl):  # nor plain http to a public host
        parse_outbound_url("http://example.com/x", field="f", allow_loopback=True)


@pytest.mark.parametrize(
    ("answers", "safe"),
    [
        (["93.184.215.14"], True),
        (["169.254.169.254"], False),
        (["93.184.215.14", "10.0.0.5"], False),  # one bad answer is enough to refuse
        (["::ffff:127.0.0.1"], False),
        (["fd12::1"], False),
        ([], False),
    ],
)
def test_names_are_judged_by_every_address_they_resolve_to(monkeypatch, answers, safe):
    monkeypatch.setattr(outbound_http, "resolve_host", lambda host, port: answers)
    target = parse_outbound_url("https://hooks.example.com/x", field="callback_url")
    if safe:
        assert checked_address(target, field="callback_url") == answers[0]
    else:
        with pytest.raises(UnsafeUrl):
            checked_address(target, field="callback_url")


def test_unresolvable_names_are_refused(monkeypatch):
    def fail(host: str, port: int) -> list[str]:
        raise OSError("nxdomain")

    monkeypatch.setattr(outbound_http, "resolve_host", fail)
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        checked_address(parse_outbound_url("https://nope.example/x", field="f"), field="f")


class TestSafeHttp:
    def _client(self, handler, monkeypatch, dns=None):
        table = dns or {"cdn.example.com": "93.184.215.14", "evil.example.com": "10.0.0.7"}
        monkeypatch.setattr(outbound_http, "resolve_host", lambda host, port: [table[host]])
        return SafeHttp(httpx.Client(transport=httpx.MockTransport(handler)))

    def test_requests_keep_the_host_name_so_pooling_and_tls_are_per_host(self, monkeypatch):
        # The address is pinned as the connection opens (pinned_client), not by rewriting the URL
        seen = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, content=b"ok")

        http = self._client(handler, monkeypatch)
        with http.stream("GET", "https://cdn.example.com/v.mp4?sig=1", field="video_url") as response:
            assert response.read() == b"ok"
        assert str(seen[0].url) == "https://cdn.example.com/v.mp4?sig=1"
        assert seen[0].headers["host"] == "cdn.example.com"
        assert "sni_hostname" not in seen[0].extensions

    def test_a_name_that_resolves_privately_is_refused_before_sending(self, monkeypatch):
        seen = []
        http = self._client(lambda request: seen.append(request) or httpx.Response(200), monkeypatch)
        with (
            pytest.raises(UnsafeUrl, match="callback_url resolves to a private") as refused,
            http.stream("POST", "https://evil.example.com/hook", field="callback_url"),
        ):
            pass
        assert refused.value.param == "callback_url" and seen == []

    def test_a_redirect_to_a_private_address_is_refused(self, monkeypatch):
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(302, headers={"location": "https://evil.example.com/x"})

        http = self._client(handler, monkeypatch)
        with (
            pytest.raises(UnsafeUrl, match="private"),
            http.stream("GET", "https://cdn.example.com/v", field="video_url"),
        ):
            pass

    def test_a_redirect_to_http_is_refused(self, monkeypatch):
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(301, headers={"location": "http://cdn.example.com/x"})

        with (
            pytest.raises(UnsafeUrl, match="https"),
            self._client(handler, monkeypatch).stream("GET", "https://cdn.example.com/v", field="video_url"),
        ):
            pass

    def test_redirect_loops_stop(self, monkeypatch):
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(302, headers={"location": "/again"})

        with (
            pytest.raises(UnsafeUrl, match="redirected"),
            self._client(handler, monkeypatch).stream("GET", "https://cdn.example.com/v", field="video_url"),
        ):
            pass

    def test_safe_redirects_are_followed(self, monkeypatch):
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v":
                return httpx.Response(302, headers={"location": "/final"})
            return httpx.Response(200, content=b"done")

        with self._client(handler, monkeypatch).stream(
            "GET", "https://cdn.example.com/v", field="f"
        ) as response:
            assert response.read() == b"done"
