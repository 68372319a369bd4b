"""A sweep's report, in Markdown and in HTML (the Plotly figures interactive, plotly.js inlined
once so it opens offline): what the Sweeps page shows of it, for a reader without the app.

How the sweep searched and where it stands (budget, trials by state, the best with its seed noise),
every trial with its settings, result and, for a stopped one, why; then the figures: every trial's
validation accuracy by epoch (pruned trials end in an X, paused ones in a pause mark), the rung
table under successive halving and Hyperband, the Pareto front of a two-objective sweep, the
parallel coordinates and which setting mattered (fANOVA, Optuna). Trials in the trash are left out
of its tables and figures and said to be (the search judged with them); archived ones are kept,
since the report was asked for this sweep.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pandas as pd

from cifar_core.analysis import report, sweeps
from cifar_core.charts import sweeps as charts
from cifar_core.jobs import keeping, queue, store
from cifar_core.numbers import percent

ENDED_SHORT = (queue.PAUSED, queue.PRUNED, queue.CANCELLED, queue.FAILED)  # states whose reason the report gives


def build(conn: sqlite3.Connection, group_id: int) -> report.Report:
    """The report of sweep `group_id` (NotFound if there is no such sweep)."""
    hidden = keeping.hidden(conn, show_archived=True)
    found = sweeps.sweep_results(conn, group_id, hidden)
    info = found.info
    title = f"Sweep #{info.number}: {info.name}"
    head = [f"# {title}", "",
            f"Written {datetime.now():%Y-%m-%d %H:%M} by CIFAR Lab (`python -m cifar_core sweep-report {info.number}`). "
            f"A {info.method} sweep of {info.base.get('name', info.name)} over {', '.join(f'`{p}`' for p in info.paths)}: "
            f"{len(info.run_ids)} runs, created {info.created}."]
    status = sweeps.search_status(conn, group_id)
    if status is not None:
        head += ["", *_status_lines(status)]
    if found.left_out:
        head += ["", found.left_out]
    blocks: list = [("md", "\n".join(head)), ("md", "## Trials\n\n" + _trials_text(conn, group_id, found.table))]
    if status is not None:
        blocks += _search_blocks(conn, group_id, hidden)
    return report.Report(title, blocks + _findings_blocks(found), tuple(info.run_ids))


def _status_lines(status: sweeps.SearchStatus) -> list[str]:
    best = ("none yet (no trial has finished an epoch)" if status.best_run is None else
            f"run #{status.best_run}, {percent(status.best_value)} best validation accuracy; {status.seed_note}")
    where = status.idle_note if status.idle else (f"Stopped: {status.stopped}." if status.stopped else "Running.")
    return [f"- **Search:** {status.settings}",
            f"- **Budget used:** {' · '.join(status.budget)}",
            "- **Trials:** " + " · ".join(f"{n} {state}" for state, n in status.counts.items()),
            f"- **Best so far:** {best}",
            f"- **Now:** {where}"]


def _trials_text(conn: sqlite3.Connection, group_id: int, table: pd.DataFrame) -> str:
    """Every trial the table holds, its settings and results; then why each stopped one stopped."""
    if table.empty:
        return "No trial to show."
    shown = table.assign(
        best_val_accuracy=table["best_val_accuracy"].map(percent), test_accuracy=table["test_accuracy"].map(percent),
        params=table["params"].map(_written("{:,.0f}")), seconds_per_epoch=table["seconds_per_epoch"].map(_written("{:.1f}")),
        best_epoch=table["best_epoch"].map(_written("{:.0f}")))
    text = report.md_table(shown.rename(columns={"run": "#", "best_val_accuracy": "best val", "best_epoch": "at epoch",
                                                 "test_accuracy": "test", "seconds_per_epoch": "s/epoch"}))
    names = dict(zip(table["run"].astype(int), table["name"]))
    why = [f"- **#{j['id']} {names[j['id']]}**: {' '.join(j['error'].split())}"
           for j in store.group_trials(conn, group_id)[0] if j["state"] in ENDED_SHORT and j["error"] and j["id"] in names]
    return text + ("\n\nWhy the trials that did not complete stopped:\n\n" + "\n".join(why) if why else "")


def _titled(figure, title: str):
    """The figure with a title, which the Markdown version names in its place."""
    return figure.update_layout(title_text=title, margin_t=90)  # room above the parallel coordinates' axis names


def _written(fmt: str):
    return lambda v: "–" if v is None or pd.isna(v) else fmt.format(float(v))


def _search_blocks(conn: sqlite3.Connection, group_id: int, hidden) -> list:
    """What the search did: the trials' curves, the rungs, the Pareto front."""
    figures = sweeps.search_figures(conn, group_id, hidden.trashed)
    blocks: list = []
    if not figures.curves.empty:
        blocks += [("md", "## Validation accuracy by epoch\n\nX: pruned, ‖: paused (the HTML version says why on "
                          "hover)."), ("figure", _titled(charts.intermediate(figures.curves), "Validation accuracy by epoch"))]
    if figures.rungs is not None:
        rungs = figures.rungs.assign(val_accuracy=figures.rungs["val_accuracy"].map(percent)).rename(
            columns={"val_accuracy": "val acc at the rung"})
        blocks.append(("md", "## Rungs\n\nWhich trials reached which rung, their validation accuracy there, and "
                             "what came next.\n\n" + report.md_table(rungs)))
    front = figures.front
    if front is not None:
        text = f"## Pareto front\n\nValidation accuracy against {front.label}: "
        if front.table.empty:
            blocks.append(("md", text + "no trial has completed with both objectives yet."))
        else:
            on = front.table[front.table["front"]].drop(columns="front")
            on = on.assign(val_accuracy=on["val_accuracy"].map(percent)).rename(columns={"cost": front.objective2})
            blocks += [("md", text + f"{len(front.runs)} of {len(front.table)} complete trials are on it.\n\n"
                              + report.md_table(on)), ("figure", _titled(charts.pareto(front.table, front.label), "Pareto front"))]
    return blocks


def _findings_blocks(found: sweeps.SweepResults) -> list:
    """The settings against the result, and which one mattered."""
    if found.finished == 0:
        return [("md", "No run of this sweep has finished yet: its settings are not compared.")]
    blocks: list = [("md", "## Settings against best validation accuracy"),
                    ("figure", _titled(charts.parallel(found.table, found.info.paths, found.info.log_paths),
                                       "Settings against best validation accuracy")),
                    ("md", f"## Which setting mattered most ({charts.IMPORTANCE_TITLE})\n\n{found.sentence}")]
    if found.ranked:
        blocks.append(("figure", _titled(charts.importance(found.ranked), "fANOVA importance")))
    return blocks
