"""RTSP Digest (RFC 2617) and Basic: header parsing, nonces, and answers resolved against the database
(passwords and API tokens with and without the ``rtsp`` scope)."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import Role, utcnow
from models.identity.passwords import rtsp_ha1
from models.identity.rtsp_auth import DigestAnswer, digest_response
from models.identity.tokens import create_api_token, revoke_api_token
from models.identity.users import add_user, authenticate, change_password, find_user
from rtsp_gateway.digest import Authenticator, BasicAnswer, NonceKeeper, challenges, parse_authorization
from tests.support import sample

URI = "rtsp://127.0.0.1:8554/cameras/1"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def answer(
    user: str, secret: str, nonce: str, *, method: str = "DESCRIBE", qop: bool, realm: str = "GridPatrol"
) -> str:
    """An Authorization header computed the way RFC 2617 clients do (independent of the server's code)."""
    ha1 = md5(f"{user}:{realm}:{secret}")
    ha2 = md5(f"{method}:{URI}")
    if qop:
        response = md5(f"{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}")
        extra = ', qop=auth, nc=00000001, cnonce="0a4f113b"'
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
        extra = ""
    return f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{URI}", response="{response}"{extra}'


# --- pure parts -----------------------------------------------------------------------------------
def test_ha1_is_rfc2617() -> None:
    assert (
        rtsp_ha1("Mufasa", "Circle Of Life", realm="testrealm@host.com") == "939e7578ed9e3c518a452acee763bce9"
    )


def test_response_matches_the_rfc2617_example() -> None:
    # RFC 2617 section 3.5 (GET, qop=auth)
    a = DigestAnswer(
        username="Mufasa",
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="/dir/index.html",
        response="6629fae49393a05397450978507c4ef1",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert digest_response("939e7578ed9e3c518a452acee763bce9", a, method="GET") == a.response


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Digest username="a b", realm="R", nonce="n", uri="rtsp://h/x", response="r"', ("a b", None)),
        (
            'Digest username="u",realm="R",nonce="n",uri="/x",response="r",qop=auth,nc=00000001,cnonce="c"',
            ("u", "auth"),
        ),
        ('digest USERNAME="u\\"q", realm="R", nonce="n", uri="/x", response="r"', ('u"q', None)),
        ('Digest username="u", realm="R", nonce="n", uri="/x"', None),  # no response
        ("Digest ,,,", None),
        ("Bearer abc", None),
        ("Basic !!!", None),
        ("Basic " + base64.b64encode(b"nocolon").decode(), None),
    ],
)
def test_parse_authorization(header: str, expected: tuple[str, str | None] | None) -> None:
    parsed = parse_authorization(header)
    if expected is None:
        assert parsed is None
    else:
        assert isinstance(parsed, DigestAnswer)
        assert (parsed.username, parsed.qop) == expected


def test_parse_basic() -> None:
    parsed = parse_authorization("Basic " + base64.b64encode("李:pa:ss".encode()).decode())
    assert parsed == BasicAnswer("李", "pa:ss")


def test_nonces_are_signed_and_expire() -> None:
    now = [1_000_000.0]
    keeper = NonceKeeper(b"k1", ttl_s=60, clock=lambda: now[0])
    nonce = keeper.make()
    assert keeper.check(nonce) == "ok"
    assert NonceKeeper(b"k1", ttl_s=60, clock=lambda: now[0]).check(nonce) == "ok"  # any process with the key
    assert NonceKeeper(b"k2", ttl_s=60, clock=lambda: now[0]).check(nonce) == "bad"
    assert keeper.check(nonce[:-1] + ("0" if nonce[-1] != "0" else "1")) == "bad"
    assert keeper.check("deadbeef") == "bad"
    now[0] += 61
    assert keeper.check(nonce) == "stale"


def test_challenges_offer_basic_only_when_configured() -> None:
    assert [c.split(" ")[0] for c in challenges("GridPatrol", "n")] == ["Digest"]
    assert [c.split(" ")[0] for c in challenges("GridPatrol", "n", allow_basic=True)] == ["Digest", "Basic"]
    assert challenges("GridPatrol", "n", stale=True)[0].endswith("stale=TRUE")


