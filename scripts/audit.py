"""Dependency audit over locked requirement sets (`make audit`, `make lock`).

    python scripts/audit.py [audit]   check the locks, then pip-audit each one
    python scripts/audit.py lock      re-resolve both locks (after changing requirements.txt/pyproject.toml)
    python scripts/audit.py check     only check that the locks agree with their sources
    python scripts/audit.py venv      pip-audit the installed .venv instead, and list its drift from the lock

Run it with the audit venv's python (`make audit` builds it): it needs pip-audit, uv and packaging.

The locks (locks/), both whole transitive sets resolved by `uv pip compile --upgrade`:
  layer.txt  layers/common/requirements.txt as `sam build` installs it into the layer: CPython 3.12 on
             manylinux2014 aarch64 (Lambda arm64), every pin with its hashes.
  mcp-layer.txt, media-layer.txt  the MCP function's and the archive function's own layers
             (layers/{mcp,media}/requirements.txt), the same way (media: manylinux_2_28, see MEDIA_LAYER).
  dev.txt    pyproject.toml's dependencies plus the `dev` extra for the dev venv (CPython 3.11, x86_64
             Linux): exact pins without hashes, so it also works as a pip constraints file.

A lock agrees with its source when (1) every pin of requirements.txt / every specifier of pyproject.toml
is met by the lock, pyproject's exact pins equal requirements.txt's, and (2) resolving the source again
with the lock as constraints gives exactly the lock's set (nothing missing, nothing extra). (1) is offline
and also runs in the test suite (tests/security/test_dependency_audit.py); (2) asks the package index.

pip-audit asks a vulnerability service about each pinned version: PyPI's per-release JSON API
(https://pypi.org/pypi/NAME/VERSION/json, the default) or OSV (--service osv). The service is probed
first; a package pip-audit cannot look up counts as a failure (pip-audit itself only warns about it
unless --strict, and then prints "No known vulnerabilities found").

Exit codes: 0 audited, no known vulnerability; 1 vulnerabilities found; 2 a lock disagrees with its
source (run `make lock`) or the tools are missing; 3 the vulnerability service was not reachable or a
package could not be audited, so the audit is incomplete (never a pass).

Findings that do not apply are listed in locks/audit-ignore.txt, one `ID  # reason` a line; each is
passed to pip-audit as --ignore-vuln. A line without a reason is an error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "locks"
REQUIREMENTS = ROOT / "layers" / "common" / "requirements.txt"
PYPROJECT = ROOT / "pyproject.toml"
IGNORE_FILE = LOCKS / "audit-ignore.txt"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
# Packages the layer leaves to the runtime (requirements.txt says so; pyproject lists it for the dev venv).
RUNTIME_PROVIDED = {"boto3", "snapshot-restore-py"}

PYPI_RELEASE_URL = "https://pypi.org/pypi/{name}/{version}/json"
PYPI_PROJECT_URL = "https://pypi.org/pypi/{name}/json"
OSV_QUERY_URL = "https://api.osv.dev/v1/query"
SERVICES = ("pypi", "osv")

OK, VULNERABLE, DISAGREES, INCOMPLETE = 0, 1, 2, 3


@dataclass(frozen=True)
class LockSpec:
    name: str
    path: Path
    sources: tuple[str, ...]  # uv pip compile's inputs, relative to ROOT
    python_version: str
    python_platform: str
    hashes: bool

    def target(self) -> list[str]:
        return ["--python-version", self.python_version, "--python-platform", self.python_platform]


LAYER = LockSpec(
    "layer",
    LOCKS / "layer.txt",
    ("layers/common/requirements.txt",),
    "3.12",
    "aarch64-manylinux2014",
    hashes=True,
)
DEV = LockSpec(
    "dev",
    LOCKS / "dev.txt",
    ("pyproject.toml", "--extra", "dev"),
    "3.11",
    "x86_64-unknown-linux-gnu",
    hashes=False,
)
MCP_LAYER = LockSpec(
    "mcp-layer",
    LOCKS / "mcp-layer.txt",
    ("layers/mcp/requirements.txt",),
    "3.12",
    "aarch64-manylinux2014",
    hashes=True,
)
# PyAV ships only manylinux_2_28 wheels (Lambda's python3.12 has glibc 2.34, so they load; sam build
# takes them): a manylinux2014 target would find no wheel of it.
MEDIA_LAYER = LockSpec(
    "media-layer",
    LOCKS / "media-layer.txt",
    ("layers/media/requirements.txt",),
    "3.12",
    "aarch64-manylinux_2_28",
    hashes=True,
)
SPECS = (LAYER, MCP_LAYER, MEDIA_LAYER, DEV)


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str
    hashes: tuple[str, ...] = ()


@dataclass
class Outcome:
    lock: str
    audited: int = 0
    vulns: list[dict[str, Any]] = field(default_factory=list)  # {"name", "version", "id", ...}
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- parsing


def _logical_lines(text: str) -> list[str]:
    """Requirement-file lines with backslash continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse_lock(path: Path) -> dict[str, Pin]:
    """name -> Pin of a lock file written by `uv pip compile` (name==version [--hash=sha256:...]...)."""
    pins: dict[str, Pin] = {}
    for line in _logical_lines(path.read_text()):
        parts = line.split()
        requirement = Requirement(parts[0])
        hashes = tuple(part.split("=", 1)[1] for part in parts[1:] if part.startswith("--hash="))
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise ValueError(f"{path.name}: {parts[0]!r} is not an exact pin")
        name = canonicalize_name(requirement.name)
        pins[name] = Pin(name, specs[0].version, hashes)
    return pins


