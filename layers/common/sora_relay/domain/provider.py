"""The provider interface: nothing outside `adapters/providers/` knows which provider runs.

Every adapter follows the rules of shared/providers/README.md: submit never blocks and is never
blindly retried; a push is only a cue until it is authenticated (a provider's signature where it
signs, else a lookup over its authenticated API); only a terminal state read from the provider
ends a task; progress pushes never do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sora_relay.domain.catalogue import ModelEntry


class ProviderState(StrEnum):
    PENDING = "pending"  # queued at the provider
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # cancelled at the provider counts as failed (error_code "cancelled")

    @property
    def is_terminal(self) -> bool:
        return self in (ProviderState.SUCCEEDED, ProviderState.FAILED)


@dataclass(frozen=True)
class GenerationRequest:
    """What we ask a provider for, in our own terms; `model` says how its provider spells them."""

    prompt: str
    model: ModelEntry
    seconds: int
    size: str
    image_url: str | None = None


@dataclass(frozen=True)
class ProviderResult:
    """A provider's word on one task, from an authenticated push or a lookup."""

    provider_task_id: str
    state: ProviderState
    video_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    progress: int | None = None  # 0-100 where the provider reports it (fal's queue position does not)


@dataclass(frozen=True)
class Push:
    """A push read by its adapter: whose it is and, when the provider signed it, what it says.

    `result` is None for providers that do not sign (AceData): the push is only a cue, and the
    task is looked up over the authenticated API before anything is recorded.
    """

    provider_task_id: str
    result: ProviderResult | None = None


class VideoProvider(Protocol):
    name: str

    def submit(self, request: GenerationRequest, *, callback_url: str) -> str:
        """Start a generation; returns the provider's task id. Never waits for the video.

        Raises ProviderRejected (its 4xx about our input), ProviderAuthFailed (our key or quota),
        ProviderUnavailable (429 with its Retry-After; or 5xx and timeouts, after which the
        caller must not resend blindly) or ProviderProtocolError.
        """
        ...

    def read_push(self, headers: Mapping[str, str], body: bytes) -> Push:
        """Authenticate and read a push (`headers` with lower-case names).

        Raises Unauthorized when a signature is missing, wrong or stale (nothing may change),
        InvalidRequest when the body is not the provider's shape.
        """
        ...

    def query(self, model: ModelEntry, provider_task_ids: list[str]) -> list[ProviderResult]:
        """Look tasks of one model up (a push's re-fetch, the reconciler); unknown ids are left out."""
        ...
