"""Model choice page: the deployment scorecard of the finished runs (seeds pooled), accuracy
against batch-1 latency with the Pareto front, the recommendation in words (to paste into a
report), measuring candidates' latency together (in a child process) and exporting a run for
serving. The candidates are every finished run of the data source, or the runs on a two-objective
sweep's Pareto front (?front=GROUP preselects one, as the Sweeps page links it)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cifar_core import config
from cifar_core.analysis import choice, deploy
from cifar_core.charts import choice as choice_charts
from cifar_core.errors import LabError
from cifar_core.spec import identity
from pages import common

CANDIDATE_VIEW = {
    "rank": st.column_config.NumberColumn("Rank", width="small"),
    "label": "Experiment",
    "run": st.column_config.NumberColumn("Run", format="#%d"),
    "runs": st.column_config.NumberColumn("Seeds"),
    "test_accuracy": common.percent_column("Test acc (mean)"),
    "test_accuracy_std": common.percent_column("± std"),
    "params": st.column_config.NumberColumn("Params", format="localized"),
    "macs": st.column_config.NumberColumn("MACs/image", format="localized", help="multiply-adds per image: "
                                          "the machine-independent compute cost"),
    "model_bytes": st.column_config.NumberColumn("Model bytes", format="localized"),
    "latency_p50_ms": st.column_config.NumberColumn("p50 ms", format="%.2f"),
    "latency_spread_pct": st.column_config.NumberColumn("± spread %", format="%.0f", help="p50 spread between the "
                                                        "measurement's rounds (and seeds): the noise"),
    "latency_p95_ms": st.column_config.NumberColumn("p95 ms", format="%.2f"),
    "throughput_ips": st.column_config.NumberColumn("img/s @256", format="%.0f"),
    "measured_while_busy": st.column_config.CheckboxColumn("Busy", help="other processes used the CPU while it "
                                                           "was measured"),
    "measured_load": st.column_config.NumberColumn("Other load", format="%.2f", help="cores other processes used "
                                                   "while it was measured"),
    "train_seconds": st.column_config.NumberColumn("Train s", format="%.0f"),
    "gap": common.percent_column("Gap", help="final train - validation accuracy"),
    "diagnosis": "Diagnosis",
    "pareto": st.column_config.CheckboxColumn("Pareto"),
    "eligible": st.column_config.CheckboxColumn("Eligible"),
    "why": "Why",
    "tied_with": "Latency ties with",
}
RUN_VIEW = ["run", "label", "seed", "test_accuracy", "params", "macs", "model_bytes", "latency_p50_ms",
            "latency_spread_pct", "latency_p95_ms", "throughput_ips", "measured_while_busy", "measured_load",
            "latency_session", "train_seconds", "epochs", "gap", "diagnosis"]
MEASURED_VIEW = {
    "run": st.column_config.NumberColumn("Run", format="#%d"),
    "label": "Experiment",
    "p50_ms": st.column_config.NumberColumn("p50 ms", format="%.2f"),
    "spread_pct": st.column_config.NumberColumn("± spread %", format="%.0f"),
    "p95_ms": st.column_config.NumberColumn("p95 ms", format="%.2f"),
    "throughput_ips": st.column_config.NumberColumn("img/s @256", format="%.0f"),
    "macs": st.column_config.NumberColumn("MACs/image", format="localized"),
    "model_bytes": st.column_config.NumberColumn("Model bytes", format="localized"),
}


def _source(known: list[str]) -> str:
    current = config.resolve_source(common.source())
    if len(known) == 1:
        return known[0]
    index = known.index(current) if current in known else 0
    return st.selectbox("Test set (data source)", known, index=index, key="choice_source", format_func=identity.source_name,
                        help="Runs are only compared on the same test images.")


ALL_RUNS = 0  # the "Candidates from" choice that is not a sweep


def _front_runs() -> list[int] | None:
    """The runs of the Pareto front the user chose to choose among, or None: every finished run."""
    fronts = dict(common.lab().front_sweeps())
    if not fronts:
        return None
    wanted = st.query_params.get("front", "")
    if "choice_front" not in st.session_state and wanted.isdigit() and int(wanted) in fronts:
        st.session_state.choice_front = int(wanted)
    labels = {ALL_RUNS: "every finished run", **{g: f"the Pareto front of {name}" for g, name in fronts.items()}}
    group = st.selectbox("Candidates from", list(labels), format_func=labels.get, key="choice_front",
                         help="A two-objective (NSGA-II) sweep's front: its runs that no other of the sweep beats "
                              "on both validation accuracy and cost")
    return None if group == ALL_RUNS else common.lab().sweep_front(group).runs


def _do_export(run: int, name: str, version_key: str) -> None:
    """Button callback: runs before the page is drawn, so it may bump the version box."""
    st.session_state.pop("choice_export_error", None)
    try:
        with st.spinner("Exporting and checking each format…"):
            result = common.lab().export(run, deploy.exports_dir(), name.strip(), int(st.session_state[version_key]))
    except LabError as exc:
        st.session_state.choice_export_error = str(exc)
        return
    st.session_state.choice_exported = result
    st.session_state[version_key] = result.version + 1


def _do_measure(runs: list[int], rounds: int) -> None:
    """Button callback: measures in a child process (TensorFlow stays out of the server)."""
    st.session_state.pop("choice_measure_error", None)
    try:
        with st.spinner(f"Measuring {len(runs)} run(s) together over {rounds} rounds…"):
            st.session_state.choice_measured = common.lab().measure(runs, rounds=rounds)
    except LabError as exc:
        st.session_state.choice_measure_error = str(exc)


def _measure(made: choice.Choice) -> None:
    st.subheader("Measure candidates together")
    labels = dict(zip(made.scorecard["run"].astype(int), made.scorecard["label"]))
    a, b = st.columns([4, 1], vertical_alignment="bottom")
    runs = a.multiselect("Runs", list(labels), default=choice.measure_candidates(made.candidates),
                         format_func=lambda r: f"#{r} {labels[r]}", key="choice_measure_runs",
                         help="Each round measures every run once, in a rotated order, so the machine's noise "
                              "falls on all of them alike.")
    rounds = b.number_input("Rounds", min_value=1, max_value=20, value=5, step=1, key="choice_measure_rounds")
    st.button("Measure together", icon=":material/speed:", key="choice_measure", disabled=not runs,
              on_click=_do_measure, args=(runs, int(rounds)))
    if st.session_state.get("choice_measure_error"):
        st.error(st.session_state.pop("choice_measure_error"), icon=":material/error:")
    m = st.session_state.get("choice_measured")
    if m is None:
        return
    table = m.table().assign(label=lambda t: t["run"].map(labels))
    common.table(table[list(MEASURED_VIEW)], column_config=MEASURED_VIEW, hide_index=True, key="choice_measured")
    load = "could not be read" if m.other_load is None else f"{m.other_load:.2f} cores"
    st.caption(f"Session {m.session}: {len(m.runs)} run(s), {m.rounds} rounds of {m.batch1_repeats} batch-1 calls "
               f"each; slowest / fastest p50 {m.ratio():.2f}x; other processes' load {load}. Stored: the scorecard "
               "above ranks by these figures.")
    if m.busy:
        st.warning("Measured while other processes used the CPU: the figures are slower and noisier than on a "
                   "quiet machine; measure again when it is idle.", icon=":material/warning:")


def _pick_run(made: choice.Choice, where, key: str) -> tuple[int, dict[int, str]]:
    """A run of the scorecard, the recommended one first; the run and every run's label."""
    labels = dict(zip(made.scorecard["run"].astype(int), made.scorecard["label"]))
    runs = [made.recommendation.run] + [r for r in labels if r != made.recommendation.run]
    run = where.selectbox("Run", runs, format_func=lambda r: f"#{r} {labels[r]}" + (" (recommended)" if r == runs[0] else ""),
                          key=key)
    return run, labels


