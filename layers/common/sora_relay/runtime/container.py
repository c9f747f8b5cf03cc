"""The composition root: the settings and the collaborators built from them, handed to the use cases.

A `Container` holds one `Settings` and builds each collaborator the first time it is asked for,
once per container (a warm invocation reuses them). Nothing is built at import or when a container
is made, so SnapStart's init phase opens no client: the handlers ask `current()` for the process's
container inside an invocation, and it is made from the environment on that first call.

Tests install a container of their own (`use(...)`, `install(...)`), usually the current one with
one collaborator replaced: `current().replace(outbound_http=fake)` is a new container with the same
settings, that one collaborator given, and everything else built afresh from it (a webhook sender
built by it sends through the fake).

Each adapter module (boto3, httpx, ...) is imported by the builder that needs it: an on-demand
init pays only for what its handler imports (the MCP function's `sora_list_actions` reaches no
adapter at all). An init that SnapStart snapshots (`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`)
imports them all here, as before, since a restored instance gets its imports for free, builds the
API's and the catalogue's pydantic models, which an on-demand init builds on first use, and
registers the hook that freezes the heap before the snapshot (runtime/snapshot.py).
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from sora_relay.domain import catalogue
from sora_relay.domain.errors import ConfigurationError, NotFound
from sora_relay.runtime import snapshot
from sora_relay.settings import Settings

if TYPE_CHECKING:  # each adapter (boto3, httpx, ...) is imported by the builder that needs it
    import httpx
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from sora_relay.adapters.dynamodb import TaskStore
    from sora_relay.adapters.eventbridge import EventBus
    from sora_relay.adapters.outbound_http import SafeHttp
    from sora_relay.adapters.s3 import VideoStore
    from sora_relay.adapters.sqs import WorkQueue
    from sora_relay.adapters.usage import UsageStore
    from sora_relay.adapters.webhooks import WebhookSender
    from sora_relay.domain.provider import VideoProvider

T = TypeVar("T")

# What the builders import (only import: no client is made, no setting read).
ADAPTERS = (
    "sora_relay.adapters.aws",
    "sora_relay.adapters.dynamodb",
    "sora_relay.adapters.eventbridge",
    "sora_relay.adapters.outbound_http",
    "sora_relay.adapters.s3",
    "sora_relay.adapters.secrets",
    "sora_relay.adapters.sqs",
    "sora_relay.adapters.tenant_secrets_reader",
    "sora_relay.adapters.usage",
    "sora_relay.adapters.webhooks",
)


def import_adapters() -> None:
    for name in ADAPTERS:
        importlib.import_module(name)


# The modules whose pydantic models are built on first use (`defer_build`), not at import.
DEFERRED_MODELS = (
    "sora_relay.domain.create_request",
    "sora_relay.domain.models",
    "sora_relay.domain.catalogue",
)


def build_deferred_models() -> None:
    """Build those models now: a snapshot then holds them built, as it did before they were
    deferred, and a restored instance's first request does not pay for them. No I/O."""
    from pydantic import BaseModel

    for name in DEFERRED_MODELS:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == name:
                value.model_rebuild()


if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
    import_adapters()
    build_deferred_models()
    snapshot.register_before_snapshot_hooks()  # the heap frozen once the init is done

# What `replace()` may be given: every collaborator the container builds.
COLLABORATORS = frozenset(
    {
        "task_store",
        "idempotency_store",
        "usage_store",
        "video_store",
        "provider_http",
        "outbound_http",
        "dispatch_queue",
        "archive_queue",
        "webhook_queue",
        "webhook_dead_letter_queue",
        "event_bus",
        "webhook_sender",
    }
)


