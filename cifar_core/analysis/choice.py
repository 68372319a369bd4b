"""Choosing the model for production: a deployment scorecard per finished run, candidates (the
seeds of one experiment pooled), the accuracy-latency Pareto front, a ranking and a written
recommendation; plus the store-reading wrappers of the run diagnosis, re-measuring a run's
latency and exporting a run.

The ranking rule (RANKING_RULE, tested in tests/test_choice.py):

1. A candidate is an experiment: the succeeded runs with the same name and settings (all but
   the seed) on the same test set. With several seeds its accuracy is their mean (spread: std)
   and its costs the median; its representative run, the one compared and exported, is the seed
   with the highest test accuracy.
2. The reference is the most accurate candidate (highest mean test accuracy; ties: the faster).
3. Eligible are the candidates on the accuracy-latency Pareto front (no other candidate is at
   least as accurate and at least as fast, and strictly better in one) whose mean test accuracy
   is within TOLERANCE (1 point) of the reference's and which McNemar's test on the stored test
   predictions (representative runs, ALPHA 0.05) does not find significantly worse than it.
4. Recommended is the eligible candidate with the lowest batch-1 p50 latency (ties: the smaller
   model file, then the more accurate). The reference is always eligible, so there always is one.

Why: below about a point of accuracy, a model that is not measurably worse on the same 10,000
test images but answers faster is the better production choice; the tolerance keeps a small
test set (where McNemar can separate little) from recommending a much weaker model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cifar_core import config
from cifar_core.jobs import queue
from cifar_core.jobs import results
from cifar_core.analysis.diagnosis import Diagnosis, diagnose
from cifar_core.errors import LabError

ALPHA = 0.05  # McNemar significance level
TOLERANCE = 0.01  # accuracy (fraction) an eligible candidate may be below the reference
EXPORT_SAMPLE = 64  # test images an export is checked on

RANKING_RULE = (
    "Candidates are experiments (runs with the same name and settings but the seed, on the same test set; "
    "several seeds give a mean and spread). Among the candidates on the accuracy-latency Pareto front whose "
    f"mean test accuracy is within {TOLERANCE * 100:g} point of the most accurate candidate and which McNemar's "
    f"test (alpha {ALPHA:g}, stored test predictions) does not find significantly worse than it, the one with "
    "the lowest batch-1 p50 latency is recommended (ties: smaller model file, then higher accuracy)."
)

SCORECARD_COLUMNS = [
    "run", "name", "label", "key", "seed", "group", "data_source", "validation", "test_accuracy", "test_loss",
    "params", "model_bytes", "latency_p50_ms", "latency_p95_ms", "throughput_ips", "measured_while_busy",
    "train_seconds", "epochs", "seconds_per_epoch", "final_accuracy", "final_val_accuracy", "best_val_accuracy",
    "gap", "verdict", "diagnosis",
]
CANDIDATE_COLUMNS = [
    "key", "label", "name", "run", "runs", "run_ids", "data_source", "validation", "test_accuracy",
    "test_accuracy_std", "test_accuracy_min", "test_accuracy_max", "params", "model_bytes", "latency_p50_ms",
    "latency_p95_ms", "throughput_ips", "measured_while_busy", "train_seconds", "gap", "verdict", "diagnosis",
]


# ---------------------------------------------------------------- diagnosis of stored runs


def _num_classes(spec: dict) -> int:
    layers = spec.get("layers") or []
    units = layers[-1].get("units") if layers and isinstance(layers[-1], dict) else None
    return int(units) if isinstance(units, int) and units >= 2 else 10


def _history_records(history: pd.DataFrame) -> list[dict]:
    """Store rows as diagnose() wants them; a NULL loss (SQLite stores NaN as NULL) becomes NaN,
    so a diverged run reads as diverged instead of failing the check."""
    records = []
    for row in history.to_dict(orient="records"):
        records.append({k: (float("nan") if v is None or (isinstance(v, float) and v != v) else v) for k, v in row.items()})
    return records


def run_diagnosis(conn: sqlite3.Connection, run_id: int) -> Diagnosis:
    """The diagnosis of one run from its stored per-epoch history (see cifar_core.diagnosis)."""
    job = queue.get_job(conn, run_id)
    return diagnose(_history_records(results.run_history(conn, run_id)), _num_classes(job.spec))


def verdicts(conn: sqlite3.Connection, run_ids: list[int] | None = None) -> pd.DataFrame:
    """One row per run with at least one finished epoch: run, verdict, title, text, next_step.

    Reads plain rows and groups them in Python: with 500 runs a pandas groupby made the
    leaderboard miss its 1 s budget."""
    columns = ["run", "verdict", "title", "text", "next_step"]
    where, args = "", ()
    if run_ids is not None:
        if not run_ids:
            return pd.DataFrame(columns=columns)
        where, args = f" WHERE run_id IN ({','.join('?' * len(run_ids))})", tuple(run_ids)
    fields = ("epoch", *results.METRICS)
    rows = conn.execute(f"SELECT run_id, {', '.join(fields)} FROM metrics{where} ORDER BY run_id, epoch", args).fetchall()
    specs = results.run_specs(conn, sorted({r[0] for r in rows}))
    out = []
    for run, group in itertools.groupby(rows, key=lambda r: r[0]):
        history = [{k: (float("nan") if v is None else v) for k, v in zip(fields, r[1:])} for r in group]
        d = diagnose(history, _num_classes(specs.get(run, {})))
        out.append((run, d.verdict, d.title, d.text, d.next_step))
    return pd.DataFrame(out, columns=columns)


# ---------------------------------------------------------------- the scorecard


def _key(spec: dict, source: str) -> str:
    """Identity of an experiment: its settings without the seed, and the data it ran on."""
    settings = {k: v for k, v in spec.items() if k not in ("seed", "description")}
    text = json.dumps([settings, source], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def sources(conn: sqlite3.Connection) -> list[str]:
    """Data sources of the succeeded runs, most recently used first."""
    rows = conn.execute(
        "SELECT data_source, MAX(id) AS last FROM jobs WHERE state = ? GROUP BY data_source ORDER BY last DESC",
        (queue.SUCCEEDED,),
    ).fetchall()
    return [r["data_source"] for r in rows]


def scorecard(conn: sqlite3.Connection, source: str | None = None, run_ids: list[int] | None = None) -> pd.DataFrame:
    """Every succeeded run (of one data source, or of `run_ids`) with what it costs to deploy:
    test accuracy, parameters, model file bytes, batch-1 latency p50/p95, batch-256 throughput,
    training time, overfitting gap (final train - validation accuracy) and diagnosis."""
    where, args = "j.state = ?", [queue.SUCCEEDED]
    if source is not None:
        where += " AND j.data_source = ?"
        args.append(source)
    if run_ids is not None:
        if not run_ids:
            return pd.DataFrame(columns=SCORECARD_COLUMNS)
        where += f" AND j.id IN ({','.join('?' * len(run_ids))})"
        args += [int(i) for i in run_ids]
    rows = conn.execute(
        "SELECT j.id AS run, j.spec_json, j.data_source, r.test_loss, r.model_bytes, r.latency_p50_ms,"
        " r.latency_p95_ms, r.throughput_ips, r.measured_while_busy, r.train_seconds"
        f" FROM jobs j JOIN runs r ON r.id = j.id WHERE {where} ORDER BY j.id",
        args,
    ).fetchall()
    if not rows:
        return pd.DataFrame(columns=SCORECARD_COLUMNS)
    cost = pd.DataFrame([dict(r) for r in rows])
    specs = cost.pop("spec_json").map(json.loads)
    cost["key"] = [_key(s, src) for s, src in zip(specs, cost["data_source"])]
    ids = cost["run"].tolist()
    board = results.leaderboard_rows(conn, ids).drop(columns=["status", "created", "optimizer", "learning_rate",
                                                             "batch_size", "epochs_planned", "best_epoch"])
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
            "model_bytes": best["model_bytes"], "latency_p50_ms": part["latency_p50_ms"].median(),
            "latency_p95_ms": part["latency_p95_ms"].median(), "throughput_ips": part["throughput_ips"].median(),
            "measured_while_busy": bool(part["measured_while_busy"].any()), "train_seconds": part["train_seconds"].mean(),
            "gap": part["gap"].mean(), "verdict": best["verdict"], "diagnosis": best["diagnosis"],
        })
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)


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
        return cands.assign(reference=[], pareto=[], within_tolerance=[], eligible=[], why=[], rank=[])
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
    lat = out["latency_p50_ms"].astype(float).fillna(np.inf)
    size = out["model_bytes"].astype(float).fillna(np.inf)
    out = out.assign(_e=~out["eligible"], _lat=lat, _size=size, _acc=-out["test_accuracy"])
    eligible = out[out["eligible"]].sort_values(["_lat", "_size", "_acc", "run"])
    rest = out[~out["eligible"]].sort_values(["_acc", "_lat", "run"])
    out = pd.concat([eligible, rest]).drop(columns=["_e", "_lat", "_size", "_acc"])
    out["rank"] = range(1, len(out) + 1)
    return out.reset_index(drop=True)


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


def _pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def _ms(v) -> str:
    return "not measured" if v is None or v != v else f"{v:.2f} ms"


def _bytes(n) -> str:
    if n is None or n != n:
        return "unknown size"
    n = float(n)
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def _duration(s) -> str:
    if s is None or s != s:
        return "unknown time"
    s = float(s)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _who(row) -> str:
    return f"{row['label']} (run #{int(row['run'])})"


def _accuracy_text(row) -> str:
    text = f"test accuracy {_pct(row['test_accuracy'])}"
    if row["runs"] > 1:
        std = row["test_accuracy_std"]
        text += f" (mean of {row['runs']} seeds, ± {std * 100:.1f} points std; range {_pct(row['test_accuracy_min'])}" \
                f"–{_pct(row['test_accuracy_max'])})"
    return text


def recommendation_text(ranked: pd.DataFrame, vs: pd.DataFrame, labels: dict[int, str] | None = None,
                        test_images: int | None = None, alpha: float = ALPHA) -> str:
    """The written justification of the top-ranked candidate: what it scores and costs, why it
    was chosen, what it gives up, and which runs McNemar does not separate from it."""
    pick = ranked.iloc[0]
    ref = ranked[ranked["reference"]].iloc[0]
    labels = labels or {}
    lines = [
        f"**Recommended for production: {_who(pick)}.** {_accuracy_text(pick).capitalize()}; batch-1 latency "
        f"{_ms(pick['latency_p50_ms'])} p50 / {_ms(pick['latency_p95_ms'])} p95, "
        + (f"{pick['throughput_ips']:,.0f} images/s at batch 256; " if pick["throughput_ips"] == pick["throughput_ips"]
           else "")
        + f"{int(pick['params']):,} parameters, a {_bytes(pick['model_bytes'])} model file; trained in "
        f"{_duration(pick['train_seconds'])}; final train-validation gap {pick['gap'] * 100:.1f} points"
        + (f" (diagnosis: {pick['diagnosis']})." if isinstance(pick.get("diagnosis"), str) else "."),
    ]
    lines.append("")
    lines.append("**Why this one:** " + _why_text(ranked, pick, ref, alpha))
    lines.append("")
    lines.append("**What it gives up:** " + _gives_up_text(ranked, pick, ref))
    lines.append("")
    lines.append(_versus_text(vs, labels, test_images, alpha))
    caveats = _caveats(ranked, pick)
    if caveats:
        lines += ["", "**Caveats:** " + " ".join(caveats)]
    lines += ["", f"*Rule:* {RANKING_RULE}"]
    return "\n".join(lines)


def _why_text(ranked: pd.DataFrame, pick, ref, alpha: float) -> str:
    if len(ranked) == 1:
        return "it is the only finished candidate on this test set."
    if pick["key"] == ref["key"]:
        faster = ranked[(ranked["latency_p50_ms"] < pick["latency_p50_ms"]) & ranked["within_tolerance"]]
        text = "it is the most accurate candidate"
        if faster.empty:
            return text + ", and no candidate within a point of its accuracy answers faster."
        ruled_out = "; ".join(f"{_who(r)}: {r['why']}" for _, r in faster.iterrows())
        return text + f"; the faster candidates within a point of it are ruled out ({ruled_out})."
    drop = (ref["test_accuracy"] - pick["test_accuracy"]) * 100
    speed = ref["latency_p50_ms"] / pick["latency_p50_ms"] if pick["latency_p50_ms"] else float("nan")
    text = (
        f"it is {drop:.1f} points below the most accurate candidate, {_who(ref)} at {_pct(ref['test_accuracy'])}, "
        f"a difference McNemar's test does not find significant ({_p(pick['p_value'])} at alpha {alpha:g}), "
        f"while it answers {speed:.1f}x faster ({_ms(pick['latency_p50_ms'])} vs {_ms(ref['latency_p50_ms'])} p50)"
    )
    if pick["model_bytes"] == pick["model_bytes"] and ref["model_bytes"] == ref["model_bytes"] and ref["model_bytes"]:
        ratio = pick["model_bytes"] / ref["model_bytes"]
        text += f" with a model file {ratio:.2f}x the size ({_bytes(pick['model_bytes'])} vs {_bytes(ref['model_bytes'])})"
    return text + "."


def _gives_up_text(ranked: pd.DataFrame, pick, ref) -> str:
    parts = []
    if pick["key"] != ref["key"]:
        parts.append(f"{(ref['test_accuracy'] - pick['test_accuracy']) * 100:.1f} points of mean test accuracy against "
                     f"{_who(ref)}.")
    else:
        parts.append("no accuracy: it is the most accurate candidate.")
    faster = ranked[ranked["latency_p50_ms"] < pick["latency_p50_ms"]].sort_values("latency_p50_ms")
    if not faster.empty:
        f = faster.iloc[0]
        parts.append(
            f"The fastest candidate, {_who(f)}, answers in {_ms(f['latency_p50_ms'])} but is "
            f"{(pick['test_accuracy'] - f['test_accuracy']) * 100:.1f} points less accurate ({_pct(f['test_accuracy'])})."
        )
    smaller = ranked[ranked["model_bytes"] < pick["model_bytes"]]
    if not smaller.empty and (faster.empty or smaller["model_bytes"].min() < faster.iloc[0]["model_bytes"]):
        s = smaller.sort_values("model_bytes").iloc[0]
        parts.append(f"The smallest, {_who(s)}, is {_bytes(s['model_bytes'])} at {_pct(s['test_accuracy'])}.")
    return " ".join(parts)


def _versus_text(vs: pd.DataFrame, labels: dict[int, str], test_images: int | None, alpha: float) -> str:
    on = f" on the same {test_images:,} test images" if test_images else " on the same test images"
    head = f"**Compared with every other finished run** (McNemar{on}, alpha {alpha:g}): "
    if vs.empty:
        return head + "there is no other finished run."

    def names(part: pd.DataFrame) -> str:
        if part.empty:
            return "none"
        return ", ".join(
            f"#{int(r.run)} {labels.get(int(r.run), '')} ({_pct(r.accuracy)}, {_p(r.p_value)})".replace("  ", " ")
            for r in part.sort_values("accuracy", ascending=False).itertuples()
        )

    same = vs[vs["direction"] == "not significantly different"]
    worse = vs[vs["direction"] == "worse"]
    better = vs[vs["direction"] == "better"]
    text = head + f"not significantly different: {names(same)}. Significantly worse: {names(worse)}."
    if not better.empty:
        text += f" Significantly better (kept out by the rule, e.g. too slow): {names(better)}."
    return text


def _caveats(ranked: pd.DataFrame, pick) -> list[str]:
    out = []
    if pick["validation"] == "test":
        out.append(
            "This run validated on the test set each epoch (the notebook's setting), so its test accuracy also "
            "guided training and is optimistic; confirm on held-out data before relying on the figure."
        )
    if pick["measured_while_busy"]:
        out.append(
            f"Its latency was measured while other jobs ran; re-measure on a quiet machine with "
            f"`python -m cifar_core measure {int(pick['run'])}`."
        )
    if pick["latency_p50_ms"] != pick["latency_p50_ms"]:
        out.append(f"Its latency was never measured: `python -m cifar_core measure {int(pick['run'])}`.")
    return out


def choose(conn: sqlite3.Connection, source: str | None = None, run_ids: list[int] | None = None,
           alpha: float = ALPHA, tolerance: float = TOLERANCE) -> Choice:
    """Scorecard, ranked candidates and the recommendation for the succeeded runs of one data
    source (default: the most recently used one) or of `run_ids` (which must share one source)."""
    if run_ids is None:
        known = sources(conn)
        source = source if source is not None else (known[0] if known else None)
    card = scorecard(conn, source, run_ids)
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
    text = recommendation_text(ranked, vs, labels, test_images, alpha)
    rec = Recommendation(
        run=int(pick["run"]), key=str(pick["key"]), label=str(pick["label"]), text=text,
        not_different=tuple(int(r) for r in vs.loc[vs["direction"] == "not significantly different", "run"]),
        worse=tuple(int(r) for r in vs.loc[vs["direction"] == "worse", "run"]),
        better=tuple(int(r) for r in vs.loc[vs["direction"] == "better", "run"]),
    )
    notes = [f"runs {', '.join(f'#{r}' for r in card.loc[card['measured_while_busy'], 'run'])} were measured while "
             "other jobs ran"] if card["measured_while_busy"].any() else []
    return Choice(card, ranked, vs, rec, source, test_images, notes)


def versus_empty() -> pd.DataFrame:
    return pd.DataFrame(columns=["run", "accuracy", "only_it_right", "only_base_right", "p_value", "significant",
                                 "direction", "statement"])


# ---------------------------------------------------------------- figures


def pareto_figure(ranked: pd.DataFrame, height: int = 420):
    """Accuracy against batch-1 p50 latency, one point per candidate (error bars: seed std), the
    Pareto front joined by a line and the recommended candidate starred."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if ranked.empty:
        return fig
    data = ranked.assign(acc=ranked["test_accuracy"] * 100, std=ranked["test_accuracy_std"].fillna(0) * 100)
    front = data[data["pareto"]].sort_values("latency_p50_ms")
    fig.add_scatter(x=front["latency_p50_ms"], y=front["acc"], mode="lines", name="Pareto front",
                    line=dict(color="#2ca02c", dash="dash", shape="hv"), hoverinfo="skip")
    for on, name, colour in ((True, "on the front", "#2ca02c"), (False, "dominated", "#7f7f7f")):
        part = data[data["pareto"] == on]
        if part.empty:
            continue
        fig.add_scatter(
            x=part["latency_p50_ms"], y=part["acc"], mode="markers+text", name=name, text=part["label"],
            textposition="top center", marker=dict(size=11, color=colour),
            error_y=dict(type="data", array=part["std"], visible=True),
            customdata=np.stack([part["run"], part["runs"], part["params"]], axis=1),
            hovertemplate="%{text} (run #%{customdata[0]}, %{customdata[1]} seed(s))<br>accuracy %{y:.2f}%<br>"
                          "p50 %{x:.2f} ms<br>%{customdata[2]:,} params<extra></extra>",
        )
    pick = data.iloc[[0]]
    fig.add_scatter(x=pick["latency_p50_ms"], y=pick["acc"], mode="markers", name="recommended",
                    marker=dict(symbol="star", size=22, color="#d62728", line=dict(width=1, color="black")),
                    hoverinfo="skip")
    fig.update_layout(
        title="Test accuracy against batch-1 latency", height=height,
        xaxis_title="batch-1 latency p50 (ms, log scale)", yaxis_title="test accuracy (%)",
        xaxis_type="log", margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.18, x=0),
    )
    return fig


