"""Fixtures of the security tests: ``world`` (the seeded app on SQLite and PostgreSQL, module-scoped)."""

from __future__ import annotations

from tests.security.world import world

__all__ = ["world"]
