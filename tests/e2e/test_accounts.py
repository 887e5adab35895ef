"""Accounts for the web studio, on a whole stack of this module's own, driven with httpx as a
browser would be (cookies, redirects followed by hand): a link mailed to the stack's mail
catcher signs in once, and a second click, a changed token or an expired one is refused with
nothing changed; OpenID Connect and GitHub sign-in through a local provider speaking the real
protocols end signed in, and an unverified email does not; signing out everywhere ends an
older session; a forged CSRF token is refused; API keys are made (shown once), used, listed
with their last use, revoked (401 at once), and never seen by another account."""

from __future__ import annotations

import asyncio
import re
import uuid
from email import policy
from email.parser import BytesParser
from urllib.parse import urlsplit

import httpx
import pytest
from genrail_events import users

from tests.helpers import driving, own_stack, register, wait_until
from tests.oidc_provider import serving

pytestmark = pytest.mark.e2e
LINK_TTL_S = 8


@pytest.fixture(scope="module")
def provider():
    with serving() as provider:
        yield provider


@pytest.fixture(scope="module")
def accounts_stack(tmp_path_factory, provider):
    env = {"MAGIC_LINK_TTL_S": str(LINK_TTL_S), "SIGNUP_CREDITS_ON": "verified_email", "OIDC_NAME": "Test ID", "OIDC_ISSUER": provider.url,
           "OIDC_CLIENT_ID": provider.client_id, "OIDC_CLIENT_SECRET": provider.client_secret,
           "GITHUB_CLIENT_ID": provider.client_id, "GITHUB_CLIENT_SECRET": provider.client_secret,
           "GITHUB_BASE_URL": provider.url, "GITHUB_API_URL": provider.url}
    with own_stack(tmp_path_factory, "accounts", env) as stack:
        provider.redirect_uris = {f"{stack.api_url}/signin/oauth/{name}/callback" for name in ("oidc", "github")}
        yield stack


@pytest.fixture
async def system(accounts_stack):
    async with driving(accounts_stack, "tests-accounts") as (api, log):
        yield api, log


def browser(stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.api_url, timeout=30, follow_redirects=False)


def token_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'<meta name="csrf-token" content="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def page_csrf(client: httpx.AsyncClient) -> str:
    """This browser's CSRF token, from a page every layout carries it on."""
    page = await client.get("/dev/mailbox")
    assert page.status_code == 200, page.text
    return token_in(page.text)


async def signed_in_as(client: httpx.AsyncClient) -> bool:
    """Whether the browser holds a valid session: /signin sends a signed-in browser on."""
    answer = await client.get("/signin", params={"next": "/somewhere"})
    return answer.status_code == 303 and answer.headers["location"] == "/somewhere"


async def mail_link(stack, client: httpx.AsyncClient, email: str, next_path: str = "/") -> str:
    """Ask for a sign-in link as a browser does; the link, read from the mail catcher's mailbox."""
    form = await client.get("/signin")
    assert form.status_code == 200 and "Email me a sign-in link" in form.text
    sent = await client.post("/signin/email", data={"email": email, "next": next_path,
                                                    "csrf_token": token_in(form.text)})
    assert sent.status_code == 200 and "Check your email" in sent.text, sent.text

    async def arrived() -> str | None:
        for path in sorted(stack.mailbox_dir.glob("*.eml")):
            mail = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            if mail["To"] == email:
                found = re.search(r"(http://\S+/signin/link\?token=\S+)", mail.get_body().get_content())
                path.unlink()
                return found.group(1) if found else None
        return None

    return await wait_until(arrived, timeout_s=10)


async def open_link(client: httpx.AsyncClient, link: str) -> httpx.Response:
    """Open a mailed link, then press its button, as a person does (opening alone spends nothing)."""
    page = await client.get(link)
    assert page.status_code == 200 and "Sign in as" in page.text, page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    return await client.post("/signin/link", data={"token": token, "csrf_token": token_in(page.text)})


