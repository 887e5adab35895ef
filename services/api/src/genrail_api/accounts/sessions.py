"""Studio sessions: a signed cookie, no server-side session table.

The cookie `genrail_session` holds the user id, the session generation, a CSRF token and when it
was issued, signed (itsdangerous, keyed by SESSION_SECRET) and dated: it is valid for
SESSION_MAX_AGE_S. "Sign out everywhere" appends `user.sessions_revoked`; the generation of a
user is the log's sequence of the last such event (0: never), so every cookie issued before it
carries an older generation and stops working on every API process at once. That costs one
get-last-by-subject per page view, which is what makes the revocation immediate.

CSRF: a signed-in form carries the session's own token. A signed-out form (the sign-in page)
carries a token bound to a random `genrail_csrf` cookie (double submit, the token an HMAC of the
cookie), set by `CsrfCookie` on the answer of the page that first needed it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated
from urllib.parse import quote, urlsplit

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from genrail_events import accounts
from genrail_events.users import normalize_email
from genrail_runtime.logs import event as log_event
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..settings import ApiSettings

log = logging.getLogger("genrail.api.accounts")

SESSION_COOKIE = "genrail_session"
CSRF_COOKIE = "genrail_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SESSION_SALT = "genrail.session"
_RANDOM_SECRET = secrets.token_urlsafe(32)  # only when SESSION_SECRET is unset: this process alone


class SignInRequired(Exception):
    """A page needs a signed-in user: answered with a 303 to /signin?next=<path>."""

    def __init__(self, next_path: str):
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Exception):
    """A state-changing form came without this browser's CSRF token: answered 403."""


@dataclass(frozen=True)
class Session:
    user_id: str
    generation: int
    csrf: str
    issued_at: float


def secret(settings: ApiSettings) -> str:
    return settings.session_secret.get_secret_value() or _RANDOM_SECRET


