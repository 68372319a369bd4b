"""Choosing the model for production: a deployment scorecard per finished run, candidates (the
seeds of one experiment pooled), the accuracy-latency Pareto front and the ranking rule. The
written recommendation is `analysis.recommend`'s, the figure `charts.choice`'s.

The ranking rule (RANKING_RULE, tested in tests/test_choice.py):

1. A candidate is a configuration (`spec.identity`): the succeeded runs with the same settings
   (all but the seed and the name) on the same data source, as the leaderboard groups them. With several seeds its accuracy is their mean (spread: std)
   and its costs the median; its representative run, the one compared and exported, is the seed
   with the highest test accuracy.
2. The reference is the most accurate candidate (highest mean test accuracy; ties: the faster).
3. Eligible are the candidates on the accuracy-latency Pareto front (no other candidate is at
   least as accurate and at least as fast, and strictly better in one) whose mean test accuracy
   is within TOLERANCE (1 point) of the reference's and which McNemar's test on the stored test
   predictions (representative runs, ALPHA 0.05) does not find significantly worse than it.
4. Recommended is the eligible candidate with the lowest batch-1 p50 latency, where latencies
   closer than the measurement's noise are ties (`latency_ties`: TIE_PCT, 10%, or the larger of
   the two candidates' measured spreads between rounds). Among tied candidates the one with fewer
   multiply-adds per image wins, then the smaller model file, then the more accurate. The
   reference is always eligible, so there always is one.

Why: below about a point of accuracy, a model that is not measurably worse on the same 10,000
test images but answers faster is the better production choice; the tolerance keeps a small
test set (where McNemar can separate little) from recommending a much weaker model.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from cifar_core.analysis.diagnosis import verdicts
from cifar_core.analysis.recommend import recommendation_text
from cifar_core.errors import LabError
from cifar_core.jobs import queue, results, store
from cifar_core.spec import identity

ALPHA = 0.05  # McNemar significance level
TOLERANCE = 0.01  # accuracy (fraction) an eligible candidate may be below the reference
TIE_PCT = 10.0  # latencies closer than this (% of the faster), or than their measured spread, tie

RANKING_RULE = (
    "Candidates are configurations (runs with the same settings but the seed and the name, on the same data source; "
    "several seeds give a mean and spread). Among the candidates on the accuracy-latency Pareto front whose "
    f"mean test accuracy is within {TOLERANCE * 100:g} point of the most accurate candidate and which McNemar's "
    f"test (alpha {ALPHA:g}, stored test predictions) does not find significantly worse than it, the one with "
    f"the lowest batch-1 p50 latency is recommended; latencies within {TIE_PCT:g}% of each other (or within their "
    "measured spread between rounds, if larger) are ties, decided by fewer multiply-adds per image, then the "
    "smaller model file, then higher accuracy."
)

SCORECARD_COLUMNS = [
    "run", "name", "label", "key", "seed", "group", "data_source", "validation", "test_accuracy", "test_loss",
    "params", "macs", "model_bytes", "latency_p50_ms", "latency_p95_ms", "latency_spread_pct", "throughput_ips",
    "measured_while_busy", "measured_load", "latency_session", "train_seconds", "epochs", "seconds_per_epoch",
    "final_accuracy", "final_val_accuracy", "best_val_accuracy",
    "gap", "verdict", "diagnosis",
]
CANDIDATE_COLUMNS = [
    "key", "label", "name", "run", "runs", "run_ids", "data_source", "validation", "test_accuracy",
    "test_accuracy_std", "test_accuracy_min", "test_accuracy_max", "params", "macs", "model_bytes", "latency_p50_ms",
    "latency_p95_ms", "latency_spread_pct", "throughput_ips", "measured_while_busy", "measured_load", "train_seconds",
    "epochs", "gap", "verdict", "diagnosis",
]


# ---------------------------------------------------------------- the scorecard


def _key(spec: dict, source: str) -> str:
    """Identity of an experiment: the lab's one notion of a configuration (`spec.identity`)."""
    return identity.config_key(spec, source)


