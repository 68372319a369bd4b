"""The pages with a login and roles (team.py), under AppTest: what a role may not do shows as a
disabled button with the reason, what it may do works and lands in the Activity page."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from cifar_core import team
from cifar_core.jobs import queue
from cifar_core.lab import Lab
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import ROOT
from tests.pagetools import rerun, texts

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s", "client_id": "c",
        "client_secret": "x", "server_metadata_url": "http://localhost:9/.well-known/openid-configuration"}
ROLES = {"admins": ["ann@lab.org"], "runners": ["ruth@lab.org", "rob@lab.org"]}
TEAM = team.from_secrets({"auth": AUTH, "roles": ROLES})


def signed_in(page: str, email: str | None, roles: dict | None = None) -> AppTest:
    """`page` through app.py, signed in as `email` (None: a lab without a login)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if email is not None:
        at.secrets.update({"auth": AUTH, "roles": ROLES if roles is None else roles})
        at.user.update({"is_logged_in": True, "email": email, "sub": email})
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_viewer_sees_submit_and_save_disabled_with_the_reason(app_env):
    at = signed_in("pages/builder.py", "vera@else.org")
    submit, save = at.button(key="builder_submit"), at.button(key="builder_save")
    assert submit.disabled and save.disabled
    assert submit.help == "vera@else.org is a viewer: a viewer may not queue runs (only runners and admins may)"
    assert "Signed in as vera@else.org (viewer)" in texts(at.sidebar.text)


def test_a_runner_cancels_their_own_job_not_anothers_and_the_activity_page_lists_it(app_env):
    ruth, rob = (Lab(TEAM.actor(u)) for u in ("ruth@lab.org", "rob@lab.org"))
    mine, = ruth.submit(tiny_spec(epochs=1)).job_ids
    theirs, = rob.submit(tiny_spec(epochs=1)).job_ids
    at = signed_in("pages/training.py", "ruth@lab.org")
    assert not at.button(key=f"cancel_{mine}").disabled
    other = at.button(key=f"cancel_{theirs}")
    assert other.disabled and "a runner may cancel only their own runs" in other.help and "rob@lab.org" in other.help
    rerun(at.button(key=f"cancel_{mine}").click())
    assert [j.state for j in Lab().jobs()] == [queue.QUEUED, queue.CANCELLED]

    at = signed_in("pages/audit.py", "ruth@lab.org")
    assert "you may read everything, queue runs" in texts(at.caption)
    table = at.dataframe[0].value
    assert table[["user", "action", "run_id"]].values.tolist() == [
        ["ruth@lab.org", "cancel", mine], ["rob@lab.org", "submit", theirs], ["ruth@lab.org", "submit", mine]]
    at = rerun(at.selectbox(key="audit_user").select("rob@lab.org"))
    assert at.dataframe[0].value["user"].tolist() == ["rob@lab.org"]


def test_the_keeping_panel_disables_what_the_role_may_not_do_to_this_run(app_env):
    job, = Lab(TEAM.actor("rob@lab.org")).submit(tiny_spec(epochs=1)).job_ids
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets.update({"auth": AUTH, "roles": ROLES})
    at.user.update({"is_logged_in": True, "email": "ruth@lab.org", "sub": "ruth@lab.org"})
    at.switch_page("pages/run.py")
    at.query_params["run"] = str(job)
    at.run()
    assert not at.exception, at.exception
    archive, tag = at.button(key=f"run_keep_{job}_archive"), at.button(key=f"run_keep_{job}_tag")
    assert archive.disabled and tag.disabled
    assert "a runner may archive only their own runs" in archive.help and "rob@lab.org" in archive.help


def test_an_admin_may_cancel_anyones_job(app_env):
    job, = Lab(TEAM.actor("rob@lab.org")).submit(tiny_spec(epochs=1)).job_ids
    at = signed_in("pages/training.py", "ann@lab.org")
    rerun(at.button(key=f"cancel_{job}").click())
    assert Lab().jobs()[0].state == queue.CANCELLED


def test_without_a_login_the_activity_page_says_nothing_is_recorded(app_env):
    at = signed_in("pages/audit.py", None)
    assert "has no login, so it has one local user and records nothing" in texts(at.info)


def test_a_malformed_roles_section_refuses_to_serve_with_the_fix(app_env):
    at = signed_in("pages/builder.py", "ann@lab.org", roles={"admin": ["ann@lab.org"]})
    assert "unknown key 'admin' in [roles]" in texts(at.error) and not at.button
