"""Who did what and roles (team.py), enforced by the Lab for the pages and the command line alike:
a real store, the small generated data, the CLI as a user runs it."""

from __future__ import annotations

import json
import sqlite3

import pytest

from cifar_core import team
from cifar_core.errors import LabError
from cifar_core.jobs import queue, store
from cifar_core.lab import Lab
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import cli

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s", "client_id": "c",
        "client_secret": "x", "server_metadata_url": "http://localhost:9/.well-known/openid-configuration"}
ROLES = {"admins": ["ann@lab.org"], "runners": ["*@lab.org"], "default": "viewer"}
TEAM = team.from_secrets({"auth": AUTH, "roles": ROLES})
ANN, RUTH, ROB, VERA = (Lab(TEAM.actor(u)) for u in ("ann@lab.org", "ruth@lab.org", "rob@lab.org", "vera@else.org"))


def test_roles_come_from_the_lists_highest_first_and_the_default():
    assert [TEAM.role_of(u) for u in ("Ann@Lab.org", "ruth@lab.org", "vera@else.org")] == ["admin", "runner", "viewer"]
    assert team.from_secrets({"auth": AUTH}).role_of("anyone@x") == "admin"  # no [roles]: as before roles existed
    assert team.from_secrets({"roles": ROLES}).actor("ann@lab.org") is None  # no login: the one local user


@pytest.mark.parametrize("roles, message", [
    ({"admin": ["a"]}, "unknown key 'admin' in [roles]"),
    ({"default": "boss"}, "default = 'boss' in .streamlit/secrets.toml is not a role; use one of viewer, runner, admin"),
    ({"runners": "a@b"}, "[roles] runners in .streamlit/secrets.toml must be a list of e-mail addresses"),
])
def test_a_bad_roles_section_names_the_key_and_the_fix(roles, message):
    with pytest.raises(LabError) as exc:
        team.from_secrets({"auth": AUTH, "roles": roles})
    assert message in str(exc.value)


def test_refusals_name_the_role_and_what_it_may_not_do():
    viewer, runner, admin = (TEAM.actor(u) for u in ("vera@else.org", "ruth@lab.org", "ann@lab.org"))
    assert team.refusal(viewer, "submit") == "vera@else.org is a viewer: a viewer may not queue runs (only runners and admins may)"
    assert team.refusal(runner, "restore") == ("ruth@lab.org is a runner: a runner may not restore the store from a "
                                               "backup (only admins may)")
    assert team.refusal(runner, "cancel", ("rob@lab.org",)) == ("ruth@lab.org is a runner: a runner may cancel only "
                                                                "their own runs, and this one was submitted by rob@lab.org (an admin may)")
    assert team.refusal(runner, "cancel", ("ruth@lab.org",)) is None
    assert team.refusal(admin, "cancel", ("rob@lab.org",)) is None and team.refusal(None, "restore") is None
    assert "add --as EMAIL to queue runs" in team.refusal(TEAM.actor(None), "submit")


@pytest.fixture()
def data(lab_home, small_data, monkeypatch):
    monkeypatch.setenv("CIFAR_LAB_DATA", str(small_data))
    return small_data


def test_the_lab_checks_the_role_records_who_did_what_and_owns_jobs(data):
    with pytest.raises(team.Forbidden, match="vera@else.org is a viewer: a viewer may not queue runs"):
        VERA.submit(tiny_spec(epochs=1))
    ruth_job, = RUTH.submit(tiny_spec(epochs=1)).job_ids
    rob_jobs = ROB.submit(tiny_spec(epochs=1), repeats=2).job_ids
    with pytest.raises(team.Forbidden, match="may cancel only their own runs, and this one was submitted by rob@lab.org"):
        RUTH.cancel(rob_jobs[0])
    assert RUTH.cancel(ruth_job) == queue.CANCELLED
    assert RUTH.retry(ruth_job) == queue.QUEUED
    assert ANN.cancel(rob_jobs[1]) == queue.CANCELLED  # an admin manages everything
    with pytest.raises(team.Forbidden, match="a viewer may not cancel jobs"):
        VERA.cancel(ruth_job)
    assert [j.submitted_by for j in Lab().jobs()] == ["rob@lab.org", "rob@lab.org", "ruth@lab.org"]

    audit = Lab().audit()
    assert audit[["user", "role", "action", "run_id"]].values.tolist() == [
        ["ann@lab.org", "admin", "cancel", rob_jobs[1]], ["ruth@lab.org", "runner", "retry", ruth_job],
        ["ruth@lab.org", "runner", "cancel", ruth_job], ["rob@lab.org", "runner", "submit", rob_jobs[1]],
        ["rob@lab.org", "runner", "submit", rob_jobs[0]], ["ruth@lab.org", "runner", "submit", ruth_job]]
    assert set(audit["run_name"]) == {"tiny"} and audit["at"].is_monotonic_decreasing
    assert Lab().audit(user="RUTH@lab.org", limit=2)["action"].tolist() == ["retry", "cancel"]