def sources(conn: sqlite3.Connection, hide: Collection[int] = ()) -> list[str]:
    """Data sources of the succeeded runs (but those in `hide`), most recently used first."""
    known = store.data_sources(conn, queue.SUCCEEDED)
    if not hide:
        return known
    shown = {r["data_source"] for r in store.cost_rows(conn, queue.SUCCEEDED, None, None) if r["run"] not in hide}
    return [s for s in known if s in shown]


def scorecard(conn: sqlite3.Connection, source: str | None = None, run_ids: list[int] | None = None,
              hide: Collection[int] = ()) -> pd.DataFrame:
    """Every succeeded run (of one data source, or of `run_ids`; none in `hide`: keeping.Hidden.runs)
    with what it costs to deploy: test accuracy, parameters, model file bytes, batch-1 latency
    p50/p95, batch-256 throughput, training time, overfitting gap (final train - validation
    accuracy) and diagnosis."""
    ids = None if run_ids is None else [int(i) for i in run_ids]
    rows = [r for r in store.cost_rows(conn, queue.SUCCEEDED, source, ids) if r["run"] not in hide]
    if not rows:
        return pd.DataFrame(columns=SCORECARD_COLUMNS)
    cost = pd.DataFrame([dict(r) for r in rows])
    specs = cost.pop("spec_json").map(json.loads)
    cost["key"] = [_key(s, src) for s, src in zip(specs, cost["data_source"])]
    ids = cost["run"].tolist()
    board = results.leaderboard_rows(conn, ids).drop(columns=["status", "created", "optimizer", "learning_rate",
                                                             "batch_size", "epochs_planned", "best_epoch",
                                                             "data_source"])
    card = board.merge(cost, on="run").merge(
        verdicts(conn, ids).rename(columns={"title": "diagnosis"})[["run", "verdict", "diagnosis"]], on="run", how="left"
    )
    card["measured_while_busy"] = card["measured_while_busy"].fillna(0).astype(bool)
    card["label"] = _labels(card)
    return card.sort_values("run").reset_index(drop=True)[SCORECARD_COLUMNS]


def _labels(card: pd.DataFrame) -> list[str]:
    """The experiment name, or "name [first run]" when one name covers several settings."""
    first = card.groupby("key")["run"].min()
    keys_per_name = card.groupby("name")["key"].nunique()
    return [
        name if keys_per_name[name] == 1 else f"{name} [#{first[key]}]" for name, key in zip(card["name"], card["key"])
    ]


