"""Dashboard: the Dash app and figure builders over a folder of runs."""
from __future__ import annotations

import importlib
from typing import Any

# name -> the module of this package that defines it; imported on first use, so that importing the package is
# cheap and pulls in no heavy dependency its caller does not use
_PUBLIC = {
    "serve": "app",
    "ExportError": "export",
    "export_files": "export",
    "line_bytes": "export",
    "FigureSet": "figure_set",
    "write_figure_set": "figure_set",
    "ladder_lines": "figures",
    "sweep_lines": "figures",
    "Catalogue": "runs",
    "NotFound": "runs",
    "FIGURES": "views",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
