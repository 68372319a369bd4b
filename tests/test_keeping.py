"""Keeping runs in order: filter expressions (good and bad), tags and notes, archive, the trash,
the baseline, through the Lab on a real store, the CLI as a process, and the Leaderboard and Run
pages under AppTest (the filter in the URL)."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from cifar_core.analysis import filters
from cifar_core.analysis.filters import FilterError
from cifar_core.errors import LabError
from cifar_core.jobs import queue, store
from cifar_core.lab import Lab
from cifar_core.testing.procs import cli
from pagetools import _finished_run, open_page, rerun, texts


# ---------------------------------------------------------------- the filter language

BOARD = pd.DataFrame({
    "run": [1, 2, 3], "name": ["muon-a", "adam-b", "adam-c"], "status": ["succeeded", "failed", "succeeded"],
    "test_accuracy": [0.85, None, 0.7], "tags": [["muon", "v2"], [], ["v2"]],
})
SPECS = {1: {"learning_rate": 0.005, "augment": {"flip": True}, "optimizer": "muon"},
         2: {"learning_rate": 0.02, "optimizer": "adam"}, 3: {"learning_rate": 0.001, "augment": {"flip": False}}}


@pytest.mark.parametrize("expr, runs", [
    ("", [1, 2, 3]),
    ("tag:muon", [1]),
    ("TAG:V2", [1, 3]),
    ("status:failed", [2]),
    ("test_accuracy > 0.8", [1]),
    ("test_accuracy >= 0.7 and tag:v2", [1, 3]),
    ("learning_rate < 0.01", [1, 3]),
    ("learning_rate < 0.01 AND tag:muon and test_accuracy > 0.8", [1]),
    ("augment.flip = true", [1]),
    ("optimizer != adam", [1]),  # run 3 has no optimizer setting: a missing key never matches
    ('name:"ADAM"', [2, 3]),
    ('name:"muon and adam"', []),  # `and` inside quotes is text, not a second clause
    ('name:"b" and tag:v2', []),
    ('name:"-a" and tag:muon', [1]),
    ("learning_rate == 0.001", [3]),
])
def test_filter_expressions_select_the_runs_they_say(expr, runs):
    assert filters.apply(BOARD, expr, SPECS)["run"].tolist() == runs


@pytest.mark.parametrize("expr, said", [
    ("learning_rate <", "nothing after <"),
    ("tag:", "nothing after tag:"),
    ("tag:muon and", "`and` with nothing on one side"),
    ("tag:muon or tag:v2", "`or` is not supported"),
    ("status:done", "no status 'done'; statuses are queued"),
    ("colour:red", "unknown prefix 'colour:'"),
    ("test_accuracy > high", "> needs a number, not 'high'"),
    ("learning_rate ~ 3", "cannot read 'learning_rate ~ 3'"),
    ("momentum > 0.5", "no run has a setting or column 'momentum'"),
    ('name:"a and b', "a quote that is not closed"),
])
def test_a_bad_filter_names_its_bad_part_and_what_is_allowed(expr, said):
    with pytest.raises(FilterError) as err:
        filters.apply(BOARD, expr, SPECS)
    assert said in str(err.value)


# ---------------------------------------------------------------- the Lab on a real store


@pytest.fixture()
def three(conn, home):
    a = _finished_run(conn, "a", seed=0, lr=0.001)
    b = _finished_run(conn, "b", seed=1, lr=0.02)
    c = _finished_run(conn, "c", seed=2, state=queue.FAILED)
    for run in (a, b, c):
        folder = home / "runs" / str(run)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "history.csv").write_text("epoch\n1\n")
    return a, b, c


def test_tags_and_notes_are_checked_stored_and_filtered(three):
    a, b, _ = three
    lab = Lab()
    assert lab.tag([a, b], ["Muon", "lr-sweep", "muon"]) == ["muon", "lr-sweep"]
    lab.untag([b], ["muon"])
    lab.set_note(a, "**better** than b")
    board = lab.leaderboard().set_index("run")
    assert board.loc[a, "tags"] == ["lr-sweep", "muon"] and board.loc[b, "tags"] == ["lr-sweep"]
    assert board.loc[a, "notes"] == "**better** than b"
    assert lab.leaderboard(where="tag:muon and learning_rate < 0.01")["run"].tolist() == [a]
    with pytest.raises(LabError, match=r"tag 'bad tag!' is not allowed; a tag is 1-40 characters"):
        lab.tag([a], ["bad tag!"])
    with pytest.raises(LabError, match="no run 999"):
        lab.tag([999], ["x"])
    assert lab.notes(a) == (["lr-sweep", "muon"], "**better** than b")  # the refused calls lost nothing


def test_a_seed_group_carries_tags_and_a_note_its_runs_show(conn, three):
    a, _, c = three  # c trained a's settings with another seed (and failed): the same configuration
    seed2 = _finished_run(conn, "a", seed=0, lr=0.001)
    lab = Lab()
    key = lab.leaderboard().set_index("run").loc[a, "config"]
    lab.tag_group(key, ["promising"])
    lab.set_group_note(key, "both seeds agree")
    assert lab.leaderboard(where="tag:promising")["run"].tolist() == [seed2, c, a]
    groups = lab.group_seeds().set_index("config")
    assert groups.loc[key, "tags"] == ["promising"] and groups.loc[key, "notes"] == "both seeds agree"
    with pytest.raises(LabError, match="no seed group"):
        lab.tag_group("nope", ["x"])


def test_archive_hides_a_run_until_asked(three):
    a, b, _ = three
    lab = Lab()
    lab.archive([b])
    assert b not in lab.leaderboard()["run"].tolist() and b not in [j.id for j in lab.jobs()]
    assert b in lab.leaderboard(archived=True)["run"].tolist() and b in [j.id for j in lab.jobs(archived=True)]
    lab.unarchive([b])
    assert b in lab.leaderboard()["run"].tolist()


def test_delete_moves_the_run_and_its_files_to_the_trash_until_emptied(three, home):
    _, b, c = three
    lab = Lab()
    lab.delete([c])
    assert not (home / "runs" / str(c)).exists() and (home / "trash" / str(c) / "history.csv").is_file()
    assert c not in lab.leaderboard(archived=True)["run"].tolist()
    assert [t.run for t in lab.trash()] == [c]
    lab.restore_run([c])
    assert (home / "runs" / str(c) / "history.csv").is_file() and lab.trash() == []
    lab.delete([c, b])
    assert lab.empty_trash() == [b, c]
    assert not (home / "trash" / str(c)).exists() and lab.trash() == []
    with pytest.raises(LabError, match=f"no run {c}"):
        lab.restore_run([c])


def test_delete_refuses_an_active_run_and_says_what_depends_on_one(conn, three):
    a, b, _ = three
    [queued] = queue.submit(conn, _spec(), "test-data").job_ids
    lab = Lab()
    with pytest.raises(LabError, match=f"run {queued} is queued; cancel it first"):
        lab.delete([queued])
    with store.transaction(conn):
        store.record_export(conn, b, "/exports/b-run2/1", 0.0)
    lab.set_baseline(a)
    with pytest.raises(LabError, match=r"run 2 was exported to /exports/b-run2/1.*Delete anyway with force"):
        lab.delete([b])
    with pytest.raises(LabError, match="run 1 is the pinned baseline"):
        lab.delete([a])
    assert lab.leaderboard()["run"].tolist()[-2:] == [b, a]  # nothing was moved
    assert lab.delete([a], force=True) == ["run 1 is the pinned baseline (deleting it unpins it)"]
    assert lab.baseline() is None


def _spec() -> dict:
    from pagetools import TINY
    from cifar_core.spec.validate import parse_spec

    return parse_spec({**TINY, "name": "waiting"}).to_dict()


def _predictions(home, run: int, right: int) -> None:
    """Stored test predictions of a run: the first `right` of 200 test images right."""
    import numpy as np

    y = np.arange(200) % 10
    pred = y.copy()
    pred[right:] = (pred[right:] + 1) % 10
    np.savez(home / "runs" / str(run) / "predictions.npz", probs=np.eye(10, dtype=np.float32)[pred], y_true=y)


def test_the_baseline_compares_every_row_with_mcnemar(conn, three, home):
    a, b, c = three
    for run, right in ((a, 150), (b, 190)):  # b gets 40 more images right: significant
        _predictions(home, run, right)
    lab = Lab()
    with pytest.raises(LabError, match=f"run {c} is failed; pin a succeeded run"):
        lab.set_baseline(c)
    lab.set_baseline(a)
    board = lab.leaderboard().set_index("run")
    assert board.loc[a, "baseline_verdict"] == "baseline"
    assert board.loc[b, "baseline_verdict"] == "better" and board.loc[b, "baseline_p"] < 0.001
    assert board.loc[b, "vs_baseline"] == pytest.approx(board.loc[b, "test_accuracy"] - board.loc[a, "test_accuracy"])
    assert board.loc[c, "baseline_verdict"] == ""


def test_a_version_7_store_gains_the_keeping_columns(home):
    conn = store.connect(home / "lab.sqlite3")
    for table in ("run_tags", "config_tags", "config_notes", "exports"):
        conn.execute(f"DROP TABLE {table}")
    for column in ("notes_md", "archived_at", "trashed_at", "trash_dir"):
        conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    conn.close()
    conn = store.connect(home / "lab.sqlite3")
    assert store.schema_version(conn) == store.SCHEMA_VERSION == 9
    assert {"notes_md", "archived_at", "trashed_at", "trash_dir"} <= {r["name"] for r in conn.execute("PRAGMA table_info(runs)")}
    with pytest.raises(sqlite3.IntegrityError):  # the table exists, with its foreign key
        conn.execute("INSERT INTO run_tags VALUES (99, 'x')")
    conn.close()


# ---------------------------------------------------------------- the command line


def _cli(*args: str):
    return cli(*args, check=False)


def test_cli_tags_notes_filters_archives_and_deletes(three, home):
    a, b, c = three
    assert _cli("tag", str(a), "muon", "V2").stdout.strip() == f"run {a}: tagged muon, v2"
    assert _cli("note", str(a), "tried", "**muon**").returncode == 0
    rows = json.loads(_cli("runs", "--json").stdout)
    mine = next(r for r in rows if r["run"] == a)
    assert mine["tags"] == ["muon", "v2"] and mine["notes"] == "tried **muon**"
    shown = _cli("leaderboard", "--filter", "tag:muon and learning_rate < 0.01")
    assert shown.returncode == 0 and "muon, v2" in shown.stdout and " b " not in shown.stdout
    bad = _cli("leaderboard", "--filter", "test_accuracy >")
    assert bad.returncode == 2 and "nothing after >" in bad.stderr
    bad_tag = _cli("tag", str(a), "no/slash")
    assert bad_tag.returncode == 2 and "is not allowed" in bad_tag.stderr
    assert _cli("archive", str(b)).returncode == 0
    assert b not in [r["run"] for r in json.loads(_cli("runs", "--json").stdout)]
    assert b in [r["run"] for r in json.loads(_cli("runs", "--json", "--archived").stdout)]
    assert _cli("baseline", str(a)).stdout.strip() == f"baseline: run {a}"
    refused = _cli("delete", str(a))
    assert refused.returncode == 2 and "pinned baseline" in refused.stderr and "--force" in refused.stderr
    assert _cli("delete", str(c)).returncode == 0
    assert f"run {c} c" in _cli("trash").stdout
    assert _cli("undelete", str(c)).returncode == 0 and (home / "runs" / str(c)).is_dir()
    assert _cli("delete", str(c)).returncode == 0
    assert _cli("empty-trash").stdout.strip() == f"removed runs {c} for good"


# ---------------------------------------------------------------- the pages


def test_leaderboard_filter_lives_in_the_url_and_a_bad_one_says_why(app_env, conn, three):
    a, b, _ = three
    Lab().tag([a], ["muon"])
    at = open_page("pages/leaderboard.py", filter="tag:muon")
    assert at.text_input(key="lb_filter").value == "tag:muon"
    assert at.dataframe[0].value["run"].tolist() == [a]
    at = rerun(at.text_input(key="lb_filter").set_value("learning_rate > 0.01"))
    assert at.dataframe[0].value["run"].tolist() == [b]
    assert at.query_params["filter"] == ["learning_rate > 0.01"] or at.query_params["filter"] == "learning_rate > 0.01"
    at = rerun(at.text_input(key="lb_filter").set_value("learning_rate >"))
    assert "The filter was not applied" in texts(at.error) and "nothing after >" in texts(at.error)
    assert len(at.dataframe[0].value) == 3  # the runs stay in view; the text stays to be fixed
    assert at.text_input(key="lb_filter").value == "learning_rate >"


def test_leaderboard_tags_archives_and_pins_a_baseline(app_env, conn, three):
    a, b, _ = three
    at = open_page("pages/leaderboard.py")
    at = rerun(at.multiselect(key="lb_keep_runs").set_value([b]))
    at = rerun(at.text_input(key="lb_keep_tags").set_value("muon v2"))
    at = rerun(at.button(key="lb_keep_tag").click())
    assert "Tagged #2: muon, v2" in texts(at.success)
    table = at.dataframe[0].value.set_index("run")
    assert list(table.loc[b, "tags"]) == ["muon", "v2"]
    at = rerun(at.button(key="lb_keep_baseline").click())
    assert "vs_baseline" in at.dataframe[0].value.columns
    at = rerun(at.button(key="lb_keep_delete").click())
    assert "pinned baseline" in texts(at.error)  # refused, said, nothing moved
    at = rerun(at.button(key="lb_keep_archive").click())
    assert b not in at.dataframe[0].value["run"].tolist()
    at = rerun(at.toggle(key="lb_archived").set_value(True))
    assert b in at.dataframe[0].value["run"].tolist() and at.query_params["archived"] in ("1", ["1"])


def test_run_page_shows_tags_and_note_and_saves_a_note(app_env, conn, three):
    a, _, _ = three
    Lab().tag([a], ["muon"])
    at = open_page("pages/run.py", run=str(a))
    at.text_area(key=f"run_keep_{a}_note_{a}").set_value("*first* try")
    at = rerun(at.button(key=f"run_keep_{a}_save_note").click())
    assert "Note saved" in texts(at.success)
    at = rerun(at)
    assert "*first* try" in [m.value for m in at.markdown] and any("muon" in m.value for m in at.markdown)


def test_a_quoted_value_keeps_and_and_or_inside_it():
    assert filters.parse('name:"a and b" and tag:x') == (filters.Clause("name", ":", "a and b"), filters.Clause("tag", ":", "x"))
    assert filters.parse('optimizer = "this or that"') == (filters.Clause("optimizer", "=", "this or that"),)
    named = pd.DataFrame({"run": [1, 2], "name": ["lr and wd", "lr"], "status": ["succeeded"] * 2, "tags": [[], []]})
    assert filters.apply(named, 'name:"lr and wd"')["run"].tolist() == [1]


# ---------------------------------------------------------------- archived and trashed runs on every page


def _frame_with(at, column: str) -> pd.DataFrame:
    """The page's one table with `column` (AppTest does not keep a dataframe's key)."""
    [frame] = [d.value for d in at.dataframe if column in d.value.columns]
    return frame


def test_archived_runs_leave_every_list_until_a_toggle_shows_them(app_env, conn, three, home):
    a, b, _ = three
    for run, right in ((a, 150), (b, 190)):
        _predictions(home, run, right)
    lab = Lab()
    lab.archive([b])
    assert lab.scorecard()["run"].tolist() == [a] and lab.scorecard(archived=True)["run"].tolist() == [a, b]
    assert lab.choose().recommendation.run == a and lab.choose(archived=True).recommendation.run == b
    assert b not in [p.id for p in lab.queue_view().recent] and b in [p.id for p in lab.queue_view(archived=True).recent]
    assert len(lab.hidden().archived) == 1 and lab.hidden().runs == {b} and lab.hidden(archived=True).runs == set()
    for page, widget, key in (("pages/analysis.py", "selectbox", "analysis_run"), ("pages/predict.py", "multiselect", "predict_runs")):
        at = open_page(page)
        options = " ".join(getattr(at, widget)(key=key).options)
        assert f"#{a} " in options and f"#{b} " not in options, page
        at = rerun(at.toggle(key=key.split("_")[0] + "_archived").set_value(True))
        assert f"#{b} " in " ".join(getattr(at, widget)(key=key).options), page
    at = open_page("pages/analysis.py", run=str(b))  # a link names an archived run: it opens, the others stay hidden
    assert at.selectbox(key="analysis_run").value == b and at.query_params["run"] == str(b)
    at = open_page("pages/choice.py")
    assert at.toggle(key="choice_archived").label == "Show 1 archived run"
    assert _frame_with(at, "seed")["run"].tolist() == [a]
    at = rerun(at.toggle(key="choice_archived").set_value(True))
    assert _frame_with(at, "seed")["run"].tolist() == [a, b]
    at = open_page("pages/training.py")
    assert f"#{a} a" in texts(at.markdown) and f"#{b} b" not in texts(at.markdown)
    at = rerun(at.toggle(key="training_archived").set_value(True))
    assert f"#{b} b" in texts(at.markdown)


def test_a_sweep_leaves_archived_and_trashed_trials_out_of_its_tables_but_the_search_counts_them(app_env, conn):
    from cifar_core.analysis import sweeps
    from cifar_core.jobs import sweeping
    from cifar_core.search.config import PrunerConfig, SearchConfig
    from cifar_core.testing.sweepstore import fill_sweep

    group, lease = fill_sweep(conn, SearchConfig(sampler="random", pruner=PrunerConfig("median"), max_trials=6), epochs=3)
    queue.finish(conn, lease, queue.SUCCEEDED, results={"test_accuracy": 0.5})
    trials = store.group_job_ids(conn, group)
    archived, trashed = trials[3], trials[5]
    lab = Lab()
    lab.archive([archived])
    lab.delete([trashed])
    assert [t.trial_id for t in sweeping.trials(conn, group)] == trials  # the pruner's history: every trial
    found = lab.sweep(group)
    assert archived not in found.table["run"].tolist() and trashed not in found.table["run"].tolist()
    assert found.left_out == (f"Left out: trial #{trashed} in the trash (restorable: `undelete`; the search still "
                              f"counts it); trial #{archived} archived (the 'Show archived' toggle shows it).")
    assert archived in lab.sweep(group, archived=True).table["run"].tolist()
    status = lab.sweep_status(group)
    assert status.trials == 6 and status.in_trash == (trashed,)
    assert trashed not in lab.sweep_search_figures(group).curves["run"].tolist()
    assert len(sweeps.trial_curves(conn, group)["run"].unique()) == 6
    at = open_page("pages/sweeps.py", sweep=str(group))
    assert _frame_with(at, "open")["run"].tolist() == [t for t in trials if t not in (archived, trashed)]
    assert f"trial #{trashed} in the trash" in texts(at.caption) and f"#{trashed} in the trash (the search" in texts(at.caption)
    at = rerun(at.toggle(key="sweeps_archived").set_value(True))
    assert archived in _frame_with(at, "open")["run"].tolist()


def test_a_report_of_a_group_with_a_trashed_run_says_it_is_in_the_trash(conn, three, home):
    from cifar_core.analysis import report

    a, b, c = three
    _predictions(home, a, 150)
    lab = Lab()
    lab.delete([b])
    md = report.render_markdown(report.build_report(conn, [a, b, c]))
    assert f"**Run #{b} is in the trash** and left out of this report" in md and f"undelete {b}`" in md
    assert f"| #{a} |" in md and f"| #{b} |" not in md
    lab.delete([a, c], force=True)
    with pytest.raises(LabError, match=rf"Runs #{a}, #{b}, #{c} are in the trash, so there is nothing to report on; "
                                       rf"bring them back with `python -m cifar_core undelete {a} {b} {c}`"):
        report.build_report(conn, [a, b, c])


# ---------------------------------------------------------------- the baseline on the Run page, a comparison's runs


def _trace_names(at) -> list[str]:
    [chart] = [c for c in at.get("plotly_chart") if c.key == "run_curves"]
    return [t.get("name") for t in json.loads(chart.proto.spec)["data"]]


def test_the_run_page_overlays_the_baseline_by_default_with_a_toggle(app_env, three):
    a, b, _ = three
    Lab().set_baseline(a)
    at = open_page("pages/run.py", run=str(b))
    assert f"baseline #{a} val" in _trace_names(at)
    at = rerun(at.toggle(key="run_overlay_baseline").set_value(False))
    assert not any("baseline" in n for n in _trace_names(at))
    at = open_page("pages/run.py", run=str(a))  # the baseline itself: nothing to overlay
    assert "run_overlay_baseline" not in [t.key for t in at.toggle] and not any("baseline" in n for n in _trace_names(at))


def test_deleting_a_compared_run_says_it_left_the_comparison(app_env, three):
    a, b, _ = three
    at = open_page("pages/leaderboard.py")
    at = rerun(at.multiselect(key="lb_runs").set_value([a, b]))
    at = rerun(at.multiselect(key="lb_keep_runs").set_value([b]))
    at = rerun(at.button(key="lb_keep_delete").click())
    assert f"Moved #{b} to the trash" in texts(at.success)
    assert f"Run #{b} left the comparison: it is in the trash" in texts(at.warning)
    assert at.multiselect(key="lb_runs").value == [a] and at.multiselect(key="lb_keep_runs").value == []
    at = rerun(at)  # said once
    assert "left the comparison" not in texts(at.warning)