def candidates(card: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment (see the module doc): accuracy mean/std/min/max over its seeds,
    median costs, and its representative run (the most accurate seed)."""
    if card.empty:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS)
    rows = []
    for key, part in card.groupby("key", sort=False):
        best = part.sort_values(["test_accuracy", "run"], ascending=[False, True]).iloc[0]
        acc = part["test_accuracy"].astype(float)
        rows.append({
            "key": key, "label": best["label"], "name": best["name"], "run": int(best["run"]), "runs": len(part),
            "run_ids": ", ".join(f"#{r}" for r in part["run"]), "data_source": best["data_source"],
            "validation": best["validation"], "test_accuracy": acc.mean(),
            "test_accuracy_std": acc.std() if len(part) > 1 else float("nan"),
            "test_accuracy_min": acc.min(), "test_accuracy_max": acc.max(), "params": int(best["params"]),
            "macs": best.get("macs", np.nan), "model_bytes": best["model_bytes"],
            "latency_p50_ms": part["latency_p50_ms"].median(), "latency_p95_ms": part["latency_p95_ms"].median(),
            "latency_spread_pct": _pooled_spread(part), "throughput_ips": part["throughput_ips"].median(),
            "measured_while_busy": bool(part["measured_while_busy"].any()),
            "measured_load": _optional(part, "measured_load").max(), "train_seconds": part["train_seconds"].mean(),
            "epochs": _optional(part, "epochs").max(), "gap": part["gap"].mean(), "verdict": best["verdict"], "diagnosis": best["diagnosis"],
        })
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)


def _optional(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column that older scorecards and hand-made frames may lack, as floats (NaN if absent)."""
    if column not in frame:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _pooled_spread(part: pd.DataFrame) -> float:
    """Latency noise of a candidate's seeds, in % of their median p50: the largest of each run's
    spread between rounds and of the spread between the seeds' p50s (one architecture, so the
    seeds' latencies differ only by noise). NaN when nothing says how noisy it is."""
    p50 = _optional(part, "latency_p50_ms").dropna()
    between = (p50.max() - p50.min()) / p50.median() * 100 if len(p50) > 1 and p50.median() > 0 else np.nan
    known = [v for v in (_optional(part, "latency_spread_pct").max(), between) if v == v]
    return float(max(known)) if known else float("nan")


# ---------------------------------------------------------------- Pareto front and ranking


def pareto_front(accuracy, latency) -> np.ndarray:
    """True for the points no other point dominates (at least as accurate and at least as fast,
    strictly better in one). An unmeasured latency (NaN) counts as slowest."""
    acc = np.asarray(accuracy, dtype=np.float64)
    lat = np.nan_to_num(np.asarray(latency, dtype=np.float64), nan=np.inf)
    if acc.shape != lat.shape:
        raise LabError(f"accuracy has {acc.size} values but latency {lat.size}; give one of each per candidate")
    front = np.ones(acc.size, dtype=bool)
    for i in range(acc.size):
        dominated = (acc >= acc[i]) & (lat <= lat[i]) & ((acc > acc[i]) | (lat < lat[i]))
        front[i] = not dominated.any()
    return front


def reference_index(cands: pd.DataFrame):
    """Index of the most accurate candidate (ties: the faster, then the earlier run)."""
    order = cands.assign(_lat=cands["latency_p50_ms"].astype(float).fillna(np.inf)).sort_values(
        ["test_accuracy", "_lat", "run"], ascending=[False, True, True]
    )
    return order.index[0]


def rank(cands: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """The ranking rule (module doc) on candidates that carry `significantly_worse` (vs the
    reference; see `add_significance`). Adds reference, pareto, within_tolerance, eligible, why
    and rank (1 = recommended; eligible ones first by latency, then the rest by accuracy)."""
    if cands.empty:
        return cands.assign(reference=[], pareto=[], within_tolerance=[], eligible=[], why=[], tied_with=[], rank=[])
    if "significantly_worse" not in cands:
        raise LabError("candidates have no significantly_worse column; run add_significance() (or set it) first")
    out = cands.copy()
    ref = reference_index(out)
    out["reference"] = out.index == ref
    out["pareto"] = pareto_front(out["test_accuracy"], out["latency_p50_ms"])
    out["within_tolerance"] = out["test_accuracy"] >= out.loc[ref, "test_accuracy"] - tolerance - 1e-12
    worse = out["significantly_worse"].fillna(False).astype(bool) & ~out["reference"]
    out["eligible"] = out["pareto"] & out["within_tolerance"] & ~worse
    out["why"] = [_why(r, w, tolerance, _dominator(out, i)) for (i, r), w in zip(out.iterrows(), worse)]
    out["tied_with"] = _ties(out)
    lat = out["latency_p50_ms"].astype(float).fillna(np.inf)
    out = out.assign(_lat=lat, _acc=-out["test_accuracy"])
    eligible = out.loc[_tie_order(out[out["eligible"]])]
    rest = out[~out["eligible"]].sort_values(["_acc", "_lat", "run"])
    out = pd.concat([eligible, rest]).drop(columns=["_lat", "_acc"])
    out["rank"] = range(1, len(out) + 1)
    return out.reset_index(drop=True)


def latency_ties(p50_a: float, spread_a: float, p50_b: float, spread_b: float, tie_pct: float = TIE_PCT) -> bool:
    """True when two batch-1 p50s differ by less than the noise: tie_pct of the faster one, or
    either candidate's measured spread between rounds (in %) when larger. An unmeasured
    latency (NaN) ties with nothing."""
    if not (p50_a == p50_a and p50_b == p50_b):
        return False
    margin = max([tie_pct] + [s for s in (spread_a, spread_b) if s == s]) / 100
    fast, slow = sorted((float(p50_a), float(p50_b)))
    return slow <= fast * (1 + margin)


def _tied(cands: pd.DataFrame, i, j) -> bool:
    spread = _optional(cands, "latency_spread_pct")
    lat = cands["latency_p50_ms"].astype(float)
    return latency_ties(lat[i], spread[i], lat[j], spread[j])


def _ties(cands: pd.DataFrame) -> list[str]:
    """For each eligible candidate, the labels of the other eligible ones its latency ties with."""
    eligible = cands.index[cands["eligible"]]
    return [", ".join(f"{cands.loc[j, 'label']} (run #{int(cands.loc[j, 'run'])})" for j in eligible
                      if j != i and _tied(cands, i, j)) if cands.loc[i, "eligible"] else ""
            for i in cands.index]


def _tie_order(eligible: pd.DataFrame) -> list:
    """Eligible candidates in ranking order: repeatedly, of the fastest left and those whose
    latency ties with it, the one with fewer multiply-adds, then the smaller file, then the more
    accurate (then the earlier run) comes next."""
    keys = eligible.assign(_lat=eligible["latency_p50_ms"].astype(float).fillna(np.inf),
                           _macs=_optional(eligible, "macs").fillna(np.inf),
                           _size=eligible["model_bytes"].astype(float).fillna(np.inf), _acc=-eligible["test_accuracy"])
    left, order = keys.sort_values(["_lat", "_macs", "_size", "_acc", "run"]), []
    while not left.empty:
        fastest = left.index[0]
        tied = [i for i in left.index if i == fastest or _tied(eligible, fastest, i)]
        pick = left.loc[tied].sort_values(["_macs", "_size", "_acc", "run"]).index[0]
        order.append(pick)
        left = left.drop(index=pick)
    return order


def _dominator(cands: pd.DataFrame, i) -> str | None:
    """The label of the most accurate candidate that dominates candidate i, if any."""
    acc, lat = cands["test_accuracy"], cands["latency_p50_ms"].astype(float).fillna(np.inf)
    a, t = acc[i], lat[i]
    better = cands[(acc >= a) & (lat <= t) & ((acc > a) | (lat < t))]
    if better.empty:
        return None
    top = better.sort_values("test_accuracy", ascending=False).iloc[0]
    return f"{top['label']} (#{int(top['run'])})"


def _why(row: pd.Series, worse: bool, tolerance: float, dominator: str | None = None) -> str:
    if row["reference"]:
        return "most accurate"
    reasons = []
    if not row["pareto"]:
        reasons.append(f"dominated by {dominator}: at least as accurate and as fast" if dominator else "dominated")
    if not row["within_tolerance"]:
        reasons.append(f"more than {tolerance * 100:g} point below the most accurate")
    if worse:
        reasons.append("significantly worse than the most accurate (McNemar)")
    return "; ".join(reasons) or "eligible"


# ---------------------------------------------------------------- significance on stored predictions


def _pred(conn: sqlite3.Connection, run_id: int) -> tuple[np.ndarray, np.ndarray]:
    from cifar_core.analysis.prediction import stored_predictions

    stored = stored_predictions(conn, run_id)
    return stored.pred, stored.y_true


def versus(conn: sqlite3.Connection, run_id: int, others: list[int], alpha: float = ALPHA) -> pd.DataFrame:
    """McNemar of each run in `others` against `run_id` on their stored test predictions.
    `direction` is how the other run compares: "better", "worse" or "not significantly different"."""
    from cifar_core.analysis.stats import mcnemar

    base_pred, y = _pred(conn, run_id)
    rows = []
    for other in others:
        if other == run_id:
            continue
        pred, y_other = _pred(conn, other)
        if y_other.shape != y.shape or not np.array_equal(y_other, y):
            raise LabError(
                f"runs {run_id} and {other} were scored on different test sets; compare runs of one data source"
            )
        test = mcnemar(pred == y, base_pred == y, alpha=alpha, name_a=f"#{other}", name_b=f"#{run_id}")
        direction = "not significantly different"
        if test.significant:
            direction = "better" if test.n10 > test.n01 else "worse"
        rows.append({
            "run": other, "accuracy": float((pred == y).mean()), "only_it_right": test.n10, "only_base_right": test.n01,
            "p_value": test.p_value, "significant": test.significant, "direction": direction,
            "statement": test.statement,
        })
    return pd.DataFrame(rows, columns=["run", "accuracy", "only_it_right", "only_base_right", "p_value", "significant",
                                       "direction", "statement"])


def add_significance(conn: sqlite3.Connection, cands: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Candidates with p_value and significantly_worse against the reference's representative run."""
    if cands.empty:
        return cands.assign(p_value=[], significantly_worse=[])
    ref_run = int(cands.loc[reference_index(cands), "run"])
    vs = versus(conn, ref_run, [int(r) for r in cands["run"]], alpha).set_index("run")
    out = cands.copy()
    out["p_value"] = [float("nan") if r == ref_run else vs.loc[r, "p_value"] for r in out["run"]]
    out["significantly_worse"] = [r != ref_run and vs.loc[r, "direction"] == "worse" for r in out["run"]]
    return out


# ---------------------------------------------------------------- the recommendation


@dataclass(frozen=True)
class Recommendation:
    run: int  # the run to ship (the candidate's representative run)
    key: str
    label: str
    text: str  # Markdown an analyst can paste into a report
    not_different: tuple[int, ...]  # runs McNemar does not separate from `run`
    worse: tuple[int, ...]  # runs significantly worse than `run`
    better: tuple[int, ...]  # runs significantly better than `run`
    rule: str = RANKING_RULE

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, eq=False)
class Choice:
    scorecard: pd.DataFrame  # one row per succeeded run
    candidates: pd.DataFrame  # ranked, one row per experiment
    versus: pd.DataFrame  # every other run against the recommended one (McNemar)
    recommendation: Recommendation | None
    source: str | None
    test_images: int = 0
    notes: list[str] = field(default_factory=list)


def choose(conn: sqlite3.Connection, source: str | None = None, run_ids: list[int] | None = None,
           alpha: float = ALPHA, tolerance: float = TOLERANCE, hide: Collection[int] = ()) -> Choice:
    """Scorecard, ranked candidates and the recommendation for the succeeded runs of one data
    source (default: the most recently used one) or of `run_ids` (which must share one source),
    leaving out those in `hide`."""
    if run_ids is None:
        known = sources(conn, hide)
        source = source if source is not None else (known[0] if known else None)
    card = scorecard(conn, source, run_ids, hide)
    used = sorted(set(card["data_source"]))
    if len(used) > 1:
        raise LabError(f"runs {', '.join(map(str, card['run']))} come from {len(used)} data sources; choose among one")
    source = used[0] if used else source
    if card.empty:
        return Choice(card, rank(candidates(card).assign(significantly_worse=[])), versus_empty(), None, source)
    ranked = rank(add_significance(conn, candidates(card), alpha), tolerance)
    pick = ranked.iloc[0]
    vs = versus(conn, int(pick["run"]), [int(r) for r in card["run"]], alpha)
    labels = dict(zip(card["run"].astype(int), card["label"]))
    test_images = int(len(_pred(conn, int(pick["run"]))[1]))
    text = recommendation_text(ranked, vs, labels, test_images, alpha=alpha, rule=RANKING_RULE)
    rec = Recommendation(
        run=int(pick["run"]), key=str(pick["key"]), label=str(pick["label"]), text=text,
        not_different=tuple(int(r) for r in vs.loc[vs["direction"] == "not significantly different", "run"]),
        worse=tuple(int(r) for r in vs.loc[vs["direction"] == "worse", "run"]),
        better=tuple(int(r) for r in vs.loc[vs["direction"] == "better", "run"]),
    )
    busy = card[card["measured_while_busy"]]
    notes = [f"runs {', '.join(f'#{r}' for r in busy['run'])} were measured while other processes used the CPU "
             f"({_load_text(_optional(busy, 'measured_load').max())})"] if len(busy) else []
    return Choice(card, ranked, vs, rec, source, test_images, notes)


def _load_text(cores: float) -> str:
    return "the load could not be read" if cores != cores else f"up to {cores:.1f} cores besides the measurement"


def versus_empty() -> pd.DataFrame:
    return pd.DataFrame(columns=["run", "accuracy", "only_it_right", "only_base_right", "p_value", "significant",
                                 "direction", "statement"])


# ---------------------------------------------------------------- re-measure and export


@dataclass(frozen=True)
class MeasuredRun:
    run: int
    p50_ms: float  # median of the rounds' batch-1 p50s
    spread_pct: float  # (max - min) of the rounds' p50s, % of p50_ms
    p95_ms: float
    throughput_ips: float
    macs: int  # multiply-adds per image (spec.cost)
    model_bytes: int
    round_p50_ms: tuple[float, ...]


@dataclass(frozen=True)
class Measurement:
    """Runs measured together (`latency.measure_together`) and stored as one session."""

    session: int
    runs: tuple[MeasuredRun, ...]
    orders: tuple[tuple[int, ...], ...]  # per round, the run ids in the order measured
    other_load: float | None  # cores other processes used meanwhile (None: unreadable)
    busy: bool
    rounds: int
    batch1_repeats: int
    method: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> Measurement:
        runs = tuple(MeasuredRun(**{**r, "round_p50_ms": tuple(r["round_p50_ms"])}) for r in doc["runs"])
        return cls(**{**doc, "runs": runs, "orders": tuple(tuple(o) for o in doc["orders"])})

    def ratio(self) -> float:
        """Slowest over fastest p50 of the runs measured (1.0 for one run)."""
        p50 = [r.p50_ms for r in self.runs]
        return max(p50) / min(p50)

    def table(self) -> pd.DataFrame:
        """One row per run measured, fastest first."""
        rows = [{k: v for k, v in asdict(r).items() if k != "round_p50_ms"} for r in self.runs]
        return pd.DataFrame(rows).sort_values(["p50_ms", "run"]).reset_index(drop=True)


MEASURE_DEFAULT = 4  # candidates the Model choice page offers to measure together


def measure_candidates(ranked: pd.DataFrame, n: int = MEASURE_DEFAULT) -> list[int]:
    """The runs worth measuring together: the representative runs of the candidates on the
    Pareto front, in rank order (the recommended one first), at most n."""
    if ranked.empty:
        return []
    return [int(r) for r in ranked.loc[ranked["pareto"] | (ranked["rank"] == 1), "run"].head(n)]


def measure_runs(conn: sqlite3.Connection, run_ids: list[int], rounds: int = 5, batch1_repeats: int = 50) -> Measurement:
    """Measure the succeeded runs' models together in this process (TensorFlow; see
    `latency.measure_together`), store each run's figures, multiply-adds and the load under one new
    session, and return them. LabError for a run without a model or runs of different input sizes."""
    from cifar_core.analysis import prediction
    from cifar_core.train import latency
    from cifar_core.spec.cost import multiply_adds

    ids = list(dict.fromkeys(int(r) for r in run_ids))
    if not ids:
        raise LabError("no runs to measure; give at least one run id")
    latency.check_counts(rounds=rounds, batch1_repeats=batch1_repeats)  # before TensorFlow loads
    infos = [prediction.trained_model(conn, r) for r in ids]
    models = {r: prediction.load_trained_model(info) for r, info in zip(ids, infos)}
    shapes = {r: tuple(m.input_shape[1:]) for r, m in models.items()}
    if len(set(shapes.values())) > 1:
        raise LabError(f"runs take different image sizes ({', '.join(f'#{r}: {s}' for r, s in shapes.items())}); "
                       "measure runs of one data source together")
    shape = shapes[ids[0]]
    joint = latency.measure_together({f"#{r}": m for r, m in models.items()}, shape, rounds=rounds,
                                    batch1_repeats=batch1_repeats)
    specs = store.spec_docs(conn, ids)
    measured = tuple(
        MeasuredRun(r, c.p50_ms, c.spread_pct, c.p95_ms, c.throughput_ips, multiply_adds(specs[r], shape),
                    latency.model_file_size(info.path), c.round_p50_ms)
        for r, info, c in zip(ids, infos, joint.candidates)
    )
    load = None if joint.other_cores != joint.other_cores else joint.other_cores
    rows = [{"run_id": m.run, "rounds": rounds, "p50_ms": m.p50_ms, "spread_pct": m.spread_pct, "p95_ms": m.p95_ms,
             "throughput_ips": m.throughput_ips, "other_load": load, "busy": int(joint.busy)} for m in measured]
    with store.transaction(conn):
        session = store.insert_latency_session(conn, rows, store.now())
        for m, c in zip(measured, joint.candidates):
            store.update_run(conn, m.run, **latency.cost_figures(joint, c), macs=m.macs, model_bytes=m.model_bytes,
                             latency_session=session)
    orders = tuple(tuple(ids[i] for i in order) for order in joint.orders)
    return Measurement(session, measured, orders, load, joint.busy, rounds, batch1_repeats, joint.method)
