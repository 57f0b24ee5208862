"""depthscope's version, read from the installed distribution's metadata (pyproject.toml's `version`), so that
the layers below the CLI need not import the package root for it."""
from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("depthscope")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
