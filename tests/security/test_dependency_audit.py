"""The dependency locks and the audit script (scripts/audit.py), offline.

The locks must agree with layers/common/requirements.txt and pyproject.toml; the audit must fail, not
pass, when its vulnerability service cannot be reached or a package cannot be audited. `make audit`
does the network half (re-resolving the locks, pip-audit); this file needs no network.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _load_audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sora_relay_audit", ROOT / "scripts" / "audit.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


audit = _load_audit()


def _lock(tmp_path: Path, text: str) -> dict[str, Any]:
    path = tmp_path / "lock.txt"
    path.write_text(text)
    return audit.parse_lock(path)


HASHED = "--hash=sha256:" + "a" * 64


# ---------------------------------------------------------------- the committed locks


def test_locks_agree_with_requirements_and_pyproject() -> None:
    assert audit.offline_errors() == []


def test_layer_lock_is_the_whole_runtime_set_with_hashes() -> None:
    lock = audit.parse_lock(audit.LAYER.path)
    requirements = audit.parse_requirements(audit.REQUIREMENTS)
    # Transitive dependencies are there too, not only the top-level pins.
    assert len(lock) > len(requirements)
    for name in ("pydantic-core", "httpcore", "anyio", "jmespath"):
        assert name in lock, name
    assert all(pin.hashes for pin in lock.values())
    assert "make lock" in audit.LAYER.path.read_text().splitlines()[1]


def test_dev_lock_covers_the_layer_and_has_no_hashes() -> None:
    dev = audit.parse_lock(audit.DEV.path)
    layer = audit.parse_lock(audit.LAYER.path)
    assert not any(pin.hashes for pin in dev.values()), "locks/dev.txt must work as a pip constraints file"
    # The dev venv runs the same runtime libraries as the layer, at the same versions.
    for requirement in audit.parse_requirements(audit.REQUIREMENTS):
        name = audit.canonicalize_name(requirement.name)
        assert dev[name].version == layer[name].version, name


# ---------------------------------------------------------------- the checks catch disagreement


def test_layer_check_catches_a_version_mismatch_a_missing_pin_and_a_missing_hash(tmp_path: Path) -> None:
    lock = _lock(tmp_path, f"httpx==0.28.0 \\\n    {HASHED}\nanyio==4.0.0\n    # via httpx\n")
    requirements = [Requirement("httpx==0.28.1"), Requirement("pydantic==2.14.3")]
    errors = audit.check_layer_lock(requirements, lock)
    assert any("httpx==0.28.0" in e and "0.28.1" in e for e in errors)
    assert any("no pydantic" in e for e in errors)
    assert any("anyio==4.0.0 has no sha256" in e for e in errors)


def test_layer_check_wants_exact_pins_in_requirements(tmp_path: Path) -> None:
    lock = _lock(tmp_path, f"httpx==0.28.1 \\\n    {HASHED}\n")
    assert audit.check_layer_lock([Requirement("httpx>=0.28")], lock)


def test_dev_check_catches_an_unsatisfied_specifier_and_hashes(tmp_path: Path) -> None:
    lock = _lock(tmp_path, f"moto==6.0.0\npytest==8.0.0 \\\n    {HASHED}\n")
    errors = audit.check_dev_lock([], [Requirement("moto[server]>=5.1,<6"), Requirement("pytest>=8")], lock)
    assert any("moto==6.0.0" in e for e in errors)
    assert any("pytest has hashes" in e for e in errors)


def test_dev_check_skips_requirements_for_other_platforms(tmp_path: Path) -> None:
    lock = _lock(tmp_path, "pytest==8.0.0\n")
    other = Requirement('pywin32>=300; sys_platform == "win32"')
    assert audit.check_dev_lock([], [Requirement("pytest>=8"), other], lock) == []


def test_pyproject_and_requirements_must_pin_the_same_versions() -> None:
    deps = [Requirement("httpx==0.28.1"), Requirement("pydantic==2.14.2"), Requirement("boto3")]
    requirements = [Requirement("httpx==0.28.1"), Requirement("pydantic==2.14.3")]
    errors = audit.check_pyproject_matches_layer(deps, requirements)
    assert errors == ["pyproject.toml has pydantic==2.14.2, requirements.txt has pydantic==2.14.3"]
    extra = audit.check_pyproject_matches_layer([*deps, Requirement("rich==13.0")], requirements)
    assert any("rich" in e for e in extra)


def test_parse_lock_rejects_a_range(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an exact pin"):
        _lock(tmp_path, "httpx>=0.28\n")


# ---------------------------------------------------------------- the audit fails closed


class _Response:
    def __init__(self, status: int, body: Any = None) -> None:
        self.status_code = status
        self._body = body
        self.content = b"" if body is None else b"{}"

    def json(self) -> Any:
        if self._body is None:
            raise ValueError("no JSON")
        return self._body


def test_probe_names_a_filtered_per_release_api(monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    monkeypatch.setattr(requests, "get", lambda url, timeout: _Response(404))
    reachable, detail = audit.probe("pypi", audit.Pin("httpx", "0.28.1"))
    assert not reachable
    assert "https://pypi.org/pypi/httpx/0.28.1/json answered 404" in detail
    monkeypatch.setattr(
        requests, "get", lambda url, timeout: _Response(200, {"info": {}, "vulnerabilities": []})
    )
    assert audit.probe("pypi", audit.Pin("httpx", "0.28.1"))[0]


def test_probe_reports_a_connection_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise requests.ConnectionError("Name or service not known")

    monkeypatch.setattr(requests, "post", refuse)
    reachable, detail = audit.probe("osv", audit.Pin("httpx", "0.28.1"))
    assert not reachable and "Name or service not known" in detail


def test_audit_exits_incomplete_without_running_pip_audit_when_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(audit, "command_check", lambda online=True: audit.OK)
    monkeypatch.setattr(audit, "probe", lambda service, pin, timeout=20.0: (False, "answered 404"))

    def no_pip_audit(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pip-audit must not run against an unreachable service")

    monkeypatch.setattr(audit, "run_pip_audit", no_pip_audit)
    assert audit.command_audit("pypi", latest_fallback=False) == audit.INCOMPLETE
    assert "AUDIT NOT RUN" in capsys.readouterr().err


def test_summary_fails_on_skipped_packages_and_on_vulnerabilities() -> None:
    clean = audit.Outcome("layer", audited=3)
    skipped = audit.Outcome("dev", audited=2, skipped=["av: Dependency not found on PyPI"])
    vulnerable = audit.Outcome("dev", audited=2, vulns=[{"name": "x", "version": "1", "id": "PYSEC-1"}])
    assert audit.summarize([clean]) == audit.OK
    assert audit.summarize([clean, skipped]) == audit.INCOMPLETE
    assert audit.summarize([skipped, vulnerable]) == audit.VULNERABLE


def test_latest_fallback_passes_only_when_every_pin_is_covered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "probe", lambda service, pin, timeout=20.0: (False, "down"))
    pins = [audit.Pin("a", "1.0"), audit.Pin("b", "2.0")]
    monkeypatch.setattr(audit, "latest_release_crosscheck", lambda p: (["a 1.0", "b 2.0"], [], []))
    assert audit.unreachable("pypi", "404", pins, latest_fallback=True) == audit.OK
    monkeypatch.setattr(audit, "latest_release_crosscheck", lambda p: (["a 1.0"], [], ["b 2.0: latest is 3"]))
    assert audit.unreachable("pypi", "404", pins, latest_fallback=True) == audit.INCOMPLETE
    monkeypatch.setattr(audit, "latest_release_crosscheck", lambda p: ([], ["a 1.0: PYSEC-1"], []))
    assert audit.unreachable("pypi", "404", pins, latest_fallback=True) == audit.VULNERABLE
    assert audit.unreachable("pypi", "404", pins, latest_fallback=False) == audit.INCOMPLETE


def test_ignore_file_needs_a_reason_for_each_entry(tmp_path: Path) -> None:
    good = tmp_path / "ignore.txt"
    good.write_text("# header\nGHSA-xxxx-yyyy-zzzz  # dev only: the vulnerable API is never called\n")
    assert audit.read_ignores(good) == {"GHSA-xxxx-yyyy-zzzz": "dev only: the vulnerable API is never called"}
    bad = tmp_path / "bad.txt"
    bad.write_text("PYSEC-2024-1\n")
    with pytest.raises(SystemExit, match="no reason"):
        audit.read_ignores(bad)
