"""Sweeps page: pick a base experiment (a preset, a saved experiment, or the Builder's working one),
write a search space, preview every run it expands to (each validated against the dataset's
shape and classes), and submit them as one sweep. Below: every sweep; for the chosen one its runs,
a parallel-coordinates chart of the swept settings against best validation accuracy, and which
setting mattered most.

Hand-offs: the Builder may put its working experiment in st.session_state["sweeps_base_doc"]
before switching here (it is then offered, and chosen, as the base); a link may preselect a base
with ?base=preset:exp4 or ?base=saved:NAME, and a sweep with ?sweep=ID.
"""

from __future__ import annotations

import copy
import functools
import json

import streamlit as st

from cifar_core.analysis import sweeps
from cifar_core.charts import sweeps as charts_sweep
from cifar_core.spec import space as sweep_space
from cifar_core.errors import DataError, LabError, SpecError
from cifar_core.search.config import DEFAULT_ETA
from cifar_core.spec.presets import PRESET_TITLES, get_preset, preset_names
from pages import common

HANDOFF = "sweeps_base_doc"  # set by the Builder: the experiment it is editing
REFRESH = "2s"
SEEDS_OF_BEST = 3  # the "Run 3 seeds of the best" button
SWEEP_EPOCHS = 3  # default epochs per run, at most: a first sweep is a cheap look, raise it when it pays
METHODS = {"random": "random draws", "grid": "grid"}
PERCENT = common.PERCENT
LIST_COLUMNS = {
    "number": st.column_config.NumberColumn("sweep", format="%d", help="Its number among the sweeps"),
    "params": st.column_config.TextColumn("swept"),
    "stopped": st.column_config.NumberColumn("stopped", format="%d", help="Trials its pruner pruned or paused at a rung"),
    "best": common.percent_column("best val acc"),
    "best_run": st.column_config.NumberColumn("best run", format="%d"),
    "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
}
RUN_COLUMNS = {
    "run": st.column_config.NumberColumn("run", format="%d"),
    "open": st.column_config.LinkColumn("open", display_text="open", help="The run's page"),
    "best_val_accuracy": PERCENT, "test_accuracy": PERCENT,
    "params": st.column_config.NumberColumn("params", format="localized"),
    "seconds_per_epoch": st.column_config.NumberColumn("s/epoch", format="%.1f"),
}
SPACE_HELP = (
    'A JSON object of dotted paths into the base experiment, each {"values": [...]}, {"uniform": [low, high]} '
    'or {"log_uniform": [low, high]}, e.g. "layers.5.rate". A grid takes only "values". '
    'A whole space ({"method", "budget", "seed", "params"}) is taken as written.'
)


# ------------------------------------------------------------ the base experiment


def _value_columns(table, paths: list[str]) -> dict:
    """Swept fractional numbers with 4 significant digits, so 0.000108 and 0.000134 stay apart."""
    return {p: st.column_config.NumberColumn(p, format="%.4g") for p in paths if table[p].dtype.kind == "f"}


def _base_options() -> list[str]:
    saved = common.lab().experiment_names()
    builder = ["builder:"] if HANDOFF in st.session_state else []
    return [*builder, *(f"preset:{n}" for n in preset_names()), *(f"saved:{n}" for n in saved)]


def _base_label(option: str) -> str:
    kind, _, name = option.partition(":")
    if kind == "builder":
        return f"Builder · {st.session_state[HANDOFF].get('name', 'working experiment')}"
    return f"{name} · {PRESET_TITLES.get(name, '')}" if kind == "preset" else f"saved · {name}"


def _base_doc(option: str) -> dict:
    kind, _, name = option.partition(":")
    if kind == "builder":
        return copy.deepcopy(st.session_state[HANDOFF])
    if kind == "preset":
        return get_preset(name)
    return common.lab().experiment(name)


