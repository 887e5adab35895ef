"""Given the studio's signed cookies and links, when they are read back, changed or too old,
then only the genuine, current ones are accepted: sessions (and sign-out everywhere), CSRF
tokens signed in and out, magic-link tokens, and `next` never leaving the site."""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse
from genrail_api.accounts import magic_links, sessions
from genrail_api.settings import ApiSettings
from genrail_eventlog.memory import InMemoryEventLog
from genrail_events import accounts


def settings(**overrides) -> ApiSettings:
    return ApiSettings(**{"session_secret": "unit-tests-secret", "public_url": "http://127.0.0.1:8000", **overrides})


def later(monkeypatch, seconds: float) -> None:
    now = time.time() + seconds
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: now)


def test_a_session_reads_back_only_with_its_own_secret_and_within_its_age(monkeypatch) -> None:
    s = settings(session_max_age_s=60)
    cookie = sessions.encode_session(s, sessions.Session("u1", 7, "csrf", time.time()))
    assert sessions.decode_session(s, cookie) == sessions.Session("u1", 7, "csrf", pytest.approx(time.time(), abs=5))
    assert sessions.decode_session(settings(session_secret="another"), cookie) is None
    assert sessions.decode_session(s, cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]) is None
    assert sessions.decode_session(s, "") is None and sessions.decode_session(s, "garbage") is None
    later(monkeypatch, 61)
    assert sessions.decode_session(s, cookie) is None


def test_a_session_is_not_a_magic_link_nor_the_other_way_round() -> None:
    s = settings()
    token, _ = magic_links.make_token(s, "a@example.com")
    assert sessions.decode_session(s, token) is None
    cookie = sessions.encode_session(s, sessions.Session("u1", 0, "c", time.time()))
    with pytest.raises(magic_links.LinkRefused):
        magic_links.read_token(s, cookie)


def test_a_magic_link_holds_its_email_and_a_local_next_and_refuses_changes_and_age(monkeypatch) -> None:
    s = settings(magic_link_ttl_s=900)
    token, link_id = magic_links.make_token(s, " Ada@Example.com ", "https://evil.example/")
    link = magic_links.read_token(s, token)
    assert (link.email, link.link_id, link.next_path) == ("ada@example.com", link_id, "/")
    with pytest.raises(magic_links.LinkRefused, match="not valid"):
        magic_links.read_token(s, token[:-3] + "xyz")
    with pytest.raises(magic_links.LinkRefused, match="not valid"):
        magic_links.read_token(settings(session_secret="forger"), token)
    later(monkeypatch, 901)
    with pytest.raises(magic_links.LinkRefused, match="expired"):
        magic_links.read_token(s, token)


@pytest.mark.parametrize(("asked", "kept"), [("/keys?x=1", "/keys?x=1"), ("//evil.example", "/"),
                                             ("https://evil.example", "/"), ("/\\evil.example", "/"),
                                             ("", "/"), (None, "/"), ("keys", "/")])
def test_next_is_only_ever_a_path_on_this_site(asked, kept) -> None:
    assert sessions.local_path(asked) == kept


def test_cookies_are_secure_except_on_this_machine_over_http() -> None:
    assert not sessions.secure_cookies(settings())
    assert not sessions.secure_cookies(ApiSettings(public_url="http://localhost:8000"))
    assert sessions.secure_cookies(ApiSettings(public_url="https://studio.example.com"))
    assert sessions.secure_cookies(ApiSettings(public_url="http://studio.example.com"))


def test_admins_are_the_configured_emails_in_any_case() -> None:
    assert sessions.admin_emails(settings(admin_emails=" Ops@Example.com, ,b@example.com")) == {
        "ops@example.com", "b@example.com"}


# --- through a small app: the dependencies as the routes use them ----------------------------

def small_app(store: InMemoryEventLog) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings()
    app.state.resources = SimpleNamespace(store=store)
    sessions.install(app)
    app.add_middleware(sessions.CsrfCookie, secure=False)

    @app.get("/token")
    async def token(request: Request) -> PlainTextResponse:
        return PlainTextResponse(sessions.csrf_token(request))

    @app.post("/change", dependencies=[Depends(sessions.verify_csrf)])
    async def change() -> PlainTextResponse:
        return PlainTextResponse("changed")

    @app.get("/me")
    async def me(user_id: sessions.PageUser) -> PlainTextResponse:
        return PlainTextResponse(user_id)

    @app.get("/signin/as/{user_id}")
    async def sign_in(user_id: str, request: Request) -> PlainTextResponse:
        response = PlainTextResponse("ok")
        generation = await sessions.session_generation(store, user_id)
        sessions.start_session(response, user_id, generation, settings=request.app.state.settings)
        return response

    return app


@pytest.fixture
async def browser():
    store = InMemoryEventLog()
    transport = httpx.ASGITransport(app=small_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        client.store = store
        yield client


async def test_a_signed_out_form_needs_the_token_bound_to_its_own_cookie(browser) -> None:
    assert (await browser.post("/change", data={"csrf_token": "x"})).status_code == 403
    token = (await browser.get("/token")).text
    assert "genrail_csrf" in browser.cookies
    assert (await browser.post("/change", data={"csrf_token": token})).text == "changed"
    assert (await browser.post("/change", headers={"X-CSRF-Token": token})).text == "changed"
    refused = await browser.post("/change", data={"csrf_token": token[:-1] + ("1" if token[-1] == "0" else "0")})
    assert refused.status_code == 403 and "security token" in refused.text
    other = httpx.AsyncClient(transport=browser._transport, base_url="http://127.0.0.1:8000")
    async with other:  # another browser, with a cookie of its own: the first one's token is not its
        await other.get("/token")
        assert (await other.post("/change", data={"csrf_token": token})).status_code == 403


async def test_a_page_needs_a_session_and_sends_the_signed_out_to_sign_in(browser) -> None:
    answer = await browser.get("/me?tab=1")
    assert answer.status_code == 303 and answer.headers["location"] == "/signin?next=/me%3Ftab%3D1"
    await browser.get("/signin/as/u1")
    assert (await browser.get("/me")).text == "u1"
    token = (await browser.get("/token")).text
    assert (await browser.post("/change", data={"csrf_token": token})).text == "changed"


async def test_signing_out_everywhere_ends_every_older_session(browser) -> None:
    await browser.get("/signin/as/u1")
    old_cookie = browser.cookies["genrail_session"]
    await browser.store.append(accounts.sessions_revoked_subject("u1"), accounts.sessions_revoked("u1"))
    assert (await browser.get("/me")).status_code == 303
    await browser.get("/signin/as/u1")  # a new sign-in, at the new generation
    assert (await browser.get("/me")).text == "u1"
    browser.cookies.set("genrail_session", old_cookie)
    assert (await browser.get("/me")).status_code == 303
