"""The shape of the house: lines of source per folder and the import graph between the folders.

    python bench/house.py [--repo DIR]

An import between two folders (models, probe, analyses, dashboard, depthscope = the CLI and workflows) is *public*
when it names the package only (`from depthscope.analyses import routing_stats`) and *deep* when it reaches a
module behind it (`from depthscope.analyses.routing import ...`). Arrows must go one way, models <- probe <-
analyses <- dashboard <- depthscope; an import against them is listed. Imports of the package root (`depthscope`,
`depthscope.record`) from below the top are listed too.
"""
from __future__ import annotations

import argparse
import ast
from collections import Counter
from pathlib import Path

LAYERS = ("models", "probe", "analyses", "dashboard", "depthscope")


def source_files(repo: Path):
    for layer in LAYERS:
        for path in sorted((repo / layer).rglob("*.py")):
            yield layer, path


def imports(path: Path):
    """(module, names) of every absolute `depthscope.*` import in a file, wherever it stands (also inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("depthscope"):
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("depthscope"):
                    yield alias.name, []


def target_layer(module: str, names: list[str]) -> tuple[str, bool]:
    """The folder an import reaches and whether it reaches past the folder's public names."""
    parts = module.split(".")
    if len(parts) == 1:  # `from depthscope import analyses` names a folder; anything else is the root
        layer = names[0] if len(names) == 1 and names[0] in LAYERS else "depthscope"
        return layer, False
    if parts[1] in LAYERS[:-1]:
        return parts[1], len(parts) > 2
    return "depthscope", True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    lines, edges, against = Counter(), Counter(), []
    for layer, path in source_files(args.repo):
        lines[layer] += len(path.read_text(encoding="utf-8").splitlines())
        for module, names in imports(path):
            target, deep = target_layer(module, names)
            if target == layer and layer != "depthscope":
                continue
            if layer == "depthscope" and target == "depthscope":
                continue
            edges[(layer, target, deep)] += 1
            if LAYERS.index(target) > LAYERS.index(layer):
                against.append(f"{path.relative_to(args.repo)}: {module}")
    print("lines of source")
    for layer in LAYERS:
        print(f"  {layer:<11} {lines[layer]:>6}")
    print(f"  {'total':<11} {sum(lines.values()):>6}")
    print("\nimports between folders (from -> to: public / deep)")
    pairs = sorted({(a, b) for a, b, _ in edges}, key=lambda p: (LAYERS.index(p[0]), LAYERS.index(p[1])))
    for a, b in pairs:
        print(f"  {a:<11} -> {b:<11} {edges[(a, b, False)]:>3} / {edges[(a, b, True)]:>3}")
    total = sum(edges.values())
    deep = sum(n for (a, b, d), n in edges.items() if d)
    print(f"  {deep} of {total} reach past the public names")
    print(f"\nimports against the arrows or of the package root from below: {len(against)}")
    for line in against:
        print("  " + line)


if __name__ == "__main__":
    main()
