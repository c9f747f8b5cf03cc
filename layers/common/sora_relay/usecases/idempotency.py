"""Idempotency-Key on POST /v1/videos (Stripe's semantics, through Powertools idempotency).

Scoped to the caller and kept 24 h: the same key with the same request answers the first answer
again and makes no second task; the same key with a different request is a 422; the same key
while the first request is still running is a 409. Powertools stores what the function returns
and deletes the record when it raises, so nothing answered after the task exists may be raised
from inside: submit_video answers a task the provider failed as the 202 failed video, which is
stored like any video, and a retry gets that 202 again without asking the provider again. The
provider's refusal of the input itself (a 400, `provider_rejected`) is returned as a stored
refusal too, and a retry gets the same error (status, code, message, param). A request refused
before a task exists (validation, the budget), or failed by our own error before it (a 5xx),
leaves no record, so it can be retried with the same key. If the record of a finished submission
cannot be written, the answer it made is answered all the same (its task exists). The task id
itself is derived from (caller, key), so even a lost idempotency record cannot make a second task:
a retry finds the first one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from sora_relay.domain.budget import TenantLimits
from sora_relay.domain.create_request import CreateVideoRequest
from sora_relay.domain.errors import (
    DO_NOT_RETRY,
    PROVIDER_REFUSALS,
    Conflict,
    InvalidRequest,
    SoraRelayError,
    Unprocessable,
    invites_retry,
)
from sora_relay.domain.models import VideoObject
from sora_relay.domain.reference_image import ImageUpload
from sora_relay.observability import logger
from sora_relay.usecases.deps import Deps
from sora_relay.usecases.submit import submit_video

HEADER = "Idempotency-Key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, at most 255 characters
_REFUSED = "refused"  # the key of a stored answer that is the provider's refusal, not a video
# What the payload check also covers besides the request's fields: an uploaded image (by its
# digest) and the video a remix is made from. Taken out again before the request is validated.
_CONTEXT = ("input_reference_sha256", "remixed_from")


class StoredRefusal(SoraRelayError):
    """The provider's refusal of the first request with this key, answered again as it was."""

    def __init__(self, *, status: int, code: str, message: str, param: str | None) -> None:
        super().__init__(message, param=param, code=code)
        self.status_code = status

    @classmethod
    def of(cls, error: SoraRelayError) -> StoredRefusal:
        return cls(status=error.status_code, code=error.code, message=error.message, param=error.param)

    def headers(self) -> dict[str, str]:
        # A 5xx replay (a record stored before such refusals were answered 202): its task exists.
        return dict(DO_NOT_RETRY) if invites_retry(self.status_code) else {}

    def answer(self) -> dict[str, Any]:
        fields = {"status": self.status_code, "code": self.code, "message": self.message, "param": self.param}
        return {_REFUSED: fields}


@lru_cache(maxsize=1)  # built once per container: a new container (a test's) builds its own
def _idempotent_submit(deps: Deps) -> tuple[Callable[..., dict[str, Any]], IdempotencyConfig]:
    settings = deps.settings
    if not settings.idempotency_table_name:
        raise InvalidRequest(f"{HEADER} is not supported by this deployment", param=HEADER)
    config = IdempotencyConfig(
        event_key_jmespath="[owner, key]",
        payload_validation_jmespath="request",
        expires_after_seconds=settings.idempotency_ttl_seconds,
    )
    store = deps.idempotency_store

    # The tenant's limits are not part of the idempotency payload: a retry after the operator changed
    # them is the same request, and answers what the first one answered.
    @idempotent_function(data_keyword_argument="submission", persistence_store=store, config=config)
    def submit(
        submission: dict[str, Any],
        public_base_url: str,
        upload: ImageUpload | None = None,
        remixed_from: str | None = None,
        limits: TenantLimits | None = None,
        made: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        fields = {k: v for k, v in submission["request"].items() if k not in _CONTEXT}
        request = CreateVideoRequest.model_validate(fields)
        task_id = task_id_for(submission["owner"], submission["key"])
        try:
            video = submit_video(
                deps,
                request,
                owner=submission["owner"],
                public_base_url=public_base_url,
                task_id=task_id,
                upload=upload,
                remixed_from=remixed_from,
                limits=limits,
            )
        except PROVIDER_REFUSALS as error:
            answer = StoredRefusal.of(error).answer()  # returned, so Powertools stores it
        else:
            answer = video.model_dump(mode="json")
        if made is not None:
            made.append(answer)  # what submit_once answers if Powertools cannot store it
        return answer

    return submit, config


def task_id_for(owner: str, key: str) -> str:
    """The task id of (owner, Idempotency-Key): the table's own guard against a second task when
    the idempotency record itself could not be written (its in-flight record then expires, and a
    retry runs the submission again, which finds this task)."""
    digest = hashlib.sha256(f"sora-relay/idempotency/v1\0{owner}\0{key}".encode()).hexdigest()
    return f"video_{digest[:32]}"


def submit_once(
    deps: Deps,
    request: CreateVideoRequest,
    *,
    owner: str,
    public_base_url: str,
    key: str | None,
    context: LambdaContext | None = None,
    upload: ImageUpload | None = None,
    remixed_from: str | None = None,
    limits: TenantLimits | None = None,
) -> VideoObject:
    if key is None:
        return submit_video(
            deps,
            request,
            owner=owner,
            public_base_url=public_base_url,
            upload=upload,
            remixed_from=remixed_from,
            limits=limits,
        )
    if not _KEY.match(key):
        raise InvalidRequest(f"{HEADER} must be 1 to 255 visible ASCII characters", param=HEADER)
    submit, config = _idempotent_submit(deps)
    if context is not None:
        # Lets a crashed attempt's "in progress" record expire with the invocation, not in 24 h.
        config.register_lambda_context(context)
    payload = request.model_dump(mode="json")
    if upload is not None:
        payload["input_reference_sha256"] = upload.sha256
    if remixed_from is not None:
        payload["remixed_from"] = remixed_from
    submission = {"owner": owner, "key": key, "request": payload}
    made: list[dict[str, Any]] = []
    try:
        answer = submit(
            submission=submission,
            public_base_url=public_base_url,
            upload=upload,
            remixed_from=remixed_from,
            limits=limits,
            made=made,
        )
    except IdempotencyPersistenceLayerError:
        if not made:
            raise  # no task was made by this request: our 5xx, and a retry with the key is safe
        # The submission ran and its task exists; only its record is missing. A 5xx now would make
        # the client's SDK retry for nothing (a retry finds the same task): answer what was made.
        logger.warning("Could not store the idempotency record; answering the submission anyway")
        answer = made[0]
    except IdempotencyAlreadyInProgressError as error:
        raise Conflict(
            f"A request with this {HEADER} is still being processed",
            param=HEADER,
            code="idempotency_key_in_use",
        ) from error
    except IdempotencyValidationError as error:
        raise Unprocessable(
            f"This {HEADER} was used with a different request", param=HEADER, code="idempotency_key_reused"
        ) from error
    if _REFUSED in answer:
        refusal = StoredRefusal(**answer[_REFUSED])
        if invites_retry(refusal.status_code):
            # Stored before such refusals were answered 202 (records live 24 h): answer its task.
            task = deps.task_store.get(task_id_for(owner, key))
            if task is not None and task.owner == owner:
                return VideoObject.from_task(task)
        raise refusal
    return VideoObject.model_validate(answer)
