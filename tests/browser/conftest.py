"""Browser tests of the web studio: Playwright's chromium (Debian's, at /usr/bin/chromium, or
GENRAIL_CHROMIUM) against a whole stack of this package's own. Without Chromium they are skipped.

GENRAIL_SCREENSHOTS=1 saves the main pages to docs/screenshots/."""

from __future__ import annotations

import email
import os
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.helpers import own_stack
from tests.oidc_provider import serving

CHROMIUM = Path(os.environ.get("GENRAIL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN_EMAIL = "admin-studio@example.com"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
NO_CHROMIUM = (f"no Chromium at {CHROMIUM}: install it (apt-get install -y chromium) or point GENRAIL_CHROMIUM "
               "at one to run the browser tests")
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            if not CHROMIUM.exists():
                item.add_marker(pytest.mark.skip(reason=NO_CHROMIUM))


@pytest.fixture(scope="package")
def oidc():
    """A local OpenID Connect provider speaking the real protocol (tests/oidc_provider.py)."""
    with serving() as provider:
        yield provider


@pytest.fixture(scope="package")
def studio_stack(tmp_path_factory, oidc):
    env = {"ADMIN_EMAILS": ADMIN_EMAIL, "OIDC_NAME": "Local ID", "OIDC_ISSUER": oidc.url,
           "OIDC_CLIENT_ID": oidc.client_id, "OIDC_CLIENT_SECRET": oidc.client_secret}
    with own_stack(tmp_path_factory, "studio", env=env) as stack:
        oidc.redirect_uris = {f"{stack.api_url}/signin/oauth/oidc/callback"}
        yield stack


@pytest.fixture(scope="package")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class StudioUser:
    def __init__(self, stack, user_id: str, email_address: str, api_key: str):
        self.stack, self.id, self.email, self.api_key = stack, user_id, email_address, api_key


def register(stack, email_address: str | None = None) -> StudioUser:
    email_address = email_address or f"studio-{uuid.uuid4().hex[:10]}@example.com"
    answer = httpx.post(f"{stack.api_url}/v1/users", json={"email": email_address}, timeout=30)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return StudioUser(stack, body["user_id"], email_address, body["api_key"])


def newest_magic_link(mailbox: Path, to: str, after: float, timeout_s: float = 20) -> str:
    """The sign-in link in the newest mail to `to` that reached the stack's mail catcher."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in sorted(mailbox.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True):
            if path.stat().st_mtime < after:
                break
            message = email.message_from_bytes(path.read_bytes())
            if to.lower() not in (message["To"] or "").lower():
                continue
            body = message.get_body(("plain",)) if hasattr(message, "get_body") else None
            text = (body or message).get_payload(decode=True).decode() if not message.is_multipart() or body else ""
            if match := re.search(r"https?://\S+/signin/link\S*", text):
                return match.group(0)
        time.sleep(0.2)
    raise AssertionError(f"no sign-in mail to {to} in {mailbox} after {timeout_s}s")


def sign_in_by_mail(page, stack, email_address: str) -> None:
    """The whole sign-in as a person does it: ask for a link, open it from the mailbox."""
    started = time.time() - 1
    page.goto(f"{stack.api_url}/signin")
    page.locator("input[type=email]").first.fill(email_address)
    page.locator("input[type=email]").first.press("Enter")
    link = newest_magic_link(stack.data_dir / "mailbox", email_address, started)
    page.goto(link)
    page.get_by_role("button", name=re.compile("^Sign in as")).click()
    page.wait_for_url(re.compile(r".*/(\?.*)?$|.*/studio.*|.*/keys.*"))


@pytest.fixture
def signed_in(browser, studio_stack):
    """A new user, signed in by magic link in a browser context of its own: (page, user)."""
    contexts = []

    def open_as(user: StudioUser | None = None, *, viewport=None):
        user = user or register(studio_stack)
        context = browser.new_context(base_url=studio_stack.api_url, accept_downloads=True,
                                      viewport=viewport or {"width": 1200, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        sign_in_by_mail(page, studio_stack, user.email)
        return page, user

    yield open_as
    for context in contexts:
        context.close()


def screenshot(page, name: str) -> None:
    if os.environ.get("GENRAIL_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
