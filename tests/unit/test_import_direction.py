"""The package's imports point one way: runtime -> usecases -> domain; adapters import only domain.

Every module under layers/common/sora_relay/ is parsed with `ast` (nothing is imported), and each
`import`/`from ... import` of the package, at any depth (function-level imports too), is checked
against the rules below.

Where the shared pieces live: `sora_relay.observability` (the logger and metrics, needed by every
layer) and `sora_relay.settings` (the settings model) are leaves outside the four layers that import
nothing of the package, so any layer may import them. The composition root, runtime/container.py,
builds the settings and the collaborators and hands them to the use cases (`deps`), so a use case
imports nothing from runtime; adapters get settings values as arguments from the container.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "common" / "sora_relay"
LAYERS = ("domain", "usecases", "adapters", "runtime")
LEAVES = (
    "sora_relay.observability",
    "sora_relay.settings",
)  # importable from every layer; they import nothing of ours

# layer -> the layers it must not import
FORBIDDEN: dict[str, frozenset[str]] = {
    "domain": frozenset({"adapters", "usecases", "runtime"}),
    "adapters": frozenset({"usecases", "runtime"}),
    "usecases": frozenset({"runtime"}),
}


# The AWS client factories: the composition root (runtime) hands the clients' users to the use
# cases, so no use case makes a client of its own; adapters.secrets reads its secrets with one.
CLIENTS = "sora_relay.adapters.aws"
MAY_MAKE_CLIENTS = ("runtime", "adapters")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of the package in `path`, relative imports resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return _imports(path.read_text(), package)


def _imports(source: str, package: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from sora_relay import runtime` imports the layer itself; `from sora_relay.runtime
            # import services` names the module.
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return [(line, module) for line, module in found if module.split(".")[0] == "sora_relay"]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _violations(path: Path) -> list[str]:
    layer = _layer(_module_name(path))
    forbidden = FORBIDDEN.get(layer or "", frozenset())
    problems = []
    for line, module in _imported(path):
        target = _layer(module)
        if target in forbidden:
            problems.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {layer} imports {target} ({module})")
    return problems


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_sits_in_a_layer_or_is_a_leaf():
    outside = [
        _module_name(p)
        for p in _modules()
        if _layer(_module_name(p)) is None and _module_name(p) not in ("sora_relay", *LEAVES)
    ]
    assert outside == []


@pytest.mark.parametrize("leaf", LEAVES)
def test_the_leaves_import_nothing_of_the_package(leaf: str):
    path = PACKAGE.parent / (leaf.replace(".", "/") + ".py")
    assert _imported(path) == []


def test_imports_point_one_way():
    problems = [problem for path in _modules() for problem in _violations(path)]
    assert problems == [], "\n".join(problems)


def test_only_the_composition_root_and_adapters_make_aws_clients():
    makers = {
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in _modules()
        for line, module in _imported(path)
        if module.startswith(CLIENTS) and _layer(_module_name(path)) not in MAY_MAKE_CLIENTS
    }
    assert makers == set()


@pytest.mark.parametrize(
    ("source", "package"),
    [
        ("def f():\n    from sora_relay.adapters.dynamodb import TaskStore\n", "sora_relay.domain"),
        ("import sora_relay.runtime.container\n", "sora_relay.domain"),
        ("from ..usecases import archive\n", "sora_relay.adapters"),
        ("from sora_relay import runtime\n", "sora_relay.adapters.providers"),
        ("from sora_relay.runtime.container import current\n", "sora_relay.usecases"),
    ],
)
def test_the_check_sees_a_bad_import(source: str, package: str):
    """The checker itself: function-level, plain, relative and package-level imports are seen."""
    (module,) = [module for _, module in _imports(source, package)]
    assert _layer(module) in FORBIDDEN[package.split(".")[1]]
