"""Prove a `sam build` of the layers fits Lambda's python3.12 runtime and architecture.

    python scripts/check_layer.py --build-dir .aws-sam/build --arch arm64 \
        [--import-build-dir .aws-sam/build-x86_64]

1. Wheels: every compiled distribution in BUILD_DIR/CommonLayer/python carries tags Lambda's
   python3.12 can load on ARCH (cp312 or abi3, manylinux with glibc <= 2.34, the right machine),
   and pydantic_core must be one of them. Every `.so` is checked too: its file name and its ELF
   header's machine field. The functions' own layers (OWN_LAYERS) are checked the same way where
   they carry compiled code: MediaLayer must hold av and pillow.
2. Linking (arm64 only, when qemu-aarch64 and an aarch64 glibc are installed): each `.so` is
   loaded by the aarch64 dynamic linker under qemu, which resolves its shared-library needs.
3. Imports: an aarch64 `.so` cannot load on an x86_64 host, so a second build for the host's
   architecture (IMPORT_BUILD_DIR) is imported by python3.12 with nothing on its path but that
   layer and boto3 (which the runtime provides): every sora_relay module, then every function's
   app.py with its environment from events/env.json, as Lambda would at a cold start, with its
   own layers; a function with MediaLayer must also decode H.264 and encode WebP with it.
4. Sizes: each function with all its layers, unzipped, under Lambda's 250 MiB.

Standard library only, so any python3 runs it. Exits non-zero with the reasons on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_TAG = "cp312"
PYTHON_MINOR = 12
# Lambda's python3.12 runtime is Amazon Linux 2023: glibc 2.34.
MAX_GLIBC = (2, 34)
MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
ELF_MACHINES = {183: "aarch64", 62: "x86_64"}
# Lambda: a function plus all its layers, unzipped.
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
# The runtime ships boto3 and SnapStart's runtime hooks; the check installs them beside the layer,
# never into it.
RUNTIME_PACKAGES = ["boto3", "snapshot-restore-py==1.0.0"]
PIP_FOR_PYTHON312 = [
    "--quiet",
    "--disable-pip-version-check",
    "--no-warn-conflicts",
    *("--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"),
]
REQUIRED_COMPILED = ["pydantic_core"]
# A function's own layers beside the common one: template.yaml's `Layers` of that function
# (tests/unit/test_media_layer.py checks the two agree). Lambda unpacks them all into /opt/python.
OWN_LAYERS = {"McpFunction": ("McpLayer",), "ArchiveFunction": ("MediaLayer",)}
# What must be compiled into each own layer (checked like pydantic_core in the common one).
OWN_REQUIRED_COMPILED = {"MediaLayer": ["av", "pillow"]}
# The media layer decodes H.264 and encodes WebP on the runtime's python, not only imports.
MEDIA_PROBE = r"""
import io, av, PIL.features
from PIL import Image
assert PIL.features.check("webp"), "Pillow was built without WebP"
av.codec.Codec("h264", "r")
buffer = io.BytesIO()
Image.new("RGB", (16, 16)).save(buffer, format="WEBP")
print(f"av {av.__version__} (FFmpeg {av.ffmpeg_version_info}), Pillow {PIL.__version__}: h264 decoder, WebP encoder")
"""

IMPORT_PROBE = r"""
import importlib, json, pkgutil, sys
layer = sys.argv[1]
import sora_relay
names = ["sora_relay"] + [m.name for m in pkgutil.walk_packages(sora_relay.__path__, "sora_relay.")]
files = {}
for name in names:
    files[name] = importlib.import_module(name).__file__
import pydantic, pydantic_core
files["pydantic_core"] = pydantic_core.__file__
outside = {n: f for n, f in files.items() if not f.startswith(layer)}
print(json.dumps({"python": sys.version.split()[0], "modules": names, "pydantic": pydantic.VERSION,
                  "pydantic_core": pydantic_core.__version__, "outside_layer": outside}))
"""

HANDLER_PROBE = r"""
import sys
import app
assert callable(app.lambda_handler), "app.lambda_handler is not callable"
assert app.__file__.startswith(sys.argv[1]), app.__file__
print("ok")
"""


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.failures.append(message)
        print(f"  FAIL {message}")

    @staticmethod
    def ok(message: str) -> None:
        print(f"  ok   {message}")


def read_wheel_metadata(dist_info: Path) -> tuple[bool, list[str]]:
    """(Root-Is-Purelib, Tag lines) of one installed distribution's WHEEL file."""
    purelib, tags = True, []
    for line in (dist_info / "WHEEL").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Root-Is-Purelib":
            purelib = value.strip().lower() == "true"
        elif key.strip() == "Tag":
            tags.append(value.strip())
    return purelib, tags


