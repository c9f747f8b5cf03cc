"""Service configuration: one model, read from the environment once and validated at cold start.

A leaf outside the four layers (it imports nothing of the package): the composition root
(runtime/container.py) builds it, and the use cases read its values from the container they are given.

The model is a plain pydantic model filled from the environment the way pydantic-settings'
`BaseSettings` filled it (names matched case-insensitively, no prefix, values given to the
constructor win, defaults validated too): these are all simple values, and pydantic-settings
itself cost about 40 ms of import at every cold start (bench/cold_start.py).
"""

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MIB = 1024 * 1024


def _from_environment(names: dict[str, Any]) -> dict[str, str]:
    """The environment's value for each field name, matched case-insensitively."""
    found = {key.lower(): value for key, value in os.environ.items()}
    return {name: found[name] for name in names if name in found}


class Settings(BaseModel):
    """Every variable here is declared in template.yaml and present in events/env.json."""

    model_config = ConfigDict(frozen=True, extra="ignore", validate_default=True)

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**_from_environment(type(self).model_fields), **values})

    tasks_table_name: str = Field(min_length=1)
    videos_bucket_name: str = Field(min_length=1)
    # The submit and intake functions have it: the Idempotency-Key records (HTTP header, SQS attribute).
    idempotency_table_name: str | None = None
    idempotency_ttl_seconds: int = Field(24 * 3600, ge=60)

    # The catalogue's model a request without `model` gets, and the operator's map of retired
    # models to live ones ("sora-2=veo-3.1-fast,sora-2-pro=veo-3.1"; template ModelAliases).
    default_model: str = "veo-3.1-fast"
    model_aliases: str = ""

    # The providers. Each key lives in its own secret, whose id only the functions that read it get;
    # `providers_with_keys` ("acedata,fal,", template PROVIDERS_WITH_KEYS) says which this deployment
    # holds: the others' models are listed `available: false` and refused at submit.
    providers_with_keys: str = ""
    acedata_base_url: str = "https://api.acedata.cloud"
    acedata_api_key_secret_id: str | None = None
    fal_queue_base_url: str = "https://queue.fal.run"
    fal_jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"
    fal_api_key_secret_id: str | None = None
    fal_user_id: str | None = None  # a push signed for another fal user is refused
    replicate_base_url: str = "https://api.replicate.com"
    replicate_api_token_secret_id: str | None = None

    # Secret ids (names or ARNs); each function is given only the ones it reads.
    callback_token_secret_id: str | None = None
    webhook_secret_id: str | None = None
    secrets_max_age_seconds: int = Field(300, ge=0)

    # Tenants (issue 15): the table of tenants, their hashed keys and their monthly usage
    # (`tenant#…`, `key#…`, `usage#<tenant>#<YYYY-MM>`), and where each tenant's webhook signing
    # secrets live (`<prefix><tenant_id>/webhook`). Each function gets only what it uses.
    tenants_table: str | None = None
    tenant_secret_prefix: str | None = None

    # Where the provider calls us back; empty means "derive it from the API Gateway request".
    public_base_url: str = ""
    presigned_url_ttl_seconds: int = Field(3600, ge=60, le=86400)
    task_retention_days: int = Field(30, ge=1, le=3650)
    # Local development only: lets outbound URLs point at 127.0.0.1. The template never sets it.
    allow_loopback_urls: bool = False

    # The MCP function: how long sora_get_task waits on a pending task before answering (it
    # throttles agents that poll in a loop, as the seed server did).
    mcp_pending_wait_seconds: float = Field(5.0, ge=0, le=20)

    provider_timeout_seconds: float = Field(10.0, gt=0)
    provider_max_attempts: int = Field(3, ge=1, le=10)
    provider_retry_budget_seconds: float = Field(8.0, ge=0)
    provider_retry_base_delay_seconds: float = Field(0.5, ge=0)

    # Durable dispatch (submit and the dispatch function): where a task waits while the provider is
    # rate limiting or failing, and how long it keeps trying. The attempts match the queue's
    # redrive maxReceiveCount in template.yaml, so the last attempt is the one before the DLQ.
    dispatch_queue_url: str | None = None
    dispatch_max_attempts: int = Field(8, ge=1, le=50)
    dispatch_base_delay_seconds: float = Field(2.0, ge=0)
    dispatch_max_delay_seconds: int = Field(900, ge=0, le=43200)
    # How long one delivery holds a task's start: past the function's timeout (30 s), within the
    # queue's visibility timeout (60 s), so a crashed delivery's claim has lapsed when SQS hands
    # the message out again.
    dispatch_lease_seconds: int = Field(60, ge=1, le=43200)

    # The archive step: the queue the callback and the reconciler put a recorded result on, how many
    # copy attempts it gets (matching the queue's redrive maxReceiveCount in template.yaml, so the
    # last attempt is the one before the DLQ) with backoff between them, and how long one attempt
    # holds its claim (longer than the archive function's timeout, so a crashed attempt's lapses).
    archive_queue_url: str | None = None
    archive_max_attempts: int = Field(8, ge=1, le=50)
    archive_base_delay_seconds: float = Field(10.0, ge=0)
    archive_max_delay_seconds: int = Field(900, ge=0, le=43200)
    archive_lease_seconds: int = Field(960, ge=1, le=43200)

    # The reconciler: tasks with no result after `stale` are looked up at the provider; tasks with
    # no result after `deadline` fail with `timeout`.
    reconcile_stale_after_seconds: float = Field(900, ge=0)
    reconcile_deadline_seconds: float = Field(6 * 3600, ge=0)
    reconcile_max_tasks: int = Field(500, ge=1)
    # A recorded result whose copy was queued (by the callback or a run) this recently is left to
    # the archive queue, which retries it on its own: queuing it again on every run would flood the
    # queue with repeats exactly when a backlog holds the copies up. After this long with no copy,
    # the message is taken as lost (a callback cut off between the two writes) and queued again.
    reconcile_copy_requeue_after_seconds: float = Field(900, ge=0)
    # A run stops taking new work when less than this is left of its invocation's time.
    reconcile_stop_margin_seconds: float = Field(30.0, ge=0)

    # Terminal events: the bus they are published on, and the webhook deliveries. A delivery that
    # fails is tried again after the next delay of the schedule (seconds; Standard Webhooks' spread,
    # about 24 h in all); after `webhook_max_attempts` the event goes to the dead-letter queue.
    event_bus_name: str | None = None
    webhook_queue_url: str | None = None
    webhook_dead_letter_queue_url: str | None = None
    webhook_max_attempts: int = Field(8, ge=1, le=20)
    webhook_retry_schedule: str = "5,300,1800,7200,18000,28800,28800"
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    video_fetch_timeout_seconds: float = Field(30.0, gt=0)
    max_video_bytes: int = Field(2 * 1024 * MIB, ge=1)
    # S3 multipart part size (S3 needs at least 5 MiB), and how many parts upload at once while the
    # next is read: a copy holds at most (concurrency + 1) parts in memory, 42 MiB by default
    # (bench/archive.py: as fast as boto3's upload_fileobj, in a third of its memory).
    video_part_bytes: int = Field(6 * MIB, ge=5 * MIB)
    video_upload_concurrency: int = Field(6, ge=1, le=16)
    max_request_body_bytes: int = Field(64 * 1024, ge=1024)

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        delays = [float(part) for part in value.split(",") if part.strip()]
        if not delays or any(delay < 0 or delay > 43200 for delay in delays):
            raise ValueError("webhook_retry_schedule: 0 to 43200 seconds each, comma-separated")
        return value

    def webhook_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 for the first)."""
        delays = [float(part) for part in self.webhook_retry_schedule.split(",") if part.strip()]
        return delays[min(max(attempt, 1), len(delays)) - 1]

    def has_key(self, provider: str) -> bool:
        return provider in {part.strip() for part in self.providers_with_keys.split(",")}

    def provider_secret_id(self, provider: str) -> str | None:
        """The secret holding a provider's key; None when this deployment has none."""
        secret_id = {
            "acedata": self.acedata_api_key_secret_id,
            "fal": self.fal_api_key_secret_id,
            "replicate": self.replicate_api_token_secret_id,
        }.get(provider)
        return secret_id or None

    @field_validator("public_base_url", "acedata_base_url", "fal_queue_base_url", "replicate_base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
