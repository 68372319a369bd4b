"""The app in a real Chromium for the browser tests: the app started on a free port with its own
data and lab home (`app_url`), a Playwright page on it (`browser_page`), and the steps every test
takes on a Streamlit page (wait for the run to settle, navigate, find a widget by key)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cifar_core.testing.appserver import (CHROMIUM, CHROMIUM_ARGS, start_app, stop_app, stop_workers, stray_pids, tail,
                                           terminate, wait_healthy)
from cifar_core.testing.procs import ROOT, free_port

TRAIN, TEST = 250, 10  # per class: an epoch of exp3 takes 1-3 s (faster CPUs at the low end)
MS = 1000  # Playwright takes milliseconds


@pytest.fixture()
def browser_data(tmp_path_factory) -> Path:
    from cifar_core.testing.datagen import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("browser") / "imgs", n_train_per_class=TRAIN, n_test_per_class=TEST)


@pytest.fixture()
def app_url(lab_home, browser_data, tmp_path, monkeypatch):
    """The app started with `make run` on a free port; afterwards the app, the worker it started
    and anything else carrying this test's CIFAR_LAB_HOME are gone."""
    monkeypatch.setenv("CIFAR_LAB_DATA", str(browser_data))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delenv("CIFAR_LAB_NO_WORKER", raising=False)
    port, log = free_port(), tmp_path / "app.log"
    proc = start_app(ROOT, port, dict(os.environ), log)
    try:
        wait_healthy(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_app(proc)  # first, so no new session can start another worker
        stop_workers(lab_home)
        left = stray_pids(lab_home)
        terminate(left)
        print(f"app log:\n{tail(log, 15)}\nworker log:\n{tail(lab_home / 'logs' / 'worker.log', 15)}")
        assert not left, f"processes still running after the app and its workers were stopped: {left}"


@pytest.fixture()
def browser_page(app_url, tmp_path):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    page = None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1100})
            context.set_default_timeout(60 * MS)
            page = context.new_page()
            yield page
        finally:
            if page is not None:  # what the browser showed when the test ended (failed or not)
                try:
                    page.screenshot(path=tmp_path / "99-last.png", full_page=True)
                except PlaywrightError as exc:
                    print(f"no final screenshot: {exc}")
            browser.close()


def _idle(page) -> None:
    """Wait until no script run shows as in flight: no status widget, no element marked stale.
    A run that has not started yet looks idle too, so steps also wait for what the run draws."""
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
                 && !document.querySelector('[data-stale="true"]')""", timeout=60 * MS)


def _nav(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.locator("h1").filter(has_text=title).wait_for()
    _idle(page)


def _key(page, key: str):
    """The element drawn for this Streamlit key (class st-key-KEY); while a rerun draws its
    replacement, Streamlit keeps the old one for a moment, marked data-stale="true"."""
    return page.locator(f'.st-key-{key}:not([data-stale="true"])')


def _fresh(page, testid: str):
    """Elements of a kind (data-testid) drawn by the current run, not the stale copies of the last."""
    return page.locator(f'[data-testid="stElementContainer"]:not([data-stale="true"]) [data-testid="{testid}"]')


def _type(widget, value: str) -> None:
    """Type into a text or number input and commit it (Streamlit sends the value on Enter)."""
    box = widget.locator("input")
    box.fill(value)
    box.press("Enter")
