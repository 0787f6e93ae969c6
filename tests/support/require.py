"""A real component a test needs: skip when it is missing on a developer machine, fail under CI.

With ``CI=true`` a test whose real component (PostgreSQL, Redis, GStreamer, ffmpeg, weights...) is
missing must fail, so that a green CI run means the real thing was exercised.
"""

from __future__ import annotations

import importlib
import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(ok: bool, what: str) -> None:
    """Skip (locally) or fail (CI) the calling test when ``ok`` is false; ``what`` names the component."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"required component missing under CI: {what}", pytrace=False)
    pytest.skip(f"component missing: {what}")


def require_module(name: str, what: str) -> None:
    """``pytest.importorskip`` that fails under CI like :func:`require` (a missing package is a missing
    component, not a reason to skip there)."""
    try:
        importlib.import_module(name)
    except ImportError:
        require(False, what)
