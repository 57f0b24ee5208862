"""depthscope: see, measure and compare depth routing (Attention Residuals and peers) in transformers."""
from depthscope.models import __version__  # one version: pyproject.toml's

__all__ = ["__version__"]