# ---------------------------------------------------------------- re-measure and export


def measure_run(conn: sqlite3.Connection, run_id: int, repeats: int = 200, warmup: int = 20,
                throughput_repeats: int = 5) -> dict:
    """Measure a succeeded run's model again (batch-1 p50/p95, batch-256 throughput, file size)
    and store the figures; `measured_while_busy` records whether any job was training meanwhile."""
    from cifar_core.analysis.deploy import measure_latency, model_file_size
    from cifar_core.analysis.prediction import load_trained_model, trained_model

    model_info = trained_model(conn, run_id)
    model = load_trained_model(model_info)
    busy_before = queue.counts(conn)[queue.RUNNING] > 0
    latency = measure_latency(model, tuple(model.input_shape[1:]), batch1_repeats=repeats, warmup=warmup,
                              throughput_repeats=throughput_repeats)
    busy = busy_before or queue.counts(conn)[queue.RUNNING] > 0
    figures = {
        "model_bytes": model_file_size(model_info.path), "latency_p50_ms": latency.p50_ms,
        "latency_p95_ms": latency.p95_ms, "throughput_ips": latency.throughput_ips, "measured_while_busy": int(busy),
    }
    from cifar_core.jobs.store import transaction

    with transaction(conn):
        conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in figures)} WHERE id = ?",
                     (*figures.values(), run_id))
    return {"run": run_id, **figures, "batch1_repeats": repeats, "method": latency.method}


