"""Unit tests of the pure pieces: the state machine, tokens, retries, the video object mapping."""

from __future__ import annotations

import pytest

from sora_relay.domain.errors import ProviderUnavailable
from sora_relay.domain.models import VideoObject
from sora_relay.domain.task import Status, Task, sources_of
from sora_relay.domain.tokens import callback_token, token_matches
from sora_relay.domain.video import DownloadLink
from sora_relay.usecases.retry import with_backoff


class TestStateMachine:
    def test_terminal_states_have_no_way_out(self):
        for target in Status:
            assert Status.COMPLETED not in sources_of(target)
            assert Status.FAILED not in sources_of(target)

    def test_allowed_sources(self):
        assert sources_of(Status.IN_PROGRESS) == {Status.QUEUED}
        assert sources_of(Status.COMPLETED) == {Status.QUEUED, Status.IN_PROGRESS}
        assert sources_of(Status.FAILED) == {Status.QUEUED, Status.IN_PROGRESS}
        assert sources_of(Status.QUEUED) == frozenset()

    def test_is_terminal(self):
        assert [s for s in Status if s.is_terminal] == [Status.COMPLETED, Status.FAILED]


class TestTokens:
    def test_a_token_works_for_its_task_only(self):
        token = callback_token("video_a", "key-1")
        assert token_matches("video_a", token, "key-1")
        assert not token_matches("video_b", token, "key-1")
        assert not token_matches("video_a", token, "key-2")
        assert not token_matches("video_a", None, "key-1")
        assert not token_matches("video_a", "", "key-1")
        assert not token_matches("video_a", token[:-1], "key-1")

    def test_tokens_are_url_safe_and_long(self):
        token = callback_token("video_a", "key-1")
        assert len(token) == 43 and set(token) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


class TestRetry:
    def _flaky(self, failures: int, retry_after: float | None = None):
        calls = []

        def call() -> str:
            calls.append(1)
            if len(calls) <= failures:
                raise ProviderUnavailable("busy", retry_after=retry_after, resend_safe=True)
            return "ok"

        return call, calls

    def test_retries_until_success(self):
        call, calls = self._flaky(2)
        slept: list[float] = []
        assert with_backoff(call, attempts=3, budget_seconds=10, base_delay=0.5, sleep=slept.append) == "ok"
        assert len(calls) == 3 and len(slept) == 2
        assert 0 <= slept[0] <= 0.5 and 0 <= slept[1] <= 1.0  # full jitter under an exponential cap

    def test_gives_up_after_the_last_attempt(self):
        call, calls = self._flaky(5)
        with pytest.raises(ProviderUnavailable):
            with_backoff(call, attempts=3, budget_seconds=10, base_delay=0, sleep=lambda _: None)
        assert len(calls) == 3

    def test_honours_retry_after_but_not_past_the_budget(self):
        call, calls = self._flaky(1, retry_after=2.0)
        slept: list[float] = []
        with_backoff(call, attempts=3, budget_seconds=5, base_delay=0.1, sleep=slept.append)
        assert slept == [2.0]
        call, calls = self._flaky(1, retry_after=30.0)
        with pytest.raises(ProviderUnavailable):
            with_backoff(call, attempts=3, budget_seconds=5, base_delay=0.1, sleep=slept.append)
        assert len(calls) == 1

    def test_other_errors_are_not_retried(self):
        calls = []

        def call() -> None:
            calls.append(1)
            raise ValueError("no")

        with pytest.raises(ValueError):
            with_backoff(call, attempts=3, budget_seconds=5, base_delay=0, sleep=lambda _: None)
        assert calls == [1]


def _task(**changes) -> Task:
    task = Task.new(
        owner="k",
        model="sora-2",
        prompt="p",
        seconds=8,
        size="1280x720",
        image_url=None,
        callback_url=None,
        provider="acedata",
        retention_days=30,
        now_ms=1_700_000_000_123,
    )
    return task.model_copy(update=changes)


class TestVideoObject:
    def test_a_new_task(self):
        video = VideoObject.from_task(_task())
        assert video.model_dump() == {
            "id": video.id,
            "object": "video",
            "model": "sora-2",
            "served_model": "sora-2",
            "status": Status.QUEUED,
            "progress": 0,
            "created_at": 1_700_000_000,
            "completed_at": None,
            "expires_at": 1_700_000_000 + 30 * 86400,
            "prompt": "p",
            "seconds": "8",
            "size": "1280x720",
            "remixed_from_video_id": None,
            "error": None,
            "callback_url": None,
            "cost_usd": None,
            "download_url": None,
            "download_expires_at": None,
            "thumbnail_url": None,
            "thumbnail_expires_at": None,
        }
        assert video.id.startswith("video_") and len(video.id) == 38

    def test_an_aliased_task_shows_the_model_asked_for_and_the_one_that_served_it(self):
        task = _task(model="veo-3.1-fast", requested_model="sora-2", cost_microusd=1_200_000, progress=40)
        video = VideoObject.from_task(task)
        assert (video.model, video.served_model, video.cost_usd, video.progress) == (
            "sora-2",
            "veo-3.1-fast",
            1.2,
            40,
        )

    def test_a_completed_task_with_a_link(self):
        task = _task(status=Status.COMPLETED, completed_ms=1_700_000_100_000)
        video = VideoObject.from_task(task, DownloadLink(url="https://s3/x", expires_at=1_700_003_700))
        assert (video.progress, video.completed_at, video.download_url) == (
            100,
            1_700_000_100,
            "https://s3/x",
        )
        assert video.download_expires_at == 1_700_003_700

    def test_a_failed_task_carries_its_error(self):
        video = VideoObject.from_task(
            _task(status=Status.FAILED, error_code="api_error", error_message="boom")
        )
        assert video.error is not None and (video.error.code, video.error.message) == ("api_error", "boom")

    def test_the_item_round_trips(self):
        task = _task(provider_task_id="p-1", video_bytes=10)
        assert Task.from_item(task.to_item()) == task
        assert "video_key" not in task.to_item()  # absent, not NULL


def test_a_missing_setting_is_our_500_not_the_callers_404(monkeypatch):
    from sora_relay.adapters.secrets import read_secret
    from sora_relay.domain.errors import ConfigurationError
    from sora_relay.runtime.container import Container, use

    monkeypatch.setenv("TASKS_TABLE_NAME", "t")
    monkeypatch.setenv("VIDEOS_BUCKET_NAME", "b")
    monkeypatch.delenv("DISPATCH_QUEUE_URL", raising=False)
    with use(Container()) as built:
        with pytest.raises(ConfigurationError) as caught:
            built.dispatch_queue  # noqa: B018  (the property builds the queue)
        assert caught.value.status_code == 500 and caught.value.code == "configuration_error"
        with pytest.raises(ConfigurationError):
            read_secret(None, purpose="webhook signing secret", max_age_seconds=300)
