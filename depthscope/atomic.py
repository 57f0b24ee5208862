"""Safe file writes: defined in depthscope.models.atomic (the layers below the CLI must not import the package
root); re-exported here for code beside the CLI."""
from depthscope.models import atomic_write, json_safe

__all__ = ["atomic_write", "json_safe"]