def parse_requirements(path: Path) -> list[Requirement]:
    return [Requirement(line) for line in _logical_lines(path.read_text()) if not line.startswith("-")]


def pyproject_requirements(path: Path = PYPROJECT) -> tuple[list[Requirement], list[Requirement]]:
    """(project dependencies, the `dev` extra) of pyproject.toml."""
    project = tomllib.loads(path.read_text())["project"]
    deps = [Requirement(item) for item in project.get("dependencies", [])]
    dev = [Requirement(item) for item in project.get("optional-dependencies", {}).get("dev", [])]
    return deps, dev


def _exact_pin(requirement: Requirement) -> str | None:
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version:
        return specs[0].version
    return None


# ---------------------------------------------------------------- offline agreement


def check_layer_lock(
    requirements: list[Requirement], lock: dict[str, Pin], where: str = "locks/layer.txt"
) -> list[str]:
    errors = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        pinned = _exact_pin(requirement)
        if pinned is None:
            errors.append(f"requirements.txt: {requirement} is not an exact pin (==)")
            continue
        if name not in lock:
            errors.append(f"{where} has no {name} (requirements.txt pins {pinned})")
        elif Version(lock[name].version) != Version(pinned):
            errors.append(f"{where} has {name}=={lock[name].version}, requirements.txt pins {pinned}")
    for pin in lock.values():
        if not any(value.startswith("sha256:") for value in pin.hashes):
            errors.append(f"{where}: {pin.name}=={pin.version} has no sha256 hash")
    return errors


def check_media_versions(media: dict[str, Pin], dev: dict[str, Pin]) -> list[str]:
    """The dev venv decodes and encodes the previews with the same PyAV and Pillow as the layer."""
    return [
        f"locks/dev.txt has {name}=={dev[name].version if name in dev else '-'}, "
        f"locks/media-layer.txt has {pin.version}"
        for name, pin in media.items()
        if name not in dev or Version(dev[name].version) != Version(pin.version)
    ]


def _dev_environment(spec: LockSpec) -> dict[str, str]:
    environment = dict(default_environment())
    environment.update(
        python_version=spec.python_version,
        python_full_version=f"{spec.python_version}.0",
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        platform_machine="x86_64",
        implementation_name="cpython",
        platform_python_implementation="CPython",
    )
    return environment


def check_dev_lock(
    deps: list[Requirement], dev: list[Requirement], lock: dict[str, Pin], spec: LockSpec = DEV
) -> list[str]:
    errors = []
    environment = _dev_environment(spec)
    for requirement in [*deps, *dev]:
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        if name not in lock:
            errors.append(f"locks/dev.txt has no {name} (pyproject.toml: {requirement})")
        elif not requirement.specifier.contains(lock[name].version, prereleases=True):
            errors.append(
                f"locks/dev.txt has {name}=={lock[name].version}, pyproject.toml wants {requirement}"
            )
    for pin in lock.values():
        if pin.hashes:
            errors.append(f"locks/dev.txt: {pin.name} has hashes (a pip constraints file cannot)")
    return errors


