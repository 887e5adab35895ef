"""The web studio in a real browser against the whole stack: every page with real data."""

from __future__ import annotations

import io
import re
import time
import uuid
import zipfile

import httpx
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import ADMIN_EMAIL, newest_magic_link, register, screenshot

FINAL = re.compile(r"^(completed|failed|canceled|expired)$")


@pytest.fixture(scope="module")
def shop():
    from tests.sites import ShopSite

    site = ShopSite().start()
    yield site
    site.stop()


def create_job(page, slug: str, fields: dict[str, str]) -> str:
    page.goto("/studio")
    section = page.locator(f"section#{slug}")
    for name, value in fields.items():
        control = section.locator(f"[name={name}]")
        if control.evaluate("el => el.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)
    section.get_by_role("button").click()
    page.wait_for_url(re.compile(r".*/studio/jobs/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[-1]


def wait_final(page, timeout_ms: int = 60_000) -> str:
    status = page.get_by_test_id("job-status")
    expect(status).to_have_text(FINAL, timeout=timeout_ms)
    return status.inner_text()


def adjust_credits(stack, user, amount: int) -> None:
    """An operator's adjustment through the admin API (the tests' ADMIN_TOKEN)."""
    from tests.conftest import TEST_ENV

    answer = httpx.post(f"{stack.api_url}/v1/admin/users/{user.id}/credits", timeout=30,
                        headers={"Authorization": f"Bearer {TEST_ENV['ADMIN_TOKEN']}"},
                        json={"amount": amount, "reason": "browser tests"})
    assert answer.status_code == 201, answer.text


def test_every_job_type_shows_its_result(signed_in, studio_stack, shop):
    page, user = signed_in()
    adjust_credits(studio_stack, user, 100)
    page.goto("/studio")
    screenshot(page, "studio")

    create_job(page, "copy", {"product_name": "Trailblazer 2 boots", "product_description": "Dry feet."})
    assert wait_final(page) == "completed"
    expect(page.get_by_test_id("copy-text").first).not_to_be_empty()
    screenshot(page, "job-copy")

    create_job(page, "scrape", {"url": shop.url("/product")})
    assert wait_final(page) == "completed"
    expect(page.get_by_test_id("scrape-data")).to_be_visible()

    create_job(page, "static-ad", {"headline": "Built for the long way round", "cta": "Shop now"})
    assert wait_final(page) == "completed"
    image = page.locator("#job-result img")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    screenshot(page, "job-static-ad")

    create_job(page, "ugc-video", {"script": "These boots kept my feet dry up Snowdon.", "duration_s": "1"})
    assert wait_final(page) == "completed"
    # A video, or (the local provider's clips) an animated WebP.
    expect(page.locator("#job-result video, #job-result img").first).to_be_visible()

    create_job(page, "tts", {"text": "Meet the Trailblazer 2."})
    assert wait_final(page) == "completed"
    expect(page.locator("#job-result audio")).to_have_count(1)

    page.goto("/")
    expect(page.get_by_text("completed").first).to_be_visible()
    screenshot(page, "dashboard")
    page.goto("/history?type=tts")
    expect(page.locator("tbody tr")).to_have_count(1)
    page.goto("/history?status=failed")
    expect(page.get_by_text("No jobs match.")).to_be_visible()
    page.goto("/history")
    screenshot(page, "history")


def test_a_refused_job_says_why_in_words(signed_in, studio_stack):
    page, user = signed_in()
    page.goto("/studio")
    balance = int(page.get_by_test_id("balance").inner_text())
    adjust_credits(studio_stack, user, -balance)
    page.goto("/studio")
    section = page.locator("section#ugc-video")
    section.locator("[name=script]").fill("Dry feet on any trail.")
    section.get_by_role("button").click()
    expect(section.get_by_role("alert")).to_contain_text(re.compile(r"your balance is 0 and this costs \d+"))
    screenshot(page, "studio-insufficient-credits")
    adjust_credits(studio_stack, user, balance)
    page.goto("/studio")
    section = page.locator("section#scrape")
    section.locator("[name=url]").evaluate("el => el.removeAttribute('required')")
    section.get_by_role("button").click()
    expect(section.get_by_role("alert")).to_contain_text("url")
    assert int(page.get_by_test_id("balance").inner_text()) == balance  # nothing charged


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, format="PNG")
    return out.getvalue()


def test_a_batch_of_five_images_finishes_live_and_downloads(signed_in, tmp_path):
    page, _ = signed_in()
    files = []
    for index in range(5):
        path = tmp_path / f"photo-{index}.png"
        path.write_bytes(png((40 * index, 120, 200 - 30 * index)))
        files.append(str(path))
    page.goto("/batches/new")
    page.set_input_files("#batch-files", files)
    expect(page.locator("#thumbs img")).to_have_count(5)
    page.fill("#batch-prompt", "make it sepia")
    screenshot(page, "batch-new")
    streams = []
    page.on("request", lambda request: streams.append(request.url) if request.url.endswith("/events") else None)
    page.click("#batch-submit")
    page.wait_for_url(re.compile(r".*/batches/[0-9a-f-]{36}$"))
    first_seen = page.get_by_test_id("batch-status").inner_text()
    expect(page.get_by_test_id("batch-status")).to_have_text("completed", timeout=90_000)
    expect(page.locator("#batch-progress img")).to_have_count(5)
    if first_seen == "processing":  # it finished on the page as it was: followed over Server-Sent Events
        assert streams == [page.url + "/events"]
    screenshot(page, "batch")
    with page.expect_download() as download:
        page.get_by_test_id("download-zip").click()
    archive = zipfile.ZipFile(download.value.path())
    assert len(archive.namelist()) == 5


def test_buying_a_pack_lands_on_the_success_page_with_the_new_balance(signed_in):
    page, _ = signed_in()
    page.goto("/credits")
    before = int(page.get_by_test_id("balance").inner_text().split()[0])
    screenshot(page, "credits")
    page.locator("form.card").first.get_by_role("button", name=re.compile("^Buy")).click()
    page.wait_for_url(re.compile(r".*/emulator/stripe/pay/.*"))
    page.get_by_role("button", name="Pay").click()
    page.wait_for_url(re.compile(r".*/billing/success\?session_id=.*"))
    expect(page.get_by_test_id("purchase-done")).to_be_visible(timeout=30_000)
    after = int(page.get_by_test_id("balance").inner_text().split()[0])
    assert after > before
    screenshot(page, "billing-success")
    page.goto("/credits")
    expect(page.get_by_text("purchased").first).to_be_visible()


def test_an_api_key_is_shown_once_works_and_is_revoked(signed_in, studio_stack):
    page, _ = signed_in()
    page.goto("/keys")
    page.fill("#key-name", "shop backend")
    page.get_by_role("button", name="Create key").click()
    api_key = page.get_by_test_id("new-api-key").inner_text().strip()
    screenshot(page, "keys")
    headers = {"Authorization": f"Bearer {api_key}"}
    assert httpx.get(f"{studio_stack.api_url}/v1/credits", headers=headers, timeout=30).status_code == 200
    page.goto("/keys")
    expect(page.get_by_test_id("new-api-key")).to_have_count(0)  # shown once
    row = page.get_by_test_id("key-row").filter(has_text="shop backend")
    row.get_by_role("button", name=re.compile("^Revoke")).click()
    expect(page.get_by_test_id("key-row").filter(has_text="shop backend")).to_contain_text("revoked")
    assert httpx.get(f"{studio_stack.api_url}/v1/credits", headers=headers, timeout=30).status_code == 401


def test_an_admin_retries_a_failed_job(signed_in, studio_stack, shop):
    page, user = signed_in()
    name = "studio-admin-retry"
    shop.failing.add(name)
    job_id = create_job(page, "scrape", {"url": shop.url(f"/flaky/{name}")})
    assert wait_final(page, 90_000) == "failed"
    expect(page.get_by_test_id("refund")).to_be_visible(timeout=30_000)
    shop.failing.discard(name)

    page.goto("/admin")
    expect(page.locator("main")).to_contain_text("only administrators")

    admin = register(studio_stack, ADMIN_EMAIL)
    admin_page, _ = signed_in(admin)
    admin_page.goto("/admin")
    row = admin_page.get_by_test_id(f"admin-job-{job_id}")
    screenshot(admin_page, "admin")
    row.get_by_role("button", name=re.compile("^Retry")).click()
    expect(admin_page.get_by_role("status")).to_contain_text("retried as attempt 2")
    page.goto(f"/studio/jobs/{job_id}")
    assert wait_final(page, 90_000) == "completed"

    admin_page.fill("#adj-user", user.id)
    admin_page.fill("#adj-amount", "7")
    admin_page.fill("#adj-reason", "goodwill")
    admin_page.get_by_role("button", name="Apply adjustment").click()
    expect(admin_page.get_by_role("status")).to_contain_text("by +7")

    # The first attempt's message, dead-lettered when the pipeline gave up on it: a redrive would
    # run a job that has moved on, so it is refused; a discard decides it, once.
    admin_page.goto("/admin")
    letter = admin_page.locator("tr", has_text=f"job.created.scrape.{job_id}")
    expect(letter).to_have_count(1, timeout=30_000)
    letter.get_by_role("button", name=re.compile("^Redrive")).click()
    expect(admin_page.get_by_role("alert")).to_contain_text("refused")
    admin_page.locator("tr", has_text=f"job.created.scrape.{job_id}").get_by_role(
        "button", name=re.compile("^Discard")).click()
    expect(admin_page.get_by_role("status")).to_contain_text("discarded")
    expect(admin_page.locator("tr", has_text=f"job.created.scrape.{job_id}")).to_have_count(0)


def test_two_users_never_see_each_others_data(signed_in):
    alice, _ = signed_in()
    bob, _ = signed_in()
    alice_job = create_job(alice, "copy", {"product_name": "Alice's secret lamp"})
    bob.goto("/history")
    expect(bob.locator("main")).not_to_contain_text("lamp")
    expect(bob.locator("main")).not_to_contain_text(alice_job[:8])
    answer = bob.goto(f"/studio/jobs/{alice_job}")
    assert answer.status == 404
    expect(bob.get_by_role("alert")).to_contain_text("not found")
    alice.goto(f"/studio/jobs/{alice_job}")
    expect(alice.locator("main")).to_contain_text("Alice's secret lamp")


def test_a_forged_csrf_token_is_refused(signed_in):
    page, _ = signed_in()
    page.goto("/keys")
    page.locator("form[action='/keys'] input[name=csrf_token]").evaluate("el => el.value = 'forged'")
    page.fill("#key-name", "forged key")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("main")).to_contain_text("CSRF")
    page.goto("/keys")
    expect(page.get_by_test_id("key-row").filter(has_text="forged key")).to_have_count(0)


def test_pages_work_on_a_phone_sized_screen_and_by_keyboard(signed_in):
    page, _ = signed_in(viewport={"width": 390, "height": 844})
    page.goto("/")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(page, "dashboard-phone")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.goto("/studio")
    page.locator("#copy-product_name").focus()
    page.keyboard.type("Keyboard lamp")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/studio/jobs/[0-9a-f-]{36}$"))


def test_signing_in_through_an_openid_connect_provider(browser, studio_stack, oidc):
    email_address = f"oidc-{uuid.uuid4().hex[:10]}@example.com"
    oidc.user = {"sub": uuid.uuid4().hex, "email": email_address, "email_verified": True}
    context = browser.new_context(base_url=studio_stack.api_url)
    try:
        page = context.new_page()
        page.goto("/keys")  # a signed-in page: to the sign-in page first, and back here after
        page.get_by_role("link", name="Sign in with Local ID").click()
        page.wait_for_url(re.compile(r".*/keys$"))
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        expect(page.locator("main")).to_contain_text("default")  # the first sign-in registered the email
    finally:
        context.close()


def test_a_used_sign_in_link_is_refused(browser, studio_stack):
    user = register(studio_stack)
    context = browser.new_context(base_url=studio_stack.api_url)
    try:
        page = context.new_page()
        started = time.time() - 1
        page.goto("/signin")
        page.locator("input[type=email]").first.fill(user.email)
        page.locator("input[type=email]").first.press("Enter")
        link = newest_magic_link(studio_stack.data_dir / "mailbox", user.email, started)
        page.goto(link)
        page.get_by_role("button", name=re.compile("^Sign in as")).click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        answer = page.goto(link)
        assert answer.status == 400
        expect(page.locator("main")).to_contain_text("used already")
        expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    finally:
        context.close()
