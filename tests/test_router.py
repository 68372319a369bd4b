"""The router: every page goes through app.py's st.navigation, even a deep link opened first on a
fresh server (where Streamlit's older pages/-folder mode would run the page file alone)."""

from __future__ import annotations

import os
import re

import pytest

from cifar_core.testing.appserver import CHROMIUM, CHROMIUM_ARGS, start_server, stop_app, stray_pids, tail, terminate
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import ROOT

MS = 1000  # Playwright takes milliseconds
PAGE_FILES = sorted(p for p in (ROOT / "pages").glob("*.py") if p.name != "common.py")


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: p.name)
def test_every_page_runs_through_common_page(path):
    """Each page file ends with the one call that routes it, and draws nothing on import."""
    text = path.read_text()
    assert text.rstrip().endswith("\ncommon.page(render)"), f"{path.name} must end with common.page(render)"
    assert not re.search(r"^render\(\)", text, re.M), f"{path.name} calls render() itself"


def _finished_run(name: str) -> int:
    """A succeeded run in $CIFAR_LAB_HOME's store, through the real queue (no training)."""
    from cifar_core.jobs import queue, store

    conn = store.connect()
    try:
        [job_id] = queue.submit(conn, {**tiny_spec(epochs=1), "name": name}, "test-data").job_ids
        lease = queue.claim(conn, "test-worker").lease
        assert lease.job_id == job_id
        queue.record_epoch(conn, lease, {"epoch": 1, "loss": 1.9, "accuracy": 0.31, "val_loss": 2.0,
                                          "val_accuracy": 0.29, "seconds": 1.0, "learning_rate": 0.001})
        queue.finish(conn, lease, queue.SUCCEEDED, results={"test_accuracy": 0.3, "test_loss": 2.0})
        return job_id
    finally:
        conn.close()


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}; install it with "
                    "`bash scripts/install-chromium.sh` (Debian's package, never `playwright install`)")
@pytest.mark.timeout(240)
@pytest.mark.parametrize("target", ["leaderboard", "run"])
def test_a_deep_link_opened_first_on_a_fresh_server_gets_the_lab_navigation(lab_home, small_data, tmp_path, target):
    from playwright.sync_api import expect, sync_playwright

    name = f"deep-{target}"
    run_id = _finished_run(name)
    url_path = "leaderboard" if target == "leaderboard" else f"run?run={run_id}"
    log = tmp_path / "app.log"
    proc, port = start_server(ROOT, lab_home, small_data, log)
    url = f"http://127.0.0.1:{port}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(60 * MS)
                expect.set_options(timeout=60 * MS)
                page.goto(f"{url}/{url_path}")  # the first page this server is asked for
                title = "Leaderboard" if target == "leaderboard" else "Run"
                page.locator("h1").filter(has_text=title).wait_for()
                nav = page.get_by_test_id("stSidebarNav")
                for lab_title in ("Dataset", "Builder", "Model choice", "Error analysis"):
                    expect(nav.get_by_text(lab_title, exact=True)).to_be_visible()
                for file_name in ("app", "common", "gallery", "choice"):  # the old mode's page names
                    expect(nav.get_by_text(file_name, exact=True)).to_have_count(0)
                main = page.get_by_test_id("stMain")
                if target == "leaderboard":
                    expect(main.get_by_text("1 of 1 runs shown.")).to_be_visible()
                else:
                    expect(main.locator("h3").filter(has_text=f"#{run_id} {name}")).to_contain_text("succeeded")
                    assert page.url.endswith(f"/run?run={run_id}"), page.url
                page.screenshot(path=tmp_path / f"{target}.png", full_page=True)
            finally:
                browser.close()
    finally:
        stop_app(proc)
        left = stray_pids(lab_home)
        terminate(left)
        print(f"app log:\n{tail(log, 15)}")
        assert not left, f"processes still running after the app was stopped: {left}"
