"""Pieces the built-in adapters share: finding a library's model inside a wrapper."""
from __future__ import annotations

from typing import Callable

from torch import nn


def find_module(model: nn.Module, match: Callable[[nn.Module], bool]) -> tuple[str, nn.Module] | None:
    """The first module of `model` (itself included) that `match`es, with its name as a prefix ("" or "x.")."""
    for name, module in model.named_modules():
        if match(module):
            return (f"{name}." if name else ""), module
    return None


def from_package(module: nn.Module, package: str) -> bool:
    return type(module).__module__.split(".")[0] == package
