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
            # the root itself or a module of it that is not a layer (depthscope.atomic, .cli, .record, ...)
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
