"""The service's collaborators, built on first use from settings and cached for warm invocations.

Handlers and use cases ask here instead of constructing clients, so tests can swap one piece
(for example the HTTP transport to the provider) without touching the rest.
"""

from __future__ import annotations

from functools import lru_cache

import httpx

from sora_relay.adapters.aws import dynamodb_client, events_client, reset_clients, s3_client, sqs_client
from sora_relay.adapters.dynamodb import TaskStore
from sora_relay.adapters.eventbridge import EventBus
from sora_relay.adapters.outbound_http import SafeHttp, pinned_client
from sora_relay.adapters.providers.acedata import AceDataSora
from sora_relay.adapters.s3 import VideoStore
from sora_relay.adapters.secrets import read_secret
from sora_relay.adapters.sqs import WorkQueue
from sora_relay.adapters.webhooks import WebhookSender
from sora_relay.domain.errors import ConfigurationError, NotFound
from sora_relay.domain.provider import VideoProvider
from sora_relay.runtime.settings import get_settings


@lru_cache(maxsize=1)
def task_store() -> TaskStore:
    return TaskStore(dynamodb_client(), get_settings().tasks_table_name)


@lru_cache(maxsize=1)
def video_store() -> VideoStore:
    settings = get_settings()
    return VideoStore(
        s3_client(),
        settings.videos_bucket_name,
        part_bytes=settings.video_part_bytes,
        max_bytes=settings.max_video_bytes,
        concurrency=settings.video_upload_concurrency,
    )


@lru_cache(maxsize=1)
def provider_http() -> httpx.Client:
    """HTTP to the provider's own API (a URL we configure, so no SSRF checks)."""
    return httpx.Client(timeout=get_settings().provider_timeout_seconds, follow_redirects=False)


@lru_cache(maxsize=1)
def outbound_http() -> SafeHttp:
    """HTTP to strangers' URLs: client webhooks and the provider's video URLs."""
    settings = get_settings()
    client = pinned_client(
        timeout=settings.video_fetch_timeout_seconds, allow_loopback=settings.allow_loopback_urls
    )
    return SafeHttp(client, allow_loopback=settings.allow_loopback_urls)


def provider(name: str) -> VideoProvider:
    settings = get_settings()
    if name != AceDataSora.name:
        raise NotFound(f"Unknown provider {name!r}", param="provider")
    return AceDataSora(
        provider_http,  # built on the first request to the provider, never for a callback
        base_url=settings.provider_base_url,
        api_key=lambda: _secret(settings.provider_api_key_secret_id, "provider API key"),
        timeout=settings.provider_timeout_seconds,
    )


@lru_cache(maxsize=1)
def dispatch_queue() -> WorkQueue:
    return _queue(get_settings().dispatch_queue_url, "dispatch queue")


def _queue(url: str | None, name: str) -> WorkQueue:
    if not url:
        raise ConfigurationError(f"No {name} is configured")
    return WorkQueue(sqs_client(), url)


@lru_cache(maxsize=1)
def archive_queue() -> WorkQueue:
    return _queue(get_settings().archive_queue_url, "archive queue")


@lru_cache(maxsize=1)
def webhook_queue() -> WorkQueue:
    return _queue(get_settings().webhook_queue_url, "webhook queue")


@lru_cache(maxsize=1)
def webhook_dead_letter_queue() -> WorkQueue:
    return _queue(get_settings().webhook_dead_letter_queue_url, "webhook dead-letter queue")


@lru_cache(maxsize=1)
def event_bus() -> EventBus:
    name = get_settings().event_bus_name
    if not name:
        raise ConfigurationError("No event bus is configured")
    return EventBus(events_client(), name)


@lru_cache(maxsize=1)
def webhook_sender() -> WebhookSender:
    return WebhookSender(outbound_http(), timeout_seconds=get_settings().webhook_timeout_seconds)


def _secret(secret_id: str | None, purpose: str) -> str:
    return read_secret(secret_id, purpose=purpose, max_age_seconds=get_settings().secrets_max_age_seconds)


def callback_key() -> str:
    return _secret(get_settings().callback_token_secret_id, "callback token key")


def webhook_secret() -> str:
    return _secret(get_settings().webhook_secret_id, "webhook signing secret")


def reset() -> None:
    """Forget every cached collaborator and setting (tests change the environment between runs)."""
    for cached in (
        task_store,
        video_store,
        provider_http,
        outbound_http,
        webhook_sender,
        dispatch_queue,
        archive_queue,
        webhook_queue,
        webhook_dead_letter_queue,
        event_bus,
        get_settings,
    ):
        cached.cache_clear()
    reset_clients()