def _preselect(options: list[str]) -> None:
    """Choose the base before its widget exists: a new hand-off from the Builder, else ?base=."""
    handed = json.dumps(st.session_state.get(HANDOFF), sort_keys=True)
    if HANDOFF in st.session_state and st.session_state.get("sweeps_handoff_seen") != handed:
        st.session_state.sweeps_handoff_seen = handed
        st.session_state.sweeps_base = "builder:"
    elif "sweeps_base" not in st.session_state and st.query_params.get("base") in options:
        st.session_state.sweeps_base = st.query_params["base"]
    if st.session_state.get("sweeps_base") not in options:
        st.session_state.sweeps_base = options[0]


def _fill_inputs(option: str, doc: dict) -> None:
    """Prefill the space and the epochs from a newly chosen base (edits to them survive reruns)."""
    fill = f"{option}|{json.dumps(doc, sort_keys=True)}"
    if st.session_state.get("sweeps_filled_for") != fill or "sweeps_space" not in st.session_state:
        st.session_state.sweeps_filled_for = fill
        st.session_state.sweeps_space = sweeps.params_text(sweeps.example_params(doc))
        epochs = doc.get("epochs", SWEEP_EPOCHS)
        epochs = epochs if isinstance(epochs, int) and 1 <= epochs <= 1000 else SWEEP_EPOCHS
        st.session_state.sweeps_epochs = min(epochs, SWEEP_EPOCHS)


# ------------------------------------------------------------ new sweep


def _submit(base: dict, space: dict, search) -> None:
    try:
        group_id, ids = common.lab().submit_sweep(base, space, common.source(), search,
                                                  tags=common.words(st.session_state.get("sweeps_tags", "")))
    except DataError as exc:
        st.session_state.sweeps_result = ("data", str(exc))
        return
    except LabError as exc:
        st.session_state.sweeps_result = ("error", str(exc))
        return
    st.session_state.sweeps_result = ("success", f"Queued sweep #{common.lab().sweep_number(group_id)}: {len(ids)} runs, jobs #{ids[0]} to #{ids[-1]}. "
                                   "Watch them on the Training page; their results appear below as they finish.")
    st.session_state.sweeps_selected = group_id