def platform_tag_problem(platform_tag: str, machine: str) -> str | None:
    """Why Lambda (glibc 2.34, `machine`) cannot load this platform tag, or None."""
    if platform_tag == "any":
        return None
    if not platform_tag.endswith("_" + machine):
        return f"platform {platform_tag} is not {machine}"
    legacy = {"manylinux1_": (2, 5), "manylinux2010_": (2, 12), "manylinux2014_": (2, 17)}
    if prefix := next((p for p in legacy if platform_tag.startswith(p)), None):
        glibc = legacy[prefix]
    elif platform_tag.startswith("manylinux_"):
        major, minor = platform_tag.split("_")[1:3]
        glibc = (int(major), int(minor))
    else:
        return f"platform {platform_tag} is not manylinux (glibc)"
    if glibc > MAX_GLIBC:
        return f"platform {platform_tag} needs glibc {glibc[0]}.{glibc[1]} > Lambda's 2.34"
    return None


def tag_problem(tag: str, machine: str) -> str | None:
    """Why Lambda's python3.12 on `machine` cannot use a compressed wheel tag, or None."""
    interpreters, abi, platforms = tag.split("-")
    if abi == "abi3":
        usable = any(i.startswith("cp3") and int(i[3:]) <= PYTHON_MINOR for i in interpreters.split("."))
    else:
        usable = PYTHON_TAG in interpreters.split(".") and abi in (PYTHON_TAG, "none")
    if not usable:
        return f"{interpreters}-{abi} is not loadable by CPython 3.{PYTHON_MINOR}"
    problems = [platform_tag_problem(p, machine) for p in platforms.split(".")]
    return None if None in problems else "; ".join(p for p in problems if p)


def elf_machine(path: Path) -> str:
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        return "not ELF"
    if header[4] != 2:
        return "32-bit ELF"
    byte_order = "<" if header[5] == 1 else ">"
    (machine,) = struct.unpack(byte_order + "H", header[18:20])
    return ELF_MACHINES.get(machine, f"e_machine {machine}")


def check_wheels(
    layer: Path, arch: str, report: Report, required: list[str] = REQUIRED_COMPILED
) -> list[Path]:
    """Tag and ELF checks; returns the layer's shared objects."""
    machine = MACHINES[arch]
    print(f"wheels in {layer} (want {PYTHON_TAG}, manylinux <= glibc 2.34, {machine}):")
    compiled = {}
    for dist_info in sorted(layer.glob("*.dist-info")):
        purelib, tags = read_wheel_metadata(dist_info)
        if purelib:
            continue
        name = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0].lower().replace("-", "_")
        compiled[name] = tags
        bad = [problem for tag in tags if (problem := tag_problem(tag, machine))]
        if bad and len(bad) == len(tags):
            report.fail(f"{dist_info.name}: {'; '.join(bad)}")
        else:
            report.ok(f"{dist_info.name}: {', '.join(tags)}")
    for name in required:
        if name not in compiled:
            report.fail(f"{name}: no compiled distribution in the layer")

    shared_objects = sorted(layer.rglob("*.so")) + sorted(layer.rglob("*.so.*"))
    print(f"shared objects ({len(shared_objects)}):")
    expected_suffix = f".cpython-3{PYTHON_MINOR}-{machine}-linux-gnu.so"
    for so in shared_objects:
        found = elf_machine(so)
        rel = so.relative_to(layer)
        if found != machine:
            report.fail(f"{rel}: ELF machine {found}, want {machine}")
        elif ".cpython-" in so.name and not so.name.endswith(expected_suffix):
            report.fail(f"{rel}: extension suffix is not {expected_suffix}")
        else:
            report.ok(f"{rel}: ELF {found}")
    if "pydantic_core" in required and not any(so.parent.name == "pydantic_core" for so in shared_objects):
        report.fail("pydantic_core: no extension module found")
    return shared_objects


def check_linking_under_qemu(layer: Path, shared_objects: list[Path], report: Report) -> None:
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    sysroot = Path("/usr/aarch64-linux-gnu")
    loader = sysroot / "lib" / "ld-linux-aarch64.so.1"
    if not qemu or not loader.exists():
        print(
            "aarch64 linking: skipped (needs qemu-aarch64 and an aarch64 glibc, e.g. Debian's "
            "qemu-user-static libc6-arm64-cross libgcc-s1-arm64-cross)"
        )
        return
    print(f"aarch64 linking under {Path(qemu).name} (glibc from {sysroot}):")
    for so in shared_objects:
        result = subprocess.run(
            [qemu, "-L", str(sysroot), str(loader), "--list", str(so)],
            capture_output=True,
            text=True,
            check=False,
        )
        needed = [line.split()[0] for line in result.stdout.splitlines() if "=>" in line]
        rel = so.relative_to(layer)
        if result.returncode != 0 or "not found" in result.stdout:
            report.fail(f"{rel}: {(result.stdout + result.stderr).strip()}")
        else:
            report.ok(f"{rel}: loads; needs {', '.join(needed) or 'nothing'}")


