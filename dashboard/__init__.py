"""Dashboard: the Dash app and figure builders over a folder of runs."""
from __future__ import annotations

from depthscope.models import public_names

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

__getattr__, __dir__, __all__ = public_names(__name__, _PUBLIC)