def test_keeping_runs_in_order_obeys_the_roles_and_is_recorded(data):
    """Tags, notes, archive, the trash and the baseline go through the same rule and the audit as
    submit and cancel: a runner keeps their own runs, a viewer none, emptying the trash is an admin's."""
    ruth_job, = RUTH.submit(tiny_spec(epochs=1)).job_ids
    rob_job, = ROB.submit(tiny_spec(epochs=1)).job_ids
    with pytest.raises(team.Forbidden, match="vera@else.org is a viewer: a viewer may not tag runs"):
        VERA.tag([ruth_job], ["x"])
    with pytest.raises(team.Forbidden, match="may archive only their own runs, and this one was submitted by rob@lab.org"):
        RUTH.archive([rob_job])
    assert RUTH.refusal("archive", [rob_job]) == RUTH.refusal("archive", [ruth_job, rob_job]) != None  # noqa: E711
    assert RUTH.refusal("note", [ruth_job]) is None and "a viewer may not annotate runs" in VERA.refusal("note", [ruth_job])
    RUTH.tag([ruth_job], ["Muon"])
    RUTH.set_note(ruth_job, "**first**")
    RUTH.archive([ruth_job])
    RUTH.unarchive([ruth_job])
    with pytest.raises(team.Forbidden, match="a runner may not empty the trash"):
        RUTH.empty_trash()
    assert ANN.empty_trash() == []
    audit = Lab().audit(user="ruth@lab.org")
    assert audit[["action", "run_id", "detail"]].values.tolist()[:4] == [
        ["unarchive", ruth_job, ""], ["archive", ruth_job, ""], ["note", ruth_job, ""], ["tag", ruth_job, "muon"]]
    assert Lab().notes(ruth_job) == (["muon"], "**first**")


def test_without_a_login_nothing_is_checked_or_recorded(data):
    lab = Lab()
    job, = lab.submit(tiny_spec(epochs=1)).job_ids
    lab.cancel(job)
    assert lab.may("restore") is None and lab.jobs()[0].submitted_by is None and lab.audit().empty


@pytest.fixture()
def secrets(data, tmp_path, monkeypatch):
    """A secrets file with a login and roles, which the command line reads through CIFAR_LAB_SECRETS."""
    path = tmp_path / "secrets.toml"
    lists = "\n".join(f"{k} = {json.dumps(v)}" for k, v in ROLES.items())
    path.write_text("[auth]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in AUTH.items()) + f"\n\n[roles]\n{lists}\n")
    monkeypatch.setenv(team.SECRETS_ENV, str(path))
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(tiny_spec(epochs=1)))
    return spec


def test_the_command_line_acts_as_a_user_under_the_same_rule(secrets):
    nobody = cli("submit", str(secrets), check=False)
    assert nobody.returncode == 2 and "the lab has a login, so the command line must say who acts: add --as EMAIL" in nobody.stderr
    viewer = cli("submit", str(secrets), "--as", "vera@else.org", check=False)
    assert viewer.returncode == 2 and viewer.stderr.strip() == (
        "error: vera@else.org is a viewer: a viewer may not queue runs (only runners and admins may)")
    job = cli("submit", str(secrets), "--as", "rob@lab.org").stdout.strip()
    refused = cli("cancel", job, "--as", "ruth@lab.org", check=False)
    assert refused.returncode == 2 and "submitted by rob@lab.org" in refused.stderr
    assert cli("cancel", job, "--as", "ann@lab.org").stdout.strip() == f"job {job}: cancelled"
    assert cli("runs").returncode == 0  # reading needs no --as
    records = json.loads(cli("audit", "--json").stdout)
    assert [(r["user"], r["action"], r["run_id"]) for r in records] == [("ann@lab.org", "cancel", int(job)),
                                                                       ("rob@lab.org", "submit", int(job))]
    listed = cli("audit", "--user", "rob@lab.org").stdout.splitlines()
    assert len(listed) == 2 and "rob@lab.org" in listed[1] and "submit" in listed[1] and "tiny" in listed[1]


def test_as_is_refused_without_a_login(data, tmp_path, monkeypatch):
    monkeypatch.setenv(team.SECRETS_ENV, str(tmp_path / "none.toml"))
    refused = cli("runs", "--as", "rob@lab.org", check=False)
    assert refused.returncode == 2 and "this lab has no login configured" in refused.stderr and "leave --as out" in refused.stderr
    assert cli("audit").stdout.startswith("no record yet")
    bad = cli("audit", "--limit", "0", check=False)
    assert bad.returncode == 2 and "--limit 0" in bad.stderr


def test_the_audit_table_is_plain_sqlite(lab_home):
    conn = store.connect()
    store.insert_audit(conn, [("u@x", "runner", "submit", 3, "")], 1.0)
    assert isinstance(conn, sqlite3.Connection) and store.audit_rows(conn, "U@X", 5)[0]["run_name"] is None
    conn.close()


def test_a_sweeps_later_trials_belong_to_whoever_started_it(data):
    group, ids = RUTH.submit_sweep(tiny_spec(epochs=1, learning_rate=0.001), {"method": "grid", "params": {"learning_rate": {"values": [0.01, 0.001]}}})
    conn = store.connect()
    try:
        [later] = queue.add_to_group(conn, group, [({**tiny_spec(epochs=1), "name": "tiny-s03"}, 10)], str(data))
        assert set(store.submitters(conn, [*ids, later]).values()) == {"ruth@lab.org"}
    finally:
        conn.close()
    with pytest.raises(team.Forbidden, match="submitted by ruth@lab.org"):
        ROB.cancel(later)
