"""A sign-in provider for tests, speaking the real protocols: OpenID Connect (discovery, the
authorization code flow with state, nonce and PKCE S256, an RS256 id token, JWKS, userinfo)
and GitHub's OAuth app endpoints (/login/oauth/authorize, /login/oauth/access_token, /user,
/user/emails). It approves at once, as `user` (OIDC) or with `github_emails` (GitHub); a test
changes those between flows. Every check a real provider makes on the client is made here, so
a client that skipped one fails: the secret, the code (once), the redirect URI, the verifier.

Run it with `serving()`."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.servers import serve_in_thread


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    claims: dict[str, Any]
    github: bool = False


@dataclass
class Provider:
    client_id: str = "genrail-tests"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    user: dict[str, Any] = field(default_factory=lambda: {"sub": "u-1", "email": "oidc@example.com",
                                                          "email_verified": True})
    github_emails: list[dict[str, Any]] = field(default_factory=lambda: [
        {"email": "octo@example.com", "primary": True, "verified": True, "visibility": "public"}])
    redirect_uris: set[str] = field(default_factory=set)  # empty: any (set once the client's URL is known)
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "test-1",
                                                                                        "use": "sig"}))
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, Grant] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # why each refused request was refused
    outage: bool = False  # the token endpoint answers 503 with an HTML page, as a provider in trouble does
    issuer: str = ""

    def app(self, url: str) -> Starlette:
        self.issuer = url
        return Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/authorize", self.authorize),
            Route("/token", self.token, methods=["POST"]),
            Route("/jwks", self.jwks),
            Route("/userinfo", self.userinfo),
            Route("/login/oauth/authorize", self.github_authorize),
            Route("/login/oauth/access_token", self.github_token, methods=["POST"]),
            Route("/user", self.github_user),
            Route("/user/emails", self.github_user_emails),
        ])

    def _refuse(self, status: int, error: str, why: str) -> JSONResponse:
        self.refused.append(why)
        return JSONResponse({"error": error, "error_description": why}, status_code=status)

    # --- OpenID Connect -----------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        return JSONResponse({
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
            "userinfo_endpoint": f"{self.issuer}/userinfo", "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"], "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        })

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [{**self.key.as_dict(private=False), "alg": "RS256"}]})

    def _check_authorize(self, q, *, oidc: bool) -> str | None:
        if q.get("client_id") != self.client_id:
            return "unknown client_id"
        if self.redirect_uris and q.get("redirect_uri") not in self.redirect_uris:
            return f"redirect_uri not registered: {q.get('redirect_uri')}"
        if not q.get("state"):
            return "no state"
        if oidc:
            if q.get("response_type") != "code":
                return "response_type must be code"
            if "openid" not in (q.get("scope") or "").split():
                return "no openid scope"
            if not q.get("nonce"):
                return "no nonce"
            if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
                return "PKCE S256 is required"
        return None

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if why := self._check_authorize(q, oidc=True):
            return self._refuse(400, "invalid_request", why)
        code = secrets.token_urlsafe(24)
        self.codes[code] = Grant(self.client_id, q["redirect_uri"], q["nonce"], q["code_challenge"], dict(self.user))
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}",
                                status_code=302)

    async def _client_and_grant(self, request: Request) -> tuple[dict[str, str], Grant] | JSONResponse:
        form = {k: str(v) for k, v in (await request.form()).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id != self.client_id or not secrets.compare_digest(secret or "", self.client_secret):
            return self._refuse(401, "invalid_client", "wrong client credentials")
        grant = self.codes.pop(form.get("code", ""), None)  # a code works once
        if grant is None or grant.client_id != client_id:
            return self._refuse(400, "invalid_grant", "unknown or used code")
        if form.get("redirect_uri") != grant.redirect_uri:
            return self._refuse(400, "invalid_grant", "redirect_uri differs from the authorization request's")
        if grant.code_challenge is not None:
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if not verifier or challenge != grant.code_challenge:
                return self._refuse(400, "invalid_grant", "PKCE code_verifier does not match the challenge")
        return form, grant

    async def token(self, request: Request) -> Response:
        if self.outage:
            return Response("<html><body>Service Unavailable</body></html>", status_code=503,
                            media_type="text/html")
        checked = await self._client_and_grant(request)
        if isinstance(checked, JSONResponse):
            return checked
        form, grant = checked
        if form.get("grant_type") != "authorization_code":
            return self._refuse(400, "unsupported_grant_type", "grant_type must be authorization_code")
        access_token = secrets.token_urlsafe(24)
        self.tokens[access_token] = grant
        now = int(time.time())
        claims = {**grant.claims, "iss": self.issuer, "aud": grant.client_id, "iat": now, "exp": now + 300,
                  "nonce": grant.nonce}
        id_token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)
        return JSONResponse({"access_token": access_token, "token_type": "Bearer", "expires_in": 3600,
                             "scope": "openid email profile", "id_token": id_token},
                            headers={"Cache-Control": "no-store"})

    def _grant_of(self, request: Request) -> Grant | None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return self.tokens.get(token) if scheme.lower() in ("bearer", "token") else None

    async def userinfo(self, request: Request) -> Response:
        grant = self._grant_of(request)
        if grant is None or grant.github:
            return self._refuse(401, "invalid_token", "no valid access token")
        return JSONResponse(grant.claims)

    # --- GitHub -------------------------------------------------------------------------------

    async def github_authorize(self, request: Request) -> Response:
        q = request.query_params
        if why := self._check_authorize(q, oidc=False):
            return self._refuse(400, "invalid_request", why)
        code = secrets.token_urlsafe(24)
        self.codes[code] = Grant(self.client_id, q.get("redirect_uri", ""), None, q.get("code_challenge"),
                                 {"emails": [dict(e) for e in self.github_emails]}, github=True)
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}",
                                status_code=302)

    async def github_token(self, request: Request) -> Response:
        checked = await self._client_and_grant(request)
        if isinstance(checked, JSONResponse):
            return checked
        _form, grant = checked
        access_token = "gho_" + secrets.token_urlsafe(24)
        self.tokens[access_token] = grant
        return JSONResponse({"access_token": access_token, "token_type": "bearer", "scope": "read:user,user:email"})

    async def github_user(self, request: Request) -> Response:
        grant = self._grant_of(request)
        if grant is None or not grant.github:
            return self._refuse(401, "bad_credentials", "no valid GitHub token")
        return JSONResponse({"id": 1, "login": "octo", "email": None})

    async def github_user_emails(self, request: Request) -> Response:
        grant = self._grant_of(request)
        if grant is None or not grant.github:
            return self._refuse(401, "bad_credentials", "no valid GitHub token")
        return JSONResponse(grant.claims["emails"])


@contextmanager
def serving() -> Iterator[Provider]:
    """A provider on a free loopback port; its URL in `provider.url`."""
    provider = Provider()
    with serve_in_thread(factory=provider.app) as url:
        provider.url = url
        yield provider