def _new_sweep() -> None:
    options = _base_options()
    _preselect(options)
    labels = {option: _base_label(option) for option in options}
    st.selectbox("Base experiment", options, format_func=labels.get, key="sweeps_base")
    option = st.session_state.sweeps_base
    try:
        doc = _base_doc(option)
    except LabError as exc:
        st.error(str(exc))
        return
    _fill_inputs(option, doc)
    st.caption(
        f"{doc.get('name')}: {len(doc.get('layers', []))} layers, {doc.get('optimizer', 'adam')} at learning rate "
        f"{doc.get('learning_rate')}, batch {doc.get('batch_size')}, {doc.get('epochs')} epochs, "
        f"validation on {doc.get('validation', 'holdout')}"
    )
    a, b, c, d = st.columns(4)
    method = a.selectbox("Method", list(METHODS), format_func=METHODS.get, key="sweeps_method")
    budget = b.number_input("Budget (runs)", min_value=1, max_value=200, value=sweep_space.DEFAULT_BUDGET, step=1,
                            key="sweeps_budget", disabled=method == "grid" and not st.session_state.get("sweeps_sampler"),
                            help="Random draws, or the trials a sampler starts; a grid runs every combination")
    seed = c.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="sweeps_seed",
                          help="The same seed draws the same runs")
    epochs = d.number_input("Epochs per run", min_value=1, max_value=1000, step=1, key="sweeps_epochs",
                            help=f"At most {SWEEP_EPOCHS} by default, so that a first sweep is cheap; the base experiment "
                                 f"trains {doc.get('epochs')} epochs")
    holdout = st.toggle("Validate on held-out training images", value=True, key="sweeps_holdout",
                        help="Choosing settings by their test-set score fits them to the test set; a holdout keeps the test set for the end")
    if doc.get("validation") == "test" and not holdout:
        st.warning("The runs will validate on the test set: the best setting found is then chosen on the test set.")
    e, f, g = st.columns(3)
    sampler = e.selectbox("Sampler", list(sweeps.SAMPLER_LABELS), format_func=sweeps.SAMPLER_LABELS.get,
                          key="sweeps_sampler", help="Optuna's samplers, seeded; TPE and NSGA-II queue two trials and "
                          "ask for the next as each ends, learning from the ended ones. The budget caps the trials")
    objective2 = None
    if sampler == "nsga2":
        objective2 = e.selectbox("Second objective (lower is better)", list(sweeps.OBJECTIVE2_LABELS),
                                 format_func=sweeps.OBJECTIVE2_LABELS.get, key="sweeps_objective2",
                                 help="NSGA-II searches validation accuracy against this; no pruner with two objectives")
    pruner = f.selectbox("Pruner", list(sweeps.PRUNER_LABELS), format_func=sweeps.PRUNER_LABELS.get,
                         key="sweeps_pruner", help="Judges each trial's validation accuracy after every epoch and "
                         "stops the losing ones (their curve and checkpoint stay); successive halving and Hyperband "
                         "pause them at a rung and resume the ones that later rank in the top 1/eta")
    min_epochs = g.number_input("Epochs before pruning", min_value=1, max_value=1000, value=1, step=1,
                                key="sweeps_min_epochs", disabled=pruner == "none",
                                help="Every trial trains this many epochs before it may be stopped (the first rung)")
    eta = None
    if pruner in DEFAULT_ETA:
        eta = g.number_input("Rung factor (eta)", min_value=2, max_value=10, value=DEFAULT_ETA[pruner], step=1,
                             key=f"sweeps_eta_{pruner}", help="The top 1/eta at a rung go on; rungs at epochs "
                             "min × eta^k. Optuna's defaults: 4 for successive halving, 3 for Hyperband")
    text = st.text_area("Search space", key="sweeps_space", height=220, help=SPACE_HELP)

    base = {**doc, "epochs": int(epochs), **({"validation": "holdout"} if holdout else {})}
    shape, classes, problem = common.data_dims(common.source())
    if problem:
        common.data_warning(problem)
    try:
        space = sweeps.space_from_inputs(text, method, int(budget), int(seed))
        search = sweeps.search_from_inputs(sampler, pruner, method, int(budget), int(seed), int(epochs), int(min_epochs),
                                           eta=eta, objective2=objective2)
        plan = common.lab().plan_sweep(base, space, shape, classes, search)
    except SpecError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    low, high = min(plan.params), max(plan.params)
    size = f"{low:,}" if low == high else f"{low:,} to {high:,}"
    st.markdown(f"**{plan.runs} runs** · {plan.epochs} epochs in all · {size} parameters each")
    preview = plan.table()
    st.dataframe(preview, hide_index=True, key="sweeps_preview", height=min(38 + 35 * plan.runs, 300),
                 column_config={**_value_columns(preview, plan.space.paths), "params": RUN_COLUMNS["params"]})
    st.text_input("tags", key="sweeps_tags", placeholder="muon lr-sweep", help=common.TAGS_HELP + "; every trial carries them")
    refused = common.lab().may("submit")
    st.button(f"Submit {plan.runs} runs", type="primary", icon=":material/play_arrow:", key="sweeps_submit",
              on_click=_submit, args=(base, space, search), disabled=bool(refused), help=refused)
    kind, message = st.session_state.pop("sweeps_result", None) or (None, "")
    if kind == "data":
        common.data_refused(message, problem)
    elif kind:
        getattr(st, kind)(message)


# ------------------------------------------------------------ existing sweeps


def _run_seeds(group_id: int) -> None:
    try:
        _, ids = common.lab().run_seeds_of_best(group_id, SEEDS_OF_BEST)
    except LabError as exc:
        st.session_state.sweeps_seeds_result = ("error", str(exc))
        return
    st.session_state.sweeps_seeds_result = ("success", f"Queued {len(ids)} seeds of the best: jobs #{ids[0]} to "
                                            f"#{ids[-1]}. The Leaderboard pools them with it once they finish.")


