"""The dashboard in a real headless browser (Debian's chromium, driven by Selenium with
the system chromedriver; nothing is downloaded), against a real worker while a
stream is running: customers and their waterfalls render, and the page updates
itself. Screenshots go to the test's tmp dir."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.support.ui import WebDriverWait

from models.ledger import COMPONENTS
from streams.broker import free_port
from streams.produce import to_kafka
from tests.integration.flow import renamed, stream
from tests.integration.worker import WorkerProcess
from tests.kafka_helpers import produce

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "dash-token"
BARS = [*COMPONENTS, "net"]  # the waterfall: every component, then the net total


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), f"{path} missing: `make test` installs Debian's chromium"
    opts = Options()
    opts.binary_location = CHROMIUM
    # The flags that keep Chromium from phoning home on this machine's closed network.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(
        service=DriverService(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")),
        options=opts,
    )
    try:
        yield driver
    finally:
        driver.quit()


# The page re-renders on every poll, so element handles go stale: read it with one
# script per question instead.
def js(driver: webdriver.Chrome, script: str) -> Any:
    return driver.execute_script(script)


def total_shown(driver: webdriver.Chrome) -> int:
    return int(
        js(
            driver,
            "return [...document.querySelectorAll('#status-bar .seg[data-count]')]"
            ".reduce((n, s) => n + Number(s.dataset.count), 0)",
        )
    )


def waterfall(driver: webdriver.Chrome, scope: str) -> list[dict[str, Any]]:
    return list(
        js(
            driver,
            f"return [...document.querySelectorAll('svg.waterfall[data-scope={scope}] rect.bar')]"
            ".map(b => ({component: b.dataset.component, amount: b.dataset.amount,"
            " height: Number(b.getAttribute('height'))}))",
        )
    )


@pytest.mark.timeout(300)
def test_dashboard_shows_customers_and_waterfalls_while_streaming(
    kafka_bootstrap: str, service: Any, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    env, settings, workers = service
    port = free_port()
    worker = WorkerProcess(
        env | {"PROFITWATCH_WEB_PORT": str(port), "PROFITWATCH_API_TOKEN": TOKEN},
        tmp_path / "worker.log",
    )
    workers.append(worker)
    worker.start(web=True)
    base = f"http://127.0.0.1:{port}"

    records = [to_kafka(r) for r in renamed(stream(customers=40, days=200, seed=21), settings)]
    producer = threading.Thread(
        target=produce, args=(kafka_bootstrap, records), kwargs={"pace_s": 0.012}, daemon=True
    )
    producer.start()  # ~55 s of business arriving while the page is open
    try:
        browser.get(f"{base}/?access_token={TOKEN}")
        wait = WebDriverWait(browser, 60, poll_frequency=0.2)
        wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "1")
        wait.until(lambda d: js(d, "return document.querySelectorAll('tr.customer-row').length"))
        assert total_shown(browser) > 0
        # it updates by itself while the stream runs, no reload: the figures move
        table = "return document.getElementById('customers').innerText"
        first = js(browser, table)
        wait.until(lambda d: js(d, table) != first)
        wait.until(
            lambda d: js(d, "return document.querySelectorAll('#alerts .alert-item').length")
        )
        browser.save_screenshot(str(tmp_path / "dashboard.png"))

        cid = js(
            browser,
            "const row = document.querySelector('#customers tr.customer-row');"
            "row.click(); return row.dataset.customerId",
        )
        wait.until(
            lambda d: (
                js(d, "return document.getElementById('customer-page').dataset.rendered") == "1"
            )
        )
        assert cid in js(browser, "return document.getElementById('customer-page').innerText")
        for scope in ("trailing", "lifetime"):
            bars = waterfall(browser, scope)
            assert [b["component"] for b in bars] == BARS
            assert all(b["height"] >= 0 for b in bars)
        browser.save_screenshot(str(tmp_path / "customer.png"))
    finally:
        producer.join(120)

    # the waterfall shows the customer's own figures, and keeps following them
    def api_revenue() -> str:
        req = urllib.request.Request(f"{base}/customers/{cid}")
        req.add_header("Authorization", f"Bearer {TOKEN}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(json.loads(resp.read())["lifetime"]["revenue"])

    def shown_revenue(d: webdriver.Chrome) -> str | None:
        return str(waterfall(d, "lifetime")[0]["amount"])

    WebDriverWait(browser, 60, poll_frequency=1.0).until(
        lambda d: shown_revenue(d) == api_revenue()
    )
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    assert (tmp_path / "customer.png").stat().st_size > 10_000