def check_pyproject_matches_layer(deps: list[Requirement], requirements: list[Requirement]) -> list[str]:
    """pyproject's runtime pins are "the same libraries" as the layer's: the same versions too."""
    errors = []
    layer = {canonicalize_name(r.name): r for r in requirements}
    project = {canonicalize_name(r.name): r for r in deps}
    for name, requirement in layer.items():
        other = project.get(name)
        if other is None:
            errors.append(f"pyproject.toml dependencies lack {name} (requirements.txt: {requirement})")
        elif _exact_pin(other) != _exact_pin(requirement) or other.extras != requirement.extras:
            errors.append(f"pyproject.toml has {other}, requirements.txt has {requirement}")
    for name, requirement in project.items():
        if name not in layer and name not in RUNTIME_PROVIDED:
            errors.append(f"pyproject.toml dependency {requirement} is not in requirements.txt")
    return errors


def offline_errors() -> list[str]:
    """Everything about the locks that can be checked without the network."""
    for spec in SPECS:
        if not spec.path.exists():
            return [f"{spec.path.relative_to(ROOT)} is missing: run `make lock`"]
    requirements = parse_requirements(REQUIREMENTS)
    deps, dev = pyproject_requirements()
    media = parse_lock(MEDIA_LAYER.path)
    return [
        *check_layer_lock(requirements, parse_lock(LAYER.path)),
        *check_layer_lock(
            parse_requirements(ROOT / MEDIA_LAYER.sources[0]), media, where="locks/media-layer.txt"
        ),
        *check_dev_lock(deps, dev, parse_lock(DEV.path)),
        *check_media_versions(media, parse_lock(DEV.path)),
        *check_pyproject_matches_layer(deps, requirements),
    ]


# ---------------------------------------------------------------- uv (resolution)


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(
            f"{name} not found beside {sys.executable}: run this through `make audit`/`make lock`"
        )
    return str(path)


