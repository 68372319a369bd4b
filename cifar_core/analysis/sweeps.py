"""Sweeps in the store: plan (expand and validate every run), submit as one group, and read back.

A sweep is a group of kind `queue.GROUP_SWEEP` whose detail holds the search space (`sweep.SweepSpace.to_dict`),
the base experiment and the swept paths; each of its jobs is an ordinary run whose spec carries
`sweep_params` ({path: value}). Planning is pure Python (no TensorFlow, no data read) so a page can
preview a sweep on every keystroke; `Lab.submit_sweep` reads the data source only for its image
shape and class count.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass, replace

import pandas as pd

from cifar_core.jobs import keeping, queue, results, store
from cifar_core.jobs.keeping import Hidden
from cifar_core.errors import NotFound, SpecError, SpecErrors
from cifar_core.spec import jsonread
from cifar_core.spec.layers import INPUT_SHAPE, NUM_CLASSES
from cifar_core.spec.summary import summarize
from cifar_core.spec.validate import parse_spec
from cifar_core.search.config import PrunerConfig, SearchConfig
from cifar_core.search.importance import NAME as IMPORTANCE_NAME
from cifar_core.search.importance import Importance
from cifar_core.spec.space import MAX_RUNS, NAME_PREFIX_KEPT, SweepSpace, documents, expand, first_free, load_space

TARGET = "best_val_accuracy"
RESERVED_PATHS = ("name", "sweep_params")  # set per run by the expansion itself
SWEEP_COLUMNS = ["group", "number", "name", "method", "params", "runs", "done", "stopped", "failed", "active", "best",
                 "best_run", "created"]
RESULT_COLUMNS = ["best_val_accuracy", "best_epoch", "test_accuracy", "params", "seconds_per_epoch"]


@dataclass(frozen=True)
class SweepPlan:
    """A sweep ready to enqueue: every run expanded, validated and counted."""

    base_name: str
    space: SweepSpace
    docs: tuple[dict, ...]  # normalised spec documents ("<base>-s01", ...), each with sweep_params
    params: tuple[int, ...]  # parameter count of each run's model
    search: SearchConfig | None = None  # how it searches (sampler, pruner, budgets); None: every run to its end
    first: int = 1  # the number of its first run's name
    input_shape: tuple = INPUT_SHAPE
    num_classes: int = NUM_CLASSES

    @property
    def runs(self) -> int:
        return len(self.docs)

    @property
    def epochs(self) -> int:
        """Epochs planned over all runs."""
        return sum(int(d["epochs"]) for d in self.docs)

    def table(self) -> pd.DataFrame:
        """One row per run: name, each swept path's value, params, epochs."""
        rows = [
            {"name": d["name"], **{p: d["sweep_params"].get(p) for p in self.space.paths}, "params": n, "epochs": d["epochs"]}
            for d, n in zip(self.docs, self.params)
        ]
        return pd.DataFrame(rows, columns=["name", *self.space.paths, "params", "epochs"])


@dataclass(frozen=True)
class SweepInfo:
    """What the store keeps about one sweep (its group row)."""

    id: int
    name: str
    space: dict  # SweepSpace.to_dict()
    base: dict  # the base experiment document
    run_ids: tuple[int, ...]
    created: pd.Timestamp
    number: int  # its place among the sweeps, from 1: what pages call it ("Sweep #1"); `id` is the store's group

    @property
    def paths(self) -> list[str]:
        return list(self.space.get("params", {}))

    @property
    def method(self) -> str:
        return str(self.space.get("method", ""))

    @property
    def log_paths(self) -> list[str]:
        """Paths drawn log-uniformly: best shown on a log axis."""
        return [p for p, r in self.space.get("params", {}).items() if "log_uniform" in r]


# ------------------------------------------------------------------ planning and submitting


def space_from_inputs(params_text: str, method: str, budget: int | None = None, seed: int = 0) -> dict:
    """A search-space document from a page's inputs: JSON text of the params object plus widgets.

    Text that is a whole space (it has a "params" key) is taken as written, widgets ignored.
    """
    try:
        doc = jsonread.loads(params_text, "the search space")
    except SpecError as exc:
        raise SpecError(str(exc), field="space") from None
    if isinstance(doc, dict) and "params" in doc:
        return doc
    space = {"method": method, "seed": int(seed), "params": doc}
    if method == "random" and budget is not None:
        space["budget"] = int(budget)
    return space


