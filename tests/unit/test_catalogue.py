"""The model catalogue: the layer's data file is valid, and a bad entry is refused when it loads."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sora_relay.domain import catalogue
from sora_relay.domain.errors import InvalidRequest

DATA = json.loads(catalogue.CATALOGUE_FILE.read_text())


def write(tmp_path: Path, models: list[dict[str, Any]]) -> Path:
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps({"models": models}))
    return path


def live_entry(**changes: Any) -> dict[str, Any]:
    entry = copy.deepcopy(next(item for item in DATA["models"] if item.get("status", "live") == "live"))
    entry.update(changes)
    return entry


def test_the_layer_catalogue_loads_and_names_live_replacements_for_sora() -> None:
    loaded = catalogue.load()
    assert loaded.get("sora-2") is not None and not loaded.require("sora-2").live
    assert all(loaded.require(target).live for target in loaded.require("sora-2").replaced_by)
    assert {entry.provider for entry in loaded.live()} <= set(catalogue.PROVIDERS)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"default_seconds": 99}, "default_seconds"),
        ({"default_size": "1x1"}, "default_size"),
        ({"sizes": {"big": {}}, "default_size": "big"}, "WIDTHxHEIGHT"),
        ({"provider": "openai"}, "provider"),
        ({"price_per_second_usd": -1}, "price_per_second_usd"),
        ({"price_read": "yesterday"}, "price_read"),
        ({"id": "Has Spaces"}, "ids are lower case"),
        ({"status": "retired"}, "names its live replacements"),
        ({"unexpected": True}, "unexpected"),
        ({"seconds": []}, "seconds"),
    ],
)
def test_a_bad_entry_fails_the_load_naming_what_is_wrong(
    tmp_path: Path, change: dict, complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        catalogue.load(write(tmp_path, [live_entry(**change)]))


def test_duplicate_ids_and_dangling_replacements_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate model ids"):
        catalogue.load(write(tmp_path, [live_entry(), live_entry()]))
    retired = live_entry(id="old-model", status="retired", replaced_by=["nowhere"])
    with pytest.raises(ValueError, match="not a live model"):
        catalogue.load(write(tmp_path, [live_entry(), retired]))


def test_aliases_map_retired_models_to_live_ones_only() -> None:
    loaded = catalogue.load()
    target = loaded.require("sora-2").replaced_by[0]
    assert loaded.parse_aliases(f" sora-2 = {target} ,") == {"sora-2": target}
    assert loaded.parse_aliases("") == {}
    with pytest.raises(ValueError, match="not a live model"):
        loaded.parse_aliases("sora-2=sora-2-pro")
    with pytest.raises(ValueError, match="only retired models"):
        loaded.parse_aliases(f"{target}={target}")
    with pytest.raises(ValueError, match="asked=served"):
        loaded.parse_aliases("sora-2")


def test_resolve_names_live_alternatives_for_unknown_and_retired_models() -> None:
    loaded = catalogue.load()
    with pytest.raises(InvalidRequest) as unknown:
        loaded.resolve("no-such-model", {})
    assert unknown.value.param == "model" and loaded.live()[0].id in unknown.value.message
    with pytest.raises(InvalidRequest) as retired:
        loaded.resolve("sora-2", {})
    assert retired.value.code == "model_retired"
    assert loaded.require("sora-2").replaced_by[0] in retired.value.message
    target = loaded.require("sora-2").replaced_by[0]
    assert loaded.resolve("sora-2", {"sora-2": target}).id == target


def test_check_names_the_field_and_what_the_model_offers() -> None:
    model = catalogue.load().live()[0]
    size = model.default_size
    with pytest.raises(InvalidRequest) as seconds:
        model.check(seconds=59, seconds_field="seconds", size=size, image=None)
    assert seconds.value.param == "seconds" and str(model.seconds[0]) in seconds.value.message
    with pytest.raises(InvalidRequest) as sizes:
        model.check(seconds=model.default_seconds, seconds_field="duration", size="2x2", image=None)
    assert sizes.value.param == "size" and size in sizes.value.message
    no_image = next((entry for entry in catalogue.load().live() if not entry.image), None)
    if no_image is not None:
        with pytest.raises(InvalidRequest) as image:
            no_image.check(
                seconds=no_image.default_seconds,
                seconds_field="seconds",
                size=no_image.default_size,
                image="image_urls",
            )
        assert image.value.param == "image_urls"
