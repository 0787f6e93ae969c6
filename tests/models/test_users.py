"""Users in the kernel: grid assignments, refresh-token expiry and versions, credential liveness."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import User, utcnow
from models.errors import AuthError, InvalidInput
from models.identity.tokens import issue_refresh_token, rotate_refresh_token
from models.identity.users import Credential, credential_is_live, end_sessions, set_assignments


def _user(s: Session, name: str) -> User:
    return s.scalars(select(User).where(User.username == name)).one()


def test_assignments_replace_and_validate(seeded: sessionmaker[Session]) -> None:
    with transaction(seeded) as s:
        leader = _user(s, "leader-g1")
        assert set_assignments(s, user=leader, grid_codes=["G2", "G3", "G2"]) == ["G2", "G3"]
        assert sorted(a.grid.code for a in leader.assignments) == ["G2", "G3"]
        with pytest.raises(InvalidInput, match="no grid node has code 'G9'"):
            set_assignments(s, user=leader, grid_codes=["G9"])
        with pytest.raises(InvalidInput, match="needs at least one grid node"):
            set_assignments(s, user=leader, grid_codes=[])
        assert set_assignments(s, user=_user(s, "operator1"), grid_codes=[]) == []


def test_refresh_tokens_expire_and_die_with_the_token_version(seeded: sessionmaker[Session]) -> None:
    now = utcnow()
    with transaction(seeded) as s:
        user = _user(s, "leader-g3")
        old = issue_refresh_token(s, user=user, ttl_s=60, now=now - timedelta(seconds=61))
        live = issue_refresh_token(s, user=user, ttl_s=3600)
        cred = Credential(user_id=user.id, token_version=user.token_version)
        assert credential_is_live(s, cred)
    with transaction(seeded) as s, pytest.raises(AuthError, match="invalid refresh token"):
        rotate_refresh_token(s, old, ttl_s=60)
    with transaction(seeded) as s:
        end_sessions(s, _user(s, "leader-g3"))
    with transaction(seeded) as s:
        with pytest.raises(AuthError):
            rotate_refresh_token(s, live, ttl_s=60)
        assert not credential_is_live(s, cred)
        assert not credential_is_live(s, Credential(user_id=999_999, token_version=0))