SAMPLER_LABELS = {"": "all at once (the method above)", "grid": "Optuna grid", "random": "Optuna random",
                  "tpe": "TPE (learns from ended trials)", "nsga2": "NSGA-II (two objectives, learns from ended trials)"}
OBJECTIVE2_LABELS = {"latency": "batch-1 p50 latency (ms)", "macs": "multiply-adds per image"}
PRUNER_LABELS = {"none": "none: every trial to its end", "median": "median", "percentile": "percentile (bottom 75% stop)",
                 "successive_halving": "successive halving (pause, promote)", "hyperband": "Hyperband (pause, promote)"}


def search_from_inputs(sampler: str, pruner: str, method: str, budget: int, seed: int, epochs: int,
                       min_epochs: int = 1, eta: int | None = None, objective2: str | None = None) -> SearchConfig | None:
    """A sweep's search from a page's inputs; None when neither a sampler nor a pruner is chosen
    (the classic sweep: every run of the space queued at once, each to its end). Without a
    sampler of its own, the search draws as the space's method says. `objective2` (latency |
    macs) is taken with the nsga2 sampler only."""
    if not sampler and pruner == "none":
        return None
    chosen = sampler or method
    trials = MAX_RUNS if chosen == "grid" else int(budget)  # a grid runs every combination
    judged = PrunerConfig(kind=pruner, min_epochs=min(int(min_epochs), int(epochs)), eta=eta and int(eta),
                          max_epochs=int(epochs))
    return SearchConfig(sampler=chosen, pruner=judged, seed=int(seed), max_trials=trials,
                        objective2=objective2 if chosen == "nsga2" else None)


def plan_sweep(
    base_doc: dict, space_doc, input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES, first: int = 1,
    search: SearchConfig | None = None,
) -> SweepPlan:
    """Expand `space_doc` (a dict, JSON text or file path) over `base_doc` and validate every run,
    numbering the runs' names from `first` (`next_run_number` keeps them unique across sweeps).

    All or nothing: SpecError(field="space") naming the first invalid run, its swept values and
    the path to change, and how many runs are invalid.
    """
    space = load_space(space_doc)
    _check_paths(space)
    # A JSON round trip drops shared sub-objects (a preset can list the same Dropout dict several
    # times), so setting one path changes one layer only.
    base = json.loads(json.dumps(base_doc))
    if search is None:
        docs = expand(base, space, first)
    else:
        search = _with_epochs(search, base)
        docs = documents(base, first_trials(base, space, search), first)
    specs, failures = [], []
    for doc in docs:
        try:
            specs.append(parse_spec(doc, input_shape, num_classes))
        except SpecErrors as exc:
            failures.append((doc, exc.errors))
    if failures:
        raise _invalid_runs(base, failures, len(docs), space.paths)
    params = tuple(summarize(s, input_shape, num_classes).total_params for s in specs)
    return SweepPlan(str(base.get("name") or "sweep"), space, tuple(s.to_dict() for s in specs), params, search, first,
                     tuple(input_shape), int(num_classes))


def first_trials(base: dict, space: SweepSpace, search: SearchConfig) -> list[dict]:
    """The swept values of the trials a searching sweep queues at once: every trial (up to
    max_trials) for grid and random; for TPE and NSGA-II, which learn from the trials that ended,
    the first few, then one more as each ends (jobs/sweeping.py)."""
    from cifar_core.jobs.sweeping import ACTIVE_TRIALS
    from cifar_core.search import samplers
    from cifar_core.search.config import LEARNING_SAMPLERS

    n = min(search.max_trials, ACTIVE_TRIALS) if search.sampler in LEARNING_SAMPLERS else search.max_trials
    return samplers.next_params(space, search.sampler, search.seed, [], n, samplers.whole_paths(base, space),
                                search.population)


def _with_epochs(search: SearchConfig, base: dict) -> SearchConfig:
    """The pruner judges against the trials' own length unless told otherwise (Hyperband needs it)."""
    if search.pruner.max_epochs is not None:
        return search
    return replace(search, pruner=PrunerConfig.from_dict({**search.pruner.to_dict(), "max_epochs": int(base["epochs"])}))


