"""Nothing below the top imports the package root: models/, probe/, analyses/ and dashboard/ reach depthscope.* only through their own
subpackages (the root holds the CLI's re-exports, and importing it from below would tie the layers to it)."""
from __future__ import annotations

import ast

import pytest

LAYERS = ("models", "probe", "analyses", "dashboard")


def _imports_of_the_root(path, package_depth: int) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            # the root itself or a module of it that is not a layer (.cli, .record, .options, ...)
            absolute = node.level == 0 and parts[0] == "depthscope" and (len(parts) == 1 or parts[1] not in LAYERS)
            relative = node.level == package_depth and not node.module  # `from .. import x` in depthscope.models
            if absolute or relative:
                found.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import ...")
        elif isinstance(node, ast.Import) and any(alias.name == "depthscope" for alias in node.names):
            found.append(f"line {node.lineno}: import depthscope")
    return found


@pytest.mark.parametrize("folder", LAYERS)
def test_the_layers_do_not_import_the_package_root(repo_root, folder):
    offenders = {}
    for path in sorted((repo_root / folder).rglob("*.py")):
        rel = path.relative_to(repo_root)
        depth = len(rel.parts)  # models/x.py: `from .. import` is the root (level 2); models/mixers/x.py: level 3
        found = _imports_of_the_root(path, depth)
        if found:
            offenders[str(rel)] = found
    assert not offenders, offenders
    assert len(list((repo_root / folder).rglob("*.py"))) > 5  # the walk found the folder's files


ORDER = (*LAYERS, "depthscope")  # models <- probe <- analyses <- dashboard <- the CLI and workflows


def _cross_layer_imports(repo_root):
    """(file, its folder, the folder imported, whether the import reaches past that folder's public names)."""
    for layer in ORDER:
        for path in sorted((repo_root / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                        and node.module.startswith("depthscope."):
                    parts = node.module.split(".")
                    if parts[1] in LAYERS and parts[1] != layer:
                        yield path.relative_to(repo_root), layer, parts[1], len(parts) > 2


def test_arrows_go_one_way_and_through_public_names(repo_root):
    found = list(_cross_layer_imports(repo_root))
    assert len(found) > 50  # the walk saw the imports between the folders
    against = [f"{p} imports {t}" for p, layer, t, _ in found if ORDER.index(t) > ORDER.index(layer)]
    deep = [f"{p} reaches into {t}" for p, _, t, is_deep in found if is_deep]
    assert not against, against
    assert not deep, deep


@pytest.mark.parametrize("layer", LAYERS)
def test_every_public_name_resolves(layer):
    import importlib

    package = importlib.import_module(f"depthscope.{layer}")
    missing = [name for name in package.__all__ if getattr(package, name, None) is None]
    assert not missing, missing


@pytest.mark.parametrize("layer", LAYERS)
def test_no_public_name_is_also_a_module_of_its_package(layer):
    """Importing a submodule binds its name on the package, so a public function named like a module of the same
    package (`analyses.analyze` the function, `analyses/analyze.py`) would turn into that module once someone
    imports it."""
    import importlib
    import pkgutil

    package = importlib.import_module(f"depthscope.{layer}")
    modules = {info.name for info in pkgutil.iter_modules(package.__path__)}
    assert not modules & set(package.__all__)
