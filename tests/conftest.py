"""Shared pytest setup for depthscope's tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    # dash[testing] drives the system Chromium; with no display (CI, ssh) it can only run headless.
    if not os.environ.get("DISPLAY") and hasattr(config.option, "headless"):
        config.option.headless = True


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The source checkout (the folder holding pyproject.toml)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """The bin/ folder of the interpreter running the tests (where console scripts are installed)."""
    return Path(sys.executable).parent


@pytest.fixture
def clean_env() -> dict[str, str]:
    """Environment for child interpreters: no PYTHONPATH or user site, so only what is installed is importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env
