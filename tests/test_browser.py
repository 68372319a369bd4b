"""End to end in a real browser: `make run` as the README says, then Debian's Chromium driven by
Playwright through gallery -> builder (submit) -> training (live curve grows) -> leaderboard."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import pytest
from browser_helpers import grid_rows, plotly_points, plotly_traces, poll
from browserpage import MS, TEST, TRAIN, _fresh, _idle, _key, _nav, _type, app_url, browser_data, browser_page  # noqa: F401 (fixtures)

from cifar_core.charts.curves import RUNNING_NAME
from cifar_core.testing.appserver import CHROMIUM, worker_pids

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}; install it with "
                       "`bash scripts/install-chromium.sh` (Debian's package, never `playwright install`)"),
]

EPOCHS = 4  # held at the start of epochs 2 and 3 (the pace below) while the page is watched
PRESET = "exp3"  # Conv16 5x5, a small conv net


@pytest.fixture(autouse=True)
def release(tmp_path, monkeypatch) -> Path:
    """The pace of the app's worker (set before the app starts): its job waits at the first batch
    of epochs 2 and 3 until the test has seen the curve, whatever the machine's speed; a file in
    the folder returned releases a hold."""
    folder = tmp_path / "release"
    folder.mkdir()
    monkeypatch.setenv("CIFAR_LAB_PACE", f"hold=training:2:1,hold=training:3:1,release={folder}")
    return folder


class Steps:
    """Screenshots named by step, in the test's tmp dir, and the time each step took."""

    def __init__(self, page, folder: Path):
        self.page, self.folder, self.times = page, folder, {}
        self._t = time.monotonic()

    def shot(self, name: str) -> None:
        self.page.screenshot(path=self.folder / f"{len(self.times) + 1:02d}-{name}.png", full_page=True)
        now = time.monotonic()
        self.times[name] = round(now - self._t, 1)
        self._t = now


def _choose(page, key: str, option) -> None:
    """Pick an option of a selectbox or multiselect (a combobox with a listbox of options)."""
    _key(page, key).get_by_role("combobox").click()
    page.get_by_role("option", name=option).click()
    _idle(page)


def _setting(page, name: str):
    """A builder training setting by its key bs<generation>_<name> (labels change, keys stay). Polled:
    while the page reruns after an edit every widget is stale for a moment, and none would match."""
    find = lambda: page.evaluate(
        r"""name => [...document.querySelectorAll('[class*="st-key-bs"]:not([data-stale="true"])')]
            .flatMap(e => [...e.classList]).find(c => new RegExp('^st-key-bs\\d+_' + name + '$').test(c))""", name)
    key = poll(find, 60, what=f"a builder setting with the key bs<n>_{name}")
    return _key(page, key.removeprefix("st-key-"))


