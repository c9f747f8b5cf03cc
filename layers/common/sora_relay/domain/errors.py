"""Domain exceptions and, in one table, the HTTP status and error code each maps to."""

from __future__ import annotations


class SoraRelayError(Exception):
    """Base of every error the API reports as `{"error": {"message", "type", "param", "code"}}`."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code:
            self.code = code

    def headers(self) -> dict[str, str]:
        return {}


# OpenAI's SDK retries 408, 409, 429 and 5xx, POST included, unless the answer says
# `x-should-retry: false`. A create that stored its task never answers one of those (a retry would
# make a second task and, after a provider's 5xx, maybe bill a second video): it answers 202 with
# the failed video instead (usecases/submit.py). Errors that still may follow a stored task (a
# replayed answer, the last resort when the task cannot even be failed) carry the header as well.
DO_NOT_RETRY = {"x-should-retry": "false"}


def invites_retry(status: int) -> bool:
    """Whether OpenAI's SDK retries an answer with this status (408, 409, 429, 5xx) on its own."""
    return status in (408, 409, 429) or status >= 500


class AfterTaskStored:
    """Mixin: this error is raised once a create's task exists (failed). Submit answers the failed
    video instead (202); where the error is answered after all, it says not to retry."""

    def headers(self) -> dict[str, str]:
        return dict(DO_NOT_RETRY)


class InvalidRequest(SoraRelayError):
    status_code = 400
    code = "invalid_request"


class RequestTooLarge(SoraRelayError):
    status_code = 413
    code = "request_too_large"


class Unauthorized(SoraRelayError):
    status_code = 401
    code = "unauthorized"


class PermissionDenied(SoraRelayError):
    """The caller is who it says, and this is not allowed to it (a model outside its tenant's list)."""

    status_code = 403
    code = "permission_denied"


class InsufficientQuota(SoraRelayError):
    """The submit would take the tenant past its monthly budget: OpenAI's answer to a spent quota
    (429, type and code `insufficient_quota`). Waiting does not help before the month turns, so
    the answer tells the OpenAI SDK not to retry it (`x-should-retry: false`; it retries 429s)."""

    status_code = 429
    code = "insufficient_quota"

    def headers(self) -> dict[str, str]:
        return dict(DO_NOT_RETRY)


class NotFound(SoraRelayError):
    status_code = 404
    code = "not_found"


class Conflict(SoraRelayError):
    status_code = 409
    code = "conflict"


class Unprocessable(SoraRelayError):
    status_code = 422
    code = "unprocessable"


class ProviderRejected(SoraRelayError):
    """The provider refused the request itself (its 400): the client's input is the problem."""

    status_code = 400
    code = "provider_rejected"


class ProviderAuthFailed(AfterTaskStored, SoraRelayError):
    """The provider refused our key or our quota is used up: our problem, not the client's."""

    status_code = 502
    code = "provider_auth_error"


class ProviderUnavailable(SoraRelayError):
    """The provider is rate limiting, failing or slow; worth trying again later."""

    status_code = 503
    code = "provider_unavailable"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        code: str | None = None,
        resend_safe: bool = False,
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
        # True only when the provider cannot have accepted the request (a 429, a connection never
        # made): a create may then be sent again. After a 5xx or a timeout it may have started the
        # job, and a second create could bill twice (shared/providers/README.md, rule 8).
        self.resend_safe = resend_safe

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after or 1)))}


class ProviderProtocolError(AfterTaskStored, SoraRelayError):
    """The provider answered something that does not follow its contract."""

    status_code = 502
    code = "provider_protocol_error"


class UnsafeUrl(SoraRelayError):
    """An outbound URL that is not https or points at a private, loopback or link-local address."""

    status_code = 400
    code = "unsafe_url"


class UpstreamRejected(SoraRelayError):
    """A fetched resource is permanently unusable (404, wrong type, too large)."""

    status_code = 502
    code = "video_fetch_failed"


class UpstreamUnavailable(SoraRelayError):
    """A fetched resource failed in a way that may pass (5xx, timeout, connection reset)."""

    status_code = 502
    code = "video_fetch_unavailable"


class PreviewFailed(SoraRelayError):
    """A preview (thumbnail, spritesheet) could not be drawn from an archived video. Never an
    answer: the task completes without its previews and the reason is recorded on it."""

    status_code = 500
    code = "preview_failed"


class ConfigurationError(SoraRelayError):
    """A setting the running function needs is missing: a deployment fault, ours."""

    status_code = 500
    code = "configuration_error"


class AwsServiceError(SoraRelayError):
    """An AWS service we depend on failed (after botocore's retries): our own fault, retried."""

    status_code = 500
    code = "aws_error"


class StorageError(AwsServiceError):
    """DynamoDB or S3 failed."""

    code = "storage_error"


class QueueError(AwsServiceError):
    """SQS failed: a message could not be sent or its visibility changed."""

    code = "queue_error"


class TaskNotQueued(AfterTaskStored, QueueError):
    """Submit stored the task but could not hand it to the dispatch queue: the task fails with
    this reason, and the answer (if it must be an error) says not to retry into a second task."""

    code = "dispatch_failed"


class EventBusError(AwsServiceError):
    """EventBridge failed or refused some of the events."""

    code = "event_bus_error"


class TransitionRejected(SoraRelayError):
    """A conditional state change lost: the task is no longer in a state that allows it."""

    status_code = 409
    code = "invalid_transition"


class WebhookClaimLost(SoraRelayError):
    """Another delivery of the same webhook event holds or has moved past this attempt: the
    attempt count is the lock (TaskStore.write_webhook), and this delivery lost it."""

    status_code = 409
    code = "webhook_claim_lost"


class ProviderOutcomeUnknown(AfterTaskStored, SoraRelayError):
    """The provider failed (5xx) or fell silent while taking a create: it may have started the job.
    The create is not sent again (a second one could start and bill a second video); the task
    fails with this reason, the create answers 202 with that failed video, and the client may
    submit again. Its status is what the dispatch queue and the MCP tools report it as."""

    status_code = 502
    code = "provider_outcome_unknown"


# The provider's own final word on a task: retrying cannot change it, so it fails the task. Any
# other error (ours: storage, configuration, a secret that cannot be read) is retried.
PROVIDER_REFUSALS: tuple[type[SoraRelayError], ...] = (
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderAuthFailed,
    ProviderProtocolError,
)


class Deferred(Exception):
    """A queue message is left on its queue on purpose: retried after its delay, or moved on to
    the dead-letter queue by the redrive policy. Batch handlers log it as a deferral, not a crash."""


def describe_cause(error: BaseException) -> str:
    """The root cause of `error` in one line (type and message), for logs: what AWS answered."""
    cause: BaseException = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return f"{type(cause).__name__}: {cause}"[:500]
