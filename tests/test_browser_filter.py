"""Issue 32 in a real browser: a Leaderboard filter shared as a link. Opened in a fresh page, the
link shows only the runs it selects with the filter box filled; a link with a bad filter shows the
error and every run. The runs go through the real queue without training, tagged by the Lab."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest
from browser_helpers import grid_rows, poll
from browserpage import _fresh, _idle, _key, app_url, browser_page  # noqa: F401 (fixtures)
from pagetools import _finished_run

from cifar_core.testing.appserver import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}; install it with "
                       "`bash scripts/install-chromium.sh` (Debian's package, never `playwright install`)"),
]

MS = 1000


@pytest.fixture()
def browser_data(tmp_path_factory) -> Path:
    """Overrides browserpage's data: nothing trains here, so the smallest data set will do."""
    from cifar_core.testing.datagen import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("filter") / "imgs", n_train_per_class=4, n_test_per_class=2)


def _open(page, url: str):
    """A fresh page (a new session, as a colleague opening the link) on `url`, its run settled."""
    fresh = page.context.new_page()
    fresh.goto(url)
    fresh.locator("h1").filter(has_text="Leaderboard").wait_for()
    _idle(fresh)
    return fresh


def _runs(page) -> list[int]:
    rows = poll(lambda: grid_rows(_fresh(page, "stDataFrame").first), 60, what="the leaderboard's rows")
    return sorted(int(r["run"]) for r in rows)


@pytest.mark.timeout(300)
def test_a_shared_filter_link_shows_the_runs_it_selects(browser_page, app_url, tmp_path):
    from playwright.sync_api import expect

    from cifar_core.jobs import store
    from cifar_core.lab import Lab

    expect.set_options(timeout=60 * MS)
    conn = store.connect()
    try:
        a, b, c = (_finished_run(conn, name, seed=seed) for seed, name in enumerate(("alpha", "beta", "gamma")))
    finally:
        conn.close()
    Lab().tag([a, c], ["x"])

    page = _open(browser_page, f"{app_url}/leaderboard?filter=tag:x")
    expect(_key(page, "lb_filter").locator("input")).to_have_value("tag:x")
    assert poll(lambda: (runs := _runs(page)) == [a, c] and runs, 60, what="only the tagged runs") == [a, c]
    page.screenshot(path=tmp_path / "01-filter-link.png", full_page=True)

    page = _open(browser_page, f"{app_url}/leaderboard?filter={quote('learning_rate >')}")
    expect(_fresh(page, "stAlert").filter(has_text="The filter was not applied")).to_be_visible()
    expect(_fresh(page, "stAlert").filter(has_text="nothing after >")).to_be_visible()
    expect(_key(page, "lb_filter").locator("input")).to_have_value("learning_rate >")
    assert _runs(page) == [a, b, c]  # the runs stay in view; the text stays to be fixed
