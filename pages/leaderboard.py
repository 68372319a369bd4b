"""Leaderboard page: every run in a sortable, filterable table (or grouped over seeds), exported as
CSV; a filter expression kept in the URL (?filter=...), archived runs behind a toggle, every row
against the pinned baseline, tags, notes, archive and delete for picked runs; one sweep's runs together with its parallel-coordinates chart and the setting that mattered
most (?sweep=ID preselects it); selected runs overlaid on shared axes, with the notebook's
recorded curves if picked, and their settings side by side, differences marked."""

from __future__ import annotations

import streamlit as st

from cifar_core.analysis import filters, notebook
from cifar_core.analysis import curves as run_curves
from cifar_core.charts import curves as charts
from cifar_core.jobs import queue
from cifar_core.jobs.results import LEADERBOARD_COLUMNS
from cifar_core.spec import diff as compare
from cifar_core.views import leaderboard as board_view
from pages import common

COLUMNS = {
    "run": st.column_config.NumberColumn("run", format="%d"),
    "open": st.column_config.LinkColumn("open", display_text="open", help="The run's page"),
    "params": st.column_config.NumberColumn("params", format="localized"),
    "best_val_accuracy": common.percent_column(help="The best validation accuracy over its epochs"),
    "final_val_accuracy": common.percent_column(help="Validation accuracy after its last epoch"),
    "final_accuracy": common.percent_column(help="Training accuracy in its last epoch"),
    "test_accuracy": common.percent_column(help="Test accuracy, scored once when it finished (with its test-time views)"),
    "epochs": st.column_config.NumberColumn(help="Epochs trained"),
    "best_epoch": st.column_config.NumberColumn(help="The epoch of its best validation accuracy"),
    "gap": common.percent_column("gap", help="train minus validation accuracy, last epoch"),
    "seconds_per_epoch": st.column_config.NumberColumn("s/epoch", format="%.1f"),
    "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
    "diagnosis": st.column_config.TextColumn("diagnosis", help="The verdict from the run's curves (see the run page)"),
    "data_source": st.column_config.TextColumn("data", help="The data source the run trained on (file name)"),
    "config": st.column_config.TextColumn("config", help="The configuration: every setting but the seed and the name, "
                                          "on one data source; runs with the same config are pooled by Group seeds"),
    "label": st.column_config.TextColumn("configuration", help="The runs' names and main settings"),
    "runs": st.column_config.NumberColumn("n", format="%d", help="Succeeded runs (seeds) of this configuration"),
    "run_ids": st.column_config.TextColumn("runs"),
    "cpu_pct": st.column_config.NumberColumn("CPU %", format="%.0f%%", help="CPU seconds of its training process / wall "
                                             "seconds, % of one core (– : not recorded, a run from before they were)"),
    "machine_cpu_pct": st.column_config.NumberColumn("CPU % machine", format="%.0f%%", help="the same, % of its machine's cores"),
    "peak_rss_mb": st.column_config.NumberColumn("peak RSS (MB)", format="%.0f", help="peak resident memory of its training process"),
    "cpu_model": st.column_config.TextColumn("CPU model", help="the CPU of the node(s) that trained it"),
    "cores": st.column_config.NumberColumn("cores", format="%d"),
    "best_val_accuracy_mean": common.percent_column("best val (mean)"),
    "best_val_accuracy_std": common.percent_column("± std"),
    "best_val_accuracy_min": common.percent_column("min"),
    "best_val_accuracy_max": common.percent_column("max"),
    "test_accuracy_mean": common.percent_column("test (mean)"),
    "test_accuracy_std": common.percent_column("± std"),
    "test_accuracy_min": common.percent_column("min"),
    "test_accuracy_max": common.percent_column("max"),
    "tags": st.column_config.ListColumn("tags", help="The run's tags and its seed group's"),
    "notes": st.column_config.TextColumn("notes", help="The run's Markdown note (the Run page shows it rendered)"),
    "vs_baseline": common.percent_column("vs baseline", help="Test accuracy minus the baseline run's"),
    "baseline_p": st.column_config.NumberColumn("p (McNemar)", format="%.3g",
                                                help="McNemar's paired test against the baseline on the stored test "
                                                     "predictions"),
    "baseline_verdict": st.column_config.TextColumn("against baseline", help="At alpha 0.05"),
}
HEADERS = {  # readable headers for the columns shown by their key; the help still names the key
    "epochs_planned": "planned", "best_val_accuracy": "best val", "best_epoch": "best at", "final_val_accuracy": "last val",
    "final_accuracy": "last train", "test_accuracy": "test acc", "validation": "validated on", "learning_rate": "learning rate",
    "batch_size": "batch", "worker_pid": "pid", "refit_of": "refit of", "status_note": "status note",
}


def _with_filter_keys(columns: dict) -> dict:
    """Every run column's config with a readable header and a help that ends in the key the filter
    box (and the CSV export) use for it: "best val" is `best_val_accuracy`."""
    out = dict(columns)
    for key in LEADERBOARD_COLUMNS:
        config = dict(out.get(key) or st.column_config.Column())
        config["label"] = config.get("label") or HEADERS.get(key, key)
        said = (config.get("help") or "").rstrip(". ")
        config["help"] = (f"{said}. " if said else "") + f"Filter and CSV key: {key}"
        out[key] = config
    return out