def next_run_number(conn: sqlite3.Connection, base_doc: dict) -> int:
    """The number the next sweep over `base_doc` starts its run names at: past every
    "<base>-sNN" already in the store, so two sweeps over one base never share a run name."""
    base_name = str(base_doc.get("name") or "sweep")
    return first_free(base_name, store.job_names(conn, base_name[:NAME_PREFIX_KEPT]))


def _check_paths(space: SweepSpace) -> None:
    for p in space.params:
        if p.path.split(".")[0] in RESERVED_PATHS:
            raise SpecError(f"sweep path {p.path!r} is set for each run by the sweep; sweep a training setting", field="space")
        odd = [v for v in p.values if isinstance(v, (list, dict))]
        if odd:
            raise SpecError(
                f"{p.path} values must be single numbers, text or true/false, got {odd[0]!r}: "
                f"use single values (to vary one entry of a list setting, sweep '{p.path}.0')",
                field="space",
            )


def _invalid_runs(base: dict, failures: list[tuple[dict, list[SpecError]]], total: int, paths: list[str]) -> SpecError:
    doc, errors = failures[0]
    culprits = sorted({p for e in errors for p in paths if _touches(e, p)})
    problem = "; ".join(str(e) for e in errors)
    if not culprits:
        return SpecError(
            f"the base experiment {base.get('name')!r} is invalid, so every run is: {problem}; "
            "fix it in the Builder first (nothing was queued)",
            field="space",
        )
    chosen = ", ".join(f"{p}={json.dumps(v)}" for p, v in doc["sweep_params"].items())
    return SpecError(
        f"run {doc['name']!r} ({chosen}) is invalid: {problem}; {len(failures)} of {total} runs are invalid, "
        f"nothing was queued: change the range of {', '.join(culprits)} in the search space",
        field="space",
    )


def _touches(error: SpecError, path: str) -> bool:
    """Whether a validation error is about the setting at `path`."""
    parts = path.split(".")
    if error.layer is not None:
        return len(parts) >= 2 and parts[0] == "layers" and parts[1] == str(error.layer)
    return error.field is not None and parts[0] == error.field


def group_of(plan: SweepPlan, base_doc: dict) -> tuple[str, str, dict]:
    """The queue group of a planned sweep: its kind, name, and the detail read back later (with a
    search: how it searches, and what a later trial's document is validated against)."""
    detail = {"space": plan.space.to_dict(), "base": json.loads(json.dumps(base_doc)), "paths": plan.space.paths}
    if plan.search is not None:
        detail.update(search=plan.search.to_dict(), first=plan.first, input_shape=list(plan.input_shape),
                      num_classes=plan.num_classes)
    return queue.GROUP_SWEEP, plan.base_name, detail


# ------------------------------------------------------------------ reading sweeps back


def get_sweep(conn: sqlite3.Connection, group_id: int) -> SweepInfo:
    row = store.group_row(conn, int(group_id), queue.GROUP_SWEEP)
    if row is None:
        raise NotFound(f"no sweep {group_id}; `python -m cifar_core sweep SPEC --space SPACE.json` starts one")
    return _info(conn, row)


def _info(conn: sqlite3.Connection, row) -> SweepInfo:
    detail = json.loads(row["detail_json"])
    ids = store.group_job_ids(conn, row["id"])
    return SweepInfo(
        id=row["id"], name=row["name"], space=detail.get("space", {}), base=detail.get("base", {}),
        run_ids=tuple(ids), created=pd.to_datetime(row["created_at"], unit="s").floor("s"),
        number=store.group_number(conn, row["id"], queue.GROUP_SWEEP),
    )


def list_sweeps(conn: sqlite3.Connection) -> pd.DataFrame:
    """Every sweep, newest first: its group id, its number among the sweeps (from 1), runs, how many
    succeeded (done), were pruned or paused by its pruner (stopped), failed or were cancelled, are
    still queued or running (active), and the best validation accuracy with its run."""
    rows = store.group_rows(conn, queue.GROUP_SWEEP)
    infos = [_info(conn, r) for r in rows]
    board = results.leaderboard_rows(conn, [i for info in infos for i in info.run_ids])
    return pd.DataFrame([_sweep_row(info, board) for info in infos], columns=SWEEP_COLUMNS)