def _do_refit(run: int) -> None:
    st.session_state.pop("choice_refit_error", None)
    try:
        st.session_state.choice_refit_queued = (run, common.lab().refit(run).job_ids[0])
    except LabError as exc:
        st.session_state.choice_refit_error = str(exc)


def _refit(made: choice.Choice) -> None:
    st.subheader("Refit on train + holdout")
    a, b = st.columns([4, 1], vertical_alignment="bottom")
    run, _ = _pick_run(made, a, "choice_refit_run")
    b.button("Refit on train + holdout", icon=":material/replay:", key="choice_refit", on_click=_do_refit, args=(run,),
             help="Train this run's configuration again on every training image (its holdout too), with no "
                  "validation, and score the test set once at the end: a refit, grouped apart from the holdout runs.")
    if st.session_state.get("choice_refit_error"):
        st.error(common.md(st.session_state.pop("choice_refit_error")), icon=":material/error:")
    if st.session_state.get("choice_refit_queued"):
        source, job = st.session_state.choice_refit_queued
        st.success(f"Queued the refit of run #{source} as job #{job}; the Training page shows it.",
                   icon=":material/check_circle:")


def _export(made: choice.Choice) -> None:
    st.subheader("Export for serving")
    a, b, c = st.columns([2, 2, 1], vertical_alignment="bottom")
    run, labels = _pick_run(made, a, "choice_export_run")
    name = b.text_input("Serving name", value=deploy.export_name(labels[run], run), key=f"choice_export_name_{run}")
    version_key = f"choice_export_version_{run}_{name}"
    if version_key not in st.session_state:
        st.session_state[version_key] = deploy.next_version(deploy.exports_dir(), name) if name.strip() else 1
    c.number_input("Version", min_value=1, step=1, key=version_key)
    refused = common.lab().may("export")
    st.button("Export .keras, SavedModel and .tflite", icon=":material/upload:", key="choice_export",
              on_click=_do_export, args=(run, name, version_key), disabled=bool(refused), help=refused)
    if st.session_state.get("choice_export_error"):
        st.error(st.session_state.pop("choice_export_error"), icon=":material/error:")
    result = st.session_state.get("choice_exported")
    if result is not None:
        _exported(result)


