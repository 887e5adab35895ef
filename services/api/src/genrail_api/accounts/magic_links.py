"""Sign-in by emailed link, and what every sign-in ends with.

A link is `<PUBLIC_URL>/signin/link?token=...`, the token the email, a random link id and the
page to go back to, signed (itsdangerous, salt of its own) and dated: MAGIC_LINK_TTL_S. The
token needs no storage until it is used; its single use is `user.link_used.<user>.<link>`,
appended only while that subject is empty, so a link works once ever, on any API process.
Opening the link shows a button, and only its POST spends the link: mail scanners that open
every link in a mail (Safe Links and the like) neither spend it nor sign anybody in. Using a link proves the email: a new
address is registered then (`user.registered`, and with it the signup credits, once per
user id, which derives from the email: once per verified email).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import RedirectResponse
from genrail_events import accounts, users
from genrail_readmodels.db import wait_for_position
from genrail_runtime.logs import event as log_event
from itsdangerous import BadSignature, SignatureExpired

from .. import handlers
from ..settings import ApiSettings
from . import sessions

log = logging.getLogger("genrail.api.accounts")
_SALT = "genrail.magic-link"
USED = "This sign-in link was used already: each link works once. Ask for a new one."


class LinkRefused(Exception):
    """A link that is forged, expired or used already: nothing was changed."""


@dataclass(frozen=True)
class Link:
    email: str
    link_id: str
    next_path: str


def make_token(settings: ApiSettings, email: str, next_path: str = "/") -> tuple[str, str]:
    """(token, link_id) for a sign-in link to `email`."""
    link_id = secrets.token_hex(16)
    token = sessions.serializer(settings, _SALT).dumps(
        {"e": users.normalize_email(email), "l": link_id, "n": sessions.local_path(next_path)})
    return token, link_id


def read_token(settings: ApiSettings, token: str) -> Link:
    """The link a token holds. LinkRefused when its signature is wrong or it is too old."""
    try:
        data = sessions.serializer(settings, _SALT).loads(token, max_age=settings.magic_link_ttl_s)
    except SignatureExpired:
        raise LinkRefused("This sign-in link has expired. Ask for a new one.") from None
    except BadSignature:
        raise LinkRefused("This sign-in link is not valid (it was changed, or not made by this site).") from None
    try:
        link = Link(str(data["e"]), str(data["l"]), sessions.local_path(str(data["n"])))
        accounts.link_used_subject(users.user_id_for(link.email), link.link_id)  # a valid subject token
    except (KeyError, TypeError, ValueError):
        raise LinkRefused("This sign-in link is not valid.") from None
    return link


def link_url(settings: ApiSettings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/signin/link?token={token}"


def mail_text(settings: ApiSettings, url: str) -> str:
    minutes = max(1, settings.magic_link_ttl_s // 60)
    return (f"Sign in to genrail with this link:\n\n{url}\n\n"
            f"It works once, for {minutes} minute(s). If you did not ask for it, ignore this mail.\n")


async def unused_link(request: Request, token: str) -> Link:
    """The link, if it is valid and not used yet (nothing is spent); LinkRefused otherwise."""
    link = read_token(request.app.state.settings, token)
    spent = accounts.link_used_subject(users.user_id_for(link.email), link.link_id)
    if await request.app.state.resources.store.exists(spent):
        raise LinkRefused(USED)
    return link


async def use_link(request: Request, token: str) -> RedirectResponse:
    """Check the token, spend the link, sign in. LinkRefused with nothing changed otherwise."""
    settings: ApiSettings = request.app.state.settings
    link = read_token(settings, token)
    store = request.app.state.resources.store
    user_id = users.user_id_for(link.email)
    spent = await store.append_first(accounts.link_used_subject(user_id, link.link_id),
                                     accounts.link_used(user_id, link.link_id, link.email),
                                     msg_id=f"link:{link.link_id}")
    if spent is None:
        log_event(log, "signin.refused", user_id=user_id, method="magic_link", reason="link used already")
        raise LinkRefused(USED)
    return await complete_sign_in(request, link.email, accounts.SignInMethod.magic_link, link.next_path,
                                  link_id=link.link_id)


async def complete_sign_in(request: Request, email: str, method: accounts.SignInMethod, next_path: str,
                           link_id: str | None = None) -> RedirectResponse:
    """A proven email signs in: registered if new, `user.signed_in` appended, a session started."""
    settings: ApiSettings = request.app.state.settings
    resources = request.app.state.resources
    email = users.normalize_email(email)
    user_id = users.user_id_for(email)
    wait_s = settings.read_your_writes_timeout_s
    try:
        registration = await handlers.register_user(
            resources.store, email, grant_wait_s=wait_s if settings.grants_on("registration") else 0)
    except handlers.EmailTaken:
        pass
    else:
        log_event(log, "user.registered", user_id=user_id, method=str(method))
        await wait_for_position(resources.engine, "users", registration.position, wait_s)
    await resources.store.append(accounts.signed_in_subject(user_id),
                                 accounts.signed_in(user_id, email, method, link_id))
    if settings.grants_on("verified_email"):  # the ledger grants on this sign-in (once per email)
        await handlers.wait_for_signup_grant(resources.store, user_id, wait_s)
    generation = await sessions.session_generation(resources.store, user_id)
    response = RedirectResponse(sessions.local_path(next_path), status_code=303)
    sessions.start_session(response, user_id, generation, settings=settings)
    log_event(log, "signin.succeeded", user_id=user_id, method=str(method))
    return response
