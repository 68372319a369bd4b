"""Run page: one run (chosen by ?run=ID or the select box) with its status and errors, curves
(with the notebook's recorded curve of its preset, or any other picked), per-epoch table, what its
training process used of its machine (per epoch and in summary), spec and summary, and files; its
tags and Markdown note, with archive, delete and the baseline. Archived runs are listed behind a
toggle (a link to one opens it). Refreshes while the run is queued or running."""

from __future__ import annotations

import json

import streamlit as st

from cifar_core.analysis import notebook
from cifar_core.charts import notebook as notebook_charts
from cifar_core.errors import LabError, NotFound
from cifar_core.jobs import queue, results
from cifar_core.spec.summary import summarize
from cifar_core.views import run as run_view
from cifar_core.views import training as monitor
from pages import common

REFRESH = 2.0  # seconds between refreshes while the run is active


def _status(detail: results.RunDetail) -> None:
    job, hist = detail.job, detail.history
    st.markdown(f"### #{job.id} {common.md(job.name)} · {job.state}")
    if job.error:
        (st.error if job.state == queue.FAILED else st.info)(common.md(job.error))
    if job.spec.get("refit_of"):
        st.info(f"Refit of run #{job.spec['refit_of']} on train + holdout: no validation set, the test set scored "
                "once at the end.", icon=":material/replay:")
    cols = st.columns(6)
    cols[0].metric("Best val accuracy" + ("" if detail.best_epoch is None else f" (epoch {detail.best_epoch})"),
                   common.percent(detail.best_val_accuracy))
    cols[1].metric("Final val accuracy", common.percent(hist["val_accuracy"].iloc[-1] if len(hist) else None))
    cols[2].metric("Test accuracy", common.percent(detail.test_accuracy))
    cols[3].metric("Parameters", f"{detail.params:,}")
    cols[4].metric("Epochs", f"{job.epoch}/{job.epochs}", help=detail.stop_reason)
    cols[5].metric("Train time", monitor.format_seconds(detail.train_seconds))


def _files(detail: results.RunDetail) -> None:
    files = [{"file": p.name, "bytes": p.stat().st_size, "path": str(p)} for p in detail.files]
    if files:
        st.dataframe(files, hide_index=True, column_config={"bytes": st.column_config.NumberColumn(format="localized")})
    else:
        st.caption(f"No files yet in `{detail.artifacts_dir}`.")
    a = b = st.container(horizontal=True)
    a.download_button("Spec (JSON)", json.dumps(detail.job.spec, indent=2), file_name=f"run-{detail.job.id}-spec.json",
                      mime="application/json", icon=":material/download:", key="run_spec_download")
    b.download_button("History (CSV)", detail.history.to_csv(index=False), file_name=f"run-{detail.job.id}-history.csv",
                      mime="text/csv", icon=":material/download:", key="run_history_download")


SYSTEM_COLUMNS = {
    "cpu_pct": st.column_config.NumberColumn("CPU % of one core", format="%.0f%%",
                                             help="CPU seconds of the training process (every thread) / wall seconds"),
    "machine_cpu_pct": st.column_config.NumberColumn("CPU % of machine", format="%.0f%%", help="the same / its cores"),
    "peak_rss_mb": st.column_config.NumberColumn("peak RSS (MB)", format="%.0f", help="since its training began"),
    "cpu_seconds": st.column_config.NumberColumn("CPU s", format="%.2f"),
    "seconds": st.column_config.NumberColumn("wall s", format="%.2f"),
}


def _system(detail: results.RunDetail) -> None:
    st.markdown(common.md(results.system_line(detail.system_summary, len(detail.history))))
    if detail.system_summary["recorded_epochs"]:
        st.dataframe(detail.system, hide_index=True, column_config=SYSTEM_COLUMNS, key="run_system",
                     placeholder=results.NOT_RECORDED)


def _diagnosis(run_id: int, detail: results.RunDetail) -> None:
    d = detail.diagnosis
    if d is None:
        return
    show = st.success if d.verdict == "healthy" else st.info if d.verdict == "too_short" else st.warning
    show(common.md(f"{d.title}. {d.text} Next: {d.next_step}"), icon=":material/stethoscope:")
    if detail.job.state == queue.SUCCEEDED:
        st.page_link("pages/analysis.py", label="Error analysis of this run", query_params={"run": str(run_id)},
                     icon=":material/troubleshoot:")


