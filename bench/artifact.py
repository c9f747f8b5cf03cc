"""Benchmark 4: the deployment artifact's zipped size (layer + every function; boto3 excluded).

    make build && python -m bench.artifact [--build-dir .aws-sam/build]

Reads the arm64 `sam build` output (what `make deploy` uploads) and zips each artifact with deflate,
as `sam package` does (scripts/check_layer.py's tree_sizes). boto3 and botocore are not in it: the
python3.12 runtime provides them. Also lists the layer's largest packages, so the next cut is named.
Sizes are exact, not timed: each figure is one measurement (n=1).
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

from bench.harness import MIB, ROOT, Figure, Spread, exit_code, print_figures, save

sys.path.insert(0, str(ROOT / "scripts"))  # scripts/ is not a package
from check_layer import tree_sizes

# "Under 10 MB": decimal megabytes, the stricter reading.
LIMIT_BYTES = 10_000_000
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")


def package_sizes(site: Path) -> list[tuple[str, int, int]]:
    """(name, unzipped, zipped) of each top-level entry of the layer's python/ folder."""
    rows = []
    for entry in sorted(site.iterdir()):
        if entry.name.endswith(".dist-info") or entry.name.endswith(".data"):
            continue
        if entry.is_dir():
            unzipped, zipped = tree_sizes(entry)
        else:
            data = entry.read_bytes()
            unzipped, zipped = len(data), len(zlib.compress(data))
        rows.append((entry.name, unzipped, zipped))
    return sorted(rows, key=lambda row: row[2], reverse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    args = parser.parse_args(argv)
    build = args.build_dir
    layer = build / "CommonLayer"
    if not (layer / "python").is_dir():
        print(f"{layer} is missing: run `make build` first", file=sys.stderr)
        return 2
    site = layer / "python"
    bundled = [name for name in RUNTIME_PROVIDED if (site / name).exists()]

    layer_unzipped, layer_zipped = tree_sizes(layer)
    functions = {path.parent.name: tree_sizes(path.parent) for path in sorted(build.glob("*/app.py"))}
    total_zipped = layer_zipped + sum(zipped for _, zipped in functions.values())
    total_unzipped = layer_unzipped + sum(unzipped for unzipped, _ in functions.values())

    figures = [
        Figure(
            "artifact",
            f"zipped deployment artifact (layer + {len(functions)} functions)",
            Spread.of([total_zipped / 1e6]),
            " MB",
            limit=LIMIT_BYTES / 1e6,
            note=f"unzipped {total_unzipped / MIB:.1f} MiB"
            + (f"; bundles {', '.join(bundled)}!" if bundled else "; boto3/botocore not bundled"),
        ),
        Figure("artifact", "zipped layer", Spread.of([layer_zipped / 1e6]), " MB"),
    ]
    print_figures("4. deployment artifact (zipped, boto3 excluded)", figures)
    print(f"  functions: {', '.join(f'{n} {z / 1024:.1f} KiB' for n, (_, z) in functions.items())}")
    print("  largest layer packages (zipped):")
    packages = package_sizes(site)
    for name, unzipped, zipped in packages[:8]:
        print(f"    {name:<24} {zipped / MIB:6.2f} MiB zipped  ({unzipped / MIB:.2f} MiB unzipped)")
    if bundled:
        figures[0].note += " (the runtime already has them)"
    save(
        "artifact",
        figures,
        total_zipped_bytes=total_zipped,
        total_unzipped_bytes=total_unzipped,
        layer_zipped_bytes=layer_zipped,
        layer_unzipped_bytes=layer_unzipped,
        functions_zipped_bytes={name: zipped for name, (_, zipped) in functions.items()},
        packages_zipped_bytes={name: zipped for name, _, zipped in packages},
        bundled_runtime_packages=bundled,
    )
    return exit_code(figures) if not bundled else 1


if __name__ == "__main__":
    sys.exit(main())
