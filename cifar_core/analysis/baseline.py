"""Every leaderboard row against the pinned baseline run: the difference in test accuracy and,
where both runs saved their test predictions on the same test set, McNemar's paired test
(analysis.stats) at ALPHA, as the model choice uses it."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd

from cifar_core.errors import LabError
from cifar_core.analysis.stats import mcnemar

ALPHA = 0.05
BASELINE_COLUMNS = ["vs_baseline", "baseline_p", "baseline_verdict"]


def against(conn: sqlite3.Connection, board: pd.DataFrame, baseline: int) -> pd.DataFrame:
    """`board` with vs_baseline (test accuracy minus the baseline's), baseline_p (McNemar's p-value;
    NaN where a run has no stored predictions or another test set) and baseline_verdict in words."""
    from cifar_core.analysis.prediction import stored_predictions

    out = board.copy()
    base_acc = out.loc[out["run"] == baseline, "test_accuracy"]
    out["vs_baseline"] = out["test_accuracy"].astype(float) - (float(base_acc.iloc[0]) if len(base_acc) else np.nan)
    try:
        base = stored_predictions(conn, baseline)
    except LabError:
        base = None
    p_values, verdicts = [], []
    for run, status in zip(out["run"], out["status"]):
        p, verdict = _test(conn, int(run), status, base, baseline, stored_predictions)
        p_values.append(p)
        verdicts.append(verdict)
    out["baseline_p"], out["baseline_verdict"] = p_values, verdicts
    return out


def _test(conn, run: int, status: str, base, baseline: int, load) -> tuple[float, str]:
    if run == baseline:
        return float("nan"), "baseline"
    if base is None or status != "succeeded":
        return float("nan"), ""
    try:
        other = load(conn, run)
    except LabError:
        return float("nan"), "no stored predictions"
    if other.y_true.shape != base.y_true.shape or not np.array_equal(other.y_true, base.y_true):
        return float("nan"), "other test set"
    test = mcnemar(other.correct, base.correct, alpha=ALPHA, name_a=f"#{run}", name_b=f"#{baseline}")
    if not test.significant:
        return test.p_value, "not significantly different"
    return test.p_value, "better" if test.n10 > test.n01 else "worse"