COLUMNS = _with_filter_keys(COLUMNS)
BASELINE = ["vs_baseline", "baseline_p", "baseline_verdict"]
GROUP_ORDER = ["label", "tags", "notes", "data_source", "runs", "best_val_accuracy_mean", "best_val_accuracy_std", "best_val_accuracy_min",
               "best_val_accuracy_max", "test_accuracy_mean", "test_accuracy_std", "test_accuracy_min", "test_accuracy_max",
               "params", "seconds_per_epoch", "run_ids", "config"]
METRIC_NAMES = {"accuracy": "accuracy", "loss": "loss", "learning_rate": "learning rate", "seconds": "seconds per epoch"}


def _highlight(table):
    """Styler that tints the rows whose settings differ between the runs."""
    return table.style.apply(lambda row: ["background-color: #fff3cd" if row["differs"] else ""] * len(row), axis=1)


def _sweep_filter(slot) -> int | None:
    """The sweep whose runs the table shows (None: every run); ?sweep=ID preselects one."""
    listed = common.lab().sweeps()
    labels = {int(r.group): f"#{r.number} {r.name} ({r.method}, {r.runs} runs)" for r in listed.itertuples()}
    wanted = st.query_params.get("sweep", "")
    if "lb_sweep" not in st.session_state and wanted.isdigit() and int(wanted) in labels:
        st.session_state.lb_sweep = int(wanted)
    return slot.selectbox("Sweep", [None, *labels], format_func=lambda g: "all runs" if g is None else labels[g],
                          key="lb_sweep", disabled=not labels, help="Show one sweep's runs, its chart and which setting mattered")


def _compare_sweep(run_ids: list[int]) -> None:
    st.session_state.lb_runs = run_ids


def _sweep_section(group_id: int, archived: bool) -> None:
    found = common.lab().sweep(group_id, archived)
    st.subheader(f"Sweep #{found.info.number}: {found.info.name}")
    st.caption(f"{found.info.method} sweep over {', '.join(found.info.paths)}; {len(found.info.run_ids)} runs, {found.finished} finished")
    common.sweep_findings(found, key="lb_sweep")
    st.button("Compare this sweep's runs", key="lb_compare_sweep", icon=":material/stacked_line_chart:",
              on_click=_compare_sweep, args=(list(found.info.run_ids),))


def _expression() -> tuple[str, bool]:
    """The filter expression and the archived toggle, both kept in the URL (?filter=...&archived=1)
    so a view can be shared as a link."""
    if "lb_filter" not in st.session_state:
        st.session_state.lb_filter = st.query_params.get("filter", "")
        st.session_state.lb_archived = st.query_params.get("archived", "") == "1"
    f, t = st.columns([6, 1.4], vertical_alignment="bottom")
    where = f.text_input("Filter", key="lb_filter", placeholder="learning_rate < 0.01 and tag:muon and test_accuracy > 0.8",
                         help=filters.FILTER_HELP)
    archived = t.toggle("Show archived", key="lb_archived", help="Archived runs are hidden from every page by default")
    for name, value in (("filter", where.strip()), ("archived", "1" if archived else "")):
        if value:
            st.query_params[name] = value
        elif name in st.query_params:
            del st.query_params[name]
    return where, archived


def _board(where: str, archived: bool):
    try:
        return common.lab().leaderboard(where=where, archived=archived)
    except filters.FilterError as exc:
        st.error(common.md(f"The filter was not applied: {exc}"), icon=":material/filter_alt_off:")
        return common.lab().leaderboard(archived=archived)


def _keep(board, groups) -> None:
    """Act on picked runs (one Lab call per button, pages/common.keeping_panel); with seeds grouped,
    on a seed group's tags and note too."""
    labels = {int(r.run): f"#{r.run} {r.name}" for r in board.itertuples()}
    picked = st.multiselect("Runs", list(labels), format_func=labels.get, key="lb_keep_runs", placeholder="pick runs")
    one = board.set_index("run").loc[picked[0], "notes"] if len(picked) == 1 else None
    common.keeping_panel(picked, "lb_keep", note=one)
    if groups is None or groups.empty:
        return
    names = dict(zip(groups["config"], groups["label"]))
    config = st.selectbox("Seed group", list(names), format_func=names.get, key="lb_keep_group")
    common.group_panel(config, groups.set_index("config").loc[config, "notes"], "lb_keep_group")


def _picks_left(board, archived: bool) -> list[str]:
    """Drop picked runs the board no longer shows (one deleted or archived from the panel below, or
    filtered out) from the run pickers, before they are drawn; why each left the comparison."""
    hidden = common.lab().hidden(archived)
    said = []
    for key in ("lb_runs", "lb_keep_runs"):
        picked = st.session_state.get(key) or []
        kept, why = board_view.still_shown(picked, board["run"], hidden)
        if kept != list(picked):
            st.session_state[key] = kept
        said += why if key == "lb_runs" else []
    return said


