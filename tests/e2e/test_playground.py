"""The playground page in a real headless browser (Debian's chromium, driven by Playwright) against
the local stack: paste a key, refuse a value, make a video, watch it play, find it in the list with
its thumbnail (loaded from its presigned S3 link) and read where its webhook went. Each state is
photographed at 390 and 1280 px wide into tests/e2e/output/playground/ (git ignores it; the README's
docs/img/playground.png is 08-detail-desktop.png, playground-phone.png 04-refused-size-phone.png),
and axe-core (bundled by axe-playwright-python) checks each state for accessibility violations.

The page's CSP stays on: axe is injected through the driver's evaluation (the devtools protocol),
which a page's CSP does not govern, and the test fails on any CSP violation the page itself causes.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright
from standardwebhooks import Webhook

from devstack import processes
from devstack.receiver import WebhookReceiver
from devstack.stack import DevStack
from devstack.template import ROOT

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright's own browser download is never used
OUTPUT = ROOT / "tests" / "e2e" / "output" / "playground"
WIDTHS = {"phone": (390, 844), "desktop": (1280, 900)}
MODEL, SECONDS = "seedance-1.5-pro", 4
WAIT_MS = 30_000
NO_VALUE = "\u2013"  # what the page shows for a time or duration it does not have


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is not installed ({CHROMIUM}): `scripts/install-browser.sh` (`make test` runs it). "
            "The playground's browser test never skips."
        )
    with sync_playwright() as playwright:
        # Tests talk only to 127.0.0.1: no proxy, whatever the environment says.
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-proxy-server"]
        )
        yield launched
        launched.close()


class Watched:
    """What the page did that the test must see: CSP violations, script errors, every request."""

    def __init__(self, page: Page) -> None:
        self.console: list[str] = []
        self.errors: list[str] = []
        self.requests: list[Request] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(request))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console.append(message.text)

    def csp_violations(self) -> list[str]:
        return [text for text in self.console if "Content Security Policy" in text]


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, Watched]]:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport=dict(zip(("width", "height"), WIDTHS["desktop"], strict=True)))
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    watched = Watched(opened)
    yield opened, watched
    context.close()
    assert not watched.errors, watched.errors
    assert not watched.csp_violations(), watched.csp_violations()


def page_url(stack: DevStack) -> str:
    return stack.api_url + "/"


def check_state(page: Page, name: str) -> None:
    """Photograph this state at both widths, check it fits the phone's width, and run axe on it."""
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} at {width} px is {overflow} px too wide"
        page.screenshot(path=OUTPUT / f"{name}-{label}.png", full_page=True)
        results = Axe().run(page)
        violations = [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
            for v in results.response["violations"]
        ]
        assert not violations, f"axe at {width} px in {name}: {json.dumps(violations, indent=1)}"
    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["desktop"], strict=True)))


def use_key(page: Page, key: str) -> None:
    page.get_by_label("Your API key").fill(key)
    page.get_by_role("button", name="Use this key").click()


def accepts_multipart(stack: DevStack) -> bool:
    """Whether this API reads a multipart create (the page should offer the upload then)."""
    with processes.local_http(stack.api_url, headers={"x-api-key": stack.api_key}) as client:
        answer = client.post("/v1/videos", files={"model": (None, MODEL)})
    assert answer.status_code == 400, answer.text
    return answer.json()["error"]["code"] != "invalid_json"