@lru_cache(maxsize=8)
def _serializer(key: str, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(key, salt=salt)


def serializer(settings: ApiSettings, salt: str) -> URLSafeTimedSerializer:
    """A signer for one purpose: the salt keeps a session from passing for a magic link."""
    return _serializer(secret(settings), salt)


def secure_cookies(settings: ApiSettings) -> bool:
    """Secure unless the studio is served over plain http on this machine (the local stack)."""
    url = urlsplit(settings.public_url)
    return not (url.scheme == "http" and url.hostname in ("127.0.0.1", "localhost", "::1"))


def _settings(request: Request) -> ApiSettings:
    return request.app.state.settings


# --- the session cookie -----------------------------------------------------------------

def encode_session(settings: ApiSettings, session: Session) -> str:
    return serializer(settings, _SESSION_SALT).dumps(
        {"u": session.user_id, "g": session.generation, "c": session.csrf, "t": session.issued_at})


def decode_session(settings: ApiSettings, cookie: str | None) -> Session | None:
    """The session a cookie holds if its signature is good and it is younger than the maximum
    age; the generation is checked against the log by `optional_page_user`."""
    if not cookie:
        return None
    try:
        data = serializer(settings, _SESSION_SALT).loads(cookie, max_age=settings.session_max_age_s)
        return Session(str(data["u"]), int(data["g"]), str(data["c"]), float(data["t"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None


def start_session(response: Response, user_id: str, generation: int, *, settings: ApiSettings) -> Session:
    session = Session(user_id, generation, secrets.token_urlsafe(32), time.time())
    response.set_cookie(SESSION_COOKIE, encode_session(settings, session), max_age=settings.session_max_age_s,
                        path="/", httponly=True, samesite="lax", secure=secure_cookies(settings))
    return session


def end_session(response: Response, *, settings: ApiSettings | None = None) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=secure_cookies(settings) if settings else False)


async def session_generation(store, user_id: str) -> int:
    """The user's current generation: the sequence of their last `user.sessions_revoked`."""
    return await store.last_seq(accounts.sessions_revoked_subject(user_id))


_UNSET = object()


async def current_session(request: Request) -> Session | None:
    """The request's valid session (signature, age and generation), remembered per request."""
    cached = getattr(request.state, "genrail_session", _UNSET)
    if cached is not _UNSET:
        return cached
    session = decode_session(_settings(request), request.cookies.get(SESSION_COOKIE))
    if session is not None:
        store = request.app.state.resources.store
        if await session_generation(store, session.user_id) != session.generation:
            log_event(log, "session.refused", user_id=session.user_id, reason="signed out everywhere")
            session = None
    request.state.genrail_session = session
    return session


async def optional_page_user(request: Request) -> str | None:
    session = await current_session(request)
    return session.user_id if session else None


async def page_user(request: Request) -> str:
    """Dependency of every signed-in page: the user, or a redirect to the sign-in page."""
    user_id = await optional_page_user(request)
    if user_id is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path)
    return user_id


PageUser = Annotated[str, Depends(page_user)]


# --- CSRF ----------------------------------------------------------------------------------

def _anonymous_token(settings: ApiSettings, nonce: str) -> str:
    return hmac.new(secret(settings).encode(), f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The token this browser's forms must send back. Signed in: the session's. Signed out:
    bound to the `genrail_csrf` cookie (created here if missing, set by `CsrfCookie`)."""
    settings = _settings(request)
    session = getattr(request.state, "genrail_session", _UNSET)
    if session is _UNSET:  # not checked against the log yet: the token does not depend on it
        session = decode_session(settings, request.cookies.get(SESSION_COOKIE))
    if session is not None:
        return session.csrf
    nonce = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "genrail_new_csrf_nonce", None)
    if not nonce:
        nonce = secrets.token_urlsafe(24)
        request.state.genrail_new_csrf_nonce = nonce
    return _anonymous_token(settings, nonce)


async def verify_csrf(request: Request) -> None:
    """Dependency of every state-changing form POST: the form field `csrf_token` or the header
    X-CSRF-Token must equal this browser's token. Nothing else about the request is trusted."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    settings = _settings(request)
    session = await current_session(request)
    if session is not None:
        expected = session.csrf
    elif nonce := request.cookies.get(CSRF_COOKIE):
        expected = _anonymous_token(settings, nonce)
    else:
        expected = None
    if not sent or expected is None or not hmac.compare_digest(sent.encode(), expected.encode()):
        log_event(log, "csrf.refused", path=request.url.path, user_id=session.user_id if session else None)
        raise CsrfRefused()


class CsrfCookie:
    """Sets the signed-out CSRF cookie on the answer of a request that created one."""

    def __init__(self, app: ASGIApp, *, secure: bool):
        self.app, self.secure = app, secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_cookie(message: Message) -> None:
            state = scope.get("state") or {}
            nonce = state.get("genrail_new_csrf_nonce") if isinstance(state, dict) else None
            if message["type"] == "http.response.start" and nonce:
                response = Response()
                response.set_cookie(CSRF_COOKIE, nonce, path="/", httponly=True, samesite="lax", secure=self.secure)
                message = {**message, "headers": [*message.get("headers", []),
                                                  *[(k, v) for k, v in response.raw_headers if k == b"set-cookie"]]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


# --- who may administer --------------------------------------------------------------------

def admin_emails(settings: ApiSettings) -> frozenset[str]:
    return frozenset(normalize_email(e) for e in settings.admin_emails.split(",") if e.strip())


async def is_admin(request: Request, who: str) -> bool:
    """Whether a user (by id or email) is one of ADMIN_EMAILS; asked once per request (an admin
    page asks for its access check and again for its layout)."""
    admins = admin_emails(_settings(request))
    if not admins:
        return False
    if "@" in who:
        return normalize_email(who) in admins
    known: dict[str, bool] | None = getattr(request.state, "genrail_admins", None)
    if known is None:
        known = request.state.genrail_admins = {}
    if who not in known:
        async with request.app.state.resources.engine.connect() as conn:
            email = (await conn.execute(sa.text("SELECT email FROM users WHERE user_id = CAST(:u AS uuid)"),
                                        {"u": who})).scalar()
        known[who] = email is not None and email in admins
    return known[who]


# --- answers to the two refusals -------------------------------------------------------------

def local_path(next_path: str | None, default: str = "/") -> str:
    """`next` only when it is a path on this site (never `//host` or a URL): no open redirect."""
    if not next_path or not next_path.startswith("/") or next_path.startswith("//") or "\\" in next_path:
        return default
    return next_path


def install(app) -> None:
    async def sign_in_required(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(f"/signin?next={quote(local_path(exc.next_path), safe='/')}", status_code=303)

    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        return await message_page(request, "Form expired or forged",
                                  "This form did not carry this browser's security token (CSRF), so nothing was "
                                  "done. Reload the page and try again.", status_code=403)

    app.add_exception_handler(SignInRequired, sign_in_required)
    app.add_exception_handler(CsrfRefused, csrf_refused)


async def message_page(request: Request, title: str, message: str, *, status_code: int) -> HTMLResponse:
    """A page saying one thing (a refusal, a confirmation), in the studio's layout."""
    from ..studio.templating import render

    return await render(request, "accounts/message.html", {"title": title, "message": message},
                        status_code=status_code)
