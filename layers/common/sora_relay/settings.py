"""Service configuration: one model, read from the environment once and validated at cold start."""

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Every variable here is declared in template.yaml and present in events/env.json."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    tasks_table_name: str = Field(min_length=1)
    videos_bucket_name: str = Field(min_length=1)
    # Only the submit function has it: the Idempotency-Key records.
    idempotency_table_name: str | None = None
    idempotency_ttl_seconds: int = Field(24 * 3600, ge=60)

    provider_name: str = "acedata"
    provider_base_url: str = "https://api.acedata.cloud"
    # Secret ids (names or ARNs); each function is given only the ones it reads.
    provider_api_key_secret_id: str | None = None
    callback_token_secret_id: str | None = None
    webhook_secret_id: str | None = None
    secrets_max_age_seconds: int = Field(300, ge=0)

    # Where the provider calls us back; empty means "derive it from the API Gateway request".
    public_base_url: str = ""
    presigned_url_ttl_seconds: int = Field(3600, ge=60, le=86400)
    task_retention_days: int = Field(30, ge=1, le=3650)
    # Local development only: lets outbound URLs point at 127.0.0.1. The template never sets it.
    allow_loopback_urls: bool = False

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

    # The reconciler: tasks with no result after `stale` are looked up at the provider; tasks with
    # no result after `deadline` fail with `timeout`.
    reconcile_stale_after_seconds: int = Field(900, ge=60)
    reconcile_deadline_seconds: int = Field(6 * 3600, ge=300)
    reconcile_max_tasks: int = Field(500, ge=1)

    webhook_timeout_seconds: float = Field(10.0, gt=0)
    video_fetch_timeout_seconds: float = Field(30.0, gt=0)
    max_video_bytes: int = Field(2 * 1024 * MIB, ge=1)
    # S3 multipart part size: the memory a copy holds at once (S3 needs at least 5 MiB).
    video_part_bytes: int = Field(8 * MIB, ge=5 * MIB)
    max_request_body_bytes: int = Field(64 * 1024, ge=1024)

    @field_validator("public_base_url", "provider_base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # filled from the environment