def _do(action, *args) -> None:
    """Button callback: run a Lab action, keep what it said (or its error) for the next draw."""
    try:
        said = action(*args)
    except LabError as exc:
        st.session_state.sweeps_action_result = ("error", str(exc))
        return
    st.session_state.sweeps_action_result = ("success", said)


def _resume(group_id: int) -> str:
    budget = {k: st.session_state.get(f"sweeps_resume_{k}_{group_id}") for k in ("max_trials", "max_epochs", "max_minutes")}
    return common.lab().resume_sweep(group_id, **budget)


def _stop_or_resume(group_id: int, status) -> None:
    """Stop a sweep that goes on; resume a stopped or idle one with a larger budget."""
    if status.stopped is None and not status.idle:
        st.button("Stop sweep", icon=":material/stop:", key="sweeps_stop", on_click=_do,
                  args=(common.lab().stop_sweep, group_id),
                  help="Cancel its queued trials; running ones stop after their current epoch, paused ones stay "
                       "paused. Resume it later, with a larger budget.")
    else:
        if status.stopped is None:
            st.info(status.idle_note, icon=":material/pause_circle:")
        else:
            st.warning(f"Stopped: {status.stopped}.", icon=":material/stop_circle:")
        a, b, c, d = st.columns(4, vertical_alignment="bottom")
        a.number_input("Max trials", min_value=1, value=status.max_trials, step=1, key=f"sweeps_resume_max_trials_{group_id}")
        b.number_input("Max epochs", min_value=1, value=status.max_epochs, step=1, key=f"sweeps_resume_max_epochs_{group_id}")
        c.number_input("Max minutes", min_value=0.1, value=status.max_minutes, key=f"sweeps_resume_max_minutes_{group_id}")
        d.button("Resume sweep" if status.stopped else "Search on", icon=":material/play_arrow:", key="sweeps_resume",
                 on_click=_do, args=(_resume, group_id),
                 help="Its stopped trials go on from their checkpoints; its sampler asks for more within the new budget.")
    kind, message = st.session_state.pop("sweeps_action_result", None) or (None, "")
    if kind:
        getattr(st, kind)(message)


def _search_status(group_id: int, status, archived: bool) -> None:
    """A searching sweep: how it searches, its budget, its trials by state, the best so far."""
    st.markdown(f"**Search:** {status.settings}")
    st.markdown("**Budget used:** " + " · ".join(status.budget))
    st.markdown("**Trials:** " + " · ".join(f"{n} {state}" for state, n in status.counts.items()))
    if status.in_trash:
        st.caption(f"Counted with them: {', '.join(f'#{r}' for r in status.in_trash)} in the trash (the search judged "
                   "its trials with them; `undelete` brings them back).")
    if status.best_run is None:
        st.markdown("**Best so far:** none yet (no trial has finished an epoch)")
    else:
        st.markdown(f"**Best so far:** [run #{status.best_run}](run?run={status.best_run}), "
                    f"{common.percent(status.best_value)} best validation accuracy; {status.seed_note}")
    refused = common.lab().may("submit")
    st.button(f"Run {SEEDS_OF_BEST} seeds of the best", icon=":material/replay:", key="sweeps_seeds",
              disabled=status.best_run is None or bool(refused), on_click=_run_seeds, args=(group_id,),
              help=refused or "Queue the best trial's settings again with new seeds, to see whether its lead is more than noise")
    kind, message = st.session_state.pop("sweeps_seeds_result", None) or (None, "")
    if kind:
        getattr(st, kind)(message)
    _stop_or_resume(group_id, status)
    search = common.lab().sweep_search_figures(group_id, archived)
    if not search.curves.empty:
        st.markdown("**Validation accuracy by epoch** (X: pruned, ‖: paused; hover for why)")
        st.plotly_chart(charts_sweep.intermediate(search.curves), key="sweeps_intermediate")
    if search.rungs is not None:
        st.markdown("**Rungs**: which trials reached which rung, their validation accuracy there, and what came next")
        common.table(search.rungs, hide_index=True, key="sweeps_rungs",
                     column_config={"val_accuracy": common.percent_column("val acc at the rung")})
    if search.front is not None:
        _front(group_id, search.front)