def _reference(run_id: int, detail: results.RunDetail) -> str | None:
    """The notebook curve to overlay: by default the one of the preset this run trains, if any."""
    options = ["", *notebook.NOTEBOOK_PRESETS]  # "": none
    same = notebook.matching_preset(detail.job.spec)
    ref = st.selectbox("Notebook reference curve", options, index=options.index(same or ""), key=f"run_notebook_{run_id}",
                       format_func=lambda p: notebook.label(p) if p else "none",
                       help=f"Overlay the notebook's recorded accuracy ({notebook.RECORDED})") or None
    if ref is not None:
        st.caption(notebook.overlay_caption(ref, detail.job.spec))
    return ref


def _baseline(run_id: int):
    """The pinned baseline's history to overlay (on by default, a toggle turns it off) and its label;
    (None, "") when no baseline is pinned, this run is it, or the toggle is off."""
    baseline = common.lab().baseline()
    if baseline is None or baseline == run_id:
        return None, ""
    if not st.toggle(f"Overlay the baseline (run #{baseline})", value=True, key="run_overlay_baseline",
                     help="The pinned baseline's curves in grey; the Leaderboard pins it"):
        return None, ""
    return common.lab().histories([baseline]), f"baseline #{baseline}"


def _notes(run_id: int) -> None:
    tags, note = common.lab().notes(run_id)
    if tags:
        st.markdown(" ".join(f":blue-badge[{t}]" for t in tags))
    if note:
        st.markdown(note)  # the team's own Markdown, shown as written
    with st.expander("Tags, note, archive, delete, baseline"):
        common.keeping_panel([run_id], f"run_keep_{run_id}", note=note)


def _body(run_id: int, polling: bool) -> None:
    try:
        detail = common.lab().run(run_id)
    except NotFound as exc:
        st.error(common.md(exc))
        return
    if polling and detail.job.finished:
        st.rerun()  # it just ended: redraw once without the timer
    _status(detail)
    _notes(run_id)
    _diagnosis(run_id, detail)
    curves, epochs, system, spec, files = st.tabs(["Curves", "Epochs", "System", "Spec", "Files"])
    with curves:
        if detail.history.empty:
            st.caption("No finished epoch yet.")
        else:
            ref = _reference(run_id, detail)
            base, label = _baseline(run_id)
            st.plotly_chart(notebook_charts.history_figure(detail.history, ref, baseline=base, baseline_label=label),
                            key="run_curves")
    epochs.dataframe(detail.history, hide_index=True)
    with system:
        _system(detail)
    with spec:
        try:
            spec.code(summarize(detail.job.spec).to_text(), language=None)
        except LabError as exc:  # a spec from another data shape: the raw spec still shows
            spec.caption(f"No summary: {common.md(exc)}")
        spec.json(detail.job.spec)
    with files:
        _files(detail)


def render() -> None:
    st.title("Run")
    wanted = st.query_params.get("run", "")
    shown = common.show_archived("run_archived")
    jobs = {j.id: j for j in common.lab().jobs(archived=shown, spare=[int(wanted)] if wanted.isdigit() else [])}
    if not jobs:
        st.info("No runs yet.")
        st.page_link("pages/builder.py", label="Build and submit an experiment", icon=":material/construction:")
        return
    ids = list(jobs)
    shown_id = int(wanted) if wanted.isdigit() and int(wanted) in jobs else run_view.default_run(list(jobs.values()))
    index = ids.index(shown_id)
    run_id = st.selectbox("Run", ids, index=index, format_func=lambda i: f"#{i} {jobs[i].name} ({jobs[i].state})",
                          key="run_pick")
    if wanted and not (wanted.isdigit() and int(wanted) in jobs):
        st.warning(common.md(f"There is no run {wanted!r}; showing the newest started run instead."))
    st.query_params["run"] = str(run_id)  # the URL names the run shown, so it can be shared or reloaded
    polling = not jobs[run_id].finished
    st.fragment(_body, run_every=REFRESH if polling else None)(run_id, polling)


common.page(render)