def tree_sizes(directory: Path) -> tuple[int, int]:
    """(unzipped, zipped) bytes of a directory, zipped with deflate as `sam package` does."""
    files = [p for p in sorted(directory.rglob("*")) if p.is_file()]
    with tempfile.TemporaryFile() as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, path.relative_to(directory))
        zipped = handle.tell()
    return sum(p.stat().st_size for p in files), zipped


def check_sizes(build_dir: Path, report: Report) -> None:
    print(f"artifact sizes in {build_dir} (unzipped / zipped):")
    layer_unzipped, layer_zipped = tree_sizes(build_dir / "CommonLayer")
    report.ok(f"CommonLayer: {layer_unzipped / 2**20:.1f} MiB / {layer_zipped / 2**20:.1f} MiB")
    own_sizes: dict[str, int] = {}
    for name in sorted({layer for layers in OWN_LAYERS.values() for layer in layers}):
        if (build_dir / name).is_dir():
            unzipped, zipped = tree_sizes(build_dir / name)
            own_sizes[name] = unzipped
            report.ok(f"{name}: {unzipped / 2**20:.1f} MiB / {zipped / 2**20:.1f} MiB")
    for function_dir in sorted(p.parent for p in build_dir.glob("*/app.py")):
        unzipped, zipped = tree_sizes(function_dir)
        layers = ["CommonLayer", *(n for n in OWN_LAYERS.get(function_dir.name, ()) if n in own_sizes)]
        total = unzipped + layer_unzipped + sum(own_sizes[n] for n in layers[1:])
        message = f"{function_dir.name}: {unzipped / 1024:.1f} KiB / {zipped / 1024:.1f} KiB"
        with_layers = f"with {' + '.join(layers)}"
        if total > MAX_UNZIPPED_BYTES:
            report.fail(f"{message}: {with_layers} {total / 2**20:.0f} MiB > Lambda's 250 MiB")
        else:
            report.ok(f"{message}; {with_layers} {total / 2**20:.1f} MiB of Lambda's 250 MiB")


def check_no_pydantic_plugins(layer: Path, report: Report) -> None:
    """template.yaml sets PYDANTIC_DISABLE_PLUGINS=__all__ (no entry-point scan at the first model
    build): a package that ships a pydantic plugin would then be switched off without a word."""
    plugins = [
        path.parent.name
        for path in sorted(layer.glob("*.dist-info/entry_points.txt"))
        if "[pydantic]" in path.read_text().split()
    ]
    if plugins:
        report.fail(f"pydantic plugins in the layer, disabled by PYDANTIC_DISABLE_PLUGINS: {plugins}")
    else:
        report.ok("no pydantic plugin in the layer (PYDANTIC_DISABLE_PLUGINS=__all__ switches none off)")


def runtime_packages_dir(build_dir: Path) -> Path:
    """RUNTIME_PACKAGES for python3.12, apart from the layer (Lambda's runtime provides them)."""
    target = build_dir.parent / (build_dir.name + "-runtime")
    stamp = target / ".installed"
    if not stamp.exists() or stamp.read_text().split() != RUNTIME_PACKAGES:
        shutil.rmtree(target, ignore_errors=True)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                *PIP_FOR_PYTHON312,
                "--target",
                str(target),
                *RUNTIME_PACKAGES,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            sys.exit(f"pip install {' '.join(RUNTIME_PACKAGES)} failed:\n{result.stderr}")
        stamp.write_text(" ".join(RUNTIME_PACKAGES) + "\n")
    return target