# --- against the database ---------------------------------------------------------------------------
@pytest.fixture
def users(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    with transaction(session_factory) as session:
        add_user(session, username="Leader1", role=Role.admin, password=sample.PASSWORD)
    return session_factory


def auth(factory: sessionmaker[Session], *, basic: bool = False, clock: float | None = None) -> Authenticator:
    keeper = (
        NonceKeeper(b"secret", ttl_s=60)
        if clock is None
        else NonceKeeper(b"secret", ttl_s=60, clock=lambda: clock)
    )
    return Authenticator(factory, keeper, realm="GridPatrol", allow_basic=basic)


def test_digest_with_the_password_and_basic_only_when_configured(users: sessionmaker[Session]) -> None:
    a = auth(users)
    nonce = a.nonces.make()
    for qop in (True, False):
        ok = a.authenticate(answer("Leader1", sample.PASSWORD, nonce, qop=qop), method="DESCRIBE")
        assert ok.credential is not None and ok.credential.api_token_id is None
        assert (
            a.authenticate(
                answer("Leader1", "wrong-Password-7", nonce, qop=qop), method="DESCRIBE"
            ).credential
            is None
        )
        # the username as stored: the client hashed the name it typed
        assert (
            a.authenticate(answer("leader1", sample.PASSWORD, nonce, qop=qop), method="DESCRIBE").credential
            is None
        )
        assert (
            a.authenticate(answer("Leader1", sample.PASSWORD, nonce, qop=qop), method="SETUP").credential
            is None
        )
        other_realm = answer("Leader1", sample.PASSWORD, nonce, qop=qop, realm="Other")
        assert a.authenticate(other_realm, method="DESCRIBE").credential is None
    header = "Basic " + base64.b64encode(f"Leader1:{sample.PASSWORD}".encode()).decode()
    assert a.authenticate(header, method="DESCRIBE").credential is None
    assert auth(users, basic=True).authenticate(header, method="DESCRIBE").credential is not None


def test_forged_and_stale_nonces(users: sessionmaker[Session]) -> None:
    a = auth(users)
    assert (
        a.authenticate(
            answer("Leader1", sample.PASSWORD, "made-up-nonce", qop=True), method="DESCRIBE"
        ).credential
        is None
    )
    old = NonceKeeper(b"secret", ttl_s=60, clock=lambda: 1000.0).make()
    stale = a.authenticate(answer("Leader1", sample.PASSWORD, old, qop=True), method="DESCRIBE")
    assert stale.credential is None and stale.stale
    wrong = a.authenticate(answer("Leader1", "wrong-Password-7", old, qop=True), method="DESCRIBE")
    assert not wrong.stale  # stale only tells a right answer on an old nonce


def test_tokens_need_the_rtsp_scope(users: sessionmaker[Session]) -> None:
    with transaction(users) as session:
        user = find_user(session, "Leader1")
        assert user is not None
        rtsp_row, rtsp_token = create_api_token(session, user=user, name="nvr", scopes=["rtsp"])
        read_row, read_token = create_api_token(session, user=user, name="read", scopes=["api:read"])
        assert rtsp_row.rtsp_ha1 is not None and read_row.rtsp_ha1 is None
        rtsp_id = rtsp_row.id
    a = auth(users, basic=True)
    nonce = a.nonces.make()
    got = a.authenticate(answer("Leader1", rtsp_token, nonce, qop=True), method="DESCRIBE")
    assert got.credential is not None and got.credential.api_token_id == rtsp_id
    assert (
        a.authenticate(answer("Leader1", read_token, nonce, qop=True), method="DESCRIBE").credential is None
    )
    basic = "Basic " + base64.b64encode(f"Leader1:{read_token}".encode()).decode()
    assert a.authenticate(basic, method="DESCRIBE").credential is None
    basic_ok = "Basic " + base64.b64encode(f"Leader1:{rtsp_token}".encode()).decode()
    assert a.authenticate(basic_ok, method="DESCRIBE").credential is not None
    with transaction(users) as session:
        row = session.get(type(rtsp_row), rtsp_id)
        assert row is not None
        revoke_api_token(session, row)
    assert (
        a.authenticate(answer("Leader1", rtsp_token, nonce, qop=True), method="DESCRIBE").credential is None
    )


def test_expired_token_is_refused(users: sessionmaker[Session]) -> None:
    with transaction(users) as session:
        user = find_user(session, "Leader1")
        assert user is not None
        row, token = create_api_token(
            session, user=user, name="t", scopes=["rtsp"], expires_at=utcnow() + timedelta(hours=1)
        )
        row.expires_at = utcnow() - timedelta(seconds=1)
    a = auth(users)
    assert (
        a.authenticate(answer("Leader1", token, a.nonces.make(), qop=False), method="DESCRIBE").credential
        is None
    )


def test_password_change_and_login_keep_the_digest_secret(users: sessionmaker[Session]) -> None:
    new_password = "another-Horse-staple-4"
    with transaction(users) as session:
        user = find_user(session, "Leader1")
        assert user is not None
        assert user.rtsp_ha1 == rtsp_ha1("Leader1", sample.PASSWORD)
        change_password(session, user=user, current_password=sample.PASSWORD, new_password=new_password)
        assert user.rtsp_ha1 == rtsp_ha1("Leader1", new_password)
        user.rtsp_ha1 = None  # as for a user made before digest secrets were kept
    with transaction(users) as session:
        assert authenticate(session, "leader1", new_password) is not None
    with users() as session:
        stored = find_user(session, "Leader1")
        assert stored is not None and stored.rtsp_ha1 == rtsp_ha1("Leader1", new_password)
    a = auth(users)
    nonce = a.nonces.make()
    assert (
        a.authenticate(answer("Leader1", sample.PASSWORD, nonce, qop=True), method="DESCRIBE").credential
        is None
    )
    assert (
        a.authenticate(answer("Leader1", new_password, nonce, qop=True), method="DESCRIBE").credential
        is not None
    )


def test_disabled_user_is_refused(users: sessionmaker[Session]) -> None:
    with transaction(users) as session:
        user = find_user(session, "Leader1")
        assert user is not None
        user.enabled = False
    a = auth(users, basic=True)
    assert (
        a.authenticate(
            answer("Leader1", sample.PASSWORD, a.nonces.make(), qop=True), method="DESCRIBE"
        ).credential
        is None
    )
    header = "Basic " + base64.b64encode(f"Leader1:{sample.PASSWORD}".encode()).decode()
    assert a.authenticate(header, method="DESCRIBE").credential is None
