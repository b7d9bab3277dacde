"""The web console in a real headless browser (Debian's chromium, driven by Playwright)
against real pieces: nats-server, eight virtual modems over ptys, the agent and the API on
uvicorn. Nothing is mocked: the SMS the form sends goes through a virtual modem, and its
delivery report comes back from the virtual network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedNats
from smsgate.pdu import count_segments

from tests.e2e.console_helpers import (
    PASSWORD,
    UNDELIVERABLE,
    USER,
    Farm,
    api_config,
    launch,
    open_page,
    running_farm,
    screenshot,
    serve_api,
)

PORTS = [f"lte-{i}" for i in range(1, 9)]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launch() as running:
        yield running


@pytest.fixture(scope="module")
async def console_farm(nats_server: EmbeddedNats) -> AsyncIterator[Farm]:
    async with running_farm(NatsConfig(url=nats_server.url)) as running:
        yield running


async def log_in(page: Page, url: str) -> None:
    await page.goto(url)
    await page.fill("input[name=username]", USER)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator(".port")).to_have_count(len(PORTS))


async def test_log_in_and_see_every_port(browser: Browser, console_farm: Farm) -> None:
    async with open_page(browser) as watched:
        page = watched.page
        await page.goto(console_farm.url)
        await expect(page.locator("#login-form")).to_be_visible()
        await screenshot(page, "console-login")
        await page.fill("input[name=username]", USER)
        await page.fill("input[name=password]", "wrong")
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#login-error")).to_have_text("Wrong user name or password.")

        await log_in(page, console_farm.url)
        cells = page.locator(".agent[data-agent=host-a] .port")
        await expect(cells).to_have_count(8)
        for name in PORTS:
            cell = page.locator(f".port[data-port={name}]")
            await expect(cell).to_have_attribute("data-status", "ready")
            await expect(cell).to_contain_text("SIMNET")
            await expect(cell).to_contain_text("/ cap 500")
        await expect(page.locator("#port-summary")).to_contain_text("8 ports on 1 agent")
        await expect(page.locator("#connection")).to_have_text("live")

        # A reload keeps the session (the cookie), and logging out ends it.
        await page.reload()
        await expect(page.locator(".port")).to_have_count(8)
        await page.click("#logout")
        await expect(page.locator("#login-form")).to_be_visible()
        await page.reload()
        await expect(page.locator("#login-form")).to_be_visible()


async def test_send_from_the_form_and_watch_it_delivered(
    browser: Browser, console_farm: Farm
) -> None:
    async with open_page(browser) as watched:
        page = watched.page
        await log_in(page, console_farm.url)
        await page.click("nav a[data-view=messages]")
        form = page.locator("#send-form")
        counter = page.locator("#segments")
        await form.locator("textarea[name=text]").fill("a" * 160)
        await expect(counter).to_have_attribute("data-parts", "1")
        await form.locator("textarea[name=text]").fill("a" * 159 + "€")  # € costs two septets
        await expect(counter).to_have_attribute("data-parts", "2")
        await form.locator("textarea[name=text]").fill("Привет")
        await expect(counter).to_have_attribute("data-alphabet", "ucs2")
        await expect(counter).to_contain_text("UCS-2 · 1 part · 64 UTF-16 units left")

        await form.locator("textarea[name=to]").fill(f"+15557654321, {UNDELIVERABLE}")
        await form.locator("textarea[name=text]").fill("Hello from the console, 5 € off today")
        await form.locator("select[name=port]").select_option("lte-3")
        await form.locator("button[type=submit]").click()
        await expect(page.locator("#send-result")).to_contain_text("Queued 2 messages")
        ids = (await page.locator("#send-result").inner_text()).split(": ", 1)[1].split(", ")
        delivered = page.locator(f"tr[data-id='{ids[0]}']")
        await expect(delivered).to_have_attribute("data-state", "delivered")
        await expect(delivered).to_contain_text("lte-3")
        failed = page.locator(f"tr[data-id='{ids[1]}']")
        await expect(failed).to_have_attribute("data-state", "undelivered")
        await expect(failed).to_contain_text("incompatible destination")  # the network's reason
        await screenshot(page, "console-messages")

        # A new page gets recent messages from the event stream (replayed), not from memory.
        await page.reload()
        await expect(page.locator(f"tr[data-id='{ids[0]}']")).to_have_attribute(
            "data-state", "delivered"
        )
        await expect(page.locator(f"tr[data-id='{ids[1]}']")).to_have_attribute(
            "data-state", "undelivered"
        )

        # Search by number, then by an id that is not in the list (asks the API).
        await page.fill("#message-search", UNDELIVERABLE[-6:])
        await expect(page.locator("table.messages tbody tr")).to_have_count(1)
        await page.fill("#message-search", "no-such-id")
        await page.get_by_role("button", name="Look up message id").click()
        await expect(page.locator("#message-list .notice.error")).to_contain_text("no message")

        await page.click("nav a[data-view=traffic]")
        await expect(page.locator(".kpi[data-kpi=sent]")).to_contain_text("2 in the last hour")
        await expect(page.locator(".kpi[data-kpi=delivery]")).to_contain_text("1 of 2")
        await expect(page.locator("#traffic-chart svg rect.sent")).not_to_have_count(0)
        await screenshot(page, "console-traffic")


async def test_an_inbound_sms_appears_joined(browser: Browser, console_farm: Farm) -> None:
    text = "Your parcel 4711 arrives tomorrow between 9:00 and 12:00. " * 4  # two parts
    async with open_page(browser) as watched:
        page = watched.page
        await log_in(page, console_farm.url)
        await page.click("nav a[data-view=inbound]")
        injected = await console_farm.sim.inject(text, sender="+15550009999", to_port="lte-5")
        assert injected.parts == 2
        row = page.locator("table.inbound tbody tr", has_text="+15550009999")
        await expect(row).to_have_count(1)
        await expect(row.locator("td.text")).to_have_text(text)
        await expect(row).to_contain_text("lte-5")
        await console_farm.sim.inject(
            "Balance low: top up soon", sender="+15550001111", to_port="lte-2"
        )
        await expect(page.locator("table.inbound tbody tr")).to_have_count(2)
        await screenshot(page, "console-inbound")


async def test_messages_and_inbound_come_from_the_history(
    browser: Browser, console_farm: Farm
) -> None:
    # Sent and received before the page opens, so more than the replayed events would say:
    # the history has the text, and a message's timeline with each part's TP-MR.
    async with httpx.AsyncClient(base_url=console_farm.url, auth=(USER, PASSWORD)) as client:
        sent = await client.post(
            "/api/v1/messages",
            json={"to": ["+15557000001"], "text": "Kept in the history", "wait": 30},
        )
        [message] = sent.json()["messages"]
        assert message["state"] == "sent"
    await console_farm.sim.inject("History says hi", sender="+15557000002", to_port="lte-4")
    async with open_page(browser) as watched:
        page = watched.page
        await log_in(page, console_farm.url)
        await page.click("nav a[data-view=messages]")
        await page.fill("#message-search", "Kept in the history")
        row = page.locator(f"tr[data-id='{message['id']}']")
        await expect(row).to_have_count(1)
        await row.click()
        timeline = page.locator(".lookup ol.timeline li")
        await expect(timeline.first).to_contain_text("queued")
        await expect(page.locator(".lookup ol.timeline li[data-step=sent]")).to_contain_text(
            "TP-MR"
        )
        await expect(page.locator(".lookup")).to_contain_text("Kept in the history")
        await page.click("nav a[data-view=inbound]")
        received = page.locator("table.inbound tbody tr", has_text="+15557000002")
        await expect(received).to_have_count(1)
        await expect(received.locator("td.text")).to_have_text("History says hi")
        assert (
            await page.locator("#inbound-export").get_attribute("href")
            == "/api/v1/inbox?format=csv"
        )


async def test_disable_a_port_and_see_its_cell_change(browser: Browser, console_farm: Farm) -> None:
    async with open_page(browser) as watched:
        page = watched.page
        await log_in(page, console_farm.url)
        cell = page.locator(".port[data-port=lte-2]")
        await cell.click()
        dialog = page.locator("#port-dialog")
        await expect(dialog).to_be_visible()
        await expect(dialog).to_contain_text("IMSI")
        await expect(dialog).to_contain_text("001015550100002")
        await dialog.locator("button[data-action=disable]").click()
        await expect(cell).to_have_attribute("data-status", "disabled")
        await expect(dialog.locator(".badge")).to_have_text("disabled")
        await dialog.locator("form.ussd button").click()
        await expect(dialog.locator("p.note").last).to_contain_text("balance")
        await screenshot(page, "console-port")
        await dialog.locator("button[data-action=enable]").click()
        await expect(cell).to_have_attribute("data-status", "ready")
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()

        # Several at once, from the checkboxes.
        for name in ("lte-7", "lte-8"):
            await page.locator(f".port[data-port={name}] input[type=checkbox]").check()
        await expect(page.locator("#selection-count")).to_have_text("2 selected")
        await page.click("[data-bulk=drain]")
        await expect(page.locator("#bulk-result")).to_have_text("drain: done on 2 ports")
        for name in ("lte-7", "lte-8"):
            await expect(page.locator(f".port[data-port={name}]")).to_have_attribute(
                "data-status", "disabled"
            )
        await screenshot(page, "console-ports")
        # The status chips filter the grid.
        await page.click("#port-summary .chip[data-status=disabled]")
        await expect(page.locator(".port")).to_have_count(2)
        await page.click("#port-summary .chip[data-status=disabled]")
        await expect(page.locator(".port")).to_have_count(8)
        await page.click("[data-bulk=enable]")
        for name in ("lte-7", "lte-8"):
            await expect(page.locator(f".port[data-port={name}]")).to_have_attribute(
                "data-status", "ready"
            )


async def test_settings_are_shown_without_secrets(browser: Browser, console_farm: Farm) -> None:
    async with open_page(browser) as watched:
        page = watched.page
        await log_in(page, console_farm.url)
        await page.click("nav a[data-view=settings]")
        users = page.locator("[data-section=users] tr[data-user]")
        await expect(users).to_have_count(1)
        await expect(users).to_contain_text(USER)
        await expect(page.locator("[data-section=http-to-sms]")).to_contain_text("on")
        await expect(page.locator("[data-section=cors]")).to_contain_text("off")
        await expect(page.locator("[data-section=sms-to-http]")).to_contain_text("phonenumber→num")
        assert PASSWORD not in await page.content()
        await screenshot(page, "console-settings")


async def test_basic_credentials_work_instead_of_the_form(
    browser: Browser, console_farm: Farm
) -> None:
    credentials = {"username": USER, "password": PASSWORD}
    async with open_page(browser, http_credentials=credentials) as watched:
        page = watched.page
        await page.goto(console_farm.url)
        await page.click("#basic-login")
        await expect(page.locator(".port")).to_have_count(8)
        await expect(page.locator("#whoami")).to_have_text(USER)
        await expect(page.locator("#logout")).to_be_hidden()  # Basic has no log-out


TEXTS = [
    "",
    "ye",
    "a" * 160,
    "a" * 161,
    "€" * 80,
    "€" * 81,
    "a" * 152 + "€",
    "a" * 153 + "b" * 153,
    "Привет, мир",
    "x" * 70 + "ж",
    "ж" * 70,
    "ж" * 71,
    "😀" * 35,
    "😀" * 36,
    "a" * 66 + "😀" + "a" * 10 + "ж",
    "[]{}\\^~|€\f" * 20,
    "Ça coûte 5 £, ¿sí? Äß",
]


async def test_the_part_counter_matches_the_agent(browser: Browser, console_farm: Farm) -> None:
    async with open_page(browser) as watched:
        page = watched.page
        await page.goto(console_farm.url)
        counted = await page.evaluate(
            """async (texts) => {
                const { countSegments } = await import("/console/segments.js");
                return texts.map((t) => countSegments(t));
            }""",
            TEXTS,
        )
    for text, js in zip(TEXTS, counted, strict=True):
        python = count_segments(text)
        assert (js["alphabet"], js["parts"], js["units"]) == (
            python.alphabet.value,
            python.parts,
            python.units,
        ), text


async def test_empty_and_error_states(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A farm of its own: NATS with no agent at all, then NATS gone, then the API gone.
    nats = EmbeddedNats(store_dir=tmp_path_factory.mktemp("console-nats"))
    await nats.astart()
    stopped = False
    try:
        async with open_page(browser) as watched:
            page = watched.page
            async with serve_api(api_config(NatsConfig(url=nats.url))) as url:
                await page.goto(url)
                await page.fill("input[name=username]", USER)
                await page.fill("input[name=password]", PASSWORD)
                await page.click("#login-form button[type=submit]")
                ports = page.locator("#port-groups .notice")
                await expect(ports).to_contain_text("No ports")
                await expect(ports).to_contain_text("No modem agent has reported")
                await page.click("nav a[data-view=traffic]")
                await expect(page.locator("#traffic-chart .notice")).to_contain_text(
                    "No traffic in the last hour"
                )
                await page.click("nav a[data-view=messages]")
                await expect(page.locator("#message-list .notice")).to_contain_text(
                    "No messages yet"
                )
                await page.click("nav a[data-view=inbound]")
                await expect(page.locator("#inbound-list .notice")).to_contain_text(
                    "No inbound SMS yet"
                )

                await nats.astop()
                stopped = True
                await expect(page.locator("#connection")).to_have_text("NATS down")
                await expect(page.locator("#banner")).to_contain_text("not connected to NATS")
                await expect(page.locator("#inbound-list .notice.error")).to_contain_text(
                    "Not connected to NATS"
                )
                await page.click("nav a[data-view=ports]")
                await expect(page.locator("#port-groups .notice.error")).to_contain_text(
                    "Not connected to NATS"
                )
                await screenshot(page, "console-nats-down")
            # The API itself is gone now.
            await expect(page.locator("#connection")).to_have_text("offline")
            await expect(page.locator("#banner")).to_contain_text("lost its connection to the API")
    finally:
        if not stopped:
            await nats.astop()