async def approved_callback(client: httpx.AsyncClient, provider, name: str, **params) -> str:
    """Start a sign-in with provider `name` in this browser and let the provider approve it: the
    callback URL (path and query) the provider sends the browser back to."""
    start = await client.get(f"/signin/oauth/{name}", params=params)
    authorize = "/login/oauth/authorize?" if name == "github" else "/authorize?"
    assert start.status_code == 302 and start.headers["location"].startswith(provider.url + authorize), start.text
    async with httpx.AsyncClient(timeout=30) as at_provider:
        approved = await at_provider.get(start.headers["location"])
    assert approved.status_code == 302, approved.text
    back = urlsplit(approved.headers["location"])
    return f"{back.path}?{back.query}"


async def user_events(log, email: str) -> list[str]:
    user_id = users.user_id_for(email)
    return [s.event.type for s in await log.read(f"user.*.{user_id}")]


def new_email() -> str:
    return f"studio-{uuid.uuid4().hex[:10]}@example.com"


async def test_a_mailed_link_signs_up_and_in_once_and_never_again(system, accounts_stack):
    _api, log = system
    email = new_email()
    async with browser(accounts_stack) as client:
        link = await mail_link(accounts_stack, client, email, next_path="/keys")
        assert link.startswith(accounts_stack.api_url)
        answer = await open_link(client, link)
        assert answer.status_code == 303 and answer.headers["location"] == "/keys"
        cookie = answer.headers["set-cookie"]
        assert "genrail_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert await signed_in_as(client)
        assert await user_events(log, email) == ["user.registered", "user.signed_in"]
        await wait_until(lambda: log.exists(f"ledger.{users.user_id_for(email)}.granted.signup"), timeout_s=10)

    async with browser(accounts_stack) as other:  # the same link again, from anywhere: refused
        again = await other.get(link)
        assert again.status_code == 400 and "used already" in again.text and "Nothing was changed" in again.text
        assert "genrail_session" not in again.headers.get("set-cookie", "")
        assert not await signed_in_as(other)
    assert await user_events(log, email) == ["user.registered", "user.signed_in"]

    async with browser(accounts_stack) as client:  # a second link signs in; no second registration
        assert (await open_link(client, await mail_link(accounts_stack, client, email))).status_code == 303
    assert await user_events(log, email) == ["user.registered", "user.signed_in", "user.signed_in"]


async def test_opening_a_link_spends_nothing_and_its_button_needs_this_browsers_token(system, accounts_stack):
    _api, log = system
    email = new_email()
    async with browser(accounts_stack) as client:
        link = await mail_link(accounts_stack, client, email)
        async with browser(accounts_stack) as scanner:  # a mail scanner opens every link first
            assert (await scanner.get(link)).status_code == 200
            assert (await scanner.get(link)).status_code == 200
            token = link.split("token=")[1]
            forged = await scanner.post("/signin/link", data={"token": token, "csrf_token": "forged"})
            assert forged.status_code == 403 and not await signed_in_as(scanner)
        assert await user_events(log, email) == []
        assert (await open_link(client, link)).status_code == 303 and await signed_in_as(client)