def isolated_env(path: list[Path], extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(str(p) for p in path),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(extra or {})
    return env


def own_layers(build_dir: Path, function: str) -> list[Path]:
    """A function's own layers beside the common one (OWN_LAYERS): Lambda unpacks them all into
    /opt/python."""
    return [
        build_dir / name / "python"
        for name in OWN_LAYERS.get(function, ())
        if (build_dir / name / "python").is_dir()
    ]


def check_imports(build_dir: Path, python312: str, report: Report) -> None:
    layer = build_dir / "CommonLayer" / "python"
    runtime = runtime_packages_dir(build_dir)
    print(f"imports with {python312} -S, PYTHONPATH={layer}:{runtime}:")
    # -S: no site-packages of that interpreter, so nothing but the layer (and boto3) can answer.
    result = subprocess.run(
        [python312, "-S", "-c", IMPORT_PROBE, str(layer)],
        env=isolated_env([layer, runtime]),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        report.fail(f"import sora_relay:\n{result.stderr.strip()}")
        return
    found = json.loads(result.stdout.strip().splitlines()[-1])
    report.ok(
        f"python {found['python']}: {len(found['modules'])} modules "
        f"({', '.join(m.removeprefix('sora_relay.') for m in found['modules'][1:])}); "
        f"pydantic {found['pydantic']}, pydantic_core {found['pydantic_core']}"
    )
    if found["outside_layer"]:
        report.fail(f"imported from outside the layer: {found['outside_layer']}")

    env_file = ROOT / "events" / "env.json"
    env_by_function = json.loads(env_file.read_text())
    for function_dir in sorted(p.parent for p in build_dir.glob("*/app.py")):
        name = function_dir.name
        result = subprocess.run(
            [python312, "-S", "-c", HANDLER_PROBE, str(function_dir)],
            env=isolated_env(
                [function_dir, *own_layers(build_dir, name), layer, runtime], env_by_function.get(name, {})
            ),
            capture_output=True,
            text=True,
            check=False,
            cwd=function_dir,
        )
        if result.returncode != 0:
            report.fail(f"{name}: import app failed:\n{result.stderr.strip()}")
        else:
            report.ok(f"{name}: import app; app.lambda_handler is callable")
        if "MediaLayer" in OWN_LAYERS.get(name, ()):
            media = build_dir / "MediaLayer" / "python"
            result = subprocess.run(
                [python312, "-S", "-c", MEDIA_PROBE],
                env=isolated_env([media, layer, runtime]),
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                report.fail(f"{name}: the media layer cannot decode or encode:\n{result.stderr.strip()}")
            else:
                report.ok(f"{name}: {result.stdout.strip()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, required=True, help="sam build dir to check")
    parser.add_argument("--arch", choices=sorted(MACHINES), required=True)
    parser.add_argument(
        "--import-build-dir", type=Path, help="a build for this host's architecture to import"
    )
    parser.add_argument("--python312", help="python3.12 to import with (default: scripts/python312.sh)")
    args = parser.parse_args()
    # Absolute: the import probes run in other working directories and compare path prefixes.
    args.build_dir = args.build_dir.resolve()
    if args.import_build_dir:
        args.import_build_dir = args.import_build_dir.resolve()

    report = Report()
    layer = args.build_dir / "CommonLayer" / "python"
    if not (layer / "sora_relay").is_dir():
        print(f"no built layer at {layer}: run sam build first", file=sys.stderr)
        return 2
    shared_objects = check_wheels(layer, args.arch, report)
    if args.arch == "arm64":
        check_linking_under_qemu(layer, shared_objects, report)
    for name, required in OWN_REQUIRED_COMPILED.items():
        own = args.build_dir / name / "python"
        if not own.is_dir():
            report.fail(f"{name}: not built at {own}")
            continue
        own_objects = check_wheels(own, args.arch, report, required)
        if args.arch == "arm64":
            check_linking_under_qemu(own, own_objects, report)
    check_no_pydantic_plugins(layer, report)
    check_sizes(args.build_dir, report)

    if args.import_build_dir:
        host_arch = {"aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
        if platform.system() != "Linux" or host_arch not in MACHINES:
            print(f"imports: SKIPPED, Linux extension modules cannot load on {platform.system()} {host_arch}")
        else:
            if args.import_build_dir.resolve() != args.build_dir.resolve():
                check_wheels(args.import_build_dir / "CommonLayer" / "python", host_arch, report)
            python312 = (
                args.python312
                or subprocess.run(
                    [str(ROOT / "scripts" / "python312.sh")], capture_output=True, text=True, check=False
                ).stdout.strip()
            )
            if python312:
                check_imports(args.import_build_dir, python312, report)
            else:
                print("imports: SKIPPED, no python3.12 here (see scripts/python312.sh)")

    if report.failures:
        print(f"\nlayer check FAILED ({len(report.failures)}):", file=sys.stderr)
        for failure in report.failures:
            lines = failure.splitlines()
            print(f"  - {lines[0]} {lines[-1] if len(lines) > 1 else ''}", file=sys.stderr)
        return 1
    print("\nlayer check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
