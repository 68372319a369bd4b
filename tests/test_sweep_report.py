"""A sweep's report (`sweep-report N`, the Sweeps page's "Report (HTML)"): what the page shows of a
searching sweep, in Markdown and in one offline HTML page. The sweeps go through the real queue,
store and attempt protocol with chosen curves (tests/searchtools.py)."""

from __future__ import annotations

import json

from pagetools import open_page
from searchtools import searching_sweep, train

from cifar_core.analysis import report, sweep_report, sweeps
from cifar_core.jobs import queue, store
from cifar_core.lab import Lab
from cifar_core.search.config import PrunerConfig, SearchConfig
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import cli

SH = PrunerConfig(kind="successive_halving", min_epochs=1, eta=2)


def _sh_sweep(conn, source) -> tuple[int, list[int]]:
    """Four trials under successive halving (rungs at epochs 1 and 2): the first goes on, the
    second and third pause, the fourth does worse and pauses too, which promotes the second."""
    group_id, ids = searching_sweep(source, SH, trials=4, epochs=2)
    for curve in ([0.50, 0.60], [0.30, 0.40], [0.10, 0.20], [0.05, 0.06], [0.45]):
        train(conn, curve)
    assert [queue.get_job(conn, i).state for i in ids] == [queue.SUCCEEDED, queue.SUCCEEDED, queue.PAUSED, queue.PAUSED]
    return group_id, ids


def test_the_report_says_how_the_sweep_searched_its_trials_why_they_stopped_and_draws_its_figures(conn, app_env):
    group_id, ids = _sh_sweep(conn, app_env)
    built = Lab().sweep_report(group_id)
    text = report.render_markdown(built)
    assert text.startswith("# Sweep #1: srch\n")
    assert "- **Search:** Optuna's grid (each combination once), seed 0; successive halving, rungs at epoch 1" in text
    assert "- **Trials:** 0 running · 0 queued · 2 paused · 0 pruned · 2 complete · 0 cancelled · 0 failed" in text
    assert f"- **Best so far:** run #{ids[0]}, 60.00% best validation accuracy; one seed" in text
    assert "- **Now:** Idle: nothing is queued or running; 2 paused trials wait at a rung" in text
    trials = text.split("## Trials\n\n")[1].split("\n\n")[0].splitlines()
    assert trials[0] == "| # | name | status | learning_rate | best val | at epoch | test | params | s/epoch |"
    assert [row.split(" | ")[2] for row in trials[2:]] == ["succeeded", "succeeded", "paused", "paused"]
    assert f"| {ids[0]} | srch-s01 | succeeded | " in text and " | 60.00% | 2 | 60.00% | " in text
    why = text.split("Why the trials that did not complete stopped:\n\n")[1].split("\n\n")[0].splitlines()
    assert [line.split("**")[1] for line in why] == [f"#{ids[2]} srch-s03", f"#{ids[3]} srch-s04"]
    assert why[0].endswith(queue.get_job(conn, ids[2]).error) and "paused after epoch 1" in why[0]
    rungs = text.split("## Rungs\n\n")[1]
    assert f"| {ids[1]} | srch-s02 | 0 | 1 | 30.00% | promoted |" in rungs
    assert [b[1].layout.title.text for b in built.blocks if b[0] == "figure"] == [
        "Validation accuracy by epoch", "Settings against best validation accuracy"]  # fANOVA: 2 complete runs only
    assert "*(Figure: Validation accuracy by epoch; interactive in the HTML version of this report.)*" in text
    assert "## Pareto front" not in text
    listed = sweeps.list_sweeps(conn)  # the Sweeps page's list counts the paused trials as stopped, not lost
    assert listed[["runs", "done", "stopped", "failed", "active"]].values.tolist() == [[4, 2, 2, 0, 0]]

    page = Lab().sweep_report_html(group_id)
    assert page.startswith("<!DOCTYPE html>") and page.count('class="plotly-graph-div"') == 2
    assert "<h1>Sweep #1: srch</h1>" in page and "promoted" in page


def test_a_trial_in_the_trash_leaves_the_report_and_is_said_to(conn, app_env):
    group_id, ids = _sh_sweep(conn, app_env)
    Lab().delete([ids[1]])
    text = report.render_markdown(Lab().sweep_report(group_id))
    assert f"| {ids[1]} | srch-s02 |" not in text  # neither in the trials nor in the rungs
    assert f"#{ids[1]} in the trash" in text
    assert "· 2 paused · 0 pruned · 2 complete ·" in text  # the search still counts it: it judged with it


def test_a_two_objective_sweep_reports_its_pareto_front(conn, app_env):
    costs = {0.001: 4.0, 0.002: 1.0, 0.003: 2.0, 0.004: 3.0, 0.005: 5.0, 0.006: 2.5}
    search = SearchConfig("nsga2", objective2="latency", population=2, max_trials=4, seed=1)
    group_id = Lab().submit_sweep(tiny_spec(epochs=2, name="moo", learning_rate=0.001), _SPACE, str(app_env),
                                  search).group_id
    while (job := next((j for j in store.group_trials(conn, group_id)[0] if j["state"] == queue.QUEUED), None)):
        rate = json.loads(job["spec_json"])["learning_rate"]
        train(conn, [0.5, 0.5 + rate * 10], cost={"latency_p50_ms": costs[rate], "macs": 1000})
    front = sweeps.sweep_front(conn, group_id)
    built = sweep_report.build(conn, group_id)
    text = report.render_markdown(built)
    assert (f"## Pareto front\n\nValidation accuracy against batch-1 p50 latency (ms): {len(front.runs)} of 4 complete "
            "trials are on it.") in text
    table = text.split("## Pareto front\n\n")[1].split("\n\n")[1].splitlines()
    assert table[0] == "| run | name | val_accuracy | latency |" and len(table) == 2 + len(front.runs)
    assert "Pareto front" in [b[1].layout.title.text for b in built.blocks if b[0] == "figure"]


def test_the_cli_writes_the_report_and_names_a_missing_sweep(conn, app_env, tmp_path):
    _sh_sweep(conn, app_env)
    said = cli("sweep-report", "1", "--out", str(tmp_path / "out")).stdout
    assert said.splitlines() == [f"report: {tmp_path / 'out' / 'report.md'}", f"html:   {tmp_path / 'out' / 'report.html'}"]
    assert (tmp_path / "out" / "report.md").read_text().startswith("# Sweep #1: srch")
    assert "plotly-graph-div" in (tmp_path / "out" / "report.html").read_text()
    refused = cli("sweep-report", "4", check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "error: no sweep 4: there are 1, numbered from 1 (the Sweeps page lists them)")


def test_the_sweeps_page_offers_the_report_as_a_download(conn, app_env):
    group_id, _ = _sh_sweep(conn, app_env)
    at = open_page("pages/sweeps.py", via_app=False, timeout=60, sweep=str(group_id))
    [button] = [b for b in at.get("download_button") if b.proto.label == "Report (HTML)"]
    assert "sweep-report 1" in button.proto.help


_SPACE = {"method": "grid", "params": {"learning_rate": {"values": [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]}}}