async def test_an_inbox_cannot_be_flooded_through_the_sign_in_form(accounts_stack):
    email = new_email()
    async with browser(accounts_stack) as client:
        token = token_in((await client.get("/signin")).text)
        answers = [await client.post("/signin/email", data={"email": email, "csrf_token": token}) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert "sign-in mails to one email address" in answers[-1].text
    sent = [p for p in accounts_stack.mailbox_dir.glob("*.eml") if email in p.read_text(errors="replace")]
    assert len(sent) == 5


async def test_free_credits_wait_for_a_proven_email(system, accounts_stack):
    api, log = system
    unproven = await register(api)  # POST /v1/users proves no email: no grant
    email = new_email()
    async with browser(accounts_stack) as client:
        assert (await open_link(client, await mail_link(accounts_stack, client, email))).status_code == 303
    await wait_until(lambda: log.exists(f"ledger.{users.user_id_for(email)}.granted.signup"), timeout_s=10)
    assert not await log.exists(f"ledger.{unproven.id}.granted.signup")
    assert (await api.get("/v1/credits", headers=unproven.headers)).json()["balance"] == 0


async def test_a_changed_or_expired_link_is_refused_and_changes_nothing(system, accounts_stack):
    _api, log = system
    email = new_email()
    async with browser(accounts_stack) as client:
        link = await mail_link(accounts_stack, client, email)
        start, token = link.split("token=")
        changed = await client.get(f"{start}token={token[:-4]}{'AAAA' if token[-4:] != 'AAAA' else 'BBBB'}")
        assert changed.status_code == 400 and "not valid" in changed.text
        forged = await client.get("/signin/link", params={"token": "e30.forged.signature"})
        assert forged.status_code == 400
        await asyncio.sleep(LINK_TTL_S + 1.5)
        expired = await client.get(link)
        assert expired.status_code == 400 and "expired" in expired.text
        assert not await signed_in_as(client)
    assert await user_events(log, email) == []


async def test_openid_connect_signs_in_a_verified_email_only(system, accounts_stack, provider):
    _api, log = system
    email = new_email()
    provider.user = {"sub": uuid.uuid4().hex, "email": email, "email_verified": True}
    async with browser(accounts_stack) as client:
        page = await client.get("/signin")
        assert "Sign in with Test ID" in page.text and "Sign in with GitHub" in page.text
        done = await client.get(await approved_callback(client, provider, "oidc", next="/studio"))
        assert done.status_code == 303 and done.headers["location"] == "/studio", done.text
        assert await signed_in_as(client)
    assert await user_events(log, email) == ["user.registered", "user.signed_in"]
    [signed] = [s.event for s in await log.read(f"user.signed_in.{users.user_id_for(email)}")]
    assert signed.data.method == "oidc"

    unverified = new_email()
    provider.user = {"sub": uuid.uuid4().hex, "email": unverified, "email_verified": False}
    async with browser(accounts_stack) as client:
        refused = await client.get(await approved_callback(client, provider, "oidc"))
        assert refused.status_code == 400 and "not verified" in refused.text
        assert not await signed_in_as(client)
    assert await user_events(log, unverified) == []


async def test_a_provider_in_trouble_is_a_page_in_words_and_changes_nothing(system, accounts_stack, provider):
    _api, log = system
    email = new_email()
    provider.user = {"sub": uuid.uuid4().hex, "email": email, "email_verified": True}
    async with browser(accounts_stack) as client:
        callback = await approved_callback(client, provider, "oidc")
        provider.outage = True
        try:
            answer = await client.get(callback)
        finally:
            provider.outage = False
        assert answer.status_code == 503 and "could not be reached" in answer.text, answer.text
        assert not await signed_in_as(client)
    assert await user_events(log, email) == []


async def test_a_callback_not_started_by_this_browser_is_refused(system, accounts_stack, provider):
    provider.user = {"sub": uuid.uuid4().hex, "email": new_email(), "email_verified": True}
    async with browser(accounts_stack) as victim, browser(accounts_stack) as attacker:
        callback = await approved_callback(attacker, provider, "oidc")
        forced = await victim.get(callback)  # the attacker's code, in the victim's browser
        assert forced.status_code == 400 and not await signed_in_as(victim)


async def test_github_signs_in_its_primary_verified_email_only(system, accounts_stack, provider):
    _api, log = system
    email = new_email()
    provider.github_emails = [{"email": "other@example.com", "primary": False, "verified": True},
                              {"email": email, "primary": True, "verified": True}]
    async with browser(accounts_stack) as client:
        done = await client.get(await approved_callback(client, provider, "github"))
        assert done.status_code == 303, done.text
        assert await signed_in_as(client)
    [signed] = [s.event for s in await log.read(f"user.signed_in.{users.user_id_for(email)}")]
    assert signed.data.method == "github"

    unverified = new_email()
    provider.github_emails = [{"email": unverified, "primary": True, "verified": False}]
    async with browser(accounts_stack) as client:
        refused = await client.get(await approved_callback(client, provider, "github"))
        assert refused.status_code == 400 and "no verified primary email" in refused.text
    assert await user_events(log, unverified) == []


async def test_signing_out_everywhere_ends_an_older_session_and_a_forged_token_changes_nothing(
        system, accounts_stack):
    _api, log = system
    email = new_email()
    async with browser(accounts_stack) as laptop, browser(accounts_stack) as phone:
        assert (await open_link(laptop, await mail_link(accounts_stack, laptop, email))).status_code == 303
        assert (await open_link(phone, await mail_link(accounts_stack, phone, email))).status_code == 303
        assert await signed_in_as(laptop) and await signed_in_as(phone)

        forged = await laptop.post("/signout/everywhere", data={"csrf_token": "forged"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        stolen = await laptop.post("/signout/everywhere", data={"csrf_token": await page_csrf(phone)})
        assert stolen.status_code == 403  # another session's token is not this one's
        assert "user.sessions_revoked" not in await user_events(log, email)
        assert await signed_in_as(phone)

        out = await laptop.post("/signout/everywhere", data={"csrf_token": await page_csrf(laptop)})
        assert out.status_code == 303 and out.headers["location"] == "/signin"
        assert not await signed_in_as(phone) and not await signed_in_as(laptop)
        assert "user.sessions_revoked" in await user_events(log, email)

        assert (await open_link(phone, await mail_link(accounts_stack, phone, email))).status_code == 303
        assert await signed_in_as(phone)  # a new sign-in works after
        out = await phone.post("/signout", data={"csrf_token": await page_csrf(phone)})
        assert out.status_code == 303 and not await signed_in_as(phone)


async def test_an_unsigned_email_form_is_refused(accounts_stack):
    async with browser(accounts_stack) as client:
        await client.get("/signin")
        refused = await client.post("/signin/email", data={"email": new_email(), "csrf_token": "forged"})
        assert refused.status_code == 403


async def test_keys_are_made_used_listed_revoked_and_private_to_their_account(system):
    api, _log = system
    owner, stranger = await register(api), await register(api)
    made = await api.post("/v1/keys", json={"name": "ci"}, headers=owner.headers)
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["name"] == "ci" and key["api_key"].startswith("gr_") and key["prefix"] == key["api_key"][:8]
    ci = {"Authorization": f"Bearer {key['api_key']}"}
    assert (await api.get("/v1/credits", headers=ci)).status_code == 200

    async def listed_with_use() -> list | None:
        listed = (await api.get("/v1/keys", headers=owner.headers)).json()["items"]
        ours = [k for k in listed if k["key_id"] == key["key_id"]]
        return listed if ours and ours[0]["last_used_at"] else None

    listed = await wait_until(listed_with_use, timeout_s=10)
    assert sorted(k["name"] for k in listed) == ["ci", "default"]
    assert all("api_key" not in k and k["revoked_at"] is None for k in listed)

    theirs = (await api.get("/v1/keys", headers=stranger.headers)).json()["items"]
    assert [k["name"] for k in theirs] == ["default"] and key["key_id"] not in {k["key_id"] for k in theirs}
    assert (await api.delete(f"/v1/keys/{key['key_id']}", headers=stranger.headers)).status_code == 404
    assert (await api.get("/v1/credits", headers=ci)).status_code == 200

    assert (await api.delete(f"/v1/keys/{key['key_id']}", headers=owner.headers)).status_code == 204
    refused = await api.get("/v1/credits", headers=ci)
    assert refused.status_code == 401 and refused.headers["content-type"].startswith("application/problem+json")
    assert (await api.delete(f"/v1/keys/{key['key_id']}", headers=owner.headers)).status_code == 204
    assert (await api.get("/v1/credits", headers=owner.headers)).status_code == 200  # the other key still works
    [revoked] = [k for k in (await api.get("/v1/keys", headers=owner.headers)).json()["items"] if k["name"] == "ci"]
    assert revoked["revoked_at"] is not None
    assert (await api.post("/v1/keys", json={"name": ""}, headers=owner.headers)).status_code == 422
    assert (await api.get("/v1/keys")).status_code == 401


async def test_the_mailbox_is_only_served_when_the_stack_catches_mail(accounts_stack):
    async with browser(accounts_stack) as client:
        email = new_email()
        await client.post("/signin/email", data={"email": email, "csrf_token": token_in((await client.get(
            "/signin")).text)})

        async def listed() -> str | None:
            page = await client.get("/dev/mailbox")
            return page.text if email in page.text else None

        page = await wait_until(listed, timeout_s=10)
        name = re.search(r'href="/dev/mailbox/([^"]+\.eml)"', page).group(1)
        mail = await client.get(f"/dev/mailbox/{name}")
        assert mail.status_code == 200 and "/signin/link?token=" in mail.text
        assert (await client.get("/dev/mailbox/..%2Fsecrets.json")).status_code == 404