class Container:
    """The settings and the collaborators of one process (or one test); see the module docstring."""

    __slots__ = ("_built", "_given", "_lock", "settings")

    settings: Settings

    def __init__(self, settings: Settings | None = None, **given: Any) -> None:
        unknown = sorted(set(given) - COLLABORATORS)
        if unknown:
            raise TypeError(f"Not a collaborator: {', '.join(unknown)}")
        object.__setattr__(self, "settings", settings if settings is not None else Settings())
        object.__setattr__(self, "_given", dict(given))
        object.__setattr__(self, "_built", dict(given))
        object.__setattr__(self, "_lock", threading.RLock())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("A container is not changed: replace() makes a new one")

    def replace(self, *, settings: Settings | None = None, **given: Any) -> Container:
        """A new container: these settings (or the same) and collaborators given here (or before)."""
        return Container(settings if settings is not None else self.settings, **{**self._given, **given})

    def built(self) -> tuple[str, ...]:
        """The collaborators built (or given) so far."""
        return tuple(sorted(self._built))

    def _once(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]

    @property
    def task_store(self) -> TaskStore:
        from sora_relay.adapters.aws import dynamodb_client
        from sora_relay.adapters.dynamodb import TaskStore

        return self._once("task_store", lambda: TaskStore(dynamodb_client(), self.settings.tasks_table_name))

    @property
    def idempotency_store(self) -> DynamoDBPersistenceLayer:
        """Powertools' idempotency records (IdempotencyTable): the functions that take submissions."""
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

        from sora_relay.adapters.aws import dynamodb_client

        def build() -> DynamoDBPersistenceLayer:
            if not self.settings.idempotency_table_name:
                raise ConfigurationError("No idempotency table is configured")
            return DynamoDBPersistenceLayer(
                table_name=self.settings.idempotency_table_name, boto3_client=dynamodb_client()
            )

        return self._once("idempotency_store", build)

    @property
    def usage_store(self) -> UsageStore:
        """The tenants' monthly usage and limits (the tenants table)."""
        from sora_relay.adapters.aws import dynamodb_client
        from sora_relay.adapters.usage import UsageStore

        def build() -> UsageStore:
            if not self.settings.tenants_table:
                raise ConfigurationError("No tenants table is configured")
            return UsageStore(dynamodb_client(), self.settings.tenants_table)

        return self._once("usage_store", build)

    @property
    def video_store(self) -> VideoStore:
        from sora_relay.adapters.aws import s3_client
        from sora_relay.adapters.s3 import VideoStore

        settings = self.settings
        return self._once(
            "video_store",
            lambda: VideoStore(
                s3_client(),
                settings.videos_bucket_name,
                part_bytes=settings.video_part_bytes,
                max_bytes=settings.max_video_bytes,
                concurrency=settings.video_upload_concurrency,
            ),
        )

    @property
    def provider_http(self) -> httpx.Client:
        """HTTP to the provider's own API (a URL we configure, so no SSRF checks)."""
        import httpx

        timeout = self.settings.provider_timeout_seconds
        return self._once("provider_http", lambda: httpx.Client(timeout=timeout, follow_redirects=False))

    @property
    def outbound_http(self) -> SafeHttp:
        """HTTP to strangers' URLs: client webhooks and the provider's video URLs."""
        from sora_relay.adapters.outbound_http import SafeHttp, pinned_client

        settings = self.settings

        def build() -> SafeHttp:
            client = pinned_client(
                timeout=settings.video_fetch_timeout_seconds, allow_loopback=settings.allow_loopback_urls
            )
            return SafeHttp(client, allow_loopback=settings.allow_loopback_urls)

        return self._once("outbound_http", build)

    @property
    def catalogue(self) -> catalogue.Catalogue:
        return catalogue.default()

    @property
    def model_aliases(self) -> dict[str, str]:
        """The operator's map of retired models to live ones, checked against the catalogue."""

        def build() -> dict[str, str]:
            try:
                return self.catalogue.parse_aliases(self.settings.model_aliases)
            except ValueError as error:
                raise ConfigurationError(f"MODEL_ALIASES: {error}") from None

        return self._once("model_aliases", build)

    def provider_available(self, name: str) -> bool:
        """Whether this deployment holds a key for the provider (fal also needs our user id)."""
        settings = self.settings
        if not settings.has_key(name):
            return False
        return name != "fal" or bool(settings.fal_user_id)

    def provider(self, name: str) -> VideoProvider:
        """The provider's adapter, imported and built on first use: a function imports only the
        adapters its tasks need (cold start), and a callback builds no HTTP client until a lookup."""
        if name not in catalogue.PROVIDERS:
            raise NotFound(f"Unknown provider {name!r}", param="provider")
        return self._once(f"provider:{name}", lambda: self._build_provider(name))

    def _build_provider(self, name: str) -> VideoProvider:
        settings = self.settings
        secret_id = settings.provider_secret_id(name)

        def key() -> str:
            if secret_id is None:
                raise ConfigurationError(f"No API key is configured for the provider {name}")
            return self._secret(secret_id, f"{name} API key")

        http = lambda: self.provider_http  # noqa: E731  (built on the first request to the provider)
        timeout = settings.provider_timeout_seconds
        if name == "fal":
            from sora_relay.adapters.providers.fal import FalQueue

            return FalQueue(
                http,
                queue_base_url=settings.fal_queue_base_url,
                jwks_url=settings.fal_jwks_url,
                api_key=key,
                user_id=settings.fal_user_id,
                timeout=timeout,
            )
        if name == "replicate":
            from sora_relay.adapters.providers.replicate import ReplicatePredictions

            return ReplicatePredictions(
                http, base_url=settings.replicate_base_url, api_token=key, timeout=timeout
            )
        from sora_relay.adapters.providers.acedata import AceDataVideo

        return AceDataVideo(http, base_url=settings.acedata_base_url, api_key=key, timeout=timeout)

    def _queue(self, name: str, url: str | None, purpose: str) -> WorkQueue:
        from sora_relay.adapters.aws import sqs_client
        from sora_relay.adapters.sqs import WorkQueue

        def build() -> WorkQueue:
            if not url:
                raise ConfigurationError(f"No {purpose} is configured")
            return WorkQueue(sqs_client(), url)

        return self._once(name, build)

    @property
    def dispatch_queue(self) -> WorkQueue:
        return self._queue("dispatch_queue", self.settings.dispatch_queue_url, "dispatch queue")

    @property
    def archive_queue(self) -> WorkQueue:
        return self._queue("archive_queue", self.settings.archive_queue_url, "archive queue")

    @property
    def webhook_queue(self) -> WorkQueue:
        return self._queue("webhook_queue", self.settings.webhook_queue_url, "webhook queue")

    @property
    def webhook_dead_letter_queue(self) -> WorkQueue:
        url = self.settings.webhook_dead_letter_queue_url
        return self._queue("webhook_dead_letter_queue", url, "webhook dead-letter queue")

    @property
    def event_bus(self) -> EventBus:
        from sora_relay.adapters.aws import events_client
        from sora_relay.adapters.eventbridge import EventBus

        def build() -> EventBus:
            name = self.settings.event_bus_name
            if not name:
                raise ConfigurationError("No event bus is configured")
            return EventBus(events_client(), name)

        return self._once("event_bus", build)

    @property
    def webhook_sender(self) -> WebhookSender:
        from sora_relay.adapters.webhooks import WebhookSender

        timeout = self.settings.webhook_timeout_seconds
        return self._once(
            "webhook_sender", lambda: WebhookSender(self.outbound_http, timeout_seconds=timeout)
        )

    def _secret(self, secret_id: str | None, purpose: str) -> str:
        from sora_relay.adapters.secrets import read_secret

        return read_secret(secret_id, purpose=purpose, max_age_seconds=self.settings.secrets_max_age_seconds)

    def callback_key(self) -> str:
        return self._secret(self.settings.callback_token_secret_id, "callback token key")

    def webhook_secret(self) -> str:
        return self._secret(self.settings.webhook_secret_id, "webhook signing secret")

    def tenant_webhook_secrets(self, owner: str) -> list[str] | None:
        """The tenant's signing secrets that sign now (None: `owner` is not a tenant)."""
        from sora_relay.adapters.tenant_secrets_reader import tenant_signing_secrets

        return tenant_signing_secrets(
            owner,
            prefix=self.settings.tenant_secret_prefix,
            read=lambda name: self._secret(name, "tenant webhook signing secrets"),
            now=time.time(),
        )


_current: Container | None = None
_current_lock = threading.Lock()


def current() -> Container:
    """The process's container, made from the environment on the first call (in an invocation)."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Container()
        return _current


def installed() -> Container | None:
    """The process's container if one was made or installed (None at the end of a clean init)."""
    return _current


def install(container: Container | None) -> Container | None:
    """Make `container` the process's (None: make the next one from the environment); returns the
    one it replaces."""
    global _current
    with _current_lock:
        previous, _current = _current, container
    return previous


@contextmanager
def use(container: Container) -> Iterator[Container]:
    """`container` is the process's inside the block; the one before it is put back after."""
    previous = install(container)
    try:
        yield container
    finally:
        install(previous)