def _sweep_row(info: SweepInfo, board: pd.DataFrame) -> dict:
    runs = board[board["run"].isin(info.run_ids)]
    status = runs["status"]
    scored = runs.dropna(subset=[TARGET])
    best = scored.loc[scored[TARGET].astype(float).idxmax()] if not scored.empty else None
    return {
        "group": info.id, "number": info.number, "name": info.name, "method": info.method, "params": ", ".join(info.paths),
        "runs": len(info.run_ids), "done": int((status == queue.SUCCEEDED).sum()),
        "stopped": int(status.isin([queue.PRUNED, queue.PAUSED]).sum()),
        "failed": int(status.isin([queue.FAILED, queue.CANCELLED]).sum()),
        "active": int(status.isin([queue.QUEUED, queue.RUNNING]).sum()),
        "best": None if best is None else float(best[TARGET]),
        "best_run": None if best is None else int(best["run"]),
        "created": info.created,
    }


def sweep_table(conn: sqlite3.Connection, group_id: int, hide: Collection[int] = ()) -> pd.DataFrame:
    """One row per run of the sweep (in run order) but those in `hide` and in the trash: run, name,
    status, each swept path's value, then best_val_accuracy, best_epoch, test_accuracy, params,
    seconds_per_epoch."""
    info = get_sweep(conn, group_id)
    board = results.leaderboard_rows(conn, list(info.run_ids)).set_index("run")  # never a run in the trash
    specs = results.run_specs(conn, list(info.run_ids))
    rows = []
    for run_id in (r for r in info.run_ids if r in board.index and r not in hide):
        chosen = specs[run_id].get("sweep_params") or {}
        b = board.loc[run_id]
        rows.append({"run": run_id, "name": b["name"], "status": b["status"], **{p: chosen.get(p) for p in info.paths},
                     **{c: b[c] for c in RESULT_COLUMNS}})
    table = pd.DataFrame(rows, columns=["run", "name", "status", *info.paths, *RESULT_COLUMNS])
    for c in ("best_val_accuracy", "test_accuracy", "seconds_per_epoch"):
        table[c] = pd.to_numeric(table[c], errors="coerce")
    return table


def sweep_importance(conn: sqlite3.Connection, group_id: int) -> Importance:
    """Each swept path's fANOVA importance (Optuna) over the sweep's complete trials, most important
    first, or why it cannot be told yet (`search.importance.fanova`). Kept per sweep state: the
    forest is fitted again only when the sweep's complete trials change (seconds for 200 trials,
    where a page refreshes every 2 s while trials run)."""
    from cifar_core.jobs import sweeping
    from cifar_core.search.config import COMPLETE

    detail = store.group_detail(conn, int(group_id)) or {}
    done = tuple((t.trial_id, json.dumps(t.params, sort_keys=True), tuple(sorted(t.curve.items())))
                 for t in sweeping.trials(conn, group_id) if t.state == COMPLETE)
    return _importance(json.dumps({"space": detail["space"], "base": detail["base"]}, sort_keys=True), done)


@functools.lru_cache(maxsize=32)
def _importance(setting: str, done: tuple) -> Importance:
    """fANOVA over the complete trials `done` ((id, params as JSON, curve items)) of a sweep whose
    space and base experiment `setting` holds (JSON): pure in its arguments, so cached."""
    from cifar_core.search import importance, samplers
    from cifar_core.search.config import COMPLETE, TrialCurve

    detail = json.loads(setting)
    space = load_space(detail["space"])
    trials = [TrialCurve(i, json.loads(params), dict(curve), COMPLETE) for i, params, curve in done]
    return importance.fanova(space, trials, samplers.whole_paths(detail["base"], space))


@dataclass(frozen=True)
class SweepResults:
    """What a page draws for one sweep: its description, its runs' table (`sweep_table`), the
    settings ranked by fANOVA importance (`sweep_importance`) and the sentence that says which mattered."""

    info: SweepInfo
    table: pd.DataFrame
    importance: Importance
    sentence: str
    left_out: str = ""  # which trials the table leaves out and why ("" when none)

    @property
    def ranked(self) -> list[tuple[str, float]]:
        return self.importance.ranked

    @property
    def finished(self) -> int:
        """Succeeded runs with a best validation accuracy: the ones the charts can draw."""
        return int(((self.table["status"] == queue.SUCCEEDED) & self.table[TARGET].notna()).sum())