def test_a_refused_key_is_shown_next_to_the_key_field(page: tuple[Page, Watched], stack: DevStack) -> None:
    browser_page, watched = page
    browser_page.goto(page_url(stack))
    check_state(browser_page, "01-start")

    # When
    use_key(browser_page, "not-a-key-of-this-stack")

    # Then
    error = browser_page.locator("#api-key-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("This key was refused")
    expect(error).to_contain_text("UNAUTHORIZED")  # the tenant authorizer's refusal (API Gateway's code)
    expect(browser_page.locator("#api-key")).to_have_attribute("aria-invalid", "true")
    expect(browser_page.locator("#create-panel")).to_be_hidden()
    assert browser_page.evaluate("sessionStorage.length") == 0  # a refused key is not kept
    check_state(browser_page, "02-bad-key")
    assert any(r.headers.get("authorization") == "Bearer not-a-key-of-this-stack" for r in watched.requests)


def test_make_a_video_watch_it_and_see_its_webhook_attempts(
    page: tuple[Page, Watched], stack: DevStack, receiver: WebhookReceiver, videos: Any
) -> None:
    browser_page, watched = page
    # Given more videos than one page of 5 holds, so that paging has somewhere to go
    for number in range(5):
        videos.create(f"an earlier video {number}", model=MODEL, seconds=str(SECONDS))
    browser_page.goto(page_url(stack))

    # When the key is pasted
    use_key(browser_page, stack.api_key)

    # Then the form is built from the catalogue
    expect(browser_page.locator("#create-panel")).to_be_visible()
    model = browser_page.get_by_label("Model")
    model.select_option(MODEL)
    catalogue = videos.client.get(f"/v1/models/{MODEL}").json()
    sizes = browser_page.locator("#size option").all_inner_texts()
    assert sizes == catalogue["sizes"]
    seconds = browser_page.locator("#seconds option").evaluate_all("options => options.map(o => o.value)")
    assert seconds == [str(value) for value in catalogue["seconds"]]
    expect(browser_page.locator("#model-facts")).to_contain_text("per second")
    expect(browser_page.locator("#estimate")).to_contain_text(f"{catalogue['default_seconds']} s \u00d7 $")
    # The upload field shows exactly when the API reads multipart/form-data (not yet on main).
    upload = expect(browser_page.locator("#upload-field"))
    upload.to_be_visible() if accepts_multipart(stack) else upload.to_be_hidden()
    check_state(browser_page, "03-form")

    # When a size the model does not offer is sent (the select offers none such: the DOM is edited)
    browser_page.get_by_label("Prompt").fill("A paper boat drifting down a rainy street")
    browser_page.evaluate(
        """() => {
            const select = document.getElementById("size");
            select.append(new Option("999x999", "999x999"));
            select.value = "999x999";
        }"""
    )
    browser_page.get_by_role("button", name="Create the video").click()

    # Then the API's 400 is shown next to the size
    size_error = browser_page.locator("#size-error")
    expect(size_error).to_be_visible()
    expect(size_error).to_contain_text("999x999")
    expect(browser_page.get_by_label("Size")).to_have_attribute("aria-invalid", "true")
    expect(browser_page.locator("#task-panel")).to_be_hidden()
    check_state(browser_page, "04-refused-size")

    # When a valid video is made, with a callback URL whose first delivery is refused
    browser_page.get_by_label("Size").select_option("1280x720")
    browser_page.get_by_label("Seconds").select_option(str(SECONDS))
    browser_page.get_by_label("Callback URL (optional)").fill(receiver.url_failing(1))
    browser_page.evaluate(
        """() => {
            window.seenStatuses = [];
            const status = document.getElementById("task-status");
            new MutationObserver(() => window.seenStatuses.push(status.textContent)).observe(
                status, {childList: true, characterData: true, subtree: true});
        }"""
    )
    browser_page.get_by_role("button", name="Create the video").click()

    # Then its status is followed live until it completes
    expect(browser_page.locator("#size-error")).to_be_hidden()
    expect(browser_page.locator("#task-panel")).to_be_visible()
    video_id = browser_page.locator("#task-id").inner_text()
    assert re.fullmatch(r"video_[0-9a-f]{32}", video_id)
    check_state(browser_page, "05-in-progress")
    expect(browser_page.locator("#task-panel")).to_have_attribute("data-status", "completed", timeout=WAIT_MS)
    seen = browser_page.evaluate("window.seenStatuses")
    assert seen[0].startswith(("Queued", "In progress")) and seen[-1] == "Completed", seen

    # And the <video> plays the MP4 from its presigned link
    player = browser_page.locator("#player")
    expect(player).to_be_visible()
    browser_page.evaluate(
        "() => { const v = document.getElementById('player'); v.muted = true; return v.play(); }"
    )
    browser_page.wait_for_function(
        "() => { const v = document.getElementById('player'); return v.readyState >= 2 && v.currentTime > 0; }"
    )
    duration = player.evaluate("v => v.duration")
    assert abs(duration - SECONDS) < 0.5, duration
    src = player.evaluate("v => v.currentSrc")
    assert src.startswith(stack.moto_url) and f"/videos/{video_id}/" in src
    expect(browser_page.get_by_role("link", name="Download the MP4")).to_have_attribute("href", src)
    player.evaluate("v => v.pause()")
    check_state(browser_page, "06-completed")

    # And "My videos" lists it first, with its facts, and pages through the rest
    browser_page.get_by_label("Per page").select_option("5")
    first = browser_page.locator("#videos li").first
    expect(first).to_have_attribute("data-id", video_id)
    expect(first).to_have_attribute("data-status", "completed")
    expect(first).to_contain_text(f"completed · {MODEL} · {SECONDS} s · 1280x720 · $")
    # ... with its thumbnail, loaded by the <img> itself from the presigned link the list handed out
    thumbnail = first.locator("img")
    expect(thumbnail).to_have_attribute("alt", f"Thumbnail of {video_id}")
    browser_page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle()
    )
    listed = videos.client.get("/v1/videos", params={"limit": 1}).json()["data"][0]
    assert listed["id"] == video_id and listed["thumbnail_url"]
    thumbnail_src = thumbnail.evaluate("img => img.currentSrc")
    assert urlsplit(thumbnail_src)[:3] == urlsplit(listed["thumbnail_url"])[:3]  # the same object
    assert thumbnail_src.startswith(stack.moto_url) and unquote(thumbnail_src).count(".thumbnail.webp") == 1
    [fetched] = [r for r in watched.requests if r.url == thumbnail_src]
    assert "authorization" not in fetched.headers  # the link is its own authority
    assert fetched.response().headers["content-type"] == "image/webp"
    expect(browser_page.locator("#videos li")).to_have_count(5)
    older = browser_page.get_by_role("button", name="Older")
    expect(older).to_be_enabled()
    check_state(browser_page, "07-list")
    older.click()
    expect(browser_page.locator("#list-status")).to_have_text("Page 2")
    expect(browser_page.locator(f'#videos li[data-id="{video_id}"]')).to_have_count(0)
    browser_page.get_by_role("button", name="Newer").click()
    expect(browser_page.locator("#videos li").first).to_have_attribute("data-id", video_id)

    # When its details are opened
    browser_page.get_by_role("button", name=f"Details of {video_id}").click()

    # Then they show its settings, each stage's time and both webhook attempts
    detail = browser_page.locator("#detail-panel")
    expect(detail).to_have_attribute("data-settled", "true", timeout=WAIT_MS)
    expect(browser_page.locator("#detail-settings")).to_contain_text(receiver.url_failing(1))
    timings = browser_page.locator("#detail-timings tbody tr")
    expect(timings).to_have_count(3)
    for row in range(3):
        expect(timings.nth(row).locator("td").first).not_to_have_text(NO_VALUE)
    attempts = browser_page.locator("#detail-webhook tbody tr")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_have_attribute("data-outcome", "failed")
    expect(attempts.nth(0).locator("td").nth(2)).to_have_text("503")
    expect(attempts.nth(0).locator("td").nth(5)).not_to_have_text(NO_VALUE)  # when it was retried
    expect(attempts.nth(1)).to_have_attribute("data-outcome", "delivered")
    expect(attempts.nth(1).locator("td").nth(2)).to_have_text("200")
    expect(browser_page.locator("#detail-webhook-state")).to_contain_text("delivered")
    # ... which is what the receiver saw: one refused, then one accepted, both signed with the
    # owner tenant's secret (the receiver fixture checks with the service-wide one, which no
    # tenant's webhook is signed with since per-tenant secrets)
    deliveries = receiver.deliveries_for(video_id)
    assert [d.answered for d in deliveries] == [503, 200]
    owner = next(created for created in stack.tenants if created.tenant.tenant_id == stack.tenant_id)
    for delivery in deliveries:
        assert Webhook(owner.webhook_secret).verify(delivery.body, delivery.headers)["data"]["id"] == video_id
    check_state(browser_page, "08-detail")

    # The key went only in the Authorization header, and stayed in this tab's session storage
    api_calls = [r for r in watched.requests if "/v1/" in r.url]
    assert api_calls and all(r.headers.get("authorization") == f"Bearer {stack.api_key}" for r in api_calls)
    assert not any("x-api-key" in r.headers for r in api_calls)
    assert not any(stack.api_key in r.url for r in watched.requests)
    assert browser_page.evaluate("localStorage.length") == 0
    assert browser_page.evaluate("Object.values(sessionStorage)") == [stack.api_key]
