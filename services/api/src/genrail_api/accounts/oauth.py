"""Sign-in with GitHub, Google, or any OpenID Connect provider, through authlib's Starlette client.

Authlib keeps each flow's state (the `state`, the OIDC `nonce`, the PKCE `code_verifier`, the
redirect URI) in `request.session`. There is no SessionMiddleware here: the two OAuth routes put
a dictionary of their own in the request's scope, loaded from and saved to a signed, dated,
HttpOnly cookie `genrail_oauth` that only these routes read (Path=/signin/oauth). The state is
thus bound to the browser that started the flow, and nothing is stored server-side. The cookie
is signed, not encrypted: it only ever goes to this site from the user's own browser.

Only verified emails sign in: GitHub's primary verified address from /user/emails; for OpenID
Connect providers (Google, the generic one) the `email_verified` claim of the id token (or of
the userinfo endpoint when the token carries no email), which authlib checked (signature,
issuer, audience, nonce) against the provider's discovery document and keys.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import httpx

import authlib.deprecate  # noqa: F401 - its import sets an "always" filter of its own: ours must come after

with warnings.catch_warnings():
    # authlib 1.9 announces, on import, that its httpx integration will move to httpx2; it runs
    # on the httpx we have, and the notice on every API start says nothing to an operator.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import Request
from fastapi.responses import Response
from genrail_events.accounts import SignInMethod
from genrail_runtime.logs import event as log_event
from itsdangerous import BadSignature

from ..settings import ApiSettings
from . import sessions

log = logging.getLogger("genrail.api.accounts")
OAUTH_COOKIE = "genrail_oauth"
OAUTH_COOKIE_PATH = "/signin/oauth"
FLOW_MAX_AGE_S = 600
_SALT = "genrail.oauth"
OIDC_SCOPE = {"scope": "openid email profile", "code_challenge_method": "S256"}


class ProviderUnavailable(Exception):
    """The provider could not be reached, or answered what is not OAuth: try again later."""


class SignInFailed(Exception):
    """The provider did not prove a verified email (or the flow was broken): nothing changed."""


@dataclass(frozen=True)
class Provider:
    key: str  # in the URL: /signin/oauth/<key>
    label: str  # on the button
    method: SignInMethod


def configured(settings: ApiSettings) -> list[Provider]:
    found = []
    if settings.github_client_id and settings.github_client_secret:
        found.append(Provider("github", "GitHub", SignInMethod.github))
    if settings.google_client_id and settings.google_client_secret:
        found.append(Provider("google", "Google", SignInMethod.google))
    if settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret:
        found.append(Provider("oidc", settings.oidc_name, SignInMethod.oidc))
    return found


def build(settings: ApiSettings) -> OAuth:
    """One authlib registry for the configured providers (discovery documents are fetched on
    first use and kept)."""
    oauth = OAuth()
    if settings.github_client_id and settings.github_client_secret:
        base, api = settings.github_base_url.rstrip("/"), settings.github_api_url.rstrip("/")
        oauth.register("github", client_id=settings.github_client_id,
                       client_secret=settings.github_client_secret.get_secret_value(),
                       authorize_url=f"{base}/login/oauth/authorize",
                       access_token_url=f"{base}/login/oauth/access_token",
                       api_base_url=f"{api}/", client_kwargs={"scope": "read:user user:email"})
    if settings.google_client_id and settings.google_client_secret:
        oauth.register("google", client_id=settings.google_client_id,
                       client_secret=settings.google_client_secret.get_secret_value(),
                       server_metadata_url=settings.google_discovery_url, client_kwargs=OIDC_SCOPE)
    if settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret:
        oauth.register("oidc", client_id=settings.oidc_client_id,
                       client_secret=settings.oidc_client_secret.get_secret_value(),
                       server_metadata_url=f"{settings.oidc_issuer.rstrip('/')}/.well-known/openid-configuration",
                       client_kwargs=OIDC_SCOPE)
    return oauth


def registry_of(request: Request) -> OAuth:
    oauth = getattr(request.app.state, "genrail_oauth", None)
    if oauth is None:
        oauth = request.app.state.genrail_oauth = build(request.app.state.settings)
    return oauth


def client(request: Request, provider: str):
    if provider not in {p.key for p in configured(request.app.state.settings)}:
        return None
    return registry_of(request).create_client(provider)


# --- the flow's state, in a cookie of its own -------------------------------------------------

def load_flow(request: Request) -> dict[str, Any]:
    """Put the flow's dictionary where authlib looks (`request.session`)."""
    settings = request.app.state.settings
    flow: dict[str, Any] = {}
    if cookie := request.cookies.get(OAUTH_COOKIE):
        try:
            flow = dict(sessions.serializer(settings, _SALT).loads(cookie, max_age=FLOW_MAX_AGE_S))
        except (BadSignature, TypeError, ValueError):
            flow = {}
    request.scope["session"] = flow
    return flow


