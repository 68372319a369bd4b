"""Issue 32, item 7: the app's real Streamlit login against a real OpenID Connect provider (node's
oidc-provider, tests/oidc/, started here on localhost), in Chromium: a viewer signs in and finds
Submit disabled with the reason; a runner signs in, submits, cancels their own job, and the
Activity page and the store record who did it."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess

import pytest
from browser_helpers import grid_rows, poll
from browserpage import _fresh, _idle, _key, _nav
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from cifar_core.lab import Lab
from cifar_core.testing.appserver import CHROMIUM, CHROMIUM_ARGS, start_server, stop_app, tail, terminate
from cifar_core.testing.procs import ROOT, free_port

OIDC = ROOT / "tests" / "oidc"
MS = 1000
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}; install it with "
                       "`bash scripts/install-chromium.sh` (Debian's package, never `playwright install`)"),
    pytest.mark.skipif(not (OIDC / "node_modules" / "oidc-provider").is_dir() or not shutil.which("node"),
                       reason="no oidc-provider: `npm ci --prefix tests/oidc` installs it (make test does)"),
]
VIEWER, RUNNER = "vera@lab.test", "ruth@lab.test"


@pytest.fixture()
def provider(tmp_path):
    """The OpenID Connect provider on a free port, with the app's client registered; yields the
    app's port, the client's secrets and the provider's discovery URL."""
    op_port, app_port = free_port(), free_port()
    client = {"id": "cifar-lab", "secret": secrets.token_urlsafe(16)}
    redirect = f"http://localhost:{app_port}/oauth2callback"
    log = tmp_path / "oidc.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["node", str(OIDC / "provider.mjs"), str(op_port), redirect, client["id"], client["secret"]],
                                stdout=subprocess.PIPE, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == b"ready", tail(log)
        yield {"app_port": app_port, "redirect": redirect, "client": client,
               "metadata": f"http://127.0.0.1:{op_port}/.well-known/openid-configuration"}
    finally:
        terminate([proc.pid])
        proc.wait()


@pytest.fixture()
def app(lab_home, small_data, provider, tmp_path):
    """The app (no worker: nothing trains) with a login through the provider and roles."""
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(f"""
[auth]
redirect_uri = "{provider['redirect']}"
cookie_secret = "{secrets.token_urlsafe(24)}"
client_id = "{provider['client']['id']}"
client_secret = "{provider['client']['secret']}"
server_metadata_url = "{provider['metadata']}"
client_kwargs = {{ prompt = "login" }}  # Streamlit asks for select_account, which this provider does not offer

[roles]
runners = ["{RUNNER}"]
default = "viewer"
""")
    log = tmp_path / "app.log"
    proc, port = start_server(ROOT, lab_home, small_data, log, ("--secrets.files", str(secrets_file)),
                              port=provider["app_port"])
    try:
        yield f"http://localhost:{port}"
    finally:
        stop_app(proc)
        print(f"app log:\n{tail(log, 15)}")


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(browser, url: str, email: str):
    """A new browser (its own cookies) signed in as `email` through the provider's own forms."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(60 * MS)
    page.goto(url)
    _key(page, "login_default").get_by_role("button").click()
    page.locator("input[name=login]").fill(email)  # the provider's sign-in form (any password)
    page.locator("input[name=password]").fill("any")
    page.get_by_role("button", name=re.compile("sign-in", re.I)).click()
    page.get_by_role("button", name=re.compile("continue", re.I)).click()  # the consent form
    page.get_by_test_id("stSidebar").get_by_text(f"Signed in as {email}").wait_for()
    _idle(page)
    return page


def shown_help(page, key: str) -> str:
    """The help a widget shows on hover (a disabled button's: its wrapper takes the hover). A hover
    that lands while the page redraws shows nothing, so the mouse leaves and hovers again."""
    widget = _key(page, key)
    widget.scroll_into_view_if_needed()

    def hovered() -> str:
        page.mouse.move(0, 0)
        widget.hover()
        tip = page.get_by_test_id("stTooltipContent")
        try:
            tip.first.wait_for(timeout=5 * MS)
        except PlaywrightTimeout:
            return ""
        return tip.first.inner_text().strip()

    return poll(hovered, timeout=60, interval=0, what=f"the help of {key}")


def test_a_viewer_and_a_runner_sign_in_through_a_real_provider(app, browser, lab_home):
    viewer = sign_in(browser, app, VIEWER)
    assert viewer.get_by_test_id("stSidebar").get_by_text(f"Signed in as {VIEWER} (viewer)").is_visible()
    _nav(viewer, "Builder")
    submit = _key(viewer, "builder_submit").get_by_role("button")
    assert submit.is_disabled()
    assert shown_help(viewer, "builder_submit") == (f"{VIEWER} is a viewer: a viewer may not queue runs "
                                                  "(only runners and admins may)")

    runner = sign_in(browser, app, RUNNER)
    _nav(runner, "Builder")
    _key(runner, "builder_submit").get_by_role("button").click()
    queued = _fresh(runner, "stAlert").filter(has_text=re.compile(r"Queued job #\d+"))
    job = int(re.search(r"#(\d+)", queued.inner_text()).group(1))
    _nav(runner, "Training")
    _key(runner, f"cancel_{job}").get_by_role("button").click()
    poll(lambda: Lab().jobs()[0].state == "cancelled", timeout=30, what="the runner's cancel")
    _key(runner, f"retry_{job}").wait_for()  # the page has redrawn it as cancelled and stopped polling
    _idle(runner)
    assert Lab().jobs()[0].submitted_by == RUNNER

    _nav(runner, "Activity")
    rows = poll(lambda: grid_rows(_fresh(runner, "stDataFrame").first), timeout=30, what="the activity table")
    assert [(r["user"], r["action"], r["run"]) for r in rows], rows
    assert [(r["user"], r["action"], r["run"]) for r in rows] == [(RUNNER, "cancel", str(job)), (RUNNER, "submit", str(job))]
    assert Lab().audit()[["user", "role"]].values.tolist() == [[RUNNER, "runner"]] * 2
