"""The `sora-relay` CLI against a faked API (httpx.MockTransport): no network, no real sleeping."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sora_relay_cli.api import ApiClient, ApiError
from sora_relay_cli.main import main

API = "http://127.0.0.1:3000"
KEY = "test-key-s3cret"
PRESIGNED_HOST = "bucket.s3.127.0.0.1.example"
VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4000  # ~1 MB, spans several chunks


def video(video_id: str = "video_abc", status: str = "queued", progress: int = 0, **extra: Any) -> dict:
    body = {
        "id": video_id,
        "object": "video",
        "model": "sora-2",
        "status": status,
        "progress": progress,
        "created_at": 1_700_000_000,
        "completed_at": None,
        "expires_at": None,
        "prompt": "a red fox in the snow",
        "seconds": "4",
        "size": "1280x720",
        "error": None,
        "callback_url": None,
        "download_url": None,
        "download_expires_at": None,
    }
    body.update(extra)
    return body


def api_error(
    status: int, code: str, message: str, param: str | None = None, **headers: str
) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message, "param": param}}, headers=headers
    )


class FakeApi:
    """Routes requests to handlers keyed by (method, path) and records every request it sees."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = {}

    def on(
        self, method: str, path: str, *responses: httpx.Response | Callable[[httpx.Request], httpx.Response]
    ) -> None:
        # Several responses are served in order, the last one repeating (for polling).
        queue = list(responses)

        def handler(request: httpx.Request) -> httpx.Response:
            item = queue.pop(0) if len(queue) > 1 else queue[0]
            return item(request) if callable(item) else item

        self.routes[(method, path)] = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.raw_path.decode().split("?")[0])
        if request.url.host == PRESIGNED_HOST:
            key = (request.method, "presigned")
        if key not in self.routes:
            return api_error(404, "route_not_found", f"no fake route {key}")
        return self.routes[key](request)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORA_RELAY_API_URL", API)
    monkeypatch.setenv("SORA_RELAY_API_KEY", KEY)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def run(fake: FakeApi, sleeps: list[float]) -> Callable[..., int]:
    """main() wired to the fake API, a recording sleep and a clock that advances only when we sleep."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    def run(*argv: str, **kwargs: Any) -> int:
        return main(
            list(argv), transport=httpx.MockTransport(fake), sleep=sleep, clock=lambda: now[0], **kwargs
        )

    return run


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text


# -- configuration ---------------------------------------------------------------------------------


def test_env_vars_supply_url_and_key(env: None, fake: FakeApi, run, capsys) -> None:
    fake.on("GET", "/v1/videos/video_abc", httpx.Response(200, json=video()))

    assert run("status", "video_abc") == 0

    (request,) = fake.requests
    assert str(request.url) == f"{API}/v1/videos/video_abc"
    assert request.headers["x-api-key"] == KEY
    assert_no_key(*capsys.readouterr())


def test_flags_override_env_and_stage_path_is_kept(env: None, fake: FakeApi, run) -> None:
    fake.on("GET", "/live/v1/videos/video_abc", httpx.Response(200, json=video()))

    code = run("status", "video_abc", "--api-url", "http://127.0.0.1:4000/live/", "--api-key", "other")

    assert code == 0
    (request,) = fake.requests
    assert str(request.url) == "http://127.0.0.1:4000/live/v1/videos/video_abc"
    assert request.headers["x-api-key"] == "other"


@pytest.mark.parametrize(
    ("unset", "message"),
    [
        ("SORA_RELAY_API_URL", "error: no API URL: pass --api-url or set SORA_RELAY_API_URL"),
        ("SORA_RELAY_API_KEY", "error: no API key: set SORA_RELAY_API_KEY or pass --api-key"),
    ],
)
def test_missing_url_or_key_is_a_usage_error(
    env: None, monkeypatch: pytest.MonkeyPatch, fake: FakeApi, run, capsys, unset: str, message: str
) -> None:
    monkeypatch.delenv(unset)

    assert run("status", "video_abc") == 2

    assert capsys.readouterr().err.strip() == message
    assert fake.requests == []


def test_non_http_url_is_a_usage_error(env: None, fake: FakeApi, run, capsys) -> None:
    assert run("--api-url", "ftp://example.com", "status", "video_abc") == 2
    assert "http(s) URL" in capsys.readouterr().err
    assert fake.requests == []


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "a fox", "--duration", "five"],  # what a model offers is the server's (test_submit)
        ["wait", "video_abc", "--interval", "0"],
        ["list", "--limit", "many"],
        ["status", ".."],
        ["download", "video_abc"],  # --out is required
        ["frobnicate"],
    ],
)
def test_bad_options_are_usage_errors(env: None, fake: FakeApi, run, argv: list[str]) -> None:
    assert run(*argv) == 2
    assert fake.requests == []


def test_help_exits_zero(run, capsys) -> None:
    assert run("--help") == 0
    out = capsys.readouterr().out
    for command in ("submit", "status", "list", "wait", "download"):
        assert command in out


# -- errors ----------------------------------------------------------------------------------------


def test_api_error_is_one_line_and_exit_1(env: None, fake: FakeApi, run, capsys) -> None:
    fake.on("GET", "/v1/videos/video_x", api_error(404, "video_not_found", "No video with id video_x", "id"))

    assert run("status", "video_x") == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err == "error: 404 video_not_found: No video with id video_x (param: id)\n"


def test_gateway_error_without_our_envelope_is_reported(env: None, fake: FakeApi, run, capsys) -> None:
    # API Gateway answers a bad key itself, with its own body shape.
    fake.on("GET", "/v1/videos", httpx.Response(403, json={"message": "Forbidden"}))

    assert run("list") == 1

    assert capsys.readouterr().err == "error: 403 forbidden: Forbidden\n"


def test_connection_error_names_the_url_and_hides_the_key(env: None, run, capsys) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    code = main(["status", "video_abc"], transport=httpx.MockTransport(refuse), sleep=lambda s: None)

    assert code == 1
    out, err = capsys.readouterr()
    assert err == f"error: could not reach {API}/v1/videos/video_abc: Connection refused\n"
    assert_no_key(out, err)


def test_key_echoed_by_a_server_error_is_redacted(env: None, fake: FakeApi, run, capsys) -> None:
    fake.on("GET", "/v1/videos/video_abc", api_error(400, "bad_key", f"key {KEY} is malformed"))

    assert run("status", "video_abc") == 1

    err = capsys.readouterr().err
    assert err == "error: 400 bad_key: key *** is malformed\n"


def test_503_is_retried_after_retry_after(env: None, fake: FakeApi, run, sleeps: list[float]) -> None:
    fake.on(
        "GET",
        "/v1/videos/video_abc",
        api_error(503, "unavailable", "try later", **{"Retry-After": "3"}),
        httpx.Response(200, json=video()),
    )

    assert run("status", "video_abc") == 0

    assert len(fake.requests) == 2
    assert sleeps == [3.0]


# -- submit ----------------------------------------------------------------------------------------


def test_submit_sends_the_body_key_and_a_fresh_idempotency_key(env: None, fake: FakeApi, run, capsys) -> None:
    fake.on("POST", "/v1/videos", httpx.Response(202, json=video()))

    code = run(
        "submit",
        "a red fox in the snow",
        "--model",
        "sora-2-pro",
        "--duration",
        "8",
        "--size",
        "1792x1024",
        "--callback-url",
        "https://hooks.example.com/done",
        "--image-url",
        "https://img.example.com/1.png",
        "--image-url",
        "https://img.example.com/2.png",
    )

    assert code == 0
    (request,) = fake.requests
    assert request.headers["x-api-key"] == KEY
    assert json.loads(request.content) == {
        "prompt": "a red fox in the snow",
        "model": "sora-2-pro",
        "duration": 8,
        "size": "1792x1024",
        "callback_url": "https://hooks.example.com/done",
        "image_urls": ["https://img.example.com/1.png", "https://img.example.com/2.png"],
    }
    assert uuid.UUID(request.headers["idempotency-key"]).version == 4
    out = capsys.readouterr().out
    assert "video_abc" in out
    assert "queued (0%)" in out


def test_submit_sends_only_the_prompt_by_default_and_fresh_keys_per_call(
    env: None, fake: FakeApi, run
) -> None:
    fake.on("POST", "/v1/videos", httpx.Response(202, json=video()))

    assert run("submit", "a fox") == 0
    assert run("submit", "a fox") == 0

    first, second = fake.requests
    assert json.loads(first.content) == {"prompt": "a fox"}
    assert first.headers["idempotency-key"] != second.headers["idempotency-key"]


def test_submit_retries_with_the_same_idempotency_key(env: None, fake: FakeApi, run, capsys) -> None:
    fake.on(
        "POST",
        "/v1/videos",
        api_error(502, "bad_gateway", "upstream hiccup"),
        httpx.Response(202, json=video()),
    )

    assert run("submit", "a fox", "--idempotency-key", "my-key-1") == 0

    keys = [r.headers["idempotency-key"] for r in fake.requests]
    assert keys == ["my-key-1", "my-key-1"]


def test_submit_failure_tells_how_to_retry_safely(env: None, fake: FakeApi, run, capsys) -> None:
    fake.on("POST", "/v1/videos", api_error(503, "unavailable", "down"))

    assert run("submit", "a fox", "--idempotency-key", "my-key-2") == 1

    assert len(fake.requests) == 3  # the first try and two retries
    err = capsys.readouterr().err
    assert err == "error: 503 unavailable: down (to retry safely: --idempotency-key my-key-2)\n"


def test_submit_json_prints_the_raw_object(env: None, fake: FakeApi, run, capsys) -> None:
    fake.on("POST", "/v1/videos", httpx.Response(202, json=video()))

    assert run("submit", "a fox", "--json") == 0

    assert json.loads(capsys.readouterr().out) == video()


def test_submit_wait_out_submits_waits_and_downloads(
    env: None, fake: FakeApi, run, capsys, tmp_path: Path, sleeps: list[float]
) -> None:
    # Given a task that completes on the second poll
    fake.on("POST", "/v1/videos", httpx.Response(202, json=video()))
    fake.on(
        "GET",
        "/v1/videos/video_abc",
        httpx.Response(200, json=video(status="in_progress", progress=50)),
        httpx.Response(200, json=video(status="completed", progress=100, completed_at=1_700_000_100)),
    )
    serve_content(fake)
    out_file = tmp_path / "fox.mp4"

    # When
    code = run("submit", "a fox", "--wait", "--out", str(out_file), "--interval", "0.01", "--json")

    # Then
    assert code == 0
    assert out_file.read_bytes() == VIDEO_BYTES
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0])["status"] == "completed"
    assert json.loads(lines[1]) == {
        "id": "video_abc",
        "path": str(out_file),
        "bytes": len(VIDEO_BYTES),
        "sha256": hashlib.sha256(VIDEO_BYTES).hexdigest(),
    }
    assert sleeps == [0.01]


def test_submit_wait_on_a_failed_task_exits_1_without_downloading(
    env: None, fake: FakeApi, run, capsys, tmp_path: Path
) -> None:
    fake.on("POST", "/v1/videos", httpx.Response(202, json=video()))
    failed = video(status="failed", error={"code": "moderation_blocked", "message": "prompt rejected"})
    fake.on("GET", "/v1/videos/video_abc", httpx.Response(200, json=failed))

    assert run("submit", "a fox", "--out", str(tmp_path / "x.mp4"), "--interval", "0.01") == 1

    assert fake.sent("GET", "/v1/videos/video_abc/content") == []
    assert not (tmp_path / "x.mp4").exists()
    assert "error: video video_abc failed: moderation_blocked: prompt rejected" in capsys.readouterr().err


# -- status and list -------------------------------------------------------------------------------


def test_status_human_summary(env: None, fake: FakeApi, run, capsys) -> None:
    done = video(
        status="completed",
        progress=100,
        completed_at=1_700_000_100,
        download_url="https://bucket.example/v.mp4?X-Amz-Signature=abc",
        download_expires_at=1_700_003_700,
    )
    fake.on("GET", "/v1/videos/video_abc", httpx.Response(200, json=done))

    assert run("status", "video_abc") == 0

    out = capsys.readouterr().out
    assert "status     completed (100%)" in out
    assert "created    2023-11-14 22:13:20Z" in out
    assert (
        "download   https://bucket.example/v.mp4?X-Amz-Signature=abc (link expires 2023-11-14 23:15:00Z)"
        in out
    )


def test_status_json_is_the_raw_object(env: None, fake: FakeApi, run, capsys) -> None:
    fake.on("GET", "/v1/videos/video_abc", httpx.Response(200, json=video(status="in_progress", progress=30)))

    assert run("--json", "status", "video_abc") == 0

    assert json.loads(capsys.readouterr().out) == video(status="in_progress", progress=30)


def test_status_quotes_the_id_into_one_path_segment(env: None, fake: FakeApi, run) -> None:
    run("status", "a/b")

    (request,) = fake.requests
    assert request.url.raw_path == b"/v1/videos/a%2Fb"


def test_list_passes_limit_and_after_and_prints_a_table(env: None, fake: FakeApi, run, capsys) -> None:
    page = {
        "object": "list",
        "data": [video("video_2", "completed", 100), video("video_1", "failed", 0)],
        "first_id": "video_2",
        "last_id": "video_1",
        "has_more": True,
    }
    fake.on("GET", "/v1/videos", httpx.Response(200, json=page))

    assert run("list", "--limit", "2", "--after", "video_3") == 0

    (request,) = fake.requests
    assert dict(request.url.params) == {"limit": "2", "after": "video_3"}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "PROGRESS", "CREATED", "MODEL", "SECONDS", "SIZE", "PROMPT"]
    assert lines[1].split()[:3] == ["video_2", "completed", "100%"]
    assert lines[2].split()[:3] == ["video_1", "failed", "0%"]
    assert lines[3] == "more: sora-relay list --after video_1"


def test_list_json_and_options_after_the_subcommand(env: None, fake: FakeApi, run, capsys) -> None:
    page = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    fake.on("GET", "/v1/videos", httpx.Response(200, json=page))

    assert run("list", "--json") == 0

    assert json.loads(capsys.readouterr().out) == page
    assert fake.requests[0].url.params.get("limit") is None


# -- wait ------------------------------------------------------------------------------------------


def test_wait_until_completed_prints_one_line_per_change(
    env: None, fake: FakeApi, run, capsys, sleeps: list[float]
) -> None:
    fake.on(
        "GET",
        "/v1/videos/video_abc",
        httpx.Response(200, json=video()),
        httpx.Response(200, json=video(status="in_progress", progress=10)),
        httpx.Response(200, json=video(status="in_progress", progress=10)),
        httpx.Response(200, json=video(status="in_progress", progress=60)),
        httpx.Response(200, json=video(status="completed", progress=100)),
    )

    assert run("wait", "video_abc", "--interval", "0.005") == 0

    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "video_abc: queued (0%)",
        "video_abc: in_progress (10%)",
        "video_abc: in_progress (60%)",
        "video_abc: completed (100%)",
    ]
    assert "status     completed (100%)" in out
    assert sleeps == [0.005] * 4


def test_wait_on_failed_exits_1_with_the_task_error(env: None, fake: FakeApi, run, capsys) -> None:
    failed = video(status="failed", error={"code": "generation_failed", "message": "provider said no"})
    fake.on(
        "GET", "/v1/videos/video_abc", httpx.Response(200, json=video()), httpx.Response(200, json=failed)
    )

    assert run("wait", "video_abc", "--interval", "0.001") == 1

    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "error: video video_abc failed: generation_failed: provider said no"


def test_wait_json_prints_only_the_final_object_on_stdout(env: None, fake: FakeApi, run, capsys) -> None:
    done = video(status="completed", progress=100)
    fake.on("GET", "/v1/videos/video_abc", httpx.Response(200, json=video()), httpx.Response(200, json=done))

    assert run("wait", "video_abc", "--interval", "0.001", "--json") == 0

    assert json.loads(capsys.readouterr().out) == done


def test_wait_times_out(env: None, fake: FakeApi, run, capsys, sleeps: list[float]) -> None:
    fake.on("GET", "/v1/videos/video_abc", httpx.Response(200, json=video(status="in_progress", progress=5)))

    assert run("wait", "video_abc", "--interval", "2", "--timeout", "5") == 1

    assert sleeps == [2, 2, 1]  # the last sleep is cut to the deadline
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "error: timed out after 5s waiting for video_abc (last: in_progress (5%))"


def test_wait_on_a_tty_rewrites_one_line(env: None, fake: FakeApi, run) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    fake.on(
        "GET",
        "/v1/videos/video_abc",
        httpx.Response(200, json=video(status="in_progress", progress=40)),
        httpx.Response(200, json=video(status="completed", progress=100)),
    )
    err, out = Tty(), io.StringIO()

    assert run("wait", "video_abc", "--interval", "0.001", stdout=out, stderr=err) == 0

    text = err.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") == 2
    assert "in_progress (40%)" in text and "completed (100%)" in text


# -- download --------------------------------------------------------------------------------------


def serve_content(fake: FakeApi, body: bytes = VIDEO_BYTES, status: int = 200) -> None:
    location = f"https://{PRESIGNED_HOST}/videos/video_abc.mp4?X-Amz-Signature=sig"
    fake.on("GET", "/v1/videos/video_abc/content", httpx.Response(302, headers={"Location": location}))
    fake.on("GET", "presigned", httpx.Response(status, content=body, headers={"content-type": "video/mp4"}))


def test_download_writes_the_bytes_and_reports_sha256(
    env: None, fake: FakeApi, run, capsys, tmp_path: Path
) -> None:
    serve_content(fake)
    out_file = tmp_path / "fox.mp4"

    assert run("download", "video_abc", "--out", str(out_file)) == 0

    assert out_file.read_bytes() == VIDEO_BYTES
    digest = hashlib.sha256(VIDEO_BYTES).hexdigest()
    assert capsys.readouterr().out == f"wrote {out_file}: {len(VIDEO_BYTES)} bytes, sha256 {digest}\n"
    assert list(tmp_path.iterdir()) == [out_file]  # no temp file left behind


def test_download_sends_the_key_to_the_api_but_not_to_the_presigned_host(
    env: None, fake: FakeApi, run, tmp_path: Path
) -> None:
    serve_content(fake)

    assert run("download", "video_abc", "--out", str(tmp_path / "v.mp4")) == 0

    api_call, s3_call = fake.requests
    assert api_call.headers["x-api-key"] == KEY
    assert s3_call.url.host == PRESIGNED_HOST
    assert s3_call.url.params["X-Amz-Signature"] == "sig"
    assert "x-api-key" not in s3_call.headers


def test_download_json(env: None, fake: FakeApi, run, capsys, tmp_path: Path) -> None:
    serve_content(fake)
    out_file = tmp_path / "v.mp4"

    assert run("--json", "download", "video_abc", "--out", str(out_file)) == 0

    assert json.loads(capsys.readouterr().out) == {
        "id": "video_abc",
        "path": str(out_file),
        "bytes": len(VIDEO_BYTES),
        "sha256": hashlib.sha256(VIDEO_BYTES).hexdigest(),
    }


def test_download_before_completion_is_an_api_error(
    env: None, fake: FakeApi, run, capsys, tmp_path: Path
) -> None:
    fake.on("GET", "/v1/videos/video_abc/content", api_error(404, "video_not_ready", "video is in_progress"))

    assert run("download", "video_abc", "--out", str(tmp_path / "v.mp4")) == 1

    assert capsys.readouterr().err == "error: 404 video_not_ready: video is in_progress\n"
    assert list(tmp_path.iterdir()) == []


def test_failed_presigned_fetch_keeps_the_old_file_and_leaves_no_temp(
    env: None, fake: FakeApi, run, capsys, tmp_path: Path
) -> None:
    serve_content(fake, body=b"<Error><Code>AccessDenied</Code></Error>", status=403)
    out_file = tmp_path / "v.mp4"
    out_file.write_bytes(b"previous")

    assert run("download", "video_abc", "--out", str(out_file)) == 1

    assert out_file.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [out_file]
    err = capsys.readouterr().err
    assert err.startswith("error: 403 ")
    assert "X-Amz-Signature" not in err


def test_download_cut_off_midway_keeps_the_old_file_and_leaves_no_temp(
    env: None, fake: FakeApi, run, capsys, tmp_path: Path
) -> None:
    # Given a presigned fetch whose connection drops after the first chunk
    class CutOff(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield VIDEO_BYTES[:1000]
            raise httpx.ReadError("connection reset")

    serve_content(fake)
    fake.on("GET", "presigned", httpx.Response(200, stream=CutOff()))
    out_file = tmp_path / "v.mp4"
    out_file.write_bytes(b"previous")

    # When
    code = run("download", "video_abc", "--out", str(out_file))

    # Then the error names the host but not the signature, and nothing half-written is left
    assert code == 1
    err = capsys.readouterr().err
    assert err == f"error: could not reach https://{PRESIGNED_HOST}/videos/video_abc.mp4: connection reset\n"
    assert out_file.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [out_file]


def test_download_into_a_missing_directory_is_one_error_line(
    env: None, fake: FakeApi, run, capsys, tmp_path: Path
) -> None:
    serve_content(fake)
    target = tmp_path / "missing" / "v.mp4"

    assert run("download", "video_abc", "--out", str(target)) == 1

    assert capsys.readouterr().err.startswith(f"error: cannot write {target}: ")


# -- the client on its own -------------------------------------------------------------------------


def test_client_content_url_resolves_a_relative_location(fake: FakeApi) -> None:
    fake.on(
        "GET", "/v1/videos/video_abc/content", httpx.Response(302, headers={"Location": "/files/v.mp4?sig=1"})
    )
    client = ApiClient(API, KEY, transport=httpx.MockTransport(fake))

    assert client.content_url("video_abc") == f"{API}/files/v.mp4?sig=1"


def test_client_does_not_retry_a_create_without_idempotency_key(fake: FakeApi) -> None:
    fake.on("POST", "/v1/videos", api_error(503, "unavailable", "down"))
    client = ApiClient(API, KEY, transport=httpx.MockTransport(fake), sleep=lambda s: None)

    with pytest.raises(ApiError) as raised:
        client.create("a fox")

    assert (raised.value.status, raised.value.code) == (503, "unavailable")
    assert len(fake.requests) == 1