def sweep_results(conn: sqlite3.Connection, group_id: int, hidden: Hidden | None = None) -> SweepResults:
    """Everything the sweep views show for sweep `group_id` (NotFound if there is no such sweep);
    its table leaves out the trials `hidden` hides (the trash always). The importance is the
    search's, over every complete trial the store holds."""
    info = get_sweep(conn, group_id)
    hidden = hidden or keeping.hidden(conn, show_archived=True)
    table = sweep_table(conn, group_id, hidden.runs)
    found = sweep_importance(conn, group_id)
    return SweepResults(info, table, found, importance_sentence(found), left_out_text(info.run_ids, hidden))


def left_out_text(run_ids, hidden: Hidden) -> str:
    """"Left out: #5 in the trash (...); #7 archived (...)", for the trials a view leaves out."""
    trashed = [r for r in run_ids if r in hidden.trashed]
    archived = [r for r in run_ids if r in hidden.runs and r in hidden.archived]
    said = []
    if trashed:
        said.append(f"{_ids(trashed)} in the trash (restorable: `undelete`; the search still counts "
                    f"{'them' if len(trashed) > 1 else 'it'})")
    if archived:
        said.append(f"{_ids(archived)} archived (the 'Show archived' toggle shows {'them' if len(archived) > 1 else 'it'})")
    return f"Left out: {'; '.join(said)}." if said else ""


def _ids(run_ids) -> str:
    return ("trial " if len(run_ids) == 1 else "trials ") + ", ".join(f"#{r}" for r in run_ids)


FEW_TRIALS = 5  # at most this many complete trials: the importance is a hint


def importance_sentence(found: Importance) -> str:
    """One plain sentence saying which setting mattered most by fANOVA (or why it cannot be told yet)."""
    if found.why_not:
        return f"{found.why_not[0].upper()}{found.why_not[1:]}, to tell which setting mattered."
    (top, share), rest = found.ranked[0], found.ranked[1:]
    if share <= 0.0:
        return f"Over {found.trials} complete runs, no swept setting explains the spread in best validation accuracy."
    text = (f"**{top}** mattered most: {IMPORTANCE_NAME} gives it {share:.0%} of the variance in best validation "
            f"accuracy over {found.trials} complete runs")
    if rest:
        text += f" (next: {rest[0][0]}, {rest[0][1]:.0%})"
    if found.trials <= FEW_TRIALS:
        text += (f". Over {found.trials} runs this is a hint, not a finding: repeat values (other seeds, a larger "
                 "budget) before trusting it")
    return text + "."


def example_params(base_doc: dict) -> dict:
    """A sensible starting search space for `base_doc`: the learning rate log-uniformly a decade
    either side of its own, a few batch sizes, and the first Dropout's rate if it has one."""
    lr = base_doc.get("learning_rate", 1e-3)
    lr = lr if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 else 1e-3
    params = {
        "learning_rate": {"log_uniform": [_round(lr / 10), _round(min(lr * 10, 1.0))]},
        "batch_size": {"values": [32, 64, 128]},
    }
    if "batch_size" not in base_doc:
        params.pop("batch_size")
    if "learning_rate" not in base_doc:
        params.pop("learning_rate")
    layers = base_doc.get("layers") if isinstance(base_doc.get("layers"), list) else []
    for i, layer in enumerate(layers):
        if isinstance(layer, dict) and layer.get("type") == "Dropout" and "rate" in layer:
            params[f"layers.{i}.rate"] = {"uniform": [0.1, 0.5]}
            break
    if not params and "seed" in base_doc:  # nothing else to vary: at least see the spread over seeds
        params["seed"] = {"values": [0, 1, 2]}
    return params


def params_text(params: dict) -> str:
    """A search space's params as JSON text, one setting per line (for a text box)."""
    lines = [f"  {json.dumps(path)}: {json.dumps(rng)}" for path, rng in params.items()]
    return "{\n" + ",\n".join(lines) + "\n}"


def _round(value: float) -> float:
    return float(f"{value:.3g}") if math.isfinite(value) else value


# ------------------------------------------------------------------ a sweep that searches: where it stands