@pytest.mark.timeout(360)
def test_gallery_build_submit_watch_and_rank_in_a_real_browser(release, browser_page, app_url, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=60 * MS)  # the CPU is shared: first loads and reruns can be slow
    page = browser_page
    name = f"browser-{uuid.uuid4().hex[:6]}"
    steps = Steps(page, tmp_path)

    # Gallery (the root URL): the grid image and the counts.
    page.goto(app_url)
    page.locator("h1").filter(has_text="Dataset").wait_for()
    metrics = _fresh(page, "stMetric")
    expect(metrics.filter(has_text="Train images")).to_contain_text(f"{TRAIN * 10:,}")
    expect(metrics.filter(has_text="Test images")).to_contain_text(f"{TEST * 10:,}")
    grid = page.get_by_test_id("stImage").locator("img").first
    grid.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 300", arg=grid.element_handle())
    bars = poll(lambda: sum(plotly_points(_key(page, "gallery_counts"))), 60, what="the class-count chart")
    assert bars >= 10  # a bar per class (and split)
    assert worker_pids(), "the app did not start a worker"
    steps.shot("gallery")

    # Builder: load a small preset, rename it, EPOCHS epochs, submit.
    _nav(page, "Builder")
    _choose(page, "builder_start", re.compile(rf"^{PRESET} ·"))
    _key(page, "builder_load").get_by_role("button").click()
    expect(_fresh(page, "stAlert").filter(has_text=f"Loaded the preset {PRESET}")).to_be_visible()
    _idle(page)
    summary = _fresh(page, "stCode").filter(has_text="Total params")
    expect(summary).to_contain_text(f'Model: "{PRESET}"')
    _type(_setting(page, "name"), name)
    expect(summary).to_contain_text(f'Model: "{name}"')  # the summary is titled by the spec's name
    _type(_setting(page, "epochs"), str(EPOCHS))
    _idle(page)
    json_box = page.get_by_test_id("stExpander").filter(has_text="Edit as JSON").first
    json_box.locator("summary").click()
    expect(json_box.locator("textarea")).to_contain_text(re.compile(rf'"epochs": {EPOCHS}\b'))
    expect(json_box.locator("textarea")).to_contain_text(f'"name": "{name}"')
    _idle(page)
    steps.shot("builder")
    _key(page, "builder_submit").get_by_role("button").click()
    queued = _fresh(page, "stAlert").filter(has_text=re.compile(r"Queued job #\d+"))
    expect(queued).to_be_visible()
    job = int(re.search(r"#(\d+)", queued.inner_text()).group(1))
    steps.shot("submitted")

    # Training: the live curve gains points while the page stays loaded.
    _fresh(page, "stPageLink-NavLink").filter(has_text="Training page").click()
    page.locator("h1").filter(has_text="Training").wait_for()
    page.evaluate("() => { window.__e2eSamePage = true; }")  # gone if the page reloads
    live = _key(page, f"live_{job}")

    def epochs_drawn() -> int:  # points of the per-epoch curves (the running one apart)
        return max((len(t["x"]) for t in plotly_traces(live) if t["name"] != RUNNING_NAME), default=0)

    first = poll(epochs_drawn, 120, what="the live curve (after the first epoch)")
    assert first == 1, f"{first} epochs drawn while the job is held in epoch 2"
    steps.shot(f"training-{first}-epochs")
    (release / "training-2-1").touch()
    grown = poll(lambda: (n := epochs_drawn()) > first and n, 120, what=f"the live curve to grow past {first} points")
    steps.shot(f"training-{grown}-epochs")
    assert page.evaluate("() => window.__e2eSamePage === true"), "the page was reloaded"
    assert grown == 2, f"{grown} epochs drawn while the job is held in epoch 3"
    (release / "training-3-1").touch()

    done = _fresh(page, "stMarkdownContainer").filter(has_text=f"#{job} {name}").filter(has_text="succeeded")
    expect(done.first).to_contain_text(f"{EPOCHS}/{EPOCHS} epochs", timeout=180 * MS)
    steps.shot("training-finished")

    # Leaderboard: the finished run is there, by name, with its full curve.
    _nav(page, "Leaderboard")
    _type(_key(page, "lb_name"), name)
    expect(_fresh(page, "stCaptionContainer").filter(has_text=re.compile(r"^1 of \d+ runs shown"))).to_be_visible()
    board = _fresh(page, "stDataFrame").first  # the board (the settings table shows only once runs are picked)
    rows = poll(lambda: grid_rows(board), 60, what="the leaderboard's rows")
    assert [(r["run"], r["name"], r["status"], r["epochs"]) for r in rows] == [(str(job), name, "succeeded", str(EPOCHS))]
    _choose(page, "lb_runs", f"#{job} {name}")
    points = poll(lambda: plotly_points(_key(page, "lb_overlay")), 60, what="the comparison chart")
    assert points and all(n == EPOCHS for n in points), points
    page.keyboard.press("Escape")
    steps.shot("leaderboard")
    print(f"seconds per step: {steps.times}")