def export_name(name: str, run_id: int) -> str:
    """A serving name from a run: the experiment name with other characters as '-', and the run id."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_") or "model"
    return f"{base[:50]}-run{run_id}"


def next_version(out_dir: Path, name: str) -> int:
    """One more than the highest numeric version under out_dir/name (1 if none)."""
    from cifar_core.analysis.deploy import next_version

    return next_version(out_dir, name)


def exports_dir() -> Path:
    path = config.lab_home() / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_run(conn: sqlite3.Connection, run_id: int, out_dir: Path | str | None = None, name: str | None = None,
               version: int | None = None):
    """Export a succeeded run's model as .keras, a TF Serving SavedModel and .tflite, all in a new
    folder <out>/<name>/<version>/, each loaded back and checked on test images (deploy.export_model).
    Default folder: <lab home>/exports; default name: "<experiment>-run<id>"; default version: the
    next free one. Nothing that exists is replaced."""
    from cifar_core.data.sources import load_dataset
    from cifar_core.analysis.deploy import check_export_target, export_model
    from cifar_core.analysis.prediction import trained_model

    model_info = trained_model(conn, run_id)
    out = Path(out_dir).expanduser() if out_dir is not None else exports_dir()
    name = name or export_name(model_info.name, run_id)
    version = version if version is not None else next_version(out, name)
    check_export_target(out, name, version)  # the checks export_model makes, before TensorFlow loads
    x_test = load_dataset(model_info.data_source).x_test
    sample = x_test[np.linspace(0, len(x_test) - 1, min(EXPORT_SAMPLE, len(x_test))).astype(int)]
    return export_model(model_info.path, out, name, version, sample_x=sample)



def zip_folder(folder: Path | str) -> bytes:
    """A folder (an exported SavedModel) as zip bytes, paths relative to its parent."""
    import io
    import zipfile

    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(folder.parent.parent))
    return buf.getvalue()
