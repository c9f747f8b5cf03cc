"""The model catalogue: our stable model ids, the provider that runs each, and what each offers.

The data is `sora_relay/catalogue.json`, part of the layer; it is validated when it loads (a bad
entry raises, so the unit suite and `make build` fail on it). Nothing outside the adapters reads
`provider`, `route`, `provider_model` or `input`: the use cases speak in our own terms (seconds,
`WIDTHxHEIGHT` sizes, a first-frame image) and each entry says how its provider spells them.

Retired entries (`sora-2`, `sora-2-pro`) stay listed so that a request for them gets a clear
answer naming live alternatives, unless the operator maps them to a live model (`ModelAliases`).
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sora_relay.domain.errors import InvalidRequest

CATALOGUE_FILE = Path(__file__).resolve().parent.parent / "catalogue.json"
PROVIDERS = ("acedata", "fal", "replicate")
_SIZE = re.compile(r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")
_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,62}$")


class ModelStatus(StrEnum):
    LIVE = "live"
    RETIRED = "retired"


class _Strict(BaseModel):
    # Built when the catalogue first loads (`default()`), not at import: the video routes of
    # StatusFunction import this module (through the API models) and never load the catalogue.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class SizeSpec(_Strict):
    """How the provider spells one of our sizes; a null value is not sent (the provider's default)."""

    aspect_ratio: str | None = None
    resolution: str | None = None


class InputNames(_Strict):
    """Where a fal or Replicate model takes each of our fields (null: the model has no such input).

    `duration_format`: `int` sends 8, `string` sends "8", `seconds_suffix` sends "8s".
    """

    prompt: str = "prompt"
    duration: str | None = "duration"
    duration_format: Literal["int", "string", "seconds_suffix"] = "int"
    aspect_ratio: str | None = "aspect_ratio"
    resolution: str | None = "resolution"
    image: str | None = None
    audio: str | None = None


class ModelEntry(_Strict):
    id: str
    name: str
    provider: Literal["acedata", "fal", "replicate"]
    # AceData: the service (`veo`, `kling`, ...); fal: the endpoint id; Replicate: `owner/name`.
    route: str = Field(min_length=1)
    # fal: the endpoint that takes a first-frame image, when it is another one.
    image_route: str | None = None
    # AceData: the service's own model name (`veo31-fast`); unused elsewhere.
    provider_model: str | None = None
    seconds: tuple[int, ...] = Field(min_length=1)
    default_seconds: int
    sizes: dict[str, SizeSpec] = Field(min_length=1)
    default_size: str
    image: bool
    audio: bool
    price_per_second_usd: float = Field(ge=0)
    price_read: datetime.date
    price_source: str = Field(min_length=1)
    input: InputNames = InputNames()
    status: ModelStatus = ModelStatus.LIVE
    replaced_by: tuple[str, ...] = ()
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        if not _MODEL_ID.match(self.id):
            raise ValueError(f"{self.id!r}: ids are lower case letters, digits, dots and dashes")
        if self.default_seconds not in self.seconds:
            raise ValueError(f"{self.id}: default_seconds {self.default_seconds} is not in seconds")
        if any(not 1 <= seconds <= 60 for seconds in self.seconds):
            raise ValueError(f"{self.id}: seconds must be 1 to 60")
        bad = [size for size in self.sizes if not _SIZE.match(size)]
        if bad:
            raise ValueError(f"{self.id}: sizes are WIDTHxHEIGHT, not {bad}")
        if self.default_size not in self.sizes:
            raise ValueError(f"{self.id}: default_size {self.default_size} is not in sizes")
        if self.status is ModelStatus.RETIRED and not self.replaced_by:
            raise ValueError(f"{self.id}: a retired model names its live replacements")
        if self.provider == "acedata" and self.status is ModelStatus.LIVE and not self.provider_model:
            raise ValueError(f"{self.id}: an AceData model names the service's model (provider_model)")
        if self.provider != "fal" and self.image_route:
            raise ValueError(f"{self.id}: image_route is for fal endpoints only")
        if self.provider in ("fal", "replicate") and self.image and not self.input.image:
            raise ValueError(f"{self.id}: a model that takes an image names its input field")
        return self

    @property
    def live(self) -> bool:
        return self.status is ModelStatus.LIVE

    def size(self, size: str) -> SizeSpec:
        return self.sizes[size]

    def check(self, *, seconds: int, seconds_field: str, size: str, image: str | None) -> None:
        """A request's seconds, size and image against what this model offers; the 400 names the
        field and the values offered. `image`: the field that carried an image (None: no image)."""
        if seconds not in self.seconds:
            offered = ", ".join(map(str, self.seconds))
            raise InvalidRequest(
                f"{self.id} offers {offered} seconds, not {seconds}",
                param=seconds_field,
                code="invalid_value",
            )
        if size not in self.sizes:
            raise InvalidRequest(
                f"{self.id} offers the sizes {', '.join(self.sizes)}, not {size}",
                param="size",
                code="invalid_value",
            )
        if image is not None and not self.image:
            raise InvalidRequest(
                f"{self.id} takes no first-frame image; send none, or pick a model whose `image` is true "
                "(GET /v1/models)",
                param=image,
                code="invalid_value",
            )

    def price_microusd(self, seconds: int) -> int:
        """The list price of a video this long, in millionths of a US dollar."""
        return round(self.price_per_second_usd * seconds * 1_000_000)


class Catalogue(_Strict):
    models: tuple[ModelEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        ids = [entry.id for entry in self.models]
        duplicates = sorted({model_id for model_id in ids if ids.count(model_id) > 1})
        if duplicates:
            raise ValueError(f"duplicate model ids: {duplicates}")
        by_id = {entry.id: entry for entry in self.models}
        for entry in self.models:
            for target in entry.replaced_by:
                if target not in by_id or not by_id[target].live:
                    raise ValueError(f"{entry.id}: replaced_by names {target!r}, which is not a live model")
        return self

    def get(self, model_id: str) -> ModelEntry | None:
        return next((entry for entry in self.models if entry.id == model_id), None)

    def live(self) -> list[ModelEntry]:
        return [entry for entry in self.models if entry.live]

    def require(self, model_id: str) -> ModelEntry:
        entry = self.get(model_id)
        if entry is None:
            raise KeyError(model_id)
        return entry

    def parse_aliases(self, text: str) -> dict[str, str]:
        """`sora-2=veo-3.1-fast,sora-2-pro=veo-3.1`: each source known, each target a live model."""
        aliases: dict[str, str] = {}
        for part in filter(None, (piece.strip() for piece in text.split(","))):
            source, sep, target = (item.strip() for item in part.partition("="))
            if not sep or not source or not target:
                raise ValueError(f"model alias {part!r}: write it as asked=served")
            served = self.get(target)
            if served is None or not served.live:
                raise ValueError(f"model alias {part!r}: {target!r} is not a live model")
            if (asked := self.get(source)) is not None and asked.live:
                raise ValueError(f"model alias {part!r}: {source!r} is live; only retired models are mapped")
            aliases[source] = target
        return aliases

    def resolve(self, model_id: str, aliases: dict[str, str]) -> ModelEntry:
        """The live model that serves a request for `model_id` (itself, or its alias's target).

        Raises InvalidRequest naming `model`: unknown ids list the live ones, retired ids name
        their replacements (or the alias the operator could set).
        """
        entry = self.get(model_id)
        if model_id in aliases:
            return self.require(aliases[model_id])
        if entry is None:
            offered = ", ".join(item.id for item in self.live())
            raise InvalidRequest(
                f"model {model_id!r} is not in the catalogue (live models: {offered})",
                param="model",
                code="model_not_found",
            )
        if not entry.live:
            raise InvalidRequest(
                f"model {model_id!r} is retired; use one of {', '.join(entry.replaced_by)} "
                "(or ask the operator to map it with the ModelAliases parameter)",
                param="model",
                code="model_retired",
            )
        return entry


def load(path: Path = CATALOGUE_FILE) -> Catalogue:
    """Read and validate a catalogue file; a bad entry raises ValueError naming it."""
    try:
        return Catalogue.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValidationError as error:
        raise ValueError(f"{path.name} is not a valid catalogue: {error}") from None


@functools.cache
def default() -> Catalogue:
    """The layer's catalogue, read once per process."""
    return load()