STATUS_STATES = ("running", "queued", "paused", "pruned", "complete", "cancelled", "failed")
_STATE_OF = {queue.RUNNING: "running", queue.QUEUED: "queued", queue.PAUSED: "paused", queue.PRUNED: "pruned",
             queue.SUCCEEDED: "complete", queue.FAILED: "failed", queue.CANCELLED: "cancelled"}
SAMPLER_WORDS = {"grid": "Optuna's grid (each combination once)", "random": "Optuna's random draws",
                 "tpe": "TPE (learns from the ended trials, two at a time)",
                 "nsga2": "NSGA-II (two objectives; learns from the ended trials, two at a time)"}


def search_words(search: SearchConfig) -> str:
    """How a sweep searches, in one sentence: the sampler and its seed, then the pruner's rule."""
    p = search.pruner
    if p.kind == "none":
        pruner = "no pruner: every trial runs to its end"
    elif p.kind == "median":
        pruner = (f"median pruner: from epoch {p.min_epochs}, a trial whose best so far is below the median of the "
                  f"completed trials at that epoch stops (once {p.startup_trials} have completed)")
    elif p.kind == "percentile":
        pruner = (f"percentile pruner: from epoch {p.min_epochs}, only trials in the top {p.percentile:g}% of the "
                  f"completed trials at that epoch go on (once {p.startup_trials} have completed)")
    else:
        last = p.max_epochs or p.min_epochs * p.eta ** 3
        rungs = [p.min_epochs * p.eta ** k for k in range(20) if p.min_epochs * p.eta ** k < last]
        kind = "successive halving" if p.kind == "successive_halving" else "Hyperband (brackets of successive halving)"
        where = f"rungs at epoch {', '.join(map(str, rungs))}" if p.kind == "successive_halving" else \
            f"first rungs from epoch {p.min_epochs} to {last}"
        pruner = (f"{kind}, {where}: the top 1/{p.eta} at a rung go on, the others pause and are promoted if "
                  "they later rank there")
    if search.objective2:
        return (f"{SAMPLER_WORDS[search.sampler]}, seed {search.seed}: validation accuracy (higher) against "
                f"{OBJECTIVE2_LABELS[search.objective2]} (lower), generations of {search.population} trials; {pruner}")
    return f"{SAMPLER_WORDS[search.sampler]}, seed {search.seed}; {pruner}"


@dataclass(frozen=True)
class SearchStatus:
    """Where a searching sweep stands: its settings in words, the budget used, its trials by state,
    and the best so far with its seed noise (other seeds of the same configuration in the lab)."""

    settings: str
    trials: int  # trials started (queued ones included: they hold a place in the budget)
    max_trials: int
    epochs: int  # epochs trained, summed over trials
    max_epochs: int | None
    minutes: float  # train time, summed over trials and attempts
    max_minutes: float | None
    counts: dict[str, int]  # STATUS_STATES -> trials
    best_run: int | None  # the trial with the highest validation accuracy so far
    best_value: float | None
    seed_runs: int = 0  # succeeded runs of the best's configuration (any seed), in the whole lab
    seed_std: float | None = None  # their best validation accuracy's standard deviation (2 or more)
    stopped: str | None = None  # why the sweep is stopped (by hand, or its budget spent); None: it goes on
    in_trash: tuple[int, ...] = ()  # its trials in the trash: still counted above (the store is the search's truth)

    @property
    def budget(self) -> list[str]:
        """The budget used, one phrase per budget the sweep has."""
        said = [f"{self.trials} of {self.max_trials} trials started"]
        said.append(f"{self.epochs} epochs trained" + (f" of {self.max_epochs}" if self.max_epochs else ""))
        said.append(f"{self.minutes:.1f} minutes of training" + (f" of {self.max_minutes:g}" if self.max_minutes else ""))
        return said

    @property
    def idle(self) -> bool:
        """Not stopped, yet nothing queued or running: every trial ended or waits paused at a rung."""
        return self.stopped is None and self.counts["running"] + self.counts["queued"] == 0

    @property
    def idle_note(self) -> str:
        paused = self.counts["paused"]
        waiting = (f"; {paused} paused trial{'s wait' if paused != 1 else ' waits'} at a rung, promoted only if later "
                   "trials do worse there") if paused else ""
        return f"Idle: nothing is queued or running{waiting}. Raise the budget to search on."

    @property
    def seed_note(self) -> str:
        if self.seed_std is None or self.seed_runs < 2:
            return "one seed: its seed noise is unknown"
        return f"seed noise ±{100 * self.seed_std:.1f} points (standard deviation over {self.seed_runs} seeds)"