def render() -> None:
    st.title("Leaderboard")
    where, archived = _expression()
    board = _board(where, archived)
    left = _picks_left(board, archived)
    if board.empty:
        st.info("No run matches the filter." if where.strip() else "No runs yet.")
        st.page_link("pages/builder.py", label="Build and submit an experiment", icon=":material/construction:")
        return
    a, b, d, w, c, y = st.columns([2, 2, 2, 2, 1.4, 1.4], vertical_alignment="bottom")
    name = a.text_input("Name contains", key="lb_name")
    statuses = b.multiselect("Status", queue.STATES, key="lb_status", placeholder="any status")
    sources = d.multiselect("Data source", sorted(board["data_source"].unique()), key="lb_source", placeholder="any data")
    sweep = _sweep_filter(w)
    grouped = c.toggle("Group seeds", key="lb_group",
                       help="One row per configuration (every setting but the seed and the name, on one data source): "
                            "n, mean, std and min–max of its succeeded runs")
    system = y.toggle("System", key="lb_system", help="Columns of what each run's training process used: CPU %, "
                      "peak RSS, CPU model, cores")
    shown = board_view.filter_board(board, name, statuses, sweep, sources).assign(open=lambda d: "run?run=" + d["run"].astype(str))
    table = common.lab().group_seeds(shown) if grouped else shown
    common.table(table, hide_index=True, column_config=COLUMNS, key="lb_table",
                 column_order=GROUP_ORDER if grouped else board_view.column_order(system, [b for b in BASELINE if b in shown]))
    st.download_button("Export CSV", table.drop(columns="open", errors="ignore").to_csv(index=False),
                       file_name="leaderboard.csv", mime="text/csv", icon=":material/download:", key="lb_csv")
    pooled = f" pooled into {len(table)} configurations (succeeded runs only)" if grouped else ""
    st.caption(f"{len(shown)} of {len(board)} runs shown{pooled}. Click a column header to sort.")
    baseline = common.lab().baseline()
    if baseline is not None:
        st.caption(f"Baseline: run #{baseline}; every row shows its test accuracy against it and McNemar's paired test.")
    if sweep is not None:
        _sweep_section(sweep, archived)
    with st.expander("Tags, notes, archive, delete, baseline"):
        _keep(board, table if grouped else None)

    st.subheader("Compare runs")
    for said in left:
        st.warning(said, icon=":material/compare_arrows:")
    labels = {int(r.run): f"#{r.run} {r.name}" for r in board.itertuples()}
    r, n = st.columns([3, 2], vertical_alignment="bottom")
    picked = r.multiselect("Runs", list(labels), format_func=labels.get, key="lb_runs", placeholder="pick runs to compare")
    refs = n.multiselect("Notebook reference curves", notebook.NOTEBOOK_PRESETS, format_func=notebook.label, key="lb_notebook",
                         placeholder="none", help=f"The notebook's own accuracy curves, {notebook.RECORDED}")
    if not picked and not refs:
        st.caption("Pick two or more runs to overlay their curves and see how their settings differ.")
        return
    m, s, k, g = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
    metric = m.selectbox("Metric", list(METRIC_NAMES), format_func=METRIC_NAMES.get, key="lb_metric")
    splits = s.segmented_control("Curves", run_curves.SPLITS, selection_mode="multi", default=list(run_curves.SPLITS), key="lb_splits")
    alpha = k.slider("Smoothing (EMA)", 0.0, 0.95, 0.0, 0.05, key="lb_smooth")
    log_y = g.toggle("Log scale", key="lb_log", help="Logarithmic y axis (loss only)", disabled=metric != "loss") and metric == "loss"
    overlaid = picked + ([baseline] if baseline is not None and baseline not in picked and
                         st.toggle("Overlay the baseline", value=True, key="lb_overlay_baseline") else [])
    if baseline is not None:
        labels.setdefault(baseline, f"#{baseline} (baseline)")
    history, specs = common.lab().histories(overlaid), common.lab().specs(picked)
    curves = notebook.with_references(run_curves.curves(history, metric, alpha, splits or run_curves.SPLITS, labels),
                                      refs, metric, alpha, splits or run_curves.SPLITS)
    st.plotly_chart(charts.overlay(curves, METRIC_NAMES[metric], log_y), key="lb_overlay")
    if refs:
        st.caption(f"The notebook's curves ({', '.join(map(notebook.label, refs))}) are {notebook.RECORDED}; it recorded "
                   "accuracy only, training accuracy of exp1 to exp3 at a few epochs.")
    if not picked:
        return
    settings = compare.settings_table({labels[i]: specs[i] for i in picked if i in specs})
    only = st.toggle("Only the differences", key="lb_only_diff")
    st.dataframe(_highlight(settings[settings["differs"]] if only else settings), key="lb_settings",
                 column_config={"differs": st.column_config.CheckboxColumn("differs")})
    links = st.container(horizontal=True)
    for run_id in picked:
        links.page_link("pages/run.py", label=f"Open {labels[run_id]}", query_params={"run": str(run_id)}, icon=":material/query_stats:")


common.page(render)
