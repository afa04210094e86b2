"""The console in real headless Chromium (Debian's, driven by Playwright: no browser download), against the
real local engine processing traffic: log in, watch the overview move, claim an alert, confirm fraud by
keyboard, see the label in the table and on the topic, a second analyst sees the case locked, log out.
Screenshots of every page go to ``<state_dir>/test-output/console-browser/``."""

from __future__ import annotations

import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
from console_harness import read_topic
from local_engine_harness import model_state_dir, new_run, stop, stream, wait_for_rows
from playwright.sync_api import Browser, Page, expect, sync_playwright

from fraudstream.config import Settings
from fraudstream.console.auth import create_user
from fraudstream.console.server import BackgroundConsole

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def _log_in(page: Page, url: str, username: str, shots: Path) -> None:
    page.goto(url)
    expect(page).to_have_url(f"{url}login?next=/")
    page.screenshot(path=shots / "01-login.png")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login")
    expect(page.locator("#whoami")).to_contain_text(username)


def test_an_analyst_works_an_alert_in_the_browser(postgres_ready: Settings, database: psycopg.Connection,
                                                  browser: Browser, tmp_path: Path) -> None:
    shots = postgres_ready.state_dir / "test-output" / "console-browser"
    shots.mkdir(parents=True, exist_ok=True)
    run = new_run(postgres_ready, model_state_dir(postgres_ready), tmp_path / "logs")
    tag = uuid.uuid4().hex[:8]
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    for name in (alice, bob):
        create_user(database, name, PASSWORD, "analyst")
    settings = run.settings.model_copy(update={"console_port": _free_port(), "console_overview_interval_s": 1.0})
    prefix = f"browser-{run.group}-"
    events = stream(20_000, prefix)
    processor = run.start("browser")
    console = BackgroundConsole(settings, create_admin=False).start()
    stop_traffic = threading.Event()

    def traffic() -> None:  # the engine keeps processing while the browser watches
        for start in range(2_000, len(events), 500):
            if stop_traffic.wait(0.5):
                return
            run.publish(events.iloc[start:start + 500])

    sender = threading.Thread(target=traffic, daemon=True)
    try:
        run.publish(events.iloc[:2_000])
        assert wait_for_rows(database, prefix, 2_000, 180, (processor,)) == 2_000
        page = browser.new_context().new_page()
        _log_in(page, console.url, alice, shots)

        # live overview: the numbers arrive and then change within 10 s while traffic flows
        sender.start()
        events_per_second = page.locator('[data-field="events_per_second"]')
        expect(events_per_second).not_to_have_text("–", timeout=30_000)  # the first snapshot
        first = events_per_second.inner_text()
        expect(events_per_second).not_to_have_text(first, timeout=10_000)
        expect(page.locator('[data-field="model"]')).not_to_contain_text("– · –")
        page.wait_for_timeout(1_500)  # one more refresh so the charts have drawn
        page.screenshot(path=shots / "02-overview.png", full_page=True)

        # the queue: this run's highest-scored alert, claimed from its row
        case, merchant = database.execute(
            "SELECT transaction_id, merchant_id FROM transactions WHERE transaction_id LIKE %s"
            " AND decision <> 'approve' ORDER BY score DESC LIMIT 1", (prefix + "%",)).fetchone()
        page.click("text=Alert queue")
        page.fill("input[name=merchant_id]", merchant)
        page.select_option("select[name=order]", "score")
        page.click("button:has-text('Filter')")
        row = page.locator(f"tr[data-transaction='{case}']")
        expect(row).to_be_visible()
        page.wait_for_selector("html[data-console-ready]", state="attached")  # htmx and the handlers are loaded
        row.locator("button.claim-button").click()
        expect(row.locator("td.claim")).to_contain_text(f"locked by {alice}")
        page.screenshot(path=shots / "03-queue-claimed.png", full_page=True)

        # a second analyst, in a context of their own, sees it locked
        other = browser.new_context().new_page()
        _log_in(other, console.url, bob, shots)
        other.goto(f"{console.url}transactions/{case}")
        expect(other.locator("#claim-status")).to_contain_text(f"Claimed by {alice}")
        other.click("#claim")
        expect(other.locator("#error-detail")).to_contain_text(f"claimed by {alice}")
        other.screenshot(path=shots / "04-locked-for-another-analyst.png", full_page=True)

        # the transaction page, and a confirmed-fraud verdict by keyboard shortcut
        row.locator(f"a:has-text('{case}')").click()
        expect(page.locator("#transaction-id")).to_have_text(case)
        expect(page.locator("#features tr")).not_to_have_count(1)
        expect(page.locator("#reasons li").first).not_to_be_empty()
        page.screenshot(path=shots / "05-transaction.png", full_page=True)
        page.wait_for_selector("html[data-console-ready]", state="attached")  # the shortcut handler is attached
        page.keyboard.press("f")
        expect(page.locator("#label")).to_contain_text("fraud from analyst")
        expect(page.locator("#verdicts")).to_contain_text(alice)
        page.screenshot(path=shots / "06-verdict-given.png", full_page=True)

        label = database.execute("SELECT is_fraud, source FROM labels WHERE transaction_id = %s", (case,)).fetchone()
        assert label == (True, "analyst")
        messages = [orjson.loads(value) for value in _topic_values(settings, settings.labels_topic)]
        assert [(m["transaction_id"], m["is_fraud"], m["source"]) for m in messages] == [(case, True, "analyst")]

        page.click("text=Models")
        expect(page.locator("#models")).to_contain_text("production")
        page.screenshot(path=shots / "07-models.png", full_page=True)
        page.click("#logout")
        expect(page).to_have_url(f"{console.url}login")
        page.goto(f"{console.url}queue")
        expect(page).to_have_url(f"{console.url}login?next=/queue")
    except Exception:
        for number, context in enumerate(browser.contexts):
            for opened in context.pages:
                opened.screenshot(path=shots / f"failure-{number}.png", full_page=True)
        raise
    finally:
        stop_traffic.set()
        if sender.is_alive():
            sender.join(10)
        console.stop()
        assert stop(processor) == 0


def _topic_values(settings: Settings, topic: str) -> list[bytes]:
    """Every message on the topic, read back by a consumer of its own."""
    deadline = time.monotonic() + 15
    values = read_topic(settings, topic, 1)
    while not values and time.monotonic() < deadline:
        values = read_topic(settings, topic, 1)
    return values
