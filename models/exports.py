"""How each folder of depthscope publishes its names: a table `name -> module of the package that defines it`,
imported on first use (PEP 562 module __getattr__), so that importing a package is cheap and pulls in no heavy
dependency (torch, scipy, dash) its caller does not use. Every folder's __init__ ends with

    __getattr__, __dir__, __all__ = public_names(__name__, _PUBLIC)
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def public_names(package: str, table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """The package's module __getattr__, __dir__ and __all__ for the lazy `table`."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__, [name for name in table if not name.startswith("_")]
