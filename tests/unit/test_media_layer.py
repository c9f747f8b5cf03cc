"""The MediaLayer's wiring: only ArchiveFunction has it, the build check knows it, its lock agrees."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from devstack.template import load_template

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"sora_relay_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def _own_layers(template: dict) -> dict[str, tuple[str, ...]]:
    globals_ = {layer["Ref"] for layer in template["Globals"]["Function"].get("Layers", [])}
    return {
        name: tuple(
            layer["Ref"] for layer in resource["Properties"]["Layers"] if layer["Ref"] not in globals_
        )
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function" and resource["Properties"].get("Layers")
    }


def test_only_the_archive_function_has_the_media_layer_and_the_layer_check_knows_every_own_layer():
    template = load_template(ROOT / "template.yaml")
    own = _own_layers(template)
    assert {name for name, layers in own.items() if "MediaLayer" in layers} == {"ArchiveFunction"}
    assert own == _script("check_layer").OWN_LAYERS
    layer = template["Resources"]["MediaLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/media/"
    assert layer["Metadata"]["BuildMethod"] == "python3.12"


def test_the_media_lock_is_audited_and_agrees_with_its_requirements_and_the_dev_lock():
    audit = _script("audit")
    assert audit.MEDIA_LAYER in audit.SPECS and audit.MEDIA_LAYER.hashes
    # PyAV has only manylinux_2_28 wheels: a manylinux2014 target would find none.
    assert audit.MEDIA_LAYER.python_platform == "aarch64-manylinux_2_28"
    media = audit.parse_lock(audit.MEDIA_LAYER.path)
    assert set(media) == {"av", "pillow"}
    assert (
        audit.check_layer_lock(
            audit.parse_requirements(ROOT / "layers" / "media" / "requirements.txt"), media, where="media"
        )
        == []
    )
    assert audit.check_media_versions(media, audit.parse_lock(audit.DEV.path)) == []
    # And a drift between the two is reported
    dev = dict(audit.parse_lock(audit.DEV.path))
    dev["pillow"] = audit.Pin("pillow", "1.0")
    assert audit.check_media_versions(media, dev) == [
        "locks/dev.txt has pillow==1.0, locks/media-layer.txt has 13.0.0"
    ]