def search_status(conn: sqlite3.Connection, group_id: int) -> SearchStatus | None:
    """Where searching sweep `group_id` stands; None for a sweep without a search (all at once)."""
    from cifar_core.jobs import sweeping

    search = sweeping.search_of(conn, group_id)
    if search is None:
        return None
    jobs, rows = store.group_trials(conn, group_id)
    counts = dict.fromkeys(STATUS_STATES, 0)
    for j in jobs:
        counts[_STATE_OF[j["state"]]] += 1
    scored = [r for r in rows if r["val_accuracy"] is not None]
    best = max(scored, key=lambda r: r["val_accuracy"], default=None)
    trashed = keeping.hidden(conn).trashed
    status = SearchStatus(
        settings=search_words(search), trials=len(jobs), max_trials=search.max_trials, epochs=len(rows),
        max_epochs=search.max_epochs, minutes=sum(j["train_seconds"] or 0.0 for j in jobs) / 60,
        max_minutes=search.max_minutes, counts=counts, best_run=None if best is None else int(best["run_id"]),
        best_value=None if best is None else float(best["val_accuracy"]),
        stopped=(store.group_detail(conn, group_id) or {}).get("stopped"),
        in_trash=tuple(j["id"] for j in jobs if j["id"] in trashed),
    )
    return status if best is None else replace(status, **_seed_spread(conn, status.best_run))


def _seed_spread(conn: sqlite3.Connection, run_id: int) -> dict:
    """The succeeded runs of `run_id`'s configuration (every setting but the seed, on its data
    source) anywhere in the lab, and the spread of their best validation accuracy."""
    board = results.leaderboard(conn)
    key = board.loc[board["run"] == run_id, "config"]
    same = board[(board["config"] == key.iloc[0]) & (board["status"] == queue.SUCCEEDED)] if len(key) else board.iloc[0:0]
    values = same[TARGET].dropna().astype(float)
    return {"seed_runs": len(values), "seed_std": float(values.std()) if len(values) >= 2 else None}


def seeds_of(conn: sqlite3.Connection, run_id: int) -> tuple[dict, str, int]:
    """What running more seeds of a sweep's trial queues: its spec without the sweep's
    record of its choice (they are repeats, not trials), its data source, and the first new seed
    (the trial's own seed + 1, so every seed is new)."""
    job = queue.get_job(conn, run_id)
    doc = {k: v for k, v in job.spec.items() if k != "sweep_params"}
    return doc, job.data_source, int(doc.get("seed", 0)) + 1


# ------------------------------------------------------------------ a searching sweep's figures


CURVE_COLUMNS = ["run", "name", "state", "epoch", "val_accuracy", "reason"]
RUNG_COLUMNS = ["run", "name", "bracket", "rung", "epoch", "val_accuracy", "outcome"]


def trial_curves(conn: sqlite3.Connection, group_id: int, hide: Collection[int] = ()) -> pd.DataFrame:
    """Every trial's validation accuracy by epoch (one row per recorded epoch, trials in start
    order; none of those in `hide`), with its state and, for a pruned, paused or promoted trial,
    the reason in words."""
    jobs, rows = store.group_trials(conn, group_id)
    said = {j["id"]: (j["name"], j["state"], j["error"] or "") for j in jobs}
    out = [{"run": r["run_id"], "name": said[r["run_id"]][0], "state": said[r["run_id"]][1], "epoch": int(r["epoch"]),
            "val_accuracy": r["val_accuracy"], "reason": said[r["run_id"]][2]}
           for r in rows if r["val_accuracy"] is not None and r["run_id"] not in hide]
    return pd.DataFrame(out, columns=CURVE_COLUMNS)


FRONT_COLUMNS = ["run", "name", "val_accuracy", "cost", "front"]