def save_flow(request: Request, response: Response) -> None:
    settings = request.app.state.settings
    flow = request.scope.get("session") or {}
    if not flow:
        response.delete_cookie(OAUTH_COOKIE, path=OAUTH_COOKIE_PATH)
        return
    response.set_cookie(OAUTH_COOKIE, sessions.serializer(settings, _SALT).dumps(flow), max_age=FLOW_MAX_AGE_S,
                        path=OAUTH_COOKIE_PATH, httponly=True, samesite="lax",
                        secure=sessions.secure_cookies(settings))


def redirect_uri(settings: ApiSettings, provider: str) -> str:
    return f"{settings.public_url.rstrip('/')}/signin/oauth/{provider}/callback"


async def start(request: Request, provider: str, next_path: str) -> Response | None:
    """The redirect to the provider, or None when it is not configured."""
    oauth_client = client(request, provider)
    if oauth_client is None:
        return None
    flow = load_flow(request)
    flow["next"] = sessions.local_path(next_path)
    flow["started"] = time.time()
    try:  # the discovery document is fetched here the first time
        response = await oauth_client.authorize_redirect(request, redirect_uri(request.app.state.settings, provider))
    except (httpx.HTTPError, ValueError) as exc:
        raise _unavailable(provider, exc) from None
    save_flow(request, response)
    return response


def _unavailable(provider: str, exc: Exception) -> ProviderUnavailable:
    log_event(log, "signin.provider_unavailable", method=provider, error=f"{type(exc).__name__}: {exc}"[:300])
    return ProviderUnavailable("The sign-in provider could not be reached, or did not answer as it should. "
                               "Try again in a moment, or sign in another way.")


async def finish(request: Request, provider: str) -> tuple[str, SignInMethod, str]:
    """(verified email, method, next path) from the provider's answer. SignInFailed."""
    oauth_client = client(request, provider)
    if oauth_client is None:
        raise SignInFailed("This sign-in provider is not configured.")
    flow = load_flow(request)
    try:
        token = await oauth_client.authorize_access_token(request)
        if provider == "github":
            email = await _github_email(oauth_client, token)
        else:
            email = await _oidc_email(oauth_client, token)
    except OAuthError as exc:
        log_event(log, "signin.refused", method=provider, reason=f"oauth: {exc.error}")
        raise SignInFailed(f"The sign-in with the provider did not complete ({exc.error}). Try again.") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise _unavailable(provider, exc) from None
    method = next(p.method for p in configured(request.app.state.settings) if p.key == provider)
    return email, method, str(flow.get("next") or "/")


async def _github_email(oauth_client, token: dict) -> str:
    answer = await oauth_client.get("user/emails", token=token, headers={"Accept": "application/vnd.github+json"})
    if answer.status_code != 200:
        raise SignInFailed(f"GitHub did not list the account's emails (HTTP {answer.status_code}).")
    for entry in answer.json():
        if entry.get("primary") and entry.get("verified") is True and entry.get("email"):
            return str(entry["email"])
    raise SignInFailed("Your GitHub account has no verified primary email: verify it on GitHub, then try again.")


async def _oidc_email(oauth_client, token: dict) -> str:
    claims = dict(token.get("userinfo") or {})
    if not claims.get("email"):
        claims.update(await oauth_client.userinfo(token=token))
    email, verified = claims.get("email"), claims.get("email_verified")
    if not email:
        raise SignInFailed("The provider did not tell us your email.")
    if verified is not True and str(verified).lower() != "true":
        raise SignInFailed("The provider has not verified your email, so it cannot sign you in.")
    return str(email)
