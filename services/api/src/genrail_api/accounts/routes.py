"""The account pages and form posts: sign-in (email link, providers), sign-out (here, or
everywhere), and the local stack's mailbox. HTML only, none in the OpenAPI document."""

from __future__ import annotations

import logging
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from genrail_events import accounts
from genrail_runtime.logs import event as log_event
from pydantic import EmailStr, TypeAdapter, ValidationError

from .. import rate_limits
from ..errors import NotFound
from ..studio.templating import render
from . import magic_links, mail, oauth, sessions
from .sessions import PageUser, message_page, verify_csrf

log = logging.getLogger("genrail.api.accounts")
router = APIRouter(include_in_schema=False)
CsrfChecked = Depends(verify_csrf)
_EMAIL = TypeAdapter(EmailStr)


def _signin_page(request: Request, next_path: str, *, error: str | None = None, email: str = "",
                 status_code: int = 200):
    settings = request.app.state.settings
    return render(request, "accounts/signin.html",
                  {"next": sessions.local_path(next_path), "providers": oauth.configured(settings),
                   "email_enabled": bool(settings.smtp_host), "error": error, "email": email},
                  status_code=status_code)


@router.get("/signin")
async def signin(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    if await sessions.optional_page_user(request) is not None:
        return RedirectResponse(sessions.local_path(next), status_code=303)
    return await _signin_page(request, next)


@router.post("/signin/email", dependencies=[CsrfChecked])
async def signin_email(request: Request, email: Annotated[str, Form(max_length=320)],
                       next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    settings = request.app.state.settings
    try:
        address = str(_EMAIL.validate_python(email.strip()))
    except ValidationError:
        return await _signin_page(request, next, error="That is not an email address.", email=email,
                                  status_code=422)
    client = request.client.host if request.client else "unknown"
    engine = request.app.state.resources.engine
    try:
        await rate_limits.hit(engine, f"signin-mail:{client}", limit=settings.signups_per_hour_per_address,
                              window_s=3600, what="sign-in mails from one address")
        await rate_limits.hit(engine, f"signin-mail-to:{address.lower()}",
                              limit=settings.signin_mails_per_hour_per_email, window_s=3600,
                              what="sign-in mails to one email address")
    except rate_limits.RateLimited as exc:
        return await _signin_page(request, next, error=str(exc), email=email, status_code=429)
    token, link_id = magic_links.make_token(settings, address, next)
    try:
        await mail.send(settings, address, "Your genrail sign-in link",
                        magic_links.mail_text(settings, magic_links.link_url(settings, token)))
    except mail.MailUnavailable:
        return await _signin_page(request, next, error="We could not send mail just now. Try again later, or "
                                                       "sign in another way.", email=email, status_code=503)
    log_event(log, "signin.link_sent", link_id=link_id)
    return await render(request, "accounts/check_email.html", {"email": address})


@router.get("/signin/link")
async def signin_link(request: Request, token: Annotated[str, Query(max_length=4000)] = "") -> Response:
    """Opening the link only asks: mail scanners open links too, and must not spend them."""
    try:
        link = await magic_links.unused_link(request, token)
    except magic_links.LinkRefused as exc:
        return await message_page(request, "This link cannot sign you in", f"{exc} Nothing was changed.",
                                  status_code=400)
    return await render(request, "accounts/confirm_link.html", {"token": token, "email": link.email})


@router.post("/signin/link", dependencies=[CsrfChecked])
async def signin_link_confirmed(request: Request, token: Annotated[str, Form(max_length=4000)] = "") -> Response:
    try:
        return await magic_links.use_link(request, token)
    except magic_links.LinkRefused as exc:
        return await message_page(request, "This link cannot sign you in", f"{exc} Nothing was changed.",
                                  status_code=400)


@router.get("/signin/oauth/{provider}")
async def signin_oauth(request: Request, provider: str,
                       next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    try:
        response = await oauth.start(request, provider, next)
    except oauth.ProviderUnavailable as exc:
        return await message_page(request, "Sign-in provider unavailable", f"{exc} Nothing was changed.",
                                  status_code=503)
    if response is None:
        raise NotFound(f"no sign-in provider {provider!r} is configured")
    return response


@router.get("/signin/oauth/{provider}/callback")
async def signin_oauth_callback(request: Request, provider: str) -> Response:
    try:
        email, method, next_path = await oauth.finish(request, provider)
        response: Response = await magic_links.complete_sign_in(request, email, method, next_path)
    except oauth.SignInFailed as exc:
        response = await message_page(request, "Sign-in refused", f"{exc} Nothing was changed.", status_code=400)
    except oauth.ProviderUnavailable as exc:
        response = await message_page(request, "Sign-in provider unavailable", f"{exc} Nothing was changed.",
                                      status_code=503)
    response.delete_cookie(oauth.OAUTH_COOKIE, path=oauth.OAUTH_COOKIE_PATH)
    return response


@router.post("/signout", dependencies=[CsrfChecked])
async def signout(request: Request) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    sessions.end_session(response, settings=request.app.state.settings)
    return response


@router.post("/signout/everywhere", dependencies=[CsrfChecked])
async def signout_everywhere(request: Request, user_id: PageUser) -> Response:
    """Every session of this user ends, on every device: the generation moves on."""
    await request.app.state.resources.store.append(accounts.sessions_revoked_subject(user_id),
                                                   accounts.sessions_revoked(user_id))
    log_event(log, "session.revoked_everywhere", user_id=user_id)
    response = RedirectResponse("/signin", status_code=303)
    sessions.end_session(response, settings=request.app.state.settings)
    return response


# --- the local stack's mailbox ------------------------------------------------------------------

def _mailbox(request: Request) -> Path:
    folder = request.app.state.settings.local_mailbox_dir
    if not folder:
        raise NotFound("not found")
    return Path(folder)


@router.get("/dev/mailbox")
async def mailbox(request: Request) -> Response:
    folder = _mailbox(request)
    mails = []
    for path in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True)[:200]:
        with path.open("rb") as f:
            headers = BytesParser(policy=policy.default).parse(f, headersonly=True)
        mails.append({"name": path.name, "to": headers.get("To", ""), "subject": headers.get("Subject", ""),
                      "date": headers.get("Date", "")})
    return await render(request, "accounts/mailbox.html", {"mails": mails})


@router.get("/dev/mailbox/{name}")
async def mailbox_mail(request: Request, name: str) -> Response:
    folder = _mailbox(request)
    path = folder / name
    if "/" in name or "\\" in name or not name.endswith(".eml") or not path.is_file():
        raise NotFound(f"no mail {name}")
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    body = message.get_body(preferencelist=("plain", "html"))
    text = body.get_content() if body is not None else ""
    return await render(request, "accounts/mail.html",
                        {"name": name, "to": message.get("To", ""), "subject": message.get("Subject", ""),
                         "sender": message.get("From", ""), "text": text})