def _front(group_id: int, front) -> None:
    """A two-objective sweep: its complete trials with the Pareto front joined, and the front's runs."""
    st.markdown(f"**Pareto front**: validation accuracy against {front.label}; "
                f"{len(front.runs)} of {len(front.table)} complete trials are on it")
    if front.table.empty:
        st.info("No trial has completed with both objectives yet: the front appears as trials finish.")
        return
    st.plotly_chart(charts_sweep.pareto(front.table, front.label), key="sweeps_pareto")
    on = front.table[front.table["front"]].drop(columns="front").rename(columns={"cost": front.objective2})
    common.table(on, hide_index=True, key="sweeps_front",
                 column_config={"val_accuracy": common.percent_column("val acc (last epoch)")})
    st.markdown(f":material/balance: [Choose among the front's runs on the Model choice page](choice?front={group_id})")


def _sweep_detail(group_id: int) -> None:
    archived = common.show_archived("sweeps_archived")
    found = common.lab().sweep(group_id, archived)
    info, table = found.info, found.table
    st.caption(f"{info.method} sweep of {info.base.get('name', info.name)} over {', '.join(info.paths)}; "
               f"{len(info.run_ids)} runs, created {info.created}")
    status = common.lab().sweep_status(group_id)
    if status is not None:
        _search_status(group_id, status, archived)
    if found.left_out:
        st.caption(common.md(found.left_out))
    common.table(table.assign(open="run?run=" + table["run"].astype(str)), hide_index=True, key="sweeps_runs",
                 column_config={**_value_columns(table, info.paths), **RUN_COLUMNS}, column_order=["run", "open", *[c for c in table.columns if c != "run"]])
    st.markdown(f":material/leaderboard: [Compare this sweep's runs on the Leaderboard](leaderboard?sweep={group_id})")
    common.sweep_findings(found, key="sweeps")
    st.download_button("Report (HTML)", functools.partial(common.lab().sweep_report_html, group_id),
                       file_name=f"sweep-{info.number}-report.html", mime="text/html", on_click="ignore",
                       icon=":material/download:", key="sweeps_report",
                       help="This sweep's status, trials and figures in one page that opens offline "
                            f"(`python -m cifar_core sweep-report {info.number}` writes it with a Markdown copy)")


def _sweeps_list() -> None:
    table = common.lab().sweeps()
    if table.empty:
        st.info("No sweeps yet: describe one above and submit it.")
        return
    common.table(table.drop(columns="group"), hide_index=True, key="sweeps_table", column_config=LIST_COLUMNS)
    ids = [int(i) for i in table["group"]]
    wanted = st.query_params.get("sweep", "")
    if "sweeps_selected" not in st.session_state and wanted.isdigit() and int(wanted) in ids:
        st.session_state.sweeps_selected = int(wanted)
    if st.session_state.get("sweeps_selected") not in ids:
        st.session_state.sweeps_selected = ids[0]
    labels = {int(r.group): f"#{r.number} {r.name} ({r.method}, {r.runs} runs)" for r in table.itertuples()}
    st.selectbox("Sweep", ids, format_func=labels.get, key="sweeps_selected")
    _sweep_detail(st.session_state.sweeps_selected)


def render() -> None:
    st.title("Sweeps")
    st.subheader("New sweep")
    _new_sweep()
    st.divider()
    st.subheader("Sweeps")
    active = bool(common.lab().sweeps()["active"].sum())
    st.fragment(_sweeps_list, run_every=REFRESH if active else None)()


common.page(render)