def _exported(result) -> None:
    st.success(f"Exported **{result.name}** version {result.version}; every format was loaded back and gave the "
               f"original's classes on {result.sample_size} test images.", icon=":material/check_circle:")
    common.table([{"format": f.format, "path": f.path, "bytes": f.size_bytes, "agreement": f.agreement}
                  for f in result.formats], key="choice_export_table",
                 column_config={"bytes": st.column_config.NumberColumn("bytes", format="localized"),
                                "agreement": common.percent_column("agreement", help="Share of the checked test images "
                                                                   "on which the format gives the original's class")})
    st.caption(f"All three are in `{Path(result.serving_base) / str(result.version)}`. TF Serving: "
               f"`--model_name={result.name} --model_base_path={result.serving_base}`")
    cols = st.columns(3)
    for col, f in zip(cols, result.formats):
        path = Path(f.path)
        if not path.exists():
            continue
        data = deploy.zip_saved_model(path) if path.is_dir() else path.read_bytes()
        file_name = f"{result.name}-{result.version}" + ("-saved_model.zip" if path.is_dir() else path.suffix)
        col.download_button(f"Download {f.format}", data, file_name=file_name, key=f"choice_download_{f.format}",
                            icon=":material/download:")


def render() -> None:
    st.title("Model choice")
    archived = common.show_archived("choice_archived")
    known = common.lab().sources(archived)
    if not known:
        st.info("No run has finished yet. Submit a few experiments (Builder page), then come back to choose one.")
        return
    source = _source(known)
    front = _front_runs()
    if front is not None and not front:
        st.info("No run of this sweep's front has finished yet: its runs appear here as the sweep's trials complete.")
        return
    try:
        made = common.lab().choose(source, front, archived)
    except LabError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    if front is not None and made.scorecard.empty:
        st.info(f"The front's runs are not on `{identity.source_name(source)}`: choose their data source above.")
        return
    among = "" if front is None else " on the sweep's Pareto front"
    st.caption(f"{len(made.scorecard)} finished run(s){among} on `{identity.source_name(made.source)}`, scored on the same "
               f"{made.test_images:,} test images.")
    for note in made.notes:
        st.caption(f"Note: {note}.")
    rec = made.recommendation
    st.subheader("Candidates")
    common.table(made.candidates[list(CANDIDATE_VIEW)], column_config=CANDIDATE_VIEW, hide_index=True,
                 key="choice_candidates")
    with st.expander("Every run"):
        common.table(made.scorecard[RUN_VIEW], hide_index=True, key="choice_runs",
                     column_config={k: v for k, v in CANDIDATE_VIEW.items() if k in RUN_VIEW})
    st.plotly_chart(choice_charts.pareto_figure(made.candidates), key="choice_pareto")
    st.subheader("Recommendation")
    st.markdown(rec.text)
    a, b = st.columns([1, 3])
    a.download_button("Download as Markdown", rec.text, file_name=f"recommendation-run{rec.run}.md",
                      icon=":material/download:", key="choice_download_text")
    with b.expander("Copy as text"):
        st.code(rec.text, language="markdown")
    with st.expander("How candidates are ranked"):
        st.markdown(choice.RANKING_RULE)
    _measure(made)
    _refit(made)
    _export(made)


common.page(render)
