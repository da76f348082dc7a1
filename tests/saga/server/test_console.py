"""The web console in a real browser: Debian's Chromium, headless, driven by Playwright
(SAGA_CHROMIUM names another browser). An operator opens the list, finds the saga that
waits for its pick, sends the signal from its page (confirming in the dialog), and sees it
complete; a screenshot of every page is written to the test's output folder. Against a
server that wants tokens, the console asks for one once, and for an operate token when
the read token cannot act."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from saga.config import Settings
from saga.dev.stack import Stack
from saga.engine.inputs import StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.kafka.topics import admin_client, create_topics, load_specs
from tests.kafka_harness import in_ci
from tests.saga.server.test_api import ready
from tests.system import STOCK, order, running_stack, wait_terminal

#: What Chromium needs as root in a sandbox with no network beyond loopback.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium() -> str:
    found = os.environ.get("SAGA_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if found is None:
        message = ("the console test needs Chromium: apt-get install chromium (.ci/run does), "
                   "or SAGA_CHROMIUM=/path/to/chrome")
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_an_operator_signals_a_waiting_saga_from_the_console(settings: Settings,
                                                             tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    browser_path = chromium()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with running_stack(settings) as stack:
        stack.start(stack.add_server("web").name)
        for saga_id in ("done-1", "done-2"):
            stack.send(saga_id, StartSaga("order", {**order(saga_id), "pick_timeout_s": 1}))
        stack.send("short-1", StartSaga("order", order("short-1", "sku-rare")))
        stack.send("web-1", StartSaga("order", order("web-1")))  # waits for its pick
        stack.send("bulk-1", StartSaga("bulk_order", {"id": "bulk-1", "customer": "c-9", "lines": [
            {"sku": "sku-1", "qty": 1, "amount_cents": 100 + n} for n in range(2)]}))
        stack.send_raw(b"junk", b"not a saga input")  # one dead letter to look at
        stack.flush()
        wait_terminal(stack, ["done-1", "done-2", "short-1", "bulk-1"])
        stack.wait_until(lambda s: "web-1" in s and s["web-1"].status is SagaStatus.WAITING, 60)
        url = ready(stack, "server-web")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path,
                                                 args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/")
            expect(page.get_by_test_id("counts")).to_contain_text("COMPLETED", timeout=20_000)
            expect(page.get_by_test_id("dlq-size")).to_have_text("1", timeout=20_000)
            page.screenshot(path=shots / "overview.png", full_page=True)

            page.get_by_role("link", name="Sagas").click()
            page.get_by_test_id("filter-status").select_option("WAITING")
            page.get_by_test_id("filter-apply").click()
            row = page.locator("tr[data-saga='web-1']")
            expect(row).to_be_visible(timeout=20_000)
            expect(page.locator("tr[data-saga='done-1']")).to_have_count(0)
            page.screenshot(path=shots / "list.png", full_page=True)

            row.click()
            expect(page.get_by_test_id("saga-id")).to_have_text("web-1")
            expect(page.get_by_test_id("waiting-for")).to_have_text("warehouse_picked")
            expect(page.get_by_test_id("step-lane")).to_have_count(2)  # charge, reserve
            page.screenshot(path=shots / "saga-waiting.png", full_page=True)
            page.get_by_test_id("signal").click()
            expect(page.get_by_test_id("field-name")).to_have_value("warehouse_picked")
            page.get_by_test_id("dialog-ok").click()
            expect(page.get_by_test_id("status").first).to_have_text("COMPLETED",
                                                                     timeout=60_000)
            expect(page.get_by_test_id("step-lane")).to_have_count(4)  # + ship, confirm
            page.screenshot(path=shots / "saga.png", full_page=True)

            page.get_by_role("link", name="Timers").click()
            expect(page.locator("main")).to_contain_text("pending")
            page.screenshot(path=shots / "timers.png", full_page=True)
            page.get_by_role("link", name="Dead letters").click()
            page.locator("tbody[data-testid='dlq-rows'] tr").first.click()
            expect(page.get_by_test_id("dlq-detail")).to_contain_text("undecodable")
            page.screenshot(path=shots / "dlq.png", full_page=True)

            # a parent and its children link to each other
            page.goto(f"{url}/#/sagas/bulk-1")
            expect(page.get_by_test_id("links")).to_contain_text("child bulk-1-0")
            page.get_by_role("link", name="child bulk-1-1").click()
            expect(page.get_by_test_id("saga-id")).to_have_text("bulk-1-1")
            expect(page.get_by_test_id("links")).to_have_text("parent bulk-1")
            page.screenshot(path=shots / "child.png", full_page=True)
            browser.close()
        assert stack.states()["web-1"].status is SagaStatus.COMPLETED
        assert stack.dead() == [], "\n".join(stack.dead())
    taken = sorted(p.name for p in shots.iterdir() if p.stat().st_size > 10_000)
    assert taken == ["child.png", "dlq.png", "list.png", "overview.png", "saga-waiting.png",
                     "saga.png", "timers.png"]
    print(f"\nscreenshots in {shots}")


def test_a_locked_server_makes_the_console_ask_for_a_token_and_for_the_role_to_act(
        settings: Settings, tmp_path: Path) -> None:
    from playwright.sync_api import Dialog, expect, sync_playwright

    browser_path = chromium()
    read, operate = "console-read-5e1d", "console-operate-0b7c"
    create_topics(admin_client(settings.kafka), load_specs(settings))
    stack = Stack(settings, stock=STOCK, process_env=lambda name: {
        "SAGA_API_READ_TOKENS": read, "SAGA_API_OPERATE_TOKENS": operate}
        if name.startswith("server-") else {})
    stack.start_all(["c1"])
    stack.start(stack.add_server("locked").name)
    asked: list[str] = []
    answers = iter([read, operate])

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept(next(answers, ""))

    try:
        stack.send("lock-1", StartSaga("order", order("lock-1")))  # waits for its pick
        stack.flush()
        stack.wait_until(lambda s: "lock-1" in s and s["lock-1"].status is SagaStatus.WAITING,
                         60)
        url = ready(stack, "server-locked")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path,
                                                 args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("dialog", answer)
            page.goto(f"{url}/")
            expect(page.get_by_test_id("counts")).to_contain_text("WAITING", timeout=20_000)
            # The overview's requests all got 401s; one prompt served them all.
            assert len(asked) == 1
            assert "needs an API token" in asked[0]

            page.goto(f"{url}/#/sagas/lock-1")
            expect(page.get_by_test_id("waiting-for")).to_have_text("warehouse_picked",
                                                                    timeout=20_000)
            page.get_by_test_id("signal").click()
            page.get_by_test_id("dialog-ok").click()
            expect(page.get_by_test_id("status").first).to_have_text("COMPLETED",
                                                                     timeout=60_000)
            assert len(asked) == 2
            assert "operate role" in asked[1]
            assert page.evaluate("localStorage.getItem('kafka-saga.api-token')") == operate
            page.screenshot(path=tmp_path / "locked.png", full_page=True)
            browser.close()
        assert stack.states()["lock-1"].status is SagaStatus.COMPLETED
    finally:
        stack.stop_all()
    assert stack.dead() == [], "\n".join(stack.dead())
