"""Training page: the queue (progress naming the phase, train time and time queued, ETA, cancel) and live curves
of the running jobs (per epoch, and running inside epochs), refreshed every REFRESH seconds while
anything is queued or running; recent finished jobs with their final figures and a link to each
run."""

from __future__ import annotations

import streamlit as st

from cifar_core.charts import curves as charts
from cifar_core.views import training as monitor
from cifar_core.jobs import queue
from cifar_core.errors import LabError
from pages import common

REFRESH = 1.5  # seconds between refreshes while jobs are queued or running
RECENT = 10  # finished jobs listed
TRAINED_HELP = "Seconds spent training, summed over attempts (the same train time as the Run page); time in the queue is apart"
ROUGH_HELP = ("Rough: extrapolated from the first epoch's batches so far, which include TensorFlow's tracing, so it "
              "errs long; it firms up once an epoch has finished")
BADGE = {queue.QUEUED: "gray", queue.RUNNING: "blue", queue.PAUSED: "violet", queue.SUCCEEDED: "green", queue.PRUNED: "gray",
         queue.FAILED: "red", queue.CANCELLED: "orange"}


def _cancel(job_id: int) -> None:
    """A button callback: it runs before the rerun draws the queue, so the change shows at once."""
    try:
        state = common.lab().cancel(job_id)
    except LabError as exc:
        st.session_state.training_notice = str(exc)
        return
    done = state == queue.CANCELLED
    stopping = "stops within 5 s; its finished epochs are kept."
    st.session_state.training_notice = f"Job #{job_id} " + ("cancelled." if done else stopping)


def _retry(job_id: int) -> None:
    try:
        common.lab().retry(job_id)
    except LabError as exc:
        st.session_state.training_notice = str(exc)
        return
    st.session_state.training_notice = f"Job #{job_id} is queued again; it resumes from its last finished epoch."


def _active(p: monitor.JobProgress, history, running) -> None:
    with st.container(border=True):
        a, b, c, d = st.columns([4, 1, 1, 1], vertical_alignment="center")
        a.markdown(f"**#{p.id} {common.md(p.name)}** :{BADGE[p.state]}-badge[{p.state}]")
        a.progress(p.fraction, text=p.label)
        b.metric("Trained", monitor.format_seconds(p.trained), help=TRAINED_HELP)
        c.metric("ETA", ("~" if p.rough else "") + monitor.format_seconds(p.eta),
                 help=ROUGH_HELP if p.rough else "From the finished epochs' mean time, with validation and the end phases")
        refused = common.lab().may("cancel", (p.submitted_by,))
        d.button("Cancel", key=f"cancel_{p.id}", icon=":material/cancel:", on_click=_cancel, args=(p.id,),
                 disabled=p.cancel_requested or bool(refused), help=refused)
        if p.attempts:
            st.caption(p.attempts_line)
        if p.node and p.state == queue.RUNNING:
            st.caption(f"On {common.md(p.node)}")
        if p.note:
            st.warning(common.md(p.note), icon=":material/hard_drive:")
        if p.error:
            st.caption(f"Note: {common.md(p.error)}")
        if p.state == queue.RUNNING and not (history.empty and running.empty):
            st.plotly_chart(charts.history(history, height=260, running=running), key=f"live_{p.id}")


def _cluster(cluster: monitor.ClusterView) -> None:
    st.subheader("Ray cluster")
    st.caption(f"{common.md(cluster.address)} · each job takes {cluster.job_cpus:g} CPU(s)"
               + (f" and {cluster.job_gpus:g} GPU(s)" if cluster.job_gpus else "")
               + f" · seen {monitor.format_seconds(cluster.age)} ago")
    if cluster.stale:
        st.warning("The Ray dispatcher has not reported for a while; it may have stopped.", icon=":material/cloud_off:")
    st.dataframe(cluster.table, hide_index=True, key="cluster_nodes")


def _finished(p: monitor.JobProgress, figures: dict) -> None:
    a, b, c, d, e = st.columns([3, 3, 1, 1.2, 1], vertical_alignment="center")
    a.markdown(f"**#{p.id} {common.md(p.name)}** :{BADGE[p.state]}-badge[{p.state}] · {p.epoch}/{p.epochs} epochs")
    b.markdown(f"best val {common.percent(figures.get('best_val_accuracy'))} · final val "
               f"{common.percent(figures.get('final_val_accuracy'))} · test {common.percent(figures.get('test_accuracy'))}")
    c.markdown(f"{monitor.format_seconds(p.trained)} training", help=TRAINED_HELP)
    c.caption(f"+ {monitor.format_seconds(p.queued)} queued")
    d.page_link("pages/run.py", label="Open run", icon=":material/query_stats:", query_params={"run": str(p.id)})
    if p.state in (queue.FAILED, queue.CANCELLED):
        refused = common.lab().may("retry", (p.submitted_by,))
        e.button("Retry", key=f"retry_{p.id}", icon=":material/replay:", on_click=_retry, args=(p.id,),
                 disabled=bool(refused), help=refused or "Queue it again; it resumes from its last finished epoch")
    if p.error and p.state == queue.FAILED:
        st.error(common.md(p.error), icon=":material/error:")
    elif p.error and p.state in (queue.PRUNED, queue.PAUSED):  # its sweep's pruner says why, in words
        st.caption(common.md(p.error))


def _queue(polling: bool) -> None:
    view = common.lab().queue_view(recent=RECENT, archived=bool(st.session_state.get("training_archived")))
    if polling and not view.refresh:
        st.rerun()  # nothing left to watch: a full run redraws the page without the timer
    if st.session_state.get("training_notice"):
        st.toast(common.md(st.session_state.pop("training_notice")), icon=":material/info:")
    cols = st.columns(len(queue.STATES) + 1)
    for col, state in zip(cols, queue.STATES):
        col.metric(state.capitalize(), view.counts[state])
    cols[-1].metric("Workers", view.workers_alive)
    if view.start_problem:
        st.error(common.md(view.start_problem), icon=":material/cloud_off:")
        st.button("Try again", key="worker_again", icon=":material/replay:", on_click=common.lab().try_worker_again)
    elif view.counts[queue.QUEUED] and not view.workers_alive:
        st.warning("No worker is running, so queued jobs wait. Reload the app (it starts one) or run `make worker`.")
    cluster = common.lab().cluster()
    if cluster is not None:
        _cluster(cluster)
    st.subheader("Queued and running")
    if not view.active:
        st.caption("Nothing queued or running.")
        st.page_link("pages/builder.py", label="Build and submit an experiment", icon=":material/construction:")
    for p in view.active:
        _active(p, view.history[view.history["run"] == p.id], view.running[view.running["run"] == p.id])
    st.subheader("Recently finished")
    common.show_archived("training_archived")
    if not view.recent:
        st.caption("No finished jobs yet.")
    figures = view.finished.set_index("run").to_dict("index") if not view.finished.empty else {}
    for p in view.recent:
        _finished(p, figures.get(p.id, {}))


def render() -> None:
    st.title("Training")
    counts = common.lab().queue_counts()
    polling = bool(counts[queue.QUEUED] or counts[queue.RUNNING])
    st.fragment(_queue, run_every=REFRESH if polling else None)(polling)


common.page(render)