@dataclass(frozen=True)
class SweepFront:
    """A two-objective sweep's complete trials (`table`: run, name, val_accuracy (its last
    epoch's, the objective NSGA-II maximises), cost (latency in ms or multiply-adds, minimised),
    front: on the Pareto front), cheapest first."""

    objective2: str  # latency | macs
    table: pd.DataFrame

    @property
    def label(self) -> str:
        return OBJECTIVE2_LABELS[self.objective2]

    @property
    def runs(self) -> list[int]:
        """The front's runs, cheapest first."""
        return [int(r) for r in self.table.loc[self.table["front"], "run"]]


def sweep_front(conn: sqlite3.Connection, group_id: int) -> SweepFront | None:
    """The Pareto front of a two-objective (NSGA-II) sweep, from what the store holds; None for a
    sweep with one objective."""
    from cifar_core.jobs import sweeping
    from cifar_core.search import pareto

    search = sweeping.search_of(conn, group_id)
    if search is None or not search.objective2:
        return None
    read = store.group_trials(conn, group_id)
    names = {j["id"]: j["name"] for j in read[0]}
    both = pareto.scored(sweeping.trials(conn, group_id, search.objective2, read))
    on = set(pareto.front(both))
    table = pd.DataFrame([{"run": t.trial_id, "name": names[t.trial_id], "val_accuracy": t.objective,
                           "cost": t.value2, "front": t.trial_id in on} for t in both], columns=FRONT_COLUMNS)
    return SweepFront(search.objective2, table.sort_values(["cost", "run"], ignore_index=True))


def front_sweeps(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    """The two-objective sweeps, newest first: (group id, "sweep #N name: accuracy vs latency")."""
    out = []
    for row in store.group_rows(conn, queue.GROUP_SWEEP):
        search = (json.loads(row["detail_json"]) or {}).get("search") or {}
        if search.get("objective2") in OBJECTIVE2_LABELS:
            number = store.group_number(conn, row["id"], queue.GROUP_SWEEP)
            out.append((int(row["id"]), f"sweep #{number} {row['name']}: accuracy against "
                                         f"{OBJECTIVE2_LABELS[search['objective2']]}"))
    return out


@dataclass(frozen=True)
class SearchFigures:
    """What a searching sweep's figures draw: its trials' curves, under successive halving or
    Hyperband its rung table, and with two objectives its Pareto front (else None)."""

    curves: pd.DataFrame
    rungs: pd.DataFrame | None
    front: SweepFront | None = None


def search_figures(conn: sqlite3.Connection, group_id: int, hide: Collection[int] = ()) -> SearchFigures:
    """The figures of what the search did; the curves and the rung table leave out the trials in
    `hide` (the rungs were judged with them: the front and the decisions are the search's)."""
    rungs = rung_table(conn, group_id)
    return SearchFigures(trial_curves(conn, group_id, hide), None if rungs is None else rungs[~rungs["run"].isin(hide)],
                         sweep_front(conn, group_id))


def rung_table(conn: sqlite3.Connection, group_id: int) -> pd.DataFrame | None:
    """Under successive halving or Hyperband: which trials reached which rung, their validation
    accuracy there and what happened next (went on, paused, promoted, pruned, completed); None
    for a sweep without rungs. A promoted trial waiting in the queue says so at its last rung."""
    from cifar_core.jobs import sweeping
    from cifar_core.search.config import RUNG_PRUNERS
    from cifar_core.search.rungs import JUDGED, PROMOTED, rung_entries

    search = sweeping.search_of(conn, group_id)
    if search is None or search.pruner.kind not in RUNG_PRUNERS:
        return None
    jobs, rows = store.group_trials(conn, group_id)
    times: dict[int, dict[int, float]] = {}
    for r in rows:
        times.setdefault(r["run_id"], {})[int(r["epoch"])] = float(r["recorded_at"])
    job = {j["id"]: j for j in jobs}
    entries = rung_entries(search.pruner, sweeping.trials(conn, group_id), times)
    table = pd.DataFrame([{
        "run": e.trial_id, "name": job[e.trial_id]["name"], "bracket": e.bracket, "rung": e.rung, "epoch": e.epoch,
        "val_accuracy": e.value,
        "outcome": PROMOTED if e.outcome == JUDGED and job[e.trial_id]["state"] == queue.QUEUED
        and (job[e.trial_id]["error"] or "").startswith("promoted") else e.outcome,
    } for e in entries], columns=RUNG_COLUMNS)
    return table if search.pruner.kind == "hyperband" else table.drop(columns="bracket")
