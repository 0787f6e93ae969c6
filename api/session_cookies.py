"""Browser sessions: the access and refresh tokens in HttpOnly cookies, with a double-submit CSRF token.

A browser cannot put an ``Authorization`` header on an ``<img>``, an ``EventSource`` or a WebSocket, so
the web UI logs in with cookies (its login sends ``X-GridPatrol-Session: cookie``): ``gp_session`` carries the access token (Path=/), ``gp_refresh`` the
refresh token (Path=/api/auth only), both HttpOnly and SameSite=Strict, Secure over https. Writes
authenticated by cookie must repeat the readable ``gp_csrf`` cookie in the ``X-CSRF-Token`` header
(compared in constant time); bearer-token clients never see any of this.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import HTTPConnection
from starlette.responses import Response

from models.errors import AccessDenied

SESSION_COOKIE = "gp_session"
REFRESH_COOKIE = "gp_refresh"
CSRF_COOKIE = "gp_csrf"
CSRF_HEADER = "X-CSRF-Token"
REFRESH_PATH = "/api/auth"
#: a login asks for the cookies with this header (``X-GridPatrol-Session: cookie``): API clients that
#: never ask get none, so a script's or test client's cookie jar never turns into a second credential
SESSION_REQUEST_HEADER = "X-GridPatrol-Session"


def wants_cookies(conn: HTTPConnection) -> bool:
    return conn.headers.get(SESSION_REQUEST_HEADER, "").strip().lower() == "cookie"


def is_https(conn: HTTPConnection) -> bool:
    """Whether the browser reached us over https (the scheme as the ASGI server saw it)."""
    return conn.url.scheme in ("https", "wss")


def session_token(conn: HTTPConnection) -> str | None:
    """The access token of a cookie session, if the request carries one (HTTP or WebSocket)."""
    return conn.cookies.get(SESSION_COOKIE) or None


def refresh_token(conn: HTTPConnection) -> str | None:
    return conn.cookies.get(REFRESH_COOKIE) or None


def check_csrf(conn: HTTPConnection) -> None:
    """Double submit: the ``X-CSRF-Token`` header must equal the ``gp_csrf`` cookie (a page on another
    site can make the browser send the cookie, but cannot read it to copy it into a header)."""
    cookie = conn.cookies.get(CSRF_COOKIE, "")
    header = conn.headers.get(CSRF_HEADER, "")
    if not cookie or not header or not hmac.compare_digest(cookie.encode(), header.encode()):
        raise AccessDenied("missing or wrong CSRF token: reload the page and try again (X-CSRF-Token header)")


def set_session_cookies(
    response: Response,
    conn: HTTPConnection,
    *,
    access_token: str,
    access_ttl_s: int,
    refresh: str,
    refresh_ttl_s: int,
) -> None:
    """Set (or rotate) the three cookies of a browser session."""
    secure = is_https(conn)
    response.set_cookie(
        SESSION_COOKIE,
        access_token,
        max_age=access_ttl_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    response.set_cookie(
        REFRESH_COOKIE,
        refresh,
        max_age=refresh_ttl_s,
        path=REFRESH_PATH,
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(32),
        max_age=refresh_ttl_s,
        path="/",
        httponly=False,
        samesite="strict",
        secure=secure,
    )


def clear_session_cookies(response: Response, conn: HTTPConnection) -> None:
    secure = is_https(conn)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=secure)
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_PATH, httponly=True, samesite="strict", secure=secure)
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict", secure=secure)