def compile_lock(spec: LockSpec) -> None:
    command = [
        _tool("uv"),
        "pip",
        "compile",
        *spec.sources,
        *spec.target(),
        "--upgrade",
        "--custom-compile-command",
        "make lock",
        "--output-file",
        str(spec.path.relative_to(ROOT)),
        "--quiet",
    ]
    if spec.hashes:
        command.append("--generate-hashes")
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def closure_errors(spec: LockSpec) -> list[str]:
    """Resolve the source again with the lock as constraints: it must give exactly the lock's set."""
    command = [
        _tool("uv"),
        "pip",
        "compile",
        *spec.sources,
        *spec.target(),
        "--constraint",
        str(spec.path.relative_to(ROOT)),
        "--no-header",
        "--no-annotate",
        "--quiet",
        *(["--generate-hashes"] if spec.hashes else []),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    where = spec.path.relative_to(ROOT)
    if done.returncode != 0:
        return [f"{where}: the source does not resolve within the lock:\n{done.stderr.strip()}"]
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "fresh.txt"
        fresh.write_text(done.stdout)
        resolved_pins = parse_lock(fresh)
    resolved = {name: pin.version for name, pin in resolved_pins.items()}
    lock = parse_lock(spec.path)
    locked = {name: pin.version for name, pin in lock.items()}
    # A locked hash must be one of that release's files (the index may add files later, so the
    # fresh set may be larger).
    errors = [
        f"{where}: {name}=={locked[name]} has hashes of no file of that release"
        for name in sorted(locked.keys() & resolved.keys())
        if not set(lock[name].hashes) <= set(resolved_pins[name].hashes)
    ]
    errors += [f"{where} lacks {name}=={resolved[name]}" for name in sorted(resolved.keys() - locked.keys())]
    errors += [f"{where} has {name}, which nothing needs" for name in sorted(locked.keys() - resolved.keys())]
    errors += [
        f"{where}: {name} {locked[name]} resolves as {resolved[name]}"
        for name in sorted(locked.keys() & resolved.keys())
        if Version(resolved[name]) != Version(locked[name])
    ]
    return errors


# ---------------------------------------------------------------- vulnerability service


def probe(service: str, pin: Pin, timeout: float = 20.0) -> tuple[bool, str]:
    """Whether `service` answers for a release the index serves (`pin`), and what it said."""
    import requests  # pip-audit's own HTTP client, with the same certificate settings

    try:
        if service == "pypi":
            url = PYPI_RELEASE_URL.format(name=pin.name, version=pin.version)
            response = requests.get(url, timeout=timeout)
            if response.status_code == 200 and "info" in response.json():
                return True, f"GET {url}: 200"
            return False, (
                f"GET {url} answered {response.status_code} ({len(response.content)} bytes) for a release "
                "the package index serves: the per-release JSON API is blocked or filtered on this network"
                if response.status_code == 404
                else f"GET {url} answered {response.status_code}"
            )
        url = OSV_QUERY_URL
        query = {"package": {"name": pin.name, "ecosystem": "PyPI"}, "version": pin.version}
        response = requests.post(url, json=query, timeout=timeout)
        if response.status_code == 200 and isinstance(response.json(), dict):
            return True, f"POST {url}: 200"
        return False, f"POST {url} answered {response.status_code}"
    except requests.RequestException as error:
        return False, f"{type(error).__name__}: {_root_cause(error)}"
    except ValueError as error:  # a 200 that is not JSON: a captive portal or proxy page
        return False, f"the answer is not JSON ({error})"


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return str(error)[:300]


def read_ignores(path: Path = IGNORE_FILE) -> dict[str, str]:
    ignores: dict[str, str] = {}
    if not path.exists():
        return ignores
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        vuln_id, _, reason = line.partition("#")
        if not reason.strip():
            raise SystemExit(f"{path.name}:{number}: {vuln_id.strip()} has no reason")
        ignores[vuln_id.strip()] = reason.strip()
    return ignores


def run_pip_audit(label: str, args: list[str], service: str, env: dict[str, str] | None = None) -> Outcome:
    ignores = read_ignores()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [
            _tool("pip-audit"),
            *args,
            "--vulnerability-service",
            service,
            "--format",
            "json",
            "--output",
            str(report),
            "--desc",
            "on",
            "--aliases",
            "on",
            "--progress-spinner",
            "off",
            *(item for vuln_id in ignores for item in ("--ignore-vuln", vuln_id)),
        ]
        print("+", " ".join(command), flush=True)
        done = subprocess.run(command, cwd=ROOT, env=env, check=False)
        if not report.exists():
            return Outcome(label, skipped=[f"pip-audit exited {done.returncode} without a report"])
        data = json.loads(report.read_text())
    outcome = Outcome(label)
    for dependency in data.get("dependencies", []):
        if "skip_reason" in dependency:
            outcome.skipped.append(f"{dependency['name']}: {dependency['skip_reason']}")
            continue
        outcome.audited += 1
        for vuln in dependency.get("vulns", []):
            outcome.vulns.append({"name": dependency["name"], "version": dependency["version"], **vuln})
    return outcome


def print_outcome(outcome: Outcome) -> None:
    print(
        f"== {outcome.lock}: {outcome.audited} audited, {len(outcome.vulns)} known vulnerabilities, "
        f"{len(outcome.skipped)} not audited"
    )
    for vuln in outcome.vulns:
        aliases = ", ".join(vuln.get("aliases") or [])
        fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix released"
        print(f"  {vuln['name']} {vuln['version']}: {vuln['id']} ({aliases}) fixed in: {fixes}")
        description = (vuln.get("description") or "").strip().splitlines()
        if description:
            print(f"      {description[0][:200]}")
    for reason in outcome.skipped:
        print(f"  NOT AUDITED {reason}")


def latest_release_crosscheck(pins: list[Pin]) -> tuple[list[str], list[str], list[str]]:
    """(clean, vulnerable, unknown) from PyPI's project JSON, whose `vulnerabilities` are the latest
    release's: exact for a pin that is the latest release, silent about any other."""
    import requests

    clean, vulnerable, unknown = [], [], []
    for pin in pins:
        try:
            data = requests.get(PYPI_PROJECT_URL.format(name=pin.name), timeout=30).json()
        except (requests.RequestException, ValueError) as error:
            unknown.append(f"{pin.name} {pin.version}: {type(error).__name__}")
            continue
        latest = data.get("info", {}).get("version")
        if latest is None or Version(latest) != Version(pin.version):
            unknown.append(f"{pin.name} {pin.version}: latest is {latest}; older releases are not covered")
            continue
        found = [v for v in data.get("vulnerabilities") or [] if not v.get("withdrawn")]
        if found:
            ids = ", ".join(
                f"{v['id']} (fixed in {', '.join(v.get('fixed_in') or []) or '-'})" for v in found
            )
            vulnerable.append(f"{pin.name} {pin.version}: {ids}")
        else:
            clean.append(f"{pin.name} {pin.version}")
    return clean, vulnerable, unknown


def unreachable(service: str, detail: str, pins: list[Pin], latest_fallback: bool) -> int:
    other = next(s for s in SERVICES if s != service)
    other_ok, other_detail = probe(other, pins[0])
    print(
        "\nAUDIT NOT RUN: pip-audit's vulnerability service is not reachable from this machine.\n"
        f"  {service}: {detail}\n  {other}: {other_detail}\n"
        + (
            f"  {other} answers: run `make audit AUDIT_SERVICE={other}`.\n"
            if other_ok
            else "  No package was checked for known vulnerabilities. Run `make audit` where PyPI's JSON API\n"
            "  or api.osv.dev is reachable (docs/security.md).\n"
        ),
        file=sys.stderr,
    )
    if not latest_fallback:
        return INCOMPLETE
    unique = list({(p.name, p.version): p for p in pins}.values())
    clean, vulnerable, unknown = latest_release_crosscheck(unique)
    print(f"Latest-release cross-check (PyPI project JSON) over {len(unique)} distinct pins:")
    print(f"  {len(clean)} are the latest release with no known vulnerability")
    for line in vulnerable:
        print(f"  VULNERABLE {line}")
    for line in unknown:
        print(f"  NOT COVERED {line}")
    if vulnerable:
        return VULNERABLE
    return INCOMPLETE if unknown else OK


# ---------------------------------------------------------------- commands


def command_check(online: bool = True) -> int:
    errors = offline_errors()
    if not errors and online:
        for spec in SPECS:
            errors += closure_errors(spec)
    for error in errors:
        print(f"LOCK: {error}", file=sys.stderr)
    if errors:
        print("The locks disagree with their sources: run `make lock` and review the diff.", file=sys.stderr)
        return DISAGREES
    print(f"locks agree with their sources: {', '.join(str(s.path.relative_to(ROOT)) for s in SPECS)}")
    return OK


def command_audit(service: str, latest_fallback: bool) -> int:
    status = command_check()
    if status != OK:
        return status
    locks = {spec.name: parse_lock(spec.path) for spec in SPECS}
    pins = [pin for lock in locks.values() for pin in lock.values()]
    reachable, detail = probe(service, pins[0])
    if not reachable:
        return unreachable(service, detail, pins, latest_fallback)
    outcomes = []
    for spec in SPECS:
        mode = ["--require-hashes"] if spec.hashes else ["--no-deps"]
        args = ["--requirement", str(spec.path.relative_to(ROOT)), *mode, "--disable-pip"]
        outcomes.append(run_pip_audit(spec.name, args, service))
    return summarize(outcomes)


def summarize(outcomes: list[Outcome]) -> int:
    print()
    for outcome in outcomes:
        print_outcome(outcome)
    for vuln_id, reason in read_ignores().items():
        print(f"  ignored {vuln_id}: {reason}")
    if any(outcome.vulns for outcome in outcomes):
        return VULNERABLE
    if any(outcome.skipped for outcome in outcomes):
        print("Some packages could not be audited: the audit is incomplete.", file=sys.stderr)
        return INCOMPLETE
    return OK


def command_venv(service: str) -> int:
    if not VENV_PYTHON.exists():
        print(f"{VENV_PYTHON.relative_to(ROOT)} is missing: run `make .venv`", file=sys.stderr)
        return DISAGREES
    listed = subprocess.run(
        [str(VENV_PYTHON), "-m", "pip", "list", "--format", "json", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {canonicalize_name(p["name"]): p["version"] for p in json.loads(listed.stdout)}
    locked = {name: pin.version for name, pin in parse_lock(DEV.path).items()}
    for name in sorted(installed.keys() | locked.keys()):
        if installed.get(name) != locked.get(name):
            print(f"drift: {name} installed {installed.get(name, '-')}, locked {locked.get(name, '-')}")
    first = next(iter(parse_lock(DEV.path).values()))
    reachable, detail = probe(service, first)
    if not reachable:
        pins = [Pin(name, version) for name, version in installed.items()]
        return unreachable(service, detail, pins, latest_fallback=False)
    env = {**os.environ, "PIPAPI_PYTHON_LOCATION": str(VENV_PYTHON)}
    return summarize([run_pip_audit(".venv", ["--skip-editable"], service, env=env)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", nargs="?", default="audit", choices=["audit", "lock", "check", "venv"])
    parser.add_argument("--service", choices=SERVICES, default=os.environ.get("AUDIT_SERVICE") or "pypi")
    parser.add_argument(
        "--latest-fallback",
        action="store_true",
        help="when the service is unreachable, check the pins that are their project's latest release "
        "against PyPI's project JSON (passes only if that covers every pin)",
    )
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # ordered with stderr
    if args.command == "lock":
        LOCKS.mkdir(exist_ok=True)
        for spec in SPECS:
            compile_lock(spec)
        return command_check()
    if args.command == "check":
        return command_check()
    if args.command == "venv":
        return command_venv(args.service)
    return command_audit(args.service, args.latest_fallback)


if __name__ == "__main__":
    sys.exit(main())
