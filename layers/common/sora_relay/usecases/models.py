"""Use cases: the catalogue as callers see it (`GET /v1/models`, `GET /v1/models/{id}`)."""

from __future__ import annotations

import calendar

from sora_relay.domain.catalogue import ModelEntry
from sora_relay.domain.errors import NotFound
from sora_relay.domain.models import ModelList, ModelObject
from sora_relay.usecases.deps import Deps


def _model_object(deps: Deps, entry: ModelEntry) -> ModelObject:
    served_by = deps.model_aliases.get(entry.id)
    serving = deps.catalogue.require(served_by) if served_by else entry
    return ModelObject(
        id=entry.id,
        created=calendar.timegm(entry.price_read.timetuple()),
        owned_by=entry.provider,
        name=entry.name,
        status=entry.status.value,
        available=serving.live and deps.provider_available(serving.provider),
        seconds=list(entry.seconds),
        default_seconds=entry.default_seconds,
        sizes=list(entry.sizes),
        default_size=entry.default_size,
        image=entry.image,
        audio=entry.audio,
        price_per_second_usd=entry.price_per_second_usd,
        price_read=entry.price_read.isoformat(),
        replaced_by=list(entry.replaced_by),
        served_by=served_by,
    )


def list_models(deps: Deps) -> ModelList:
    """Every catalogue entry, live first, in the catalogue's order."""
    entries = sorted(deps.catalogue.models, key=lambda entry: not entry.live)
    return ModelList(data=[_model_object(deps, entry) for entry in entries])


def get_model(deps: Deps, model_id: str) -> ModelObject:
    entry = deps.catalogue.get(model_id)
    if entry is None:
        raise NotFound(f"No model with id {model_id}", param="model_id", code="model_not_found")
    return _model_object(deps, entry)
